"""Property-based tests (hypothesis) of lossbook's reliability guarantees (issue 8).

1. **Every loss and metric either returns a finite value of the documented shape and
   range, or raises ``ValueError``/``TypeError`` with a message** -- never NaN, never a
   foreign exception (``RuntimeError``, ``IndexError``, ``ZeroDivisionError`` ...). The
   inputs are drawn over shapes (empty included), dtypes (half, bfloat16, float, double,
   integers), memory layouts (contiguous, channels-last, strided views), value kinds
   (in range, constant, huge, tiny, negative, with NaN or Inf) and non-tensor inputs
   (lists, numpy arrays). The only infinities allowed are the documented ones: PSNR of
   identical images and ENL of a constant region, both ``+inf``.
2. **Gradients are finite** wherever a differentiable loss returns a value.
3. **Resume properties** of :func:`lossbook.train.fit`: killing a run at a random step
   and resuming it gives bitwise the same weights as the uninterrupted run (CPU); a
   changed setting is refused with a message naming it.

Bounded: a fixed number of examples per property and ``derandomize=True`` (the same
examples on every run, so CI is reproducible); the whole module runs in well under a
minute on two busy cores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lossbook import metrics, sar
from lossbook.losses import combined, gradient, pixel, structural
from lossbook.models import TinyCNN
from lossbook.train import RunMismatchError, fit

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
          torch.uint8]
KINDS = ["unit", "constant", "zeros", "huge", "tiny", "negative", "nan", "inf", "wide"]


@dataclass
class Case:
    """One drawn input: how it was made (for the failure message) and the tensor."""

    shape: tuple
    dtype: torch.dtype
    kind: str
    layout: str
    value: object

    def __repr__(self) -> str:
        return f"Case(shape={self.shape}, dtype={self.dtype}, kind={self.kind}, " \
               f"layout={self.layout})"


def _values(shape, kind: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    u = torch.rand(shape, generator=g, dtype=torch.float64)
    if kind == "unit":
        return u
    if kind == "constant":
        return torch.full(shape, 0.37, dtype=torch.float64)
    if kind == "zeros":
        return torch.zeros(shape, dtype=torch.float64)
    if kind == "huge":
        return u * 1e30
    if kind == "tiny":
        return u * 1e-30
    if kind == "negative":
        return -u
    if kind == "wide":
        return (u - 0.5) * 2000.0
    t = u.clone()
    if t.numel():
        t.view(-1)[seed % t.numel()] = math.nan if kind == "nan" else math.inf
    return t


@st.composite
def cases(draw, min_side: int = 0, max_side: int = 24, channels=(1, 3)):
    # weighted towards valid inputs (repeated entries), so most examples reach the maths
    n = draw(st.sampled_from([0, 1, 1, 2, 2, 3]))
    c = draw(st.sampled_from([0, *channels, *channels, *channels]))
    h = draw(st.one_of(st.just(min_side), st.integers(max(min_side, 8), max_side),
                       st.integers(max(min_side, 8), max_side)))
    w = draw(st.one_of(st.just(min_side), st.integers(max(min_side, 8), max_side),
                       st.integers(max(min_side, 8), max_side)))
    dtype = draw(st.sampled_from(DTYPES + [torch.float32, torch.float64] * 2))
    kind = draw(st.sampled_from(KINDS + ["unit"] * 4))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "strided", "list",
                                   "numpy"] + ["contiguous", "strided"] * 3))
    seed = draw(st.integers(0, 2**16))
    base = _values((n, c, h, w), kind, seed)
    if dtype.is_floating_point:
        t = base.to(dtype)
    else:
        t = base.clamp(0, 255).nan_to_num(0.0).round().to(dtype)
    if layout == "channels_last":
        t = t.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":  # a non-contiguous view with the same values
        t = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    value: object = t
    if layout == "list":
        value = t.tolist()
    elif layout == "numpy" and dtype not in (torch.bfloat16,):
        value = t.numpy()
    return Case((n, c, h, w), dtype, kind, layout, value)


def _pair_from(case: Case, seed: int) -> object:
    """A second input like the first (same shape, dtype and layout), other values."""
    v = case.value
    if not isinstance(v, torch.Tensor):
        return v
    g = torch.Generator().manual_seed(seed)
    other = torch.rand(v.shape, generator=g, dtype=torch.float64)
    if case.kind in ("huge", "wide"):
        other = other * 1e30 if case.kind == "huge" else (other - 0.5) * 2000.0
    return other.to(v.dtype) if v.dtype.is_floating_point else (other * 255).to(v.dtype)


ALLOWED = (ValueError, TypeError)


def _check_outcome(call, *, shape=None, low=-math.inf, high=math.inf, allow_inf=False,
                   context=""):
    """Run ``call``; it must raise ValueError/TypeError with a message, or return a
    finite tensor (``+inf`` only where ``allow_inf``) of ``shape`` within [low, high]."""
    try:
        out = call()
    except ALLOWED as err:
        assert str(err).strip(), f"{type(err).__name__} without a message ({context})"
        return None
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        assert isinstance(o, torch.Tensor), f"returned {type(o).__name__} ({context})"
        v = o.detach().double()
        assert not bool(torch.isnan(v).any()), f"NaN returned ({context}): {v}"
        if allow_inf:
            assert not bool((v == -math.inf).any()), f"-inf returned ({context}): {v}"
        else:
            assert bool(torch.isfinite(v).all()), f"non-finite returned ({context}): {v}"
        finite = v[torch.isfinite(v)]
        if finite.numel():
            assert float(finite.min()) >= low - 1e-5 and float(finite.max()) <= high + 1e-5, (
                f"outside [{low}, {high}] ({context}): {v}")
        if shape is not None:
            assert tuple(o.shape) == shape, f"shape {tuple(o.shape)} != {shape} ({context})"
    return out


def _reduced_shape(case: Case, reduction: str) -> tuple:
    return () if reduction == "mean" else (case.shape[0],)


# ------------------------------------------------------------------ losses and metrics

PAIR_LOSSES = {
    "mse": (pixel.mse, 0.0, math.inf),
    "mae": (pixel.mae, 0.0, math.inf),
    "huber": (lambda x, y, **k: pixel.huber(x, y, delta=0.1, **k), 0.0, math.inf),
    "smooth_l1": (lambda x, y, **k: pixel.smooth_l1(x, y, beta=0.5, **k), 0.0, math.inf),
    "charbonnier": (pixel.charbonnier, 0.0, math.inf),
    "gradient_loss": (gradient.gradient_loss, 0.0, math.inf),
    "laplacian_loss": (lambda x, y, **k: gradient.laplacian_loss(x, y, 2, **k), 0.0,
                       math.inf),
    "gaussian_weighted_l1": (lambda x, y, **k: combined.gaussian_weighted_l1(
        x, y, sigma=1.0, **k), 0.0, math.inf),
    "ssim": (lambda x, y, **k: structural.ssim(x, y, win_size=7, **k), -1.0, 1.0),
    "ms_ssim": (lambda x, y, **k: structural.ms_ssim(x, y, win_size=3,
                                                       weights=(0.5, 0.5), **k), 0.0, 1.0),
    "metrics.mse": (metrics.mse, 0.0, math.inf),
    "metrics.mae": (metrics.mae, 0.0, math.inf),
}


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
@FAST
@given(case=cases(), reduction=st.sampled_from(["mean", "none"]),
       seed=st.integers(0, 2**16))
def test_pair_losses_and_metrics_are_finite_or_refuse(name, case, reduction, seed):
    fn, low, high = PAIR_LOSSES[name]
    y = _pair_from(case, seed)
    _check_outcome(lambda: fn(case.value, y, reduction=reduction),
                   shape=_reduced_shape(case, reduction), low=low, high=high,
                   context=f"{name} {case}")


@st.composite
def valid_cases(draw):
    """In-range float images large enough for every function: these must give values."""
    n = draw(st.integers(1, 3))
    c = draw(st.sampled_from([1, 3]))
    h, w = draw(st.integers(16, 24)), draw(st.integers(16, 24))
    dtype = draw(st.sampled_from([torch.float32, torch.float64, torch.float16,
                                  torch.bfloat16]))
    kind = draw(st.sampled_from(["unit", "constant", "zeros", "tiny"]))
    layout = draw(st.sampled_from(["contiguous", "channels_last", "strided"]))
    t = _values((n, c, h, w), kind, draw(st.integers(0, 2**16))).to(dtype)
    if layout == "channels_last":
        t = t.contiguous(memory_format=torch.channels_last)
    elif layout == "strided":
        t = t.transpose(-1, -2).contiguous().transpose(-1, -2)
    return Case((n, c, h, w), dtype, kind, layout, t)


@pytest.mark.parametrize("name", sorted(PAIR_LOSSES))
@settings(max_examples=15, deadline=None, derandomize=True, database=None)
@given(case=valid_cases(), reduction=st.sampled_from(["mean", "none"]),
       seed=st.integers(0, 2**16))
def test_valid_inputs_always_give_a_value_in_range(name, case, reduction, seed):
    """The other side of the contract: refusing everything would pass the test above."""
    fn, low, high = PAIR_LOSSES[name]
    y = _pair_from(case, seed)
    out = _check_outcome(lambda: fn(case.value, y, reduction=reduction),
                         shape=_reduced_shape(case, reduction), low=low, high=high,
                         context=f"{name} {case}")
    assert out is not None, f"{name} refused a valid input ({case})"


@FAST
@given(case=cases(), reduction=st.sampled_from(["mean", "none"]), identical=st.booleans(),
       seed=st.integers(0, 2**16))
def test_psnr_is_finite_or_plus_inf_for_identical_images(case, reduction, identical, seed):
    y = case.value if identical else _pair_from(case, seed)
    _check_outcome(lambda: metrics.psnr(case.value, y, reduction=reduction),
                   shape=_reduced_shape(case, reduction), allow_inf=True,
                   context=f"psnr {case}")


@pytest.mark.parametrize("name", ["total_variation", "sobel", "laplacian", "enl",
                                  "lee_filter", "to_db", "gaussian_noise", "blur", "jpeg"])
@FAST
@given(case=cases())
def test_single_image_functions_are_finite_or_refuse(name, case):
    from lossbook.data import add_gaussian_noise, gaussian_blur, jpeg

    x = case.value
    n, c, h, w = case.shape
    calls = {
        "total_variation": (lambda: gradient.total_variation(x, "isotropic"), (), 0.0, False),
        "sobel": (lambda: gradient.sobel(x), (n, c, h, w), -math.inf, False),
        "laplacian": (lambda: gradient.laplacian(x), (n, c, h, w), -math.inf, False),
        "enl": (lambda: sar.enl(x), (n,), 0.0, True),  # inf: a constant region
        "lee_filter": (lambda: sar.lee_filter(x, 3, 1), (n, c, h, w), -math.inf, False),
        "to_db": (lambda: sar.to_db(x), (n, c, h, w), -math.inf, False),
        "gaussian_noise": (lambda: add_gaussian_noise(x, 25, torch.Generator()),
                           (n, c, h, w), -math.inf, False),
        "blur": (lambda: gaussian_blur(x, 1.0), (n, c, h, w), -math.inf, False),
        "jpeg": (lambda: jpeg(x, 50), (n, c, h, w), 0.0, False),
    }
    call, shape, low, allow_inf = calls[name]
    _check_outcome(call, shape=shape, low=low, allow_inf=allow_inf, context=f"{name} {case}")


@FAST
@given(case=cases(min_side=2, max_side=16), target=st.sampled_from(["image", 1.0, 1e6]),
       size=st.sampled_from([3, None]))
def test_enl_loss_and_its_gradient_are_finite_or_refuse(case, target, size):
    x = case.value
    if isinstance(x, torch.Tensor) and x.is_floating_point():
        x = x.detach().clone().requires_grad_(True)
    t = _pair_from(case, 1) if target == "image" else target
    mask = torch.ones(case.shape[-2:], dtype=torch.bool)
    out = _check_outcome(lambda: sar.enl_loss(x, t, mask, size=size), shape=(), low=0.0,
                         context=f"enl_loss {case}")
    if out is not None and x.requires_grad:
        (g,) = torch.autograd.grad(out, x)
        assert torch.isfinite(g).all(), f"non-finite gradient ({case})"


DIFFERENTIABLE = ["mse", "mae", "huber", "smooth_l1", "charbonnier", "gradient_loss",
                  "laplacian_loss", "ssim"]


@pytest.mark.parametrize("name", DIFFERENTIABLE)
@FAST
@given(case=cases(min_side=1), seed=st.integers(0, 2**16))
def test_gradients_are_finite_wherever_a_value_is_returned(name, case, seed):
    fn, _, _ = PAIR_LOSSES[name]
    x = case.value
    if not (isinstance(x, torch.Tensor) and x.dtype in (torch.float32, torch.float64)):
        return  # gradients are checked on the dtypes one trains in
    x = x.detach().clone().requires_grad_(True)
    out = _check_outcome(lambda: fn(x, _pair_from(case, seed)), shape=(),
                         context=f"{name} {case}")
    if out is not None:
        (g,) = torch.autograd.grad(out, x)
        assert torch.isfinite(g).all(), f"non-finite gradient of {name} ({case})"


@FAST
@given(value=st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                       st.integers(-10, 10), st.just("1"), st.none()))
def test_scalar_parameters_are_checked(value):
    """+inf passes a naive ``not v > 0`` check: every positive parameter refuses it."""
    x = torch.rand(1, 1, 16, 16)
    calls = [
        lambda: pixel.huber(x, x, delta=value),
        lambda: pixel.charbonnier(x, x, eps=value),
        lambda: pixel.smooth_l1(x, x, beta=value),
        lambda: gradient.total_variation(x, "isotropic", eps=value),
        lambda: sar.to_db(x, floor=value),
        lambda: sar.enl_loss(x, value, torch.ones(16, 16, dtype=torch.bool)),
        lambda: combined.gaussian_weighted_l1(x, x, sigma=value),
        lambda: metrics.psnr(x, x * 0.5, data_range=value),
    ]
    for i, call in enumerate(calls):
        _check_outcome(call, allow_inf=(i == 7), context=f"call {i} with {value!r}")


# ------------------------------------------------------------------ resume properties

SIZE = 8


def _sampler(n, g, sigma=0.1):
    y = torch.rand(n, 1, SIZE, SIZE, generator=g)
    return y + sigma * torch.randn(n, 1, SIZE, SIZE, generator=g), y


def _model():
    torch.manual_seed(0)
    return TinyCNN(width=4, depth=2)


def _weights(m):
    return [p.detach().clone() for p in m.state_dict().values()]


KW = dict(steps=8, batch_size=2, device="cpu", log_every=2, progress=False,
          checkpoint_every=3, lr_schedule="cosine")

RESUME = settings(max_examples=4, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow,
                                         HealthCheck.function_scoped_fixture])


@RESUME
@given(kill_at=st.integers(1, 7), seed=st.integers(0, 3))
def test_a_run_killed_at_any_step_resumes_to_identical_weights(tmp_path_factory, kill_at,
                                                               seed):
    ref = _model()
    h_ref = fit(ref, torch.nn.MSELoss(), _sampler, seed=seed, **KW)
    ckpt = tmp_path_factory.mktemp("resume") / "c.pt"

    def kill(step, model, history):
        if step == kill_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(_model(), torch.nn.MSELoss(), _sampler, seed=seed, checkpoint=ckpt,
            callback=kill, **KW)
    resumed = _model()
    h = fit(resumed, torch.nn.MSELoss(), _sampler, seed=seed, checkpoint=ckpt, **KW)
    assert h.resumed_from == kill_at
    assert all(torch.equal(a, b) for a, b in zip(_weights(resumed), _weights(ref),
                                                 strict=True))
    assert h.loss == h_ref.loss


CHANGES = {
    "lr": ({"lr": 3e-3}, "optimizer"),
    "loss": ({"loss": torch.nn.L1Loss()}, "loss"),
    "data": ({"sigma": 0.2}, "data"),
    "batch_size": ({"batch_size": 4}, "batch_size"),
    "seed": ({"seed": 1}, "seed"),
    "grad_clip": ({"grad_clip": 0.5}, "grad_clip"),
    "steps": ({"steps": 9}, "schedule_steps"),
    "width": ({"width": 5}, "model"),
}


@RESUME
@given(change=st.sampled_from(sorted(CHANGES)))
def test_a_changed_setting_is_refused_and_named(tmp_path_factory, change):
    ckpt = tmp_path_factory.mktemp("changed") / "c.pt"

    def run(**c):
        torch.manual_seed(0)
        model = TinyCNN(width=c.get("width", 4), depth=2)
        kw = {**KW, "steps": c.get("steps", 8), "batch_size": c.get("batch_size", 2)}
        return fit(model, c.get("loss", torch.nn.MSELoss()), _Sampler(c.get("sigma", 0.1)),
                   seed=c.get("seed", 0), lr=c.get("lr", 1e-3), grad_clip=c.get("grad_clip"),
                   checkpoint=ckpt, **kw)

    run()
    settings_, name = CHANGES[change]
    before = ckpt.read_bytes()
    with pytest.raises(RunMismatchError) as err:
        run(**settings_)
    assert name in str(err.value) and ckpt.read_bytes() == before


@dataclass(frozen=True)
class _Sampler:
    """A sampler whose noise level is part of its definition (and of the fingerprint)."""

    sigma: float

    def __call__(self, n, g):
        return _sampler(n, g, self.sigma)


def test_the_strategies_cover_the_cases_the_issue_names():
    """The property tests cannot pass vacuously: the strategy draws every kind of input."""
    seen = {"kind": set(), "dtype": set(), "layout": set(), "empty": False}

    @settings(max_examples=300, deadline=None, derandomize=True, database=None)
    @given(case=cases())
    def collect(case):
        seen["kind"].add(case.kind)
        seen["dtype"].add(case.dtype)
        seen["layout"].add(case.layout)
        seen["empty"] |= 0 in case.shape

    collect()
    assert seen["kind"] == set(KINDS) and seen["dtype"] == set(DTYPES)
    assert seen["layout"] == {"contiguous", "channels_last", "strided", "list", "numpy"}
    assert seen["empty"]
