"""``import otalign`` then ``otalign.solvers``: the README's own example, in a fresh interpreter."""

import subprocess
import sys

import pytest

SCRIPT = """
import sys
import otalign
assert "otalign.solvers" not in sys.modules, "import otalign should not load the solvers package"

@otalign.solvers.register("fresh_interpreter_solver")
class Mine(otalign.solvers.get("sinkhorn").__class__):
    pass

assert otalign.solvers.get("fresh_interpreter_solver").name == "fresh_interpreter_solver"
try:
    otalign.no_such_thing
except AttributeError as error:
    assert "no_such_thing" in str(error)
else:
    raise AssertionError("expected AttributeError")
print("ok")
"""


@pytest.mark.slow  # a fresh interpreter imports torch: seconds
def test_solvers_attribute_after_a_plain_import():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
