"""README's set-up commands: two environments with distinct names, CI runs the test command literally, and the
folders the commands create are ignored by git."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def setup_commands() -> list[str]:
    """The command lines of README's first bash block (comments dropped)."""
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^```bash\n(.*?)^```", readme, re.S | re.M).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_the_two_commands_use_two_environments():
    demo, tests = setup_commands()
    venvs = [re.search(r"python3 -m venv (\S+)", command).group(1) for command in (demo, tests)]
    assert venvs[0] != venvs[1], venvs
    assert demo.endswith("otalign demo") and tests.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_literally():
    steps = [step.strip() for step in setup_commands()[1].split("&&")]
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    positions = [ci.index(step) for step in steps]  # ValueError names a step CI does not run
    assert positions == sorted(positions)
    assert any(line.startswith("python -m sphinx -W") for line in ci[positions[-1]:]), "docs built after the tests"


def test_what_the_commands_create_is_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    venvs = [re.search(r"python3 -m venv (\S+)", command).group(1) for command in setup_commands()]
    for name in [*venvs, "otalign-demo", "docs/_build"]:
        assert f"{name}/" in ignored, name
