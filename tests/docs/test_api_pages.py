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
