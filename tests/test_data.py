"""Tests for lossbook.data: corpus, synthetic images, degradations, PatchSampler, download.

References used: scikit-image (bundled images, ``downscale_local_mean``), SciPy
(``ndimage.gaussian_filter``), Pillow (bicubic resize, JPEG), NumPy/Monte-Carlo
statistics with stated tolerances, and hashlib for SHA-256. Nothing touches the network.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import io
import os
import socket
import tarfile
import time
import zipfile

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from lossbook import data
from lossbook.data import (
    PatchSampler,
    add_gaussian_noise,
    corpus,
    download,
    downsample,
    gaussian_blur,
    gaussian_kernel1d,
    jpeg,
    list_images,
    load_image,
    load_images,
    sha256sum,
    speckle,
    upsample,
)

HAS_SAR = importlib.util.find_spec("lossbook.sar") is not None


# --------------------------------------------------------------------------- corpus
def test_split_is_fixed_and_disjoint():
    train, test = list_images("train"), list_images("test")
    assert test == ["camera", "coins", "chelsea", "grass"]
    assert len(train) == 12 and "astronaut" in train
    assert not set(train) & set(test)
    assert list_images("all") == train + test
    assert list_images() == list_images("all")
    assert not set(list_images("procedural")) & set(train + test)
    assert list_images("test") is not list_images("test")  # fresh lists: mutation is harmless


def test_list_images_rejects_unknown_split():
    with pytest.raises(ValueError, match="split must be one of 'train', 'test'"):
        list_images("validation")


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a socket fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("name", list_images("all") + list_images("procedural"))
def test_every_image_loads_offline(name, no_network):
    corpus._natural.cache_clear()
    corpus._synthetic.cache_clear()
    x = load_image(name)
    assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[:2] == (1, 1)
    assert min(x.shape[-2:]) >= corpus.MIN_SIDE
    assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert float(x.std()) > 0.02  # a real picture, not a blank
    y = load_image(name, 64, color=True)
    assert y.shape == (1, 3, 64, 64)
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_min_side_is_the_smallest_short_side():
    sides = [min(load_image(n).shape[-2:]) for n in list_images("all")]
    assert min(sides) == corpus.MIN_SIDE


def test_gray_camera_equals_skimage_bytes():
    from skimage import data as skdata

    ref = skdata.camera().astype(np.float32) / 255.0
    np.testing.assert_allclose(load_image("camera")[0, 0].numpy(), ref, rtol=0, atol=1e-7)


def test_gray_is_bt709_luma_of_rgb():
    from skimage import data as skdata

    rgb = skdata.astronaut().astype(np.float64) / 255.0
    luma = rgb @ np.array([0.2125, 0.7154, 0.0721])  # ITU-R BT.709 (skimage rgb2gray)
    np.testing.assert_allclose(load_image("astronaut")[0, 0].numpy(), luma, atol=1e-6)
    col = load_image("astronaut", color=True)[0].numpy().transpose(1, 2, 0)
    np.testing.assert_allclose(col, rgb, atol=1e-6)
    gray3 = load_image("camera", 32, color=True)
    torch.testing.assert_close(gray3[:, 0], gray3[:, 2])


def test_resize_is_centre_crop_then_area_mean():
    from skimage import data as skdata
    from skimage.transform import downscale_local_mean

    # coins is 303 x 384: centre square rows 0..302, cols 40..342; 303 -> 101 is exact 3x3.
    coins = skdata.coins().astype(np.float64) / 255.0
    left = (384 - 303) // 2
    ref = downscale_local_mean(coins[:, left:left + 303], (3, 3))
    np.testing.assert_allclose(load_image("coins", 101)[0, 0].numpy(), ref, atol=1e-6)


def test_load_image_returns_fresh_tensors():
    a = load_image("camera", 32)
    a.fill_(0)
    assert float(load_image("camera", 32).max()) > 0
    b = load_image("dead_leaves", 32)
    b.fill_(0)
    assert float(load_image("dead_leaves", 32).max()) > 0


def test_load_images_batches_a_split():
    x = load_images("test", 48)
    assert x.shape == (4, 1, 48, 48)
    torch.testing.assert_close(x[1:2], load_image("coins", 48))
    with pytest.raises(ValueError, match="names is empty"):
        load_images([], 48)


def test_load_image_errors():
    with pytest.raises(ValueError, match="unknown image 'lena'.*camera"):
        load_image("lena")
    with pytest.raises(ValueError,
                       match=r"size=400 exceeds the short side of 'coins' \(303 x 384\)"):
        load_image("coins", 400)
    with pytest.raises(ValueError, match="size must be a positive int or None"):
        load_image("camera", 0)


# --------------------------------------------------------------------------- synthetic
def test_synthetic_images():
    cb = data.checkerboard(64, 8)
    assert set(cb.unique().tolist()) == {0.0, 1.0}
    assert float(cb.mean()) == 0.5 and float(cb[0, 0, 0, 0]) == 0.0 and float(cb[0, 0, 0, 8]) == 1.0
    star = data.siemens_star(128, spokes=16)
    assert abs(float(star.mean()) - 0.5) < 0.01  # half the wedges are white; border is 0.5
    torch.testing.assert_close(star, star.flip(-1).flip(-2), atol=0.02, rtol=0)  # point symmetric
    zp = data.zone_plate(128)
    assert float(zp[0, 0, 63:65, 63:65].min()) > 0.99  # bright centre (phase 0)
    dl = data.dead_leaves(64, seed=3)
    torch.testing.assert_close(dl, data.dead_leaves(64, seed=3))
    assert not torch.equal(dl, data.dead_leaves(64, seed=4))
    assert float((data.dead_leaves(128) == 0.5).float().mean()) < 0.01  # leaves cover all
    with pytest.raises(ValueError, match="size must be an int >= 8"):
        data.zone_plate(4)
    with pytest.raises(ValueError, match="squares must be a positive int"):
        data.checkerboard(64, 0)


# --------------------------------------------------------------------------- noise
def test_noise_std_matches_sigma_over_255():
    x = torch.full((4, 1, 256, 256), 0.5)
    g = torch.Generator().manual_seed(0)
    for sigma in (5, 25, 50):
        n = add_gaussian_noise(x, sigma, g) - x
        # Monte-Carlo: 262,144 samples, relative std of the sample std ~ 1/sqrt(2n) = 0.14%
        assert abs(float(n.std()) / (sigma / 255) - 1) < 0.01
        assert abs(float(n.mean())) < 5 * sigma / 255 / np.sqrt(n.numel())


def test_noise_is_reproducible_and_clips_on_request():
    x = load_image("camera", 64)
    a = add_gaussian_noise(x, 25, torch.Generator().manual_seed(1))
    b = add_gaussian_noise(x, 25, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float(a.min()) < 0 or float(a.max()) > 1  # unclipped by default
    c = add_gaussian_noise(x, 25, torch.Generator().manual_seed(1), clip=True)
    torch.testing.assert_close(c, a.clamp(0, 1))
    torch.testing.assert_close(add_gaussian_noise(x, 0), x)


def test_noise_level_range_draws_one_sigma_per_image():
    x = torch.zeros(64, 1, 64, 64)
    n = add_gaussian_noise(x, (10, 50), torch.Generator().manual_seed(0))
    stds = n.flatten(1).std(1) * 255
    assert float(stds.min()) > 10 * 0.95 and float(stds.max()) < 50 * 1.05
    assert float(stds.max() - stds.min()) > 20  # levels really vary


def test_noise_errors():
    x = torch.zeros(1, 1, 8, 8)
    for bad in (-1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="sigma must be a non-negative finite number "
                                             r"\(on the 0-255 scale"):
            add_gaussian_noise(x, bad)
    with pytest.raises(ValueError, match="sigma's high end must be a non-negative finite"):
        add_gaussian_noise(x, (10, float("inf")))
    bad_x = x.clone()
    bad_x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x holds 1 NaN"):
        add_gaussian_noise(bad_x, 25)
    with pytest.raises(ValueError, match=r"sigma as a range must be a pair \(low, high\)"):
        add_gaussian_noise(x, (50, 10))
    with pytest.raises(ValueError, match="must have 4 dimensions"):
        add_gaussian_noise(x[0], 25)


# --------------------------------------------------------------------------- blur
def test_blur_matches_scipy_gaussian_filter():
    from scipy.ndimage import gaussian_filter

    x = load_image("camera", 64)
    for sigma in (0.8, 2.0):
        ref = gaussian_filter(x[0, 0].double().numpy(), sigma, mode="mirror", truncate=4.0)
        np.testing.assert_allclose(gaussian_blur(x, sigma)[0, 0].numpy(), ref, atol=1e-5)


def test_blur_preserves_constants_and_the_mean():
    x = load_image("coins", 128)
    k = gaussian_kernel1d(1.5)
    assert k.numel() == 2 * int(4 * 1.5 + 0.5) + 1 and abs(float(k.sum()) - 1) < 1e-6
    torch.testing.assert_close(gaussian_blur(torch.full((1, 1, 32, 32), 0.3), 2.0),
                               torch.full((1, 1, 32, 32), 0.3))
    # exactly mass preserving away from the borders; mirrored borders shift it very little
    assert abs(float(gaussian_blur(x, 1.5).mean() - x.mean())) < 1e-3
    assert float(gaussian_blur(x, 1.5).std()) < float(x.std())


def test_blur_errors():
    for bad in (0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match=r"sigma must be a positive finite number \(pixels"):
            gaussian_blur(torch.zeros(1, 1, 8, 8), bad)
    with pytest.raises(ValueError, match="truncate must be a positive finite number"):
        gaussian_kernel1d(1.0, truncate=-1.0)
    # a huge sigma is refused before a 64 GB kernel is allocated
    with pytest.raises(ValueError, match="kernel radius 4000000000 .* must be smaller"):
        gaussian_blur(torch.zeros(1, 1, 8, 8), 1e9)
    with pytest.raises(ValueError, match="kernel radius 12 .* must be smaller than the image"):
        gaussian_blur(torch.zeros(1, 1, 8, 8), 3.0)


# --------------------------------------------------------------------------- resampling
def test_downsample_shape_and_torch_reference():
    x = load_image("camera", 96, color=True)
    for f in (2, 3, 4):
        y = downsample(x, f)
        assert y.shape == (1, 3, 96 // f, 96 // f)
        ref = F.interpolate(x, scale_factor=1 / f, mode="bicubic", antialias=True,
                            align_corners=False, recompute_scale_factor=False)
        torch.testing.assert_close(y, ref)
    torch.testing.assert_close(downsample(x, 1), x)


def test_downsample_matches_pillow_bicubic():
    x = load_image("camera", 128)
    for f in (2, 4):
        pil = Image.fromarray(x[0, 0].numpy(), mode="F").resize((128 // f, 128 // f),
                                                                  Image.Resampling.BICUBIC)
        diff = np.abs(downsample(x, f)[0, 0].numpy() - np.asarray(pil))
        # PyTorch's antialiased bicubic was written to match Pillow's (a = -0.5, kernel
        # stretched by the factor): they agree to float32 rounding (measured max 1.8e-7).
        assert diff.max() < 1e-5, (f, diff.max())


def test_upsample_shape_and_reference():
    x = load_image("camera", 32)
    y = upsample(x, 3)
    assert y.shape == (1, 1, 96, 96)
    torch.testing.assert_close(y, F.interpolate(x, scale_factor=3, mode="bicubic",
                                                align_corners=False))


def test_resampling_errors():
    with pytest.raises(ValueError, match="divisible by factor=4; got 30 x 32"):
        downsample(torch.zeros(1, 1, 30, 32), 4)
    with pytest.raises(ValueError, match="factor must be a positive int"):
        downsample(torch.zeros(1, 1, 32, 32), 1.5)
    with pytest.raises(ValueError, match="factor must be a positive int"):
        upsample(torch.zeros(1, 1, 32, 32), 0)


# --------------------------------------------------------------------------- JPEG
def test_jpeg_error_falls_with_quality():
    x = load_image("camera", 128)
    mse = [float(((jpeg(x, q) - x) ** 2).mean()) for q in (5, 20, 50, 80, 95)]
    assert all(a > b for a, b in zip(mse, mse[1:], strict=False)), mse


def test_jpeg_matches_pillow_roundtrip_and_keeps_shape():
    x = load_image("chelsea", 64, color=True).repeat(2, 1, 1, 1)
    y = jpeg(x, 30)
    assert y.shape == x.shape and y.dtype == x.dtype
    arr = (x[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=30)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")) / 255.0
    np.testing.assert_allclose(y[0].permute(1, 2, 0).numpy(), ref, atol=1e-6)


def test_jpeg_errors():
    with pytest.raises(ValueError, match="quality must be an int from 1"):
        jpeg(torch.zeros(1, 1, 16, 16), 0)
    with pytest.raises(ValueError, match=r"jpeg needs 1 \(gray\) or 3 \(RGB\) channels; got 2"):
        jpeg(torch.zeros(1, 2, 16, 16), 50)


# --------------------------------------------------------------------------- speckle
@pytest.mark.skipif(not HAS_SAR, reason="lossbook.sar (helper D) has not landed yet")
def test_speckle_statistics():
    x = torch.full((1, 1, 512, 512), 0.4)
    for looks in (1, 4):
        y = speckle(x, looks, torch.Generator().manual_seed(0))
        # Gamma(L, 1/L) speckle: mean x, variance x^2 / L (262,144 samples: 1-2% tolerance)
        assert abs(float(y.mean()) / 0.4 - 1) < 0.01
        assert abs(float(y.var()) / (0.16 / looks) - 1) < 0.03


# --------------------------------------------------------------------------- PatchSampler
def _dihedral(p: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for q in (p, p.transpose(-1, -2)):
        out += [q, q.flip(-1), q.flip(-2), q.flip(-1).flip(-2)]
    return out


def test_patch_sampler_is_reproducible_and_on_device():
    imgs = load_images("train", 64)
    s = PatchSampler(imgs, functools.partial(add_gaussian_noise, sigma=25), 16, device="cpu")
    a = s(8, torch.Generator().manual_seed(0))
    b = s(8, torch.Generator().manual_seed(0))
    c = s(8, torch.Generator().manual_seed(1))
    for u, v in zip(a, b, strict=True):
        torch.testing.assert_close(u, v, rtol=0, atol=0)
    assert not torch.equal(a[1], c[1])
    assert a[0].shape == a[1].shape == (8, 1, 16, 16)
    assert a[0].device == torch.device("cpu") and s.images.device == torch.device("cpu")
    assert 20 < float((a[0] - a[1]).std()) * 255 < 30  # sigma=25 noise on the patches


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_patch_sampler_on_cuda():  # pragma: no cover - GPU only
    s = PatchSampler(load_images("test", 64), functools.partial(add_gaussian_noise, sigma=25),
                     16, device="cuda")
    g = torch.Generator(device="cuda").manual_seed(0)
    noisy, clean = s(4, g)
    assert noisy.is_cuda and clean.is_cuda and s.images.is_cuda


def test_patches_are_crops_of_the_images():
    g = torch.Generator().manual_seed(0)
    imgs = torch.rand(3, 1, 12, 10, generator=g)
    for augment in (False, True):
        s = PatchSampler(imgs, None, 5, augment=augment)
        noisy, clean = s(40, g)
        assert noisy is clean
        crops = imgs.unfold(2, 5, 1).unfold(3, 5, 1)  # (3, 1, 8, 6, 5, 5): every crop
        crops = crops.permute(0, 2, 3, 1, 4, 5).reshape(-1, 1, 5, 5)
        for p in clean:
            cands = _dihedral(p) if augment else [p]
            assert any(bool((crops == q).all((1, 2, 3)).any()) for q in cands)


def test_patch_positions_cover_every_offset_and_all_8_transforms():
    img = torch.arange(36.0).view(1, 1, 6, 6)
    s = PatchSampler(img, None, 4, augment=False)
    _, clean = s(2000, torch.Generator().manual_seed(0))
    corners = clean[:, 0, 0, 0]
    counts = torch.bincount(corners.long(), minlength=36)
    allowed = [r * 6 + c for r in range(3) for c in range(3)]
    assert set(torch.nonzero(counts).flatten().tolist()) == set(allowed)
    # 9 positions, ~222 each: a 5-sigma band for a binomial(2000, 1/9)
    assert int(counts[allowed].min()) > 222 - 5 * 14
    s = PatchSampler(img[..., :4, :4], None, 4, augment=True)
    _, clean = s(800, torch.Generator().manual_seed(0))
    seen = {tuple(p.flatten().tolist()) for p in clean}
    assert len(seen) == 8


def test_patch_sampler_mixed_sizes_never_cut_padding():
    imgs = [torch.ones(1, 1, 20, 9), torch.ones(1, 12, 30), torch.ones(1, 1, 7, 7)]
    s = PatchSampler(imgs, None, 7)
    _, clean = s(500, torch.Generator().manual_seed(0))
    assert float(clean.min()) == 1.0  # the zero padding between sizes is never sampled


def test_patch_sampler_degrade_signatures():
    imgs = load_images("test", 32)
    s = PatchSampler(imgs, lambda x: 2 * x, 8)  # no generator argument: called as degrade(x)
    d, c = s(4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(d, 2 * c)
    s = PatchSampler(imgs, functools.partial(downsample, factor=2), 8)
    d, c = s(4, torch.Generator().manual_seed(0))
    assert d.shape == (4, 1, 4, 4) and c.shape == (4, 1, 8, 8)


def test_patch_sampler_errors():
    with pytest.raises(ValueError, match=r"patch_size=40 is larger than image\(s\) \[1\]"):
        PatchSampler([torch.zeros(1, 64, 64), torch.zeros(1, 32, 64)], None, 40)
    with pytest.raises(ValueError, match="same number of channels; got \\[1, 3\\]"):
        PatchSampler([torch.zeros(1, 64, 64), torch.zeros(3, 64, 64)], None, 8)
    with pytest.raises(ValueError, match="images is empty"):
        PatchSampler([], None, 8)
    with pytest.raises(ValueError, match="patch_size must be a positive int"):
        PatchSampler(torch.zeros(1, 1, 8, 8), None, 0)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        PatchSampler(torch.zeros(1, 1, 8, 8), None, 4)(0)
    bad = torch.zeros(2, 1, 8, 8)
    bad[1, 0, 2, 2] = float("inf")
    with pytest.raises(ValueError, match="images holds 0 NaN and 1 infinite"):
        PatchSampler(bad, None, 4)
    with pytest.raises(ValueError, match=r"images\[1\] holds 0 NaN and 1 infinite"):
        PatchSampler(list(bad), None, 4)


def test_degradations_refuse_nan_and_inf():
    """jpeg used to turn NaN into 0 silently; every degradation now refuses it."""
    x = torch.rand(1, 1, 16, 16)
    x[0, 0, 3, 3] = float("nan")
    for fn in (lambda t: jpeg(t, 50), lambda t: gaussian_blur(t, 1.0),
               lambda t: downsample(t, 2), lambda t: upsample(t, 2),
               lambda t: add_gaussian_noise(t, 10)):
        with pytest.raises(ValueError, match="x holds 1 NaN"):
            fn(x)
    with pytest.raises(ValueError, match="would make"):
        upsample(torch.zeros(1, 1, 8, 8), 100000)


# --------------------------------------------------------------------------- download
def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def test_download_verifies_and_caches(tmp_path, no_network):
    src = tmp_path / "src" / "weights.bin"
    src.parent.mkdir()
    payload = b"lossbook" * 1000
    src.write_bytes(payload)
    cache = tmp_path / "cache"
    path = download(src.as_uri(), _sha(payload), cache)
    assert path == cache / "weights.bin" and path.read_bytes() == payload
    assert sha256sum(path) == _sha(payload)
    src.unlink()  # the source is gone: the verified cache must be used
    assert download(src.as_uri(), _sha(payload), cache) == path
    assert sorted(p.name for p in cache.iterdir()) == ["weights.bin"]


def test_download_bad_hash_raises_and_leaves_nothing(tmp_path):
    src = tmp_path / "file.bin"
    src.write_bytes(b"abc")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="SHA-256 mismatch .* The file was deleted"):
        download(src.as_uri(), "0" * 64, cache)
    assert list(cache.iterdir()) == []


def test_download_unreachable_and_bad_arguments(tmp_path):
    with pytest.raises(ConnectionError, match="could not download .*place it at"):
        download((tmp_path / "missing.zip").as_uri(), "0" * 64, tmp_path / "c")
    assert list((tmp_path / "c").iterdir()) == []
    with pytest.raises(ValueError, match="sha256 must be 64 hexadecimal digits"):
        download("file:///x", "abc", tmp_path)
    src = tmp_path / "plain.txt"
    src.write_bytes(b"x")
    with pytest.raises(ValueError, match="is not a zip or tar archive"):
        download(src.as_uri(), _sha(b"x"), tmp_path / "d", extract=True)


@pytest.mark.parametrize("kind", ["tar.gz", "zip"])
def test_download_extracts_archives(tmp_path, kind):
    files = {"set/a.txt": b"alpha", "set/sub/b.txt": b"beta"}
    src = tmp_path / f"images.{kind}"
    if kind == "zip":
        with zipfile.ZipFile(src, "w") as zf:
            for name, content in files.items():
                zf.writestr(name, content)
    else:
        with tarfile.open(src, "w:gz") as tf:
            for name, content in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(content)
                tf.addfile(info, io.BytesIO(content))
    sha = sha256sum(src)
    out = download(src.as_uri(), sha, tmp_path / "cache", extract=True)
    assert out == tmp_path / "cache" / "images"
    for name, content in files.items():
        assert (out / name).read_bytes() == content
    (out / "set" / "a.txt").write_bytes(b"kept")  # second call reuses the extraction
    assert download(src.as_uri(), sha, tmp_path / "cache", extract=True) == out
    assert (out / "set" / "a.txt").read_bytes() == b"kept"


def test_download_refuses_path_traversal(tmp_path):
    src = tmp_path / "evil.zip"
    with zipfile.ZipFile(src, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    with pytest.raises(ValueError, match="would be written outside the target folder"):
        download(src.as_uri(), sha256sum(src), tmp_path / "cache", extract=True)
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "/tmp/abs.bin", "a/b.bin",
                                  "..", ".", "", "a\\b.bin"])
def test_download_refuses_names_that_leave_the_cache(tmp_path, name):
    src = tmp_path / "f.bin"
    src.write_bytes(b"x")
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="plain file inside cache_dir"):
        download(src.as_uri(), _sha(b"x"), cache, filename=name)
    assert not (tmp_path / "x").exists() and not cache.exists()


def _trickle_server():
    """A local HTTP server that sends one byte every 50 ms (per-read timeouts never fire)."""
    import http.server
    import threading

    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            try:
                for _ in range(100000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:  # the client gave up
                pass

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_download_has_an_overall_deadline(tmp_path):
    server = _trickle_server()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/slow.bin"
        t0 = time.monotonic()
        with pytest.raises(TimeoutError, match="longer than the deadline of 1 s"):
            download(url, "0" * 64, tmp_path / "cache", timeout=5, deadline=1)
        assert time.monotonic() - t0 < 4  # the per-read timeout (5 s) never fired
    finally:
        server.shutdown()
    assert list((tmp_path / "cache").iterdir()) == []  # the partial file was removed


def test_download_removes_stale_part_files(tmp_path):
    src = tmp_path / "w.bin"
    src.write_bytes(b"data")
    cache = tmp_path / "cache"
    cache.mkdir()
    stale = cache / "w.bin.abc123.part"
    fresh = cache / "w.bin.def456.part"  # perhaps another download in progress: kept
    other = cache / "v.bin.abc123.part"  # another file's: not ours
    for p in (stale, fresh, other):
        p.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    os.utime(other, (old, old))
    download(src.as_uri(), _sha(b"data"), cache, timeout=10)
    assert not stale.exists() and fresh.exists() and other.exists()
    for bad in (0, -1, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="deadline must be a positive, finite"):
            download(src.as_uri(), _sha(b"data"), cache, deadline=bad)


def test_dead_leaves_refuses_bad_radii():
    from lossbook.data.synthetic import dead_leaves

    for kwargs, match in (({"r_min": 0.3, "r_max": 0.1}, "smaller than r_max"),
                          ({"r_min": float("nan")}, "r_min"),
                          ({"r_max": float("inf")}, "r_max"),
                          ({"r_min": -0.1}, "r_min"),
                          ({"n_shapes": -1}, "n_shapes")):
        with pytest.raises(ValueError, match=match):
            dead_leaves(32, **kwargs)
    assert dead_leaves(32, n_shapes=5).shape[-1] == 32


def test_load_results_names_a_damaged_file(tmp_path):
    from lossbook.experiments import load_results

    (tmp_path / "denoise-losses.json").write_text('{"results": [')
    with pytest.raises(ValueError, match="damaged"):
        load_results("denoise-losses", tmp_path)
    assert (tmp_path / "denoise-losses.json").read_text() == '{"results": ['
