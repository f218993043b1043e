"""The package's layout: no import cycle between modules (lazy imports counted), the checkout layout works without an
install, and ``import solvers`` from a checkout's root says how to import it instead."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"otalign": "otalign", "solvers": "otalign.solvers", "modalities": "otalign.modalities"}


def _modules() -> dict[str, Path]:
    found = {}
    for folder, package in PACKAGES.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = [p for p in path.relative_to(ROOT / folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def _target(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (at module level or inside functions; not under TYPE_CHECKING)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                       and "TYPE_CHECKING" in ast.dump(node.test) for b in node.body for n in ast.walk(b)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _target(name, node, path.name == "__init__.py")
                submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules]
                targets = submodules + ([base] if len(submodules) < len(node.names) else [])
            else:
                continue
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def test_the_core_imports_no_solver_module():
    graph = import_graph()
    core = [name for name in graph if not name.startswith(("otalign.solvers", "otalign.modalities"))]
    offending = {name: sorted(t for t in graph[name] if t.startswith("otalign.solvers."))
                 for name in core if name != "otalign"}
    assert not any(offending.values()), offending


def _checkout(tmp_path: Path) -> Path:
    copy = tmp_path / "checkout"
    for folder in PACKAGES:
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _run_without_install(copy: Path, code: str) -> subprocess.CompletedProcess:
    """Run ``code`` with the checkout first on sys.path and the installed (editable) otalign hidden."""
    prelude = ("import sys\n"
               "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in str(getattr(f, '__module__', '')).lower()]\n"
               f"sys.path.insert(0, {str(copy)!r})\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, "-c", prelude + code], cwd=copy, capture_output=True, text=True,
                          env=env, timeout=300)


def test_a_plain_checkout_solves_with_one_registry(tmp_path):
    copy = _checkout(tmp_path)
    result = _run_without_install(copy, (
        "import torch, otalign\n"
        "assert otalign.__file__.startswith(sys.path[0]), otalign.__file__\n"
        "assert otalign.solvers.__file__.startswith(sys.path[0]), otalign.solvers.__file__\n"
        "plan = otalign.solve(otalign.Problem(torch.rand(5, 4, dtype=torch.float64)), tol=1e-9)\n"
        "assert plan.converged\n"
        "from otalign.solvers import Sinkhorn\n"
        "assert otalign.registry.solver_class('sinkhorn') is Sinkhorn\n"
        "print('ok')\n"))
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_import_solvers_from_the_root_says_what_to_do(tmp_path):
    copy = _checkout(tmp_path)
    result = _run_without_install(copy, "import solvers\n")
    assert result.returncode != 0
    assert "installed as otalign.solvers" in result.stderr


def test_the_leaf_helpers_import_only_each_other():
    graph = import_graph()
    leaves = {"otalign.arrays", "otalign.checks", "otalign.lookup", "otalign._layout", "otalign.capabilities"}
    for leaf in leaves:
        assert graph[leaf] <= leaves, (leaf, graph[leaf])
    assert graph["otalign.arrays"] == set()


def test_a_half_step_names_at_most_three_modules():
    """solvers/sinkhorn.py -> otalign/halfstep.py -> one soft-min implementation (otalign/softmin/*)."""
    graph = import_graph()
    assert "otalign.halfstep" in graph["otalign.solvers.sinkhorn"]
    assert graph["otalign.halfstep"] <= {"otalign.problem", "otalign.softmin"}
