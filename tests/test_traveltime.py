"""Tests of lossbook.traveltime: the straight-ray operator, phantoms, picking, solvers.

References used: closed forms (distance / c; the chord of a disc), the adjoint identity,
dense linear algebra (``torch.linalg.lstsq`` / ``solve``), a Monte-Carlo noise estimate,
and the convexity of the TV objective (no descent direction at the solver's answer).
"""

from __future__ import annotations

import math

import pytest
import torch

from lossbook import traveltime as T
from lossbook.losses import total_variation


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


RING = T.Ring(32, radius=0.045, grid_size=64, extent=0.1)
SMALL = T.Ring(8, radius=0.004, grid_size=8, extent=0.01)


def _offdiag(n):
    return ~torch.eye(n, dtype=torch.bool)


def test_homogeneous_travel_time_is_distance_over_speed():
    c = 1480.0
    speed = torch.full((1, 1, 64, 64), c, dtype=torch.float64)
    t = T.travel_times(speed, RING)[0]
    want = RING.distances() / c
    m = _offdiag(32)
    rel = ((t - want).abs()[m] / want[m]).max()
    assert rel < 1e-6
    assert torch.all(t.diagonal() == 0)
    # every row of A sums to the transmitter-receiver distance
    a = T.ray_matrix(RING).to_dense()
    assert torch.allclose(a.sum(1), RING.distances().reshape(-1), rtol=1e-12, atol=1e-15)
    assert bool((a >= 0).all())


def _chord(p0, p1, centre, r):
    d = p1 - p0
    length = d.norm()
    u = d / length
    w = centre - p0
    b2 = (w.norm() ** 2 - (w @ u) ** 2).clamp_min(0)
    return 2 * (r**2 - b2).clamp_min(0).sqrt()


def test_single_disc_matches_chord_formula_within_discretisation_error():
    """t = D/c_out + chord(r) (1/c_in - 1/c_out), per ray.

    Discretisation error: the pixelated (anti-aliased) disc differs from the true one only
    in pixels that the circle crosses, all inside the annulus r - h sqrt 2 <= rho <= r + h
    sqrt 2 (h = pixel side). So ray by ray, |error| <= |1/c_in - 1/c_out| times the ray's
    length inside that annulus, chord(r + h sqrt 2) - chord(r - h sqrt 2): about 2 h sqrt 2
    for rays through the middle, more (~ sqrt(r h)) for rays grazing the edge."""
    ring = T.Ring(32, radius=0.045, grid_size=128, extent=0.1)
    centre, r, c_in, c_out = (0.006, -0.004), 0.012, 1450.0, 1540.0
    speed = T.disc_phantom(ring, centre, r, c_in, c_out)
    t = T.travel_times(speed, ring)[0]
    pos = ring.positions()
    cen = torch.tensor(centre, dtype=torch.float64)
    ds = abs(1 / c_in - 1 / c_out)
    delta = ring.pixel_size * math.sqrt(2)
    want = torch.zeros(32, 32, dtype=torch.float64)
    bound = torch.zeros(32, 32, dtype=torch.float64)
    chords = torch.zeros(32, 32, dtype=torch.float64)
    for i in range(32):
        for j in range(32):
            if i == j:
                continue
            chords[i, j] = _chord(pos[i], pos[j], cen, r)
            want[i, j] = (pos[i] - pos[j]).norm() / c_out + chords[i, j] * (1 / c_in - 1 / c_out)
            bound[i, j] = ds * (_chord(pos[i], pos[j], cen, r + delta)
                                - _chord(pos[i], pos[j], cen, r - delta))
    err = (t - want).abs()
    assert speed.dtype == torch.float64
    assert bool((err <= bound + 1e-12 * t).all())  # + float64 rounding
    # the bound is not vacuous: rays through the disc are delayed far more than it allows
    through = chords > r
    assert through.sum() > 50
    delay = (t - ring.distances() / c_out)[through]
    assert bool((delay > bound[through]).all())


def test_adjoint_identity():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 1, 64, 64, generator=gen, dtype=torch.float64)
    y = torch.rand(3, RING.n_rays, generator=gen, dtype=torch.float64)
    lhs = (T.project(x, RING) * y).sum()
    rhs = (x * T.backproject(y, RING)).sum()
    assert abs(float(lhs - rhs)) <= 1e-12 * abs(float(lhs))
    a = T.ray_matrix(SMALL).to_dense()
    xs = torch.rand(2, 1, 8, 8, generator=gen, dtype=torch.float64)
    assert torch.allclose(T.project(xs, SMALL), xs.reshape(2, -1) @ a.T, atol=1e-18)


