"""Chapter 9's exercise checks: the package's answers pass, typical mistakes are rejected
with the message that names them, and constants or echoes of the input cannot pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lossbook import exercises, metrics


def test_pixel_shuffle_check_accepts_the_right_answers():
    assert "passed" in exercises.check_pixel_shuffle(F.pixel_shuffle)
    # a hand-written shuffle with view/permute, as the chapter's solution does
    def mine(t, r):
        n, cr2, h, w = t.shape
        c = cr2 // (r * r)
        return t.view(n, c, r, r, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c, h * r, w * r)
    assert "passed" in exercises.check_pixel_shuffle(mine)


def test_pixel_shuffle_check_names_the_mistakes():
    def swapped(t, r):
        n, cr2, h, w = t.shape
        c = cr2 // (r * r)
        return t.view(n, c, r, r, h, w).permute(0, 1, 4, 3, 5, 2).reshape(n, c, h * r, w * r)

    with pytest.raises(AssertionError, match="offsets are swapped"):
        exercises.check_pixel_shuffle(swapped, seed=1)

    def grouped(t, r):
        n, cr2, h, w = t.shape
        c = cr2 // (r * r)
        return F.pixel_shuffle(t.view(n, r * r, c, h, w).transpose(1, 2).reshape(n, cr2, h, w),
                               r)

    # grouping only matters with several output channels: some case has C > 1
    with pytest.raises(AssertionError, match="grouped the wrong way"):
        for seed in range(20):
            exercises.check_pixel_shuffle(grouped, seed=seed)


def test_pixel_shuffle_check_rejects_echo_and_constant():
    with pytest.raises(AssertionError, match="must give shape"):
        exercises.check_pixel_shuffle(lambda t, r: t, seed=0)
    with pytest.raises(AssertionError, match="wrong places"):
        exercises.check_pixel_shuffle(
            lambda t, r: torch.zeros(t.shape[0], t.shape[1] // r**2, t.shape[2] * r,
                                     t.shape[3] * r, dtype=t.dtype), seed=0)
    with pytest.raises(AssertionError, match="return a tensor"):
        exercises.check_pixel_shuffle(lambda t, r: 0.0, seed=0)


def test_y_psnr_check_accepts_the_package_answer():
    assert "passed" in exercises.check_y_psnr(
        lambda x, y, s: metrics.sr_psnr(x, y, channel="y", shave=s))

    def by_hand(x, y, s):
        w = torch.tensor([65.481, 128.553, 24.966], dtype=x.dtype).view(1, 3, 1, 1)
        yx, yy = ((16 + (v * w).sum(1)) / 255 for v in (x, y))
        d = (yx - yy)[..., s:-s, s:-s]
        return 10 * torch.log10(1 / d.pow(2).mean())
    assert "passed" in exercises.check_y_psnr(by_hand)


@pytest.mark.parametrize("wrong, message", [
    (lambda x, y, s: metrics.sr_psnr(x, y, channel="y", shave=0), "did not shave"),
    (lambda x, y, s: metrics.sr_psnr(x, y, channel="rgb", shave=s), "all RGB channels"),
    (lambda x, y, s: metrics.psnr(
        *(((v * torch.tensor([0.299, 0.587, 0.114], dtype=v.dtype).view(1, 3, 1, 1))
           .sum(1, keepdim=True))[..., s:-s, s:-s] for v in (x, y))), "full-range luma"),
    (lambda x, y, s: metrics.psnr(metrics.rgb_to_y(x)[..., s:, s:],
                                  metrics.rgb_to_y(y)[..., s:, s:]), "only one side"),
])
def test_y_psnr_check_names_the_mistakes(wrong, message):
    with pytest.raises(AssertionError, match=message):
        exercises.check_y_psnr(wrong)


def test_y_psnr_check_rejects_constants_and_echoes():
    with pytest.raises(AssertionError, match="expected"):
        exercises.check_y_psnr(lambda x, y, s: 30.0)
    with pytest.raises(AssertionError):
        exercises.check_y_psnr(lambda x, y, s: x)
