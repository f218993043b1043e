"""Fuzz of the losses' public entry points (constructors and ``loss(z0, z1, labels=, target=)``) with malformed
values, against an oracle written here.

Contract (as for the core, tests/test_fuzz.py): a bad argument raises ValueError or TypeError whose message starts
with the argument's name and a colon; valid arguments give a loss without NaN. Hypothesis runs are derandomised.
test_loss_inputs.py pins the specific messages; this file covers arbitrary values: every dtype, ranks 0..4, empty
sides, NaN / inf / negative entries, strings, bools, complex numbers, and tensors on the ``meta`` device.
"""

from __future__ import annotations

import math
import numbers
from typing import Optional

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from loss_reference import similarities
from otalign import losses

GCA = (losses.GCAInfoNCE, losses.GCARINCE, losses.GCAUOT)
ROBUST = (losses.RINCE, losses.GCARINCE, losses.GCAUOT)
ALL = (losses.InfoNCE, losses.NTXent, losses.RINCE, losses.SupCon, *GCA)
NAN, INF = math.nan, math.inf


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors: one intra-op thread. On a shared CPU, OpenMP's waiting threads made these tests about ten
    times slower after another test had used the thread pool (measured: 11 s instead of 0.8 s)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def fuzz(count: int):
    return settings(max_examples=count, deadline=None, derandomize=True, database=None)


def raises_naming(prefix: str, call) -> None:
    """``call()`` raises ValueError or TypeError whose message starts with ``prefix + ":"``."""
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert str(info.value).startswith(f"{prefix}:"), str(info.value)


def views(n: int = 4, d: int = 3, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=gen, dtype=torch.float64) for _ in range(2)]


LABELS = torch.tensor([0, 1, 0, 2])


def call(loss, z, **kwargs) -> torch.Tensor:
    if isinstance(loss, losses.SupCon) and "labels" not in kwargs and "target" not in kwargs:
        kwargs["labels"] = LABELS
    return loss(*z, **kwargs)


# ------------------------------------------------------------------------------------------------ oracles


