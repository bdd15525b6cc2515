"""Declarative ablation studies: spec (study files), runner (resumable), store (results).

    from avsf.study import load_study, run_study
    spec = load_study("studies/droppathway.toml")
    run_study(spec, "runs/droppathway")          # trains what is missing, skips what is done

The Optuna search lives in `avsf.study.search`.
"""

from avsf.study.runner import StudyOutcome, format_status, plan_study, run_study
from avsf.study.spec import StudyError, StudySpec, Variant, discover_studies, load_study
from avsf.study.store import load_study_dir

__all__ = [
    "StudyError",
    "StudyOutcome",
    "StudySpec",
    "Variant",
    "discover_studies",
    "format_status",
    "load_study",
    "load_study_dir",
    "plan_study",
    "run_study",
]