def test_gradient_operator_adjoint_and_tv():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 16, 16, generator=gen, dtype=torch.float64)
    g = torch.rand(2, 2, 16, 16, generator=gen, dtype=torch.float64)
    assert torch.isclose((T.grad2d(x) * g).sum(), (x * T.grad2d_adjoint(g)).sum(), rtol=1e-12)
    iso = T.grad2d(x).norm(dim=1).flatten(1).sum(1)
    assert torch.allclose(iso, total_variation(x, "isotropic", "none", eps=0.0), rtol=1e-12)


def test_float32_travel_times_and_operator_norm():
    speed = T.random_phantoms(2, RING, generator=torch.Generator().manual_seed(3)).speed
    t32 = T.travel_times(speed, RING)
    t64 = T.travel_times(speed.double(), RING)
    assert t32.dtype == torch.float32 and t32.shape == (2, 32, 32)
    assert torch.allclose(t32.double(), t64, rtol=1e-6, atol=1e-12)
    dense = torch.linalg.matrix_norm(T.ray_matrix(SMALL).to_dense(), 2)
    assert math.isclose(T.operator_norm(SMALL), float(dense), rel_tol=1e-6)


def test_phantoms_are_reproducible_and_physical():
    a = T.random_phantoms(4, RING, generator=torch.Generator().manual_seed(5))
    b = T.random_phantoms(4, RING, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a.speed, b.speed) and torch.equal(a.labels, b.labels)
    assert a.speed.shape == (4, 1, 64, 64) and a.labels.dtype == torch.int64
    assert a.speed.min() >= 1450 - 1e-3 and a.speed.max() <= 1600 + 1e-3
    outside = RING.inside() == 0
    # outside the ring only background (one value per phantom), no inclusion labels
    for k in range(4):
        vals = a.speed[k, 0][outside]
        assert float(vals.max() - vals.min()) < 1e-3
        assert 1530 <= float(vals[0]) <= 1550
        assert int(a.labels[k, 0][outside].max()) == 0
    assert int(a.labels.max()) >= 1
    ood = T.random_phantoms(4, RING, shape="rectangles", generator=torch.Generator().manual_seed(5))
    assert not torch.equal(ood.speed, a.speed)


def test_sensor_noise_level_and_shape():
    times = torch.zeros(2, 4, 4, dtype=torch.float64)
    sig = T.sensor_signals(times, n_samples=4000, dt=1e-7, frequency=1e6, delay=3e-6,
                           snr_db=20.0, generator=torch.Generator().manual_seed(0))
    assert sig.shape == (2, 4, 4, 4000)
    clean = T.sensor_signals(times, n_samples=4000, dt=1e-7, frequency=1e6, delay=3e-6,
                             snr_db=None)
    assert math.isclose(float(clean.max()), 1.0, rel_tol=1e-6)
    # Monte Carlo: 128 000 noise samples, std of the estimate ~0.2 %; allow 1 %
    assert math.isclose(float((sig - clean).std()), 0.1, rel_tol=0.01)


def test_picking_recovers_arrivals_within_one_sample_at_high_snr():
    speed = T.random_phantoms(3, RING, generator=torch.Generator().manual_seed(2)).speed
    t = T.travel_times(speed.double(), RING)
    dt, f, delay = 1e-7, 1e6, 3e-6
    sig = T.sensor_signals(t, n_samples=700, dt=dt, frequency=f, delay=delay, snr_db=40.0,
                           generator=torch.Generator().manual_seed(0))
    picked = T.pick_arrivals(sig, dt=dt, frequency=f, delay=delay)
    assert picked.shape == t.shape
    assert (picked - t).abs().max() < dt
    # noiseless: parabolic refinement is far better than one sample
    clean = T.sensor_signals(t, n_samples=700, dt=dt, frequency=f, delay=delay, snr_db=None)
    assert (T.pick_arrivals(clean, dt=dt, frequency=f, delay=delay) - t).abs().max() < 0.1 * dt


