"""The API reference (docs/api/*.md) documents every module of the three packages, and only existing ones."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: Source folder -> the installed package it becomes.
PACKAGES = {"otalign": "otalign", "solvers": "otalign.solvers", "modalities": "otalign.modalities"}
#: Modules with nothing to document (the ``python -m otalign`` shim).
SKIP = {"otalign.__main__"}


def modules() -> set[str]:
    found = set()
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found.add(".".join([package, *parts]))
    return found - SKIP


def documented() -> set[str]:
    text = "".join(page.read_text() for page in (ROOT / "docs" / "api").glob("*.md"))
    return set(re.findall(r"automodule:: (\S+)", text))


def test_every_module_has_an_api_entry():
    assert not modules() - documented(), sorted(modules() - documented())


def test_no_api_entry_names_a_missing_module():
    assert not documented() - modules(), sorted(documented() - modules())


def _conf():
    import importlib.util

    spec = importlib.util.spec_from_file_location("docs_conf", ROOT / "docs" / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_public_names_are_documented_under_the_paths_users_import():
    conf = _conf()
    assert conf.PUBLIC["otalign.problem.Problem"] == "otalign.Problem"
    assert conf.PUBLIC["otalign.gromov.problem.GWProblem"] == "otalign.GWProblem"  # the top level first
    assert conf.PUBLIC["otalign.losses.gca_uot.GCAUOT"] == "otalign.losses.GCAUOT"
    text = {page.stem: page.read_text() for page in (ROOT / "docs" / "api").glob("*.md")}
    for package in conf.PUBLIC_PACKAGES:
        entry = f".. automodule:: {package}\n   :members:\n   :imported-members:\n"
        assert any(entry in page for page in text.values()), package


def test_maths_is_rendered_by_a_bundled_mathjax():
    conf = _conf()
    assert "sphinx-mathjax-offline" in conf.extensions
    assert "sphinx-mathjax-offline" in (ROOT / "pyproject.toml").read_text()
