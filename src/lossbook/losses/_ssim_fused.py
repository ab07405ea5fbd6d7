r"""The CPU kernel of SSIM: statistics, SSIM map and gradient in one pass over each image.

:func:`ssim_planes` computes, for every image plane (one channel of one image), the sum
of the SSIM map (or of the contrast-structure map, for MS-SSIM's finer scales) and the
gradient of its mean with respect to both inputs, exactly the quantities of
``structural._ssim_chunk``, but streaming over the rows of the plane:

1. **Blur along H.** The five maps :math:`a, b, a^2, b^2, ab` (:math:`a = x - r`,
   :math:`b = y - r`, :math:`r` the plane's centre) of each input row are formed once and
   kept for the :math:`t` output rows that use them; output row :math:`i` sums those of
   input rows :math:`i \ldots i + t - 1` with the window's taps :math:`w_k` (for 11 taps
   in one written-out expression, accumulated in registers).
2. **Blur along W** of those five rows: :math:`\mu_x, \mu_y, E[a^2], E[b^2], E[ab]` for
   the :math:`W - t + 1` window positions of the row.
3. **Pointwise**: variances, covariance, SSIM (or cs) and its sum; where a gradient is
   needed, the derivatives of the map's mean with respect to the blurred maps, formed as
   in ``structural._ssim_chunk`` (:math:`k = 2/m`, :math:`m` the number of window
   positions).
4. **Adjoint blur** of those derivatives: along W ('full' filtering, :math:`t` taps), kept
   for the last :math:`t` output rows; input row :math:`i` receives its last contribution
   from output row :math:`i`, so right then the adjoint along H sums those rows and
   :math:`G_x = g_{\mu_x} - a\,g_{-2xx} + b\,g_{xy}` is written.

Every input pixel is read from memory once (and about :math:`t` times from cache), every
gradient pixel written once; PyTorch's operations instead make one pass over memory per
tap and per pointwise step. Compiled by Numba (LLVM, bundled with its wheel: no C
compiler needed) on first use and cached on disk. The arithmetic follows
``structural._ssim_chunk`` step by step in the input's dtype (float32 or float64); only
the order of the adjoint blur's sums differs (rounding), and the map's sum is
accumulated in float64. Two settings make the loops vectorise: ``error_model="numpy"``
(Python's semantics would add a branch for division by zero to every division) and
loops without branches (selects instead).

All scalars arrive as arrays of the input's dtype: NumPy's rules would otherwise turn a
float32 computation into float64 (a Python float or integer is a 64-bit scalar to Numba).
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["plane_extremes", "pool2", "pool2_adjoint", "ssim_planes"]

# indices of params
_C1, _C2, _K, _ZERO, _ONE = range(5)

_JIT = {"cache": True, "nogil": True, "boundscheck": False, "error_model": "numpy"}


@numba.njit(**_JIT)
def ssim_planes(x, y, centre, lum_shift, w, params, cs_only, need_x, need_y, sums, gx,
                gy):  # pragma: no cover - compiled
    r"""SSIM (or cs) map sums and input gradients of their means, plane by plane.

    Parameters
    ----------
    x, y : ndarray
        Shape ``(P, H, W)``, C-contiguous, float32 or float64 (both the same).
    centre : ndarray
        Shape ``(P,)``: the moments are taken of ``x - centre[p]`` and ``y - centre[p]``.
    lum_shift : ndarray
        Shape ``(P,)``: added to the centred means for the luminance term (the true means
        are ``mu + lum_shift[p]``).
    w : ndarray
        The 1-D window, ``t`` taps, symmetric (``w[k] == w[t - 1 - k]``, as the Gaussian
        and uniform windows are): the adjoint uses ``w`` for the flipped window.
    params : ndarray
        ``(C1, C2, k, 0, 1)`` with ``k = 2 / ((H - t + 1) (W - t + 1))``.
    cs_only, need_x, need_y : bool
        The cs map instead of SSIM; whether ``gx`` / ``gy`` are wanted.
    sums : ndarray
        Output, float64, shape ``(P,)``: the sum of the map over its valid positions.
    gx, gy : ndarray
        Output, shape ``(P, H, W)`` (or anything when not wanted): the gradients of the
        map's mean.
    """
    n_planes, h, width = x.shape
    t = w.shape[0]
    h_out, w_out = h - t + 1, width - t + 1
    # scratch rows (a few kB): the maps of the last t input rows, their blur along H and
    # along W, the map's row, the derivatives (with zero margins for the 'full' adjoint),
    # the adjoint along W of the last t output rows, and the gradient rows
    cache = np.empty((t, 5, width), x.dtype)
    rows = np.empty((5, width), x.dtype)
    blurred = np.empty((5, w_out), x.dtype)
    values = np.empty(w_out, x.dtype)
    derivs = np.zeros((5, w_out + 2 * (t - 1)), x.dtype)
    adjoint = np.empty((t, 5, width), x.dtype)
    grads = np.empty((5, width), x.dtype)
    zero = params[_ZERO]
    grad = need_x or need_y
    n_back = 5 if need_y else 3
    pad = t - 1
    for p in range(n_planes):
        c = centre[p]
        if grad:
            adjoint[:] = zero  # the rows of output rows < 0 stay zero
        total = 0.0
        for i in range(h_out):
            # 1. blur along H: input row i + t - 1 joins the cache of the maps' rows
            for q in range(i + t - 1 if i else 0, i + t):
                _centred_maps(x[p, q], y[p, q], c, cache[q % t])
            for m in range(5):
                _sum_rows(cache, i, m, w, rows[m])
            # 2. blur along W
            for m in range(5):
                _sum_shifted(rows[m], w, blurred[m])
            # 3. pointwise: the map, its sum, the derivatives of its mean
            if grad:
                _map_and_derivatives(blurred, lum_shift[p], params, cs_only, values,
                                     derivs[0, pad:pad + w_out], derivs[1, pad:pad + w_out],
                                     derivs[2, pad:pad + w_out], derivs[3, pad:pad + w_out],
                                     derivs[4, pad:pad + w_out])
            else:
                _map(blurred, lum_shift[p], params, cs_only, values)
            for j in range(w_out):
                total += values[j]
            if not grad:
                continue
            # 4. adjoint blur along W ('full' filtering: the padded derivatives filtered
            # with the flipped window, which is the window), kept for t output rows
            for m in range(n_back):
                _sum_shifted(derivs[m], w, adjoint[i % t, m])
            # input row i has all its contributions (from output rows i - t + 1 .. i)
            _gradient_row(x, y, c, p, i, w, adjoint, n_back, need_x, need_y, grads, gx, gy)
        if grad:
            for i in range(h_out, h):  # the last rows: output rows >= h_out are zero
                adjoint[i % t] = zero
                _gradient_row(x, y, c, p, i, w, adjoint, n_back, need_x, need_y, grads, gx, gy)
        sums[p] = total


@numba.njit(**_JIT)
def _centred_maps(xr, yr, c, out):  # pragma: no cover - compiled
    """The five maps ``a, b, a a, b b, a b`` (``a = x - c``, ``b = y - c``) of one input row
    into ``out`` (5, W)."""
    a, b, aa, bb, ab = out[0], out[1], out[2], out[3], out[4]
    for j in range(xr.shape[0]):
        a[j] = xr[j] - c
        b[j] = yr[j] - c
    for j in range(xr.shape[0]):
        aa[j] = a[j] * a[j]
        bb[j] = b[j] * b[j]
        ab[j] = a[j] * b[j]


@numba.njit(**_JIT)
def _sum_rows(buf, first, m, w, dst):  # pragma: no cover - compiled
    """``dst[j] = sum_k w[k] buf[(first + k) % t, m, j]``: one row of a blur along H.

    For 11 taps (the default window) the sum is written out, so that each output element
    is accumulated in a register (about twice as fast as 11 passes over ``dst``).
    """
    t = w.shape[0]
    if t == 11:
        s0, s1, s2 = buf[first % t, m], buf[(first + 1) % t, m], buf[(first + 2) % t, m]
        s3, s4, s5 = buf[(first + 3) % t, m], buf[(first + 4) % t, m], buf[(first + 5) % t, m]
        s6, s7, s8 = buf[(first + 6) % t, m], buf[(first + 7) % t, m], buf[(first + 8) % t, m]
        s9, s10 = buf[(first + 9) % t, m], buf[(first + 10) % t, m]
        w0, w1, w2, w3, w4, w5 = w[0], w[1], w[2], w[3], w[4], w[5]
        w6, w7, w8, w9, w10 = w[6], w[7], w[8], w[9], w[10]
        for j in range(dst.shape[0]):
            dst[j] = ((((((((((w0 * s0[j] + w1 * s1[j]) + w2 * s2[j]) + w3 * s3[j])
                            + w4 * s4[j]) + w5 * s5[j]) + w6 * s6[j]) + w7 * s7[j])
                         + w8 * s8[j]) + w9 * s9[j]) + w10 * s10[j])
        return
    src = buf[first % t, m]
    for j in range(dst.shape[0]):
        dst[j] = w[0] * src[j]
    for k in range(1, t):
        wk = w[k]
        src = buf[(first + k) % t, m]
        for j in range(dst.shape[0]):
            dst[j] += wk * src[j]


@numba.njit(**_JIT)
def _sum_shifted(src, w, dst):  # pragma: no cover - compiled
    """``dst[j] = sum_k w[k] src[j + k]``: one row of a 'valid' blur along W."""
    t = w.shape[0]
    if t == 11:
        w0, w1, w2, w3, w4, w5 = w[0], w[1], w[2], w[3], w[4], w[5]
        w6, w7, w8, w9, w10 = w[6], w[7], w[8], w[9], w[10]
        for j in range(dst.shape[0]):
            dst[j] = ((((((((((w0 * src[j] + w1 * src[j + 1]) + w2 * src[j + 2])
                            + w3 * src[j + 3]) + w4 * src[j + 4]) + w5 * src[j + 5])
                          + w6 * src[j + 6]) + w7 * src[j + 7]) + w8 * src[j + 8])
                       + w9 * src[j + 9]) + w10 * src[j + 10])
        return
    for j in range(dst.shape[0]):
        dst[j] = w[0] * src[j]
    for k in range(1, t):
        wk = w[k]
        for j in range(dst.shape[0]):
            dst[j] += wk * src[j + k]


@numba.njit(**_JIT)
def _gradient_row(x, y, c, p, i, w, adjoint, n_back, need_x, need_y, grads, gx,
                  gy):  # pragma: no cover - compiled
    r"""Input row ``i``'s gradients: the adjoint blur along H of the kept rows (output rows
    ``i - t + 1 .. i``, the window flipped, which is the window), then
    :math:`G_x = g_{\mu_x} - a\,g_{-2xx} + b\,g_{xy}` (and :math:`G_y` likewise)."""
    first = i + 1  # (i - t + 1) mod t
    for m in range(n_back):
        _sum_rows(adjoint, first, m, w, grads[m])
    g0, g1, g2, g3, g4 = grads[0], grads[1], grads[2], grads[3], grads[4]
    xr, yr = x[p, i], y[p, i]
    if need_x:
        out = gx[p, i]
        for j in range(xr.shape[0]):
            out[j] = (g0[j] - (xr[j] - c) * g1[j]) + (yr[j] - c) * g2[j]
    if need_y:
        out = gy[p, i]
        for j in range(xr.shape[0]):
            out[j] = (g3[j] - (yr[j] - c) * g4[j]) + (xr[j] - c) * g2[j]


@numba.njit(inline="always", **_JIT)
def _variances(m_x, m_y, e_xx, e_yy, e_xy, j, zero):  # pragma: no cover - compiled
    """At position ``j``: the centred means, the variances clamped at 0 (and whether they
    were kept), the covariance."""
    mx = m_x[j]
    my = m_y[j]
    var_x = e_xx[j] - mx * mx
    var_y = e_yy[j] - my * my
    keep_x = var_x >= zero
    keep_y = var_y >= zero
    return (mx, my, var_x if keep_x else zero, var_y if keep_y else zero, e_xy[j] - mx * my,
            keep_x, keep_y)


@numba.njit(**_JIT)
def _map(blurred, shift, params, cs_only, values):  # pragma: no cover - compiled
    """The SSIM (or cs) values of one row from its five blurred maps, into ``values``.

    Branch-free (selects only), so that LLVM vectorises the loop.
    """
    c1, c2, zero = params[_C1], params[_C2], params[_ZERO]
    m_x, m_y, e_xx, e_yy, e_xy = blurred[0], blurred[1], blurred[2], blurred[3], blurred[4]
    for j in range(values.shape[0]):
        mx, my, var_x, var_y, cov, _, _ = _variances(m_x, m_y, e_xx, e_yy, e_xy, j, zero)
        cs = ((cov + cov) + c2) / ((var_x + var_y) + c2)
        mu_x = mx + shift
        mu_y = my + shift
        lum = ((c1 + mu_x * mu_y) + mu_x * mu_y) / ((c1 + mu_x * mu_x) + mu_y * mu_y)
        values[j] = cs if cs_only else lum * cs


@numba.njit(**_JIT)
def _map_and_derivatives(blurred, shift, params, cs_only, values,  # pragma: no cover
                         d_mx, neg_exx, d_xy, d_my, neg_eyy):
    r"""As :func:`_map`, and the derivatives of the map's mean (each of length W').

    With :math:`s = A_1 A_2 / (B_1 B_2)` and :math:`k = 2/m`, the outputs are
    :math:`\partial/\partial\mu_x`, :math:`-2\,\partial/\partial E[a^2]`,
    :math:`\partial/\partial E[ab]`, :math:`\partial/\partial\mu_y`,
    :math:`-2\,\partial/\partial E[b^2]` of the mean (as ``structural._ssim_chunk``). For
    the cs map the luminance factor is 1 and its terms are multiplied by 0 (selects, no
    branches, so that the loop vectorises).
    """
    c1, c2, k2m, zero, one = params[_C1], params[_C2], params[_K], params[_ZERO], params[_ONE]
    m_x, m_y, e_xx, e_yy, e_xy = blurred[0], blurred[1], blurred[2], blurred[3], blurred[4]
    for j in range(values.shape[0]):
        mx, my, var_x, var_y, cov, keep_x, keep_y = _variances(m_x, m_y, e_xx, e_yy, e_xy, j,
                                                               zero)
        b2 = (var_x + var_y) + c2
        cs = ((cov + cov) + c2) / b2
        mu_x = mx + shift
        mu_y = my + shift
        b1 = (c1 + mu_x * mu_x) + mu_y * mu_y
        lum = ((c1 + mu_x * mu_y) + mu_x * mu_y) / b1
        lum = one if cs_only else lum
        value = lum * cs
        values[j] = value
        rb2 = (one / b2) * k2m
        rb1 = zero if cs_only else (one / b1) * k2m
        neg_b2 = value * rb2
        neg_b1 = value * rb1
        d_a1 = cs * rb1
        dxy = lum * rb2
        nxx = neg_b2 if keep_x else zero
        nyy = neg_b2 if keep_y else zero
        d_xy[j] = dxy
        neg_exx[j] = nxx
        neg_eyy[j] = nyy
        d_mx[j] = ((mx * nxx - my * dxy) + mu_y * d_a1) - mu_x * neg_b1
        d_my[j] = ((my * nyy - mx * dxy) + mu_x * d_a1) - mu_y * neg_b1


@numba.njit(**_JIT)
def pool2(x, factors, out):  # pragma: no cover - compiled
    """MS-SSIM's 2x2 average of each plane of ``x`` (P, H, W) into ``out`` (P, ceil(H/2),
    ceil(W/2)), as ``F.avg_pool2d(x, 2, ceil_mode=True)``: an odd last row or column is
    averaged on its own. ``factors`` = ``(1/2, 1/4, 1)`` in the dtype of ``x``."""
    n_planes, h, width = x.shape
    half, quarter = factors[0], factors[1]
    full_w = width // 2
    for p in range(n_planes):
        for i in range(h // 2):
            top, bottom, dst = x[p, 2 * i], x[p, 2 * i + 1], out[p, i]
            for j in range(full_w):
                dst[j] = (((top[2 * j] + top[2 * j + 1]) + bottom[2 * j])
                          + bottom[2 * j + 1]) * quarter
            if width % 2:
                dst[full_w] = (top[width - 1] + bottom[width - 1]) * half
        if h % 2:
            last, dst = x[p, h - 1], out[p, h // 2]
            for j in range(full_w):
                dst[j] = (last[2 * j] + last[2 * j + 1]) * half
            if width % 2:
                dst[full_w] = last[width - 1]


@numba.njit(**_JIT)
def pool2_adjoint(g, factors, out):  # pragma: no cover - compiled
    """The adjoint of :func:`pool2`: each input pixel gets its block's gradient over the
    number of pixels in the block. ``g`` (P, ceil(H/2), ceil(W/2)), ``out`` (P, H, W)."""
    n_planes, h, width = out.shape
    half, quarter = factors[0], factors[1]
    full_w = width // 2
    for p in range(n_planes):
        for i in range(h):
            src, dst = g[p, i // 2], out[p, i]
            scale = quarter if i < h - h % 2 else half
            for j in range(full_w):
                v = src[j] * scale
                dst[2 * j] = v
                dst[2 * j + 1] = v
            if width % 2:
                dst[width - 1] = src[full_w] * (half if i < h - h % 2 else factors[2])


@numba.njit(**_JIT)
def plane_extremes(x, y, lo, hi):  # pragma: no cover - compiled
    """The smallest and the largest value of each plane of ``x`` and ``y`` together
    (``x``, ``y`` of shape (P, M); into ``lo``, ``hi`` of shape (P,)); returns whether
    every value is finite (a NaN or an infinity makes ``v - v`` NaN)."""
    finite = True
    for p in range(x.shape[0]):
        small = x[p, 0]
        large = small
        for src in (x[p], y[p]):
            for v in src:
                finite &= v - v == 0
                small = min(small, v)
                large = max(large, v)
        lo[p] = small
        hi[p] = large
    return finite