def python_real(value) -> Optional[float]:
    """The losses' numeric keywords (q, lam, rho, r1, r2) take Python ints and floats, not bools."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def python_int(value) -> Optional[int]:
    """iterations takes Python ints only (not bools, NumPy ints or tensors)."""
    return None if isinstance(value, bool) or not isinstance(value, int) else value


def any_real(value) -> Optional[float]:
    """temperature also takes NumPy reals and one-element real tensors (the core's eps contract)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1 or value.is_meta or value.is_complex() or value.dtype == torch.bool:
            return None
        return float(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def finite_at_least(low: float, strict: bool):
    def valid(r: Optional[float]) -> bool:
        return r is not None and math.isfinite(r) and (r > low if strict else r >= low)

    return valid


KEYWORDS = {
    # name: (classes that take it, value -> number or None, number -> valid)
    "temperature": (ALL, any_real, lambda r: finite_at_least(0.0, strict=True)(r) and math.isfinite(1 / r)),
    "iterations": (GCA, python_int, lambda i: i is not None and i >= 1),
    "q": (ROBUST, python_real, lambda r: r is not None and 0 < r <= 1),
    "lam": (ROBUST, python_real, finite_at_least(0.0, strict=False)),
    "rho": ((losses.GCAUOT,), python_real, lambda r: r is not None and r > 0),
    "r1": ((losses.GCAUOT,), python_real, finite_at_least(0.0, strict=False)),
    "r2": ((losses.GCAUOT,), python_real, finite_at_least(0.0, strict=False)),
    "reduction": (ALL, lambda v: v, lambda v: isinstance(v, str) and v in ("mean", "sum", "none")),
    "compat": (tuple(c for c in ALL if c is not losses.NTXent), lambda v: v,
               lambda v: v is None or (isinstance(v, str) and v == "authors")),
}
KEYWORD_CASES = [(name, cls) for name, (classes, _, _) in KEYWORDS.items() for cls in classes]


def resolves(temperature: float, z) -> bool:
    """Whether eps = temperature passes the core's dtype checks for this batch's cost ``-cos`` (self-pairs
    masked): 1/eps below the dtype's max, eps below max / 4e4 (room for potentials ``eps |log mass|`` with
    log 0 floored at -1e4), eps at least max |C| times the unit roundoff."""
    s = similarities(z)
    largest = s.masked_fill(torch.eye(s.shape[0], dtype=torch.bool), 0.0).abs().max().item()
    finfo = torch.finfo(z[0].dtype)
    return temperature <= finfo.max / 4e4 and 1 / temperature <= finfo.max and temperature >= largest * finfo.eps


ANYTHING = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(1e-2, 2.0),
    st.complex_numbers(max_magnitude=5),
    st.text(max_size=3),
    st.sampled_from(["0.5", "mean", "sum", "none", "authors", "inf"]),
    st.lists(st.floats(0, 1), max_size=2),
    st.builds(torch.tensor, st.floats(-2, 2)),
)


@given(case=st.sampled_from(KEYWORD_CASES), value=ANYTHING)
@fuzz(500)
def test_fuzz_constructor_keywords(case, value):
    name, cls = case
    _, convert, valid = KEYWORDS[name]
    if not valid(convert(value)):
        raises_naming(name, lambda: cls(**{name: value}))
        return
    loss_fn = cls(**{name: value})
    z = views()
    aligned = isinstance(loss_fn, losses.AlignmentLoss)  # NTXent computes its logits directly, with no Problem
    if name == "temperature" and aligned and not resolves(any_real(value), z):  # the cost is known at the call
        raises_naming("eps", lambda: call(loss_fn, z))
        return
    if name == "q" and 1 / python_real(value) > torch.finfo(torch.float64).max:  # 1/q overflows
        raises_naming("q", lambda: call(loss_fn, z))
        return
    if isinstance(loss_fn, ROBUST) and robust_overflows(loss_fn):
        raises_naming("q, eps", lambda: call(loss_fn, z))  # see test_robust_term_overflow_is_a_clear_error_not_nan
        return
    loss = call(loss_fn, z)
    assert not torch.isnan(loss).any()


def robust_overflows(loss_fn) -> bool:
    """Whether ``exp(q s / eps)`` may overflow float64 (``q / eps`` above ``log(max) - log(2N)``, about 700)."""
    return loss_fn.q / loss_fn.temperature > 700


def test_robust_term_overflow_is_a_clear_error_not_nan():
    """exp(q s / eps) beyond the dtype's range: the robust losses raise, naming q and eps, instead of inf - inf."""
    with pytest.raises(ValueError, match="q, eps"):
        losses.RINCE(temperature=1e-6)(*views())


# ------------------------------------------------------------------------------------------------ call inputs

TENSOR_DTYPES = (
    torch.float64, torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.uint8, torch.bool, torch.complex64,
)


@st.composite
def tensors(draw, shapes) -> torch.Tensor:
    """Any dtype; a shape from ``shapes`` or arbitrary (rank 0..4, sides 0..4); maybe one NaN / inf / negative
    entry; maybe on the meta device."""
    dtype = draw(st.sampled_from(TENSOR_DTYPES))
    shape = draw(st.sampled_from(shapes)) if draw(st.booleans()) else tuple(draw(st.lists(st.integers(0, 4),
                                                                                          max_size=4)))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
    values = 4 * torch.rand(shape, generator=gen, dtype=torch.float64) - 1
    if values.numel() and draw(st.booleans()):
        values.view(-1)[draw(st.integers(0, values.numel() - 1))] = draw(st.sampled_from([NAN, INF, -INF, -1.0]))
    if dtype.is_floating_point or dtype.is_complex:
        t = values.to(dtype)
    else:
        t = values.nan_to_num(0.0, 3.0, -1.0).clamp_min(0 if dtype in (torch.uint8, torch.bool) else -1).to(dtype)
    return t.to("meta") if draw(st.integers(0, 5)) == 0 else t


def finite_values(t: torch.Tensor) -> Optional[torch.Tensor]:
    if t.is_meta or t.is_complex():
        return None
    values = t.double()
    return values if bool(torch.isfinite(values).all()) else None


@given(cls=st.sampled_from(ALL), z0=tensors([(4, 3), (1, 2)]))
@fuzz(300)
def test_fuzz_views(cls, z0):
    """Both views malformed the same way (z1 a copy of z0): the error names z0."""
    z = [z0, z0.clone()]
    valid = (
        z0.is_floating_point() and z0.dim() == 2 and z0.shape[0] >= 1 and z0.shape[1] >= 1
        and finite_values(z0) is not None
    )
    labels = {"labels": torch.arange(z0.shape[0] if z0.dim() else 1)} if cls is losses.SupCon else {}
    if not valid:
        raises_naming("z0", lambda: cls()(*z, **labels))
        return
    assert not torch.isnan(cls()(*z, **labels)).any()


@given(cls=st.sampled_from(ALL), z1=tensors([(4, 3)]))
@fuzz(300)
def test_fuzz_second_view(cls, z1):
    """z0 is a valid float64 (4, 3) view; z1 must match its shape, dtype and device, and be finite."""
    z0 = views()[0]
    valid = (
        isinstance(z1, torch.Tensor) and z1.dtype == torch.float64 and tuple(z1.shape) == (4, 3)
        and not z1.is_meta and finite_values(z1) is not None
    )
    if not valid:
        raises_naming("z1", lambda: call(cls(), [z0, z1]))
        return
    assert not torch.isnan(call(cls(), [z0, z1])).any()


@given(cls=st.sampled_from((losses.SupCon, losses.InfoNCE, losses.GCAUOT)), labels=tensors([(4,)]))
@fuzz(300)
def test_fuzz_labels(cls, labels):
    # integers, booleans and finite floats are labels alike (otalign.arrays.as_labels); NaN / inf and complex are not
    valid = not labels.is_meta and tuple(labels.shape) == (4,) and not labels.is_complex() and (
        not labels.is_floating_point() or bool(torch.isfinite(labels).all()))
    if not valid:
        raises_naming("labels", lambda: cls()(*views(), labels=labels))
        return
    assert not torch.isnan(cls()(*views(), labels=labels)).any()


@given(cls=st.sampled_from((losses.InfoNCE, losses.GCAInfoNCE, losses.GCAUOT, losses.SupCon)),
       target=tensors([(8, 8), (1, 8, 8), (4, 4)]), zero_diagonal=st.booleans())
@fuzz(300)
def test_fuzz_target(cls, target, zero_diagonal):
    if zero_diagonal and target.dim() == 2 and target.shape[0] == target.shape[1] and not target.is_meta:
        target = target.clone()
        target.fill_diagonal_(0)
    values = finite_values(target)
    valid = (
        values is not None and target.dim() == 2 and tuple(target.shape) == (8, 8) and bool((values >= 0).all())
        and bool((values.diagonal() == 0).all())
    )
    if not valid:
        raises_naming("target", lambda: cls()(*views(), target=target))
        return
    assert not torch.isnan(cls()(*views(), target=target)).any()


@pytest.mark.parametrize(
    "name, make",
    [
        ("labels", lambda: losses.SupCon()(*views(), labels="abcd")),
        ("labels", lambda: losses.SupCon()(*views(), labels=[None, "b", "c", "d"])),
        ("labels", lambda: losses.SupCon()(*views(), labels=LABELS.to("meta"))),
        ("z0", lambda: losses.GCAUOT()(*(z.to("meta") for z in views()))),
        ("temperature", lambda: losses.InfoNCE(temperature="0.5")),
        ("temperature", lambda: losses.InfoNCE(temperature=True)),
        ("temperature", lambda: losses.NTXent(temperature=1e-310)),
        ("q", lambda: losses.RINCE(q=True)),
        ("q", lambda: losses.GCARINCE(q=2.0)),
        ("lam", lambda: losses.GCAUOT(lam=True)),
        ("rho", lambda: losses.GCAUOT(rho=True)),
        ("r2", lambda: losses.GCAUOT(r2=False)),
    ],
    ids=["labels a string", "labels of mixed types", "labels on the meta device", "views on the meta device",
         "temperature a string", "temperature a bool", "temperature whose inverse overflows", "q a bool",
         "q above 1", "lam a bool", "rho a bool", "r2 a bool"],
)
def test_malformed_call_raises_naming_the_argument(name, make):
    raises_naming(name, make)
