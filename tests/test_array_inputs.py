"""otalign.arrays: one conversion rule at every public entry point: NumPy arrays, lists and pandas objects give the same result as
torch tensors; labels may be integers, floats, booleans or strings (compared by equality only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import otalign
from otalign import arrays, divergences, losses, metrics, targets
from otalign.adapt import SinkhornLpl1Transport, SinkhornTransport, UnbalancedSinkhornTransport

GEN = torch.Generator().manual_seed(0)
X = torch.randn(8, 3, generator=GEN, dtype=torch.float64)
Y = torch.randn(6, 3, generator=GEN, dtype=torch.float64)
COST = torch.cdist(X, Y) ** 2
A = torch.full((8,), 1 / 8, dtype=torch.float64)
B = torch.full((6,), 1 / 6, dtype=torch.float64)
LABELS = torch.tensor([0, 1, 1, 2, 0, 2, 1, 0])
TARGET = targets.from_labels(LABELS[:4]).double() + targets.paired(4).double()


def numpy(t):
    return t.numpy()


def as_list(t):
    return t.tolist()


def pandas(t):
    pd = pytest.importorskip("pandas")
    return pd.Series(t.numpy()) if t.dim() == 1 else pd.DataFrame(t.numpy())


CONTAINERS = {"numpy": numpy, "list": as_list, "pandas": pandas}


def _value(out):
    if isinstance(out, otalign.Plan):
        return out.matrix
    if isinstance(out, (otalign.Problem, otalign.GWProblem)):
        return otalign.solve(out, tol=0, max_iter=50).matrix
    if hasattr(out, "coupling_"):
        return torch.as_tensor(np.asarray(out.coupling_))
    return torch.as_tensor(np.asarray(out, dtype=np.float64)) if not isinstance(out, torch.Tensor) else out


def _plan():
    return otalign.solve(otalign.Problem(torch.cdist(X, X) ** 2, eps=0.5), tol=0, max_iter=50)


#: name -> (call taking a container function, marks)
ENTRY_POINTS = {
    "Problem(cost, a, b)": (lambda c: otalign.Problem(c(COST), c(A), c(B), eps=0.5), "core"),
    "PointCloud(x, y)": (lambda c: otalign.Problem(otalign.PointCloud(c(X), c(Y)), eps=0.5), "core"),
    "GWProblem(C1, C2, a, b)": (lambda c: otalign.GWProblem(c(torch.cdist(X, X) ** 2), c(torch.cdist(Y, Y) ** 2),
                                                             c(A), c(B), eps=0.5), None),
    "targets.from_labels": (lambda c: targets.from_labels(c(LABELS)), None),
    "targets.domain_prior": (lambda c: targets.domain_prior(c(LABELS), 0.3, 0.1), None),
    "targets.hierarchical": (lambda c: targets.hierarchical([c(torch.arange(8)), c(LABELS)], [1.0, 0.5]), None),
    "targets.weighted": (lambda c: targets.weighted(c(TARGET), c(torch.linspace(0.5, 1, 8, dtype=torch.float64))),
                         None),
    "divergences.kl": (lambda c: divergences.kl(_plan(), c(TARGET)), None),
    "divergences.robust": (lambda c: divergences.robust(_plan(), c(TARGET)), None),
    "losses.SupCon(labels=)": (lambda c: losses.SupCon()(X[:4], Y[:4], labels=c(LABELS[:4])), None),
    "losses.GCAInfoNCE(target=)": (lambda c: losses.GCAInfoNCE()(X[:4], Y[:4], target=c(TARGET)), None),
    "metrics.linear_probe": (lambda c: metrics.linear_probe(c(X), c(LABELS), c(X), c(LABELS)), None),
    "metrics.knn_accuracy": (lambda c: metrics.knn_accuracy(c(X), c(LABELS), c(X), c(LABELS), k=3), None),
    "metrics.alignment": (lambda c: metrics.alignment(c(X), c(X + 0.1)), None),
    "metrics.uniformity": (lambda c: metrics.uniformity(c(X)), None),
    "metrics.sample_per_class": (lambda c: metrics.sample_per_class(c(LABELS), 2,
                                                                    generator=torch.Generator().manual_seed(0)), None),
    "adapt.SinkhornTransport": (lambda c: SinkhornTransport(eps=0.5).fit(c(X), c(LABELS), c(Y)), None),
    "adapt.UnbalancedSinkhornTransport": (lambda c: UnbalancedSinkhornTransport(eps=0.5).fit(c(X), Xt=c(Y)), None),
    "adapt.SinkhornLpl1Transport": (lambda c: SinkhornLpl1Transport(eps=0.5).fit(c(X), c(LABELS), c(Y)), None),
}


def _cases():
    for name, (call, kind) in ENTRY_POINTS.items():
        for container in CONTAINERS:
            yield pytest.param(name, container, id=f"{name}-{container}")


@pytest.mark.parametrize("name, container", list(_cases()))
def test_every_entry_point_reads_arrays_lists_and_pandas_as_tensors(name, container):
    call = ENTRY_POINTS[name][0]
    expected = _value(call(lambda t: t))
    got = _value(call(CONTAINERS[container]))
    torch.testing.assert_close(got.to(expected.dtype), expected, rtol=0, atol=1e-10)


LABEL_FORMS = {
    "float": lambda y: y.double(),
    "float numpy": lambda y: y.numpy().astype(np.float32),
    "strings": lambda y: np.array(["ant", "bee", "cat"])[y.numpy()],
    "string list": lambda y: [["ant", "bee", "cat"][i] for i in y.tolist()],
    "string pandas": lambda y: pytest.importorskip("pandas").Series(np.array(["ant", "bee", "cat"])[y.numpy()]),
}


@pytest.mark.parametrize("form", LABEL_FORMS)
def test_labels_of_every_kind_give_the_same_targets_losses_and_metrics(form):
    convert = LABEL_FORMS[form]
    torch.testing.assert_close(targets.from_labels(convert(LABELS)), targets.from_labels(LABELS))
    torch.testing.assert_close(losses.SupCon()(X[:4], Y[:4], labels=convert(LABELS[:4])),
                               losses.SupCon()(X[:4], Y[:4], labels=LABELS[:4]))
    assert metrics.knn_accuracy(X, convert(LABELS), X, convert(LABELS), k=3) == \
        metrics.knn_accuracy(X, LABELS, X, LABELS, k=3)


def test_boolean_labels_are_two_classes():
    flags = LABELS > 0
    torch.testing.assert_close(targets.from_labels(flags.numpy()), targets.from_labels(flags.long()))
    assert arrays.as_labels("y", [True, False]).tolist() == [1, 0]


@pytest.mark.parametrize("bad, error, message", [
    ("abc", TypeError, "x: expected a torch.Tensor"),
    (None, TypeError, "x: expected a torch.Tensor"),
    ([[1.0, 2.0], [3.0]], TypeError, "x: expected .*not a rectangular array"),
    (np.array([object(), object()]), TypeError, "x: expected numbers"),
    (["a", "b"], TypeError, "x: expected numbers"),
])
def test_non_numeric_arrays_are_refused_naming_the_argument(bad, error, message):
    with pytest.raises(error, match=message):
        arrays.as_tensor("x", bad)


def test_labels_errors_name_the_argument():
    with pytest.raises(TypeError, match="y: a list of mixed types"):
        arrays.as_labels("y", ["a", 1])
    with pytest.raises(ValueError, match="y: contains NaN or inf"):
        arrays.as_labels("y", np.array([0.0, np.nan]))
    with pytest.raises(ValueError, match="y: label 'dog' is not among the classes"):
        arrays.as_labels("y", ["dog"], classes=["cat"])
    shared = arrays.label_classes(["b", "a"], ["c"])
    assert arrays.as_labels("y", ["c", "a"], shared).tolist() == [2, 0]


def test_dtype_and_device_place_converted_values_only():
    assert arrays.as_tensor("a", [0.25, 0.75], dtype=torch.float32).dtype == torch.float32
    assert arrays.as_tensor("a", np.array([1, 2])).dtype == torch.int64
    t = torch.ones(2, dtype=torch.float16)
    assert arrays.as_tensor("a", t, dtype=torch.float64) is t
