"""nox sessions: tests, one session per paper ablation, reports, benchmarks, the Optuna search.

    nox -s study_droppathway          # install, generate synthetic data, run the study, report
    nox -s study_droppathway -- --scale tiny --seeds 1   # arguments after -- go to `avsf study run`
    nox -s study_droppathway -- --workers 1              # one process (default: one worker per core)
    nox -s tests                      # the test suite (CI)
    nox -s report                     # rebuild every report from runs/
    nox -s bench                      # pytest-benchmark suites -> reports/bench/ (+ .benchmarks/ history)
    nox -s gpu                        # the GPU check -> reports/bench/gpu/ (a dry run without CUDA)
    nox -s search                     # Optuna search over Pd / beta_A, then its report
    nox -l                            # list sessions (one study_<name> per studies/*.toml)

Sessions run on the interpreter that runs nox. Each session keeps its virtualenv between
invocations (torch is a 4.7 GB install); nox gives every session its own folder under .nox/,
so the first run of each session installs once.
"""

from __future__ import annotations

from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
STUDIES = ROOT / "studies"

nox.options.reuse_existing_virtualenvs = True
nox.options.sessions = ["tests"]  # plain `nox` runs the tests; name a session for the rest
nox.options.error_on_missing_interpreters = True


def _study_files() -> list[Path]:
    """studies/*.toml except the Optuna searches (search_*.toml), sorted by name."""
    return sorted(p for p in STUDIES.glob("*.toml") if not p.name.startswith("search_"))


@nox.session
def tests(session: nox.Session) -> None:
    """The fast test suite (CPU only). Fails on any pytest error, including 'no tests ran'."""
    session.install("-e", ".[test]")
    session.run("pytest", "tests/", "-q", *session.posargs)


def _make_study_session(path: Path) -> None:
    name = path.stem

    def study(session: nox.Session) -> None:
        session.install("-e", ".")
        # The trainer generates the built-in synthetic data on first use (a few minutes once).
        # One single-threaded worker per core unless the caller says otherwise: on 2 cores two
        # workers finish a small-scale study ~1.4x sooner than one run using both (docs/studies.md).
        workers = [] if any(a.startswith("--workers") for a in session.posargs) else ["--workers", "auto"]
        session.run("avsf", "study", "run", f"studies/{name}.toml", *workers, *session.posargs)
        # run() returns None when it skipped the command (--install-only): no report to point at then
        if session.run("avsf", "report", f"runs/{name}") is not None:
            session.log(f"report: reports/{name}/summary.md")

    study.__doc__ = f"Run studies/{name}.toml (default scale small; resumable), then write reports/{name}/."
    nox.session(name=f"study_{name}", default=False)(study)


for _path in _study_files():
    _make_study_session(_path)


@nox.session(default=False)
def report(session: nox.Session) -> None:
    """Rebuild every report (reports/<NAME>/) from the study and search folders in runs/."""
    runs = ROOT / "runs"
    found = (
        sorted(p for p in runs.iterdir() if (p / "study.json").exists() or (p / "search.json").exists())
        if runs.is_dir()
        else []
    )
    if not found:
        session.skip("no study or search folders under runs/ yet; run `nox -s study_<name>` first")
    session.install("-e", ".")
    for p in found:
        session.run("avsf", "report", f"runs/{p.name}")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Throughput benchmarks (model, data pipeline, peer) -> reports/bench/; every run is also
    saved under .benchmarks/ (history: `python -m bench.render --compare BASELINE.json`)."""
    session.install("-e", ".[bench]")
    (ROOT / "reports" / "bench").mkdir(parents=True, exist_ok=True)
    # --benchmark-autosave: .benchmarks/<machine>/NNNN_<commit>.json per run; --benchmark-save-data
    # keeps every round's time in it, which the comparison's intervals are computed from.
    session.run("pytest", "bench/", "--benchmark-json", "reports/bench/bench.json", "--benchmark-autosave",
                "--benchmark-save-data", *session.posargs)
    session.run("python", "-m", "bench.render", "reports/bench")


@nox.session(default=False)
def gpu(session: nox.Session) -> None:
    """The GPU check (issue 11): CUDA tests, CUDA bench groups, DALI at the paper geometry and a
    short paper-scale training -> reports/bench/gpu/ (a dry run without CUDA). On a GPU machine
    without network use `bash bench/gpu_check.sh` instead (docs/performance.md)."""
    session.install("-e", ".[bench,test]")
    session.run("python", "-m", "bench.gpu_check", *session.posargs)


@nox.session(default=False)
def search(session: nox.Session) -> None:
    """Optuna search over Pd and beta_A (studies/search_pd_beta.toml), then its report."""
    session.install("-e", ".")
    session.run("avsf", "search", "studies/search_pd_beta.toml", *session.posargs)
    session.run("avsf", "report", "runs/search_pd_beta")
