"""Every file named in a docstring (of otalign/, solvers/, modalities/), in README.md or in docs/ exists.

A reference is a repository path, i.e. a token that starts with one of the repository's top-level folders
(``otalign/...``, ``benchmarks/results/setups.md``, ...), or an upper-case Markdown name such as ``README.md``
(the convention for top-level documents). Output files that a run writes (``report.md``, ``out/loss.png``, ...)
start with neither and are not checked.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = ("otalign", "solvers", "modalities", "tests", "benchmarks", "examples", "docs", ".ci")
PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./-]*\w)" % "|".join(re.escape(f) for f in FOLDERS))
#: Folders that builds write into (named in build instructions, never committed).
OUTPUTS = ("docs/_build",)
TOP_LEVEL_DOC = re.compile(r"(?<![\w./-])([A-Z][A-Z0-9_-]*\.md)\b")


def references(text: str) -> set[str]:
    """The repository paths and top-level document names that ``text`` mentions."""
    return set(PATH.findall(text)) | set(TOP_LEVEL_DOC.findall(text))


def docstrings(path: Path) -> list[tuple[int, str]]:
    """``(line, docstring)`` of the module and of every class and function in a Python file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))]
    found = []
    for node in nodes:
        text = ast.get_docstring(node, clean=False)
        if text:
            found.append((getattr(node, "lineno", 1), text))
    return found


def sources() -> list[tuple[str, str]]:
    """``(where, text)`` for every docstring of the three packages, README.md and every docs/ page."""
    out = []
    for folder in ("otalign", "solvers", "modalities"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            out += [(f"{path.relative_to(ROOT)}:{line}", text) for line, text in docstrings(path)]
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        out.append((str(path.relative_to(ROOT)), path.read_text()))
    return out


def test_the_reference_pattern():
    text = ("see docs/maths.md and ``benchmarks/results/setups.md``; writes `otalign-demo/report.md`, out/loss.png "
            "and report.md; NOTES.md section 2; python examples/cross_domain.py")
    assert references(text) == {"docs/maths.md", "benchmarks/results/setups.md", "NOTES.md",
                                "examples/cross_domain.py"}


def test_docstrings_are_found(tmp_path):
    module = tmp_path / "m.py"
    module.write_text('"""Module, see docs/a.md."""\n\nclass A:\n    """Class."""\n\n    def f(self):\n'
                      '        """Method, see README.md."""\n')
    assert [text for _, text in docstrings(module)] == ["Module, see docs/a.md.", "Class.", "Method, see README.md."]


def test_there_is_something_to_check():
    assert len(sources()) > 100
    assert any("docs/maths.md" in references(text) for _, text in sources())


@pytest.mark.parametrize("where, text", sources(), ids=lambda value: value if ":" in value or value.endswith(".md") else "")
def test_every_referenced_file_exists(where, text):
    missing = sorted(name for name in references(text) if not (ROOT / name).exists() and not name.startswith(OUTPUTS))
    assert not missing, f"{where} names files that are not in the repository: {missing}"
