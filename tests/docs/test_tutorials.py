"""The tutorials in docs/tutorials/*.md are executed: each page's ```python blocks run in order in one namespace.

A failing block reports its page and the line where the block starts. The blocks carry their own checks (asserts
against POT, geomloss, or the library's own definitions), so a page that runs is a page whose claims hold.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

PAGES = sorted((Path(__file__).resolve().parents[2] / "docs" / "tutorials").glob("*.md"))
FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
#: Pages that train networks take longer than the unit-test budget.
SLOW = {"cross_domain.md", "custom_target.md"}


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line, code)`` for each ```python fenced block of a Markdown page (line of the opening fence, 1-based)."""
    return [(text.count("\n", 0, match.start()) + 1, match.group(1)) for match in FENCE.finditer(text)]


def test_the_block_extractor_finds_blocks_in_order():
    text = "intro\n```python\nx = 1\n```\ntext\n```bash\nls\n```\n```python\ny = x + 1\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n"), (9, "y = x + 1\n")]


def test_there_are_three_tutorials_with_code():
    assert [page.name for page in PAGES] == ["cross_domain.md", "custom_target.md", "pot_users.md"]
    for page in PAGES:
        assert python_blocks(page.read_text()), page.name


@pytest.fixture
def restore_torch_state():
    dtype, threads = torch.get_default_dtype(), torch.get_num_threads()
    yield
    torch.set_default_dtype(dtype)
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "page", [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.name in SLOW else []) for p in PAGES]
)
def test_tutorial_runs(page: Path, restore_torch_state, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # pages that write files write them here
    import otalign

    namespace: dict = {"__name__": f"tutorial_{page.stem}"}
    for line, code in python_blocks(page.read_text()):
        exec(compile(code, f"{page}:{line}", "exec"), namespace)


def test_pot_users_default_solver_wording_matches_the_solver_s_choice():
    """The POT tutorial's table says which domain the default solver picks; the library's choice
    (:func:`otalign.softmin.choose_softmin`, used by the default ``kernel="auto"``) must agree."""
    from otalign import Problem
    from otalign.softmin import AbsorbedKernel, KernelDomain, LogDomain, choose_softmin

    page = (Path(__file__).resolve().parents[2] / "docs" / "tutorials" / "pot_users.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith('| `method="sinkhorn_log"`'))
    assert "always log-domain" not in row.replace("not always log-domain", "")
    for phrase in ("`tol=0`", "kernel domain", "no gradient flows", "absorbed kernel domain", "else the log domain"):
        assert phrase in row, phrase
    gen = torch.Generator().manual_seed(0)
    cost = torch.rand(20, 15, generator=gen, dtype=torch.float64)
    assert isinstance(choose_softmin(Problem(cost, eps=0.5), tol=0), KernelDomain)          # fixed iterations
    assert isinstance(choose_softmin(Problem(cost, eps=0.5), tol=1e-6), AbsorbedKernel)     # no gradient
    with_grad = Problem(cost.clone().requires_grad_(), eps=0.5)
    assert isinstance(choose_softmin(with_grad, tol=1e-6), LogDomain)                       # the log domain