def test_conjugate_gradient_matches_dense_solve():
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(2, 20, 20, generator=gen, dtype=torch.float64)
    spd = m @ m.transpose(1, 2) + 0.5 * torch.eye(20, dtype=torch.float64)
    b = torch.randn(2, 20, generator=gen, dtype=torch.float64)
    x, hist = T.conjugate_gradient(lambda v: torch.einsum("bij,bj->bi", spd, v), b,
                                   iters=200, tol=1e-12)
    assert hist[-1] < 1e-12
    assert torch.allclose(x, torch.linalg.solve(spd, b), rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("reg", ["gradient", "identity"])
def test_tikhonov_matches_dense_lstsq(reg):
    speed = T.disc_phantom(SMALL, (0.001, 0.0), 0.0015, 1500.0)
    t = T.travel_times(speed, SMALL)
    lam = 1e-2
    got = T.tikhonov(t, SMALL, lam, reg=reg, iters=500, tol=1e-12).double()
    # the same problem, stacked and solved densely
    a = T.ray_matrix(SMALL).to_dense()
    norm = T.operator_norm(SMALL)
    s0 = 1 / T.SPEED_TISSUE
    d = (t.reshape(-1) - a.sum(1) * s0) / (s0 * norm)
    eye = torch.eye(64, dtype=torch.float64)
    lmat = torch.stack([T.grad2d(e.reshape(1, 1, 8, 8)).reshape(-1) for e in eye], 1) \
        if reg == "gradient" else eye
    big = torch.cat([a / norm, math.sqrt(lam) * lmat])
    rhs = torch.cat([d, torch.zeros(big.shape[0] - d.shape[0], dtype=torch.float64)])
    x = torch.linalg.lstsq(big, rhs[:, None]).solution[:, 0]
    want = 1 / (s0 * (1 + x))
    assert torch.allclose(got.reshape(-1), want, atol=1e-3)  # m/s; float32 output
    # and the regularised solution is closer to the truth than the background
    assert (got - speed).norm() < (T.SPEED_TISSUE - speed).norm()


def test_tv_reconstruction_reaches_the_minimum():
    speed = T.random_phantoms(1, RING, generator=torch.Generator().manual_seed(4)).speed
    t = T.travel_times(speed.double(), RING)
    mu = 1e-3
    rec, hist = T.tv_reconstruction(t, RING, mu, iters=600, return_history=True)
    assert hist[-1] <= hist[0]
    d, s0, _ = T._normalised_data(t, RING, T.SPEED_TISSUE)
    x = (1 / (rec.double() * s0)) - 1
    f0 = float(T.tv_objective(x, d, RING, mu))
    gen = torch.Generator().manual_seed(0)
    # convex objective: no random direction decreases it noticeably from the solution
    for _ in range(5):
        v = torch.randn(x.shape, generator=gen, dtype=torch.float64)
        v = v / v.norm() * 0.05 * x.norm()
        assert float(T.tv_objective(x + v, d, RING, mu)) > f0 * (1 - 1e-3)
    # a smooth Tikhonov solution has a higher TV objective than the TV solution
    tik = T.tikhonov(t, RING, 1e-2)
    xt = (1 / (tik.double() * s0)) - 1
    assert float(T.tv_objective(xt, d, RING, mu)) > f0
    # TV recovers the piecewise-constant map better than the background guess
    assert (rec - speed).abs().mean() < 0.5 * (speed - T.SPEED_TISSUE).abs().mean()


def test_bad_geometry_and_inputs_are_refused():
    with pytest.raises(ValueError, match="outside the grid"):
        T.Ring(16, radius=0.06, grid_size=32, extent=0.1)
    with pytest.raises(ValueError, match="zero receivers"):
        T.Ring(1, radius=0.04, grid_size=32, extent=0.1)
    with pytest.raises(ValueError, match="zero receivers"):
        T.Ring(0, radius=0.04, grid_size=32, extent=0.1)
    with pytest.raises(ValueError, match="radius"):
        T.Ring(16, radius=-0.01, grid_size=32, extent=0.1)
    with pytest.raises(TypeError, match="n_transducers"):
        T.Ring(16.0, radius=0.04, grid_size=32, extent=0.1)
    ring = T.Ring(8, radius=0.04, grid_size=16, extent=0.1)
    with pytest.raises(ValueError, match="positive"):
        T.travel_times(torch.zeros(1, 1, 16, 16), ring)
    with pytest.raises(ValueError, match="positive"):
        T.travel_times(-torch.ones(1, 1, 16, 16), ring)
    with pytest.raises(ValueError, match=r"\(N, 1, 16, 16\)"):
        T.travel_times(torch.full((16, 16), 1540.0), ring)
    with pytest.raises(ValueError, match=r"\(N, 1, 16, 16\)"):
        T.travel_times(torch.full((1, 1, 32, 32), 1540.0), ring)
    with pytest.raises(TypeError, match="Ring"):
        T.travel_times(torch.full((1, 1, 16, 16), 1540.0), (8, 0.04, 16, 0.1))
    with pytest.raises(ValueError, match=r"\(N, 8, 8\)"):
        T.tikhonov(torch.zeros(1, 4, 4), ring, 0.1)
    with pytest.raises(ValueError, match="recording ends"):
        T.sensor_signals(torch.full((1, 2, 2), 1e-3), n_samples=100, dt=1e-7,
                         frequency=1e6, delay=0.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_operator_on_gpu_matches_cpu():
    x = torch.rand(2, 1, 64, 64, dtype=torch.float64)
    y = torch.rand(2, RING.n_rays, dtype=torch.float64)
    assert torch.allclose(T.project(x.cuda(), RING).cpu(), T.project(x, RING))
    assert torch.allclose(T.backproject(y.cuda(), RING).cpu(), T.backproject(y, RING))
