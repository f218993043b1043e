"""Fingerprints of custom targets: the function's code, the module constants it reads (recursively through the
module's helpers), partial arguments and callable instances' state; never a memory address."""

import functools
import subprocess
import sys
import textwrap

import torch

from otalign.training.callable_identity import callable_identity

MODULE = textwrap.dedent("""
    import functools
    import numpy as np
    import torch
    SCALE = {scale}
    WEIGHTS = torch.tensor([1.0, {weight}])
    TABLE = np.array([1, 2, {entry}])

    def helper(n):
        return SCALE * n

    def target(labels, domains, n_views):
        return helper(labels.shape[0]) * WEIGHTS.sum() + TABLE.sum()

    def scaled(labels, domains, n_views, alpha):
        return alpha

    class Rule:
        def __init__(self, alpha):
            self.alpha = alpha
        def __call__(self, labels, domains, n_views):
            return self.alpha

    partial_rule = functools.partial(scaled, alpha={alpha})
    instance_rule = Rule({alpha})
""")


def identities(tmp_path, name="m", scale=2.0, weight=3.0, entry=4, alpha=0.5) -> dict[str, str]:
    """Import a fresh module from source in a subprocess (a new process: no shared memory addresses) and return the
    identities of its three callables."""
    folder = tmp_path / f"{name}_{scale}_{weight}_{entry}_{alpha}"
    folder.mkdir()
    (folder / "user_targets.py").write_text(MODULE.format(scale=scale, weight=weight, entry=entry, alpha=alpha))
    code = ("import sys, json; sys.path.insert(0, sys.argv[1]); import user_targets as m; "
            "from otalign.training.callable_identity import callable_identity as c; "
            "print(json.dumps({k: c(getattr(m, k)) for k in ('target', 'partial_rule', 'instance_rule')}))")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    import json
    return json.loads(out.stdout)


def test_identity_is_stable_across_processes_and_tracks_module_constants(tmp_path):
    base = identities(tmp_path, "a")
    assert identities(tmp_path, "b") == base                       # same code and constants, another process
    assert identities(tmp_path, "c", scale=2.5)["target"] != base["target"]      # a constant of a helper it calls
    assert identities(tmp_path, "d", weight=3.5)["target"] != base["target"]     # a tensor constant it reads
    assert identities(tmp_path, "e", entry=5)["target"] != base["target"]        # a NumPy constant it reads
    changed = identities(tmp_path, "f", alpha=0.7)
    assert changed["partial_rule"] != base["partial_rule"]       # partial: by its arguments
    assert changed["instance_rule"] != base["instance_rule"]     # instance: by its state
    assert changed["target"] == base["target"]


def test_partials_and_instances_are_not_hashed_by_address():
    def f(x, alpha):
        return alpha * x

    class Rule:
        def __init__(self, alpha):
            self.alpha = alpha

        def __call__(self, x):
            return self.alpha * x

    assert callable_identity(functools.partial(f, alpha=1.0)) == callable_identity(functools.partial(f, alpha=1.0))
    assert callable_identity(functools.partial(f, alpha=1.0)) != callable_identity(functools.partial(f, alpha=2.0))
    assert callable_identity(Rule(torch.ones(2))) == callable_identity(Rule(torch.ones(2)))
    assert callable_identity(Rule(torch.ones(2))) != callable_identity(Rule(torch.zeros(2)))
