"""noxfile.py: one study_<name> session per studies/*.toml (searches excluded), plus the fixed ones."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_sessions_are_generated_from_the_studies_folder():
    nox = pytest.importorskip("nox")
    from nox import registry

    spec = importlib.util.spec_from_file_location("avsf_noxfile_under_test", ROOT / "noxfile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    names = set(registry.get())
    studies = {p.stem for p in (ROOT / "studies").glob("*.toml") if not p.name.startswith("search_")}
    assert studies, "no study files"
    assert {f"study_{s}" for s in studies} <= names
    assert not any(n.startswith("study_search") for n in names)
    assert {"tests", "report", "bench", "search"} <= names
    assert nox.options.reuse_existing_virtualenvs is True
