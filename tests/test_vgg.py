"""Tests for lossbook.models.vgg: torchvision's key layout, the loader, the offline network.

References: a state dict the test builds itself with VGG16's keys and shapes (torchvision
is not importable here) and SHA-256 values computed with hashlib; layer shapes from
VGG16's architecture (Simonyan & Zisserman 2015, configuration D). Nothing touches the
network: ``auto`` is tested at the smoke budget and against an unreachable address.
"""

from __future__ import annotations

import hashlib
import time

import pytest
import torch

from lossbook.models import vgg as V
from lossbook.models.vgg import VGG16Features, load_feature_net, offline_feature_net

# torchvision's vgg16() state dict: features.{0,2,5,7,10,12,14,17,19,21,24,26,28} convs,
# classifier.{0,3,6} linears.
CONV_IDX = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CHANNELS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)


def torchvision_like_state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    state, cin = {}, 3
    for idx, cout in zip(CONV_IDX, CHANNELS, strict=True):
        state[f"features.{idx}.weight"] = 0.01 * torch.randn(cout, cin, 3, 3, generator=g)
        state[f"features.{idx}.bias"] = 0.01 * torch.randn(cout, generator=g)
        cin = cout
    for idx, (o, i) in zip((0, 3, 6), ((64, 32), (64, 64), (10, 64)), strict=True):
        # the classifier (much smaller than torchvision's here): must be ignored
        state[f"classifier.{idx}.weight"] = torch.zeros(o, i)
        state[f"classifier.{idx}.bias"] = torch.zeros(o)
    return state


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("w") / "vgg16-test.pth"
    torch.save(torchvision_like_state(), path)
    return path


def test_layer_indices_follow_torchvision():
    # torchvision: ReLU after each conv at index conv + 1; relu1_2 = 3, ..., relu5_3 = 29
    assert V.VGG16_LAYERS["relu1_2"] == 3 and V.VGG16_LAYERS["relu2_2"] == 8
    assert V.VGG16_LAYERS["relu3_3"] == 15 and V.VGG16_LAYERS["relu4_3"] == 22
    assert V.VGG16_LAYERS["relu5_3"] == 29 and len(V.VGG16_LAYERS) == 13
    keys = list(VGG16Features(width=0.25).state_dict())
    assert keys == [f"features.{i}.{p}" for i in CONV_IDX for p in ("weight", "bias")]


def test_loads_a_state_dict_by_its_keys_from_a_local_path_and_file_url(weights_file, tmp_path):
    state = torchvision_like_state()
    h = sha(weights_file)
    for source in (weights_file, weights_file.as_uri()):
        net = load_feature_net(source, sha256=h, cache_dir=tmp_path / "cache", verbose=False)
        for idx in CONV_IDX:
            assert torch.equal(net.features[idx].weight, state[f"features.{idx}.weight"])
            assert torch.equal(net.features[idx].bias, state[f"features.{idx}.bias"])
    # the file:// download went through the verified cache
    assert sha(tmp_path / "cache" / weights_file.name) == h


def test_wrong_hash_is_rejected(weights_file, tmp_path):
    wrong = "0" * 64
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        load_feature_net(weights_file, sha256=wrong, verbose=False)
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        load_feature_net(weights_file.as_uri(), sha256=wrong, cache_dir=tmp_path, verbose=False)
    assert not (tmp_path / weights_file.name).exists()  # nothing unverified stays cached
    with pytest.raises(ValueError, match="needs sha256"):
        load_feature_net(weights_file.as_uri(), cache_dir=tmp_path, verbose=False)


def test_truncated_file_is_rejected(weights_file, tmp_path):
    cut = tmp_path / "cut.pth"
    cut.write_bytes(weights_file.read_bytes()[: weights_file.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated"):
        load_feature_net(cut, verbose=False)
    with pytest.raises(ValueError, match="truncated"):
        load_feature_net(cut.as_uri(), sha256=sha(cut), cache_dir=tmp_path / "c", verbose=False)


def test_wrong_keys_name_the_first_missing_key(tmp_path):
    state = torchvision_like_state()
    del state["features.5.weight"]
    path = tmp_path / "missing.pth"
    torch.save(state, path)
    with pytest.raises(ValueError, match=r"lacks 'features\.5\.weight'"):
        load_feature_net(path, verbose=False)
    renamed = {k.replace("features.", "body."): v for k, v in torchvision_like_state().items()}
    torch.save(renamed, path)
    with pytest.raises(ValueError, match=r"lacks 'features\.0\.weight'"):
        load_feature_net(path, verbose=False)
    bad = torchvision_like_state()
    bad["features.7.weight"] = torch.zeros(128, 64, 3, 3)  # wrong in-channels
    torch.save(bad, path)
    with pytest.raises(ValueError, match=r"features\.7\.weight.*shape"):
        load_feature_net(path, verbose=False)


@pytest.mark.parametrize("width, channels", [(1.0, (64, 128, 256, 512, 512)),
                                             (0.25, (16, 32, 64, 128, 128))])
def test_layer_output_shapes(width, channels):
    net = VGG16Features(width=width, seed=0)
    x = torch.rand(2, 3, 48, 40)
    layers = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")
    out = net(x, layers=layers)
    assert list(out) == list(layers)
    for b, (name, c) in enumerate(zip(layers, channels, strict=True)):
        assert tuple(out[name].shape) == (2, c, 48 // 2**b, 40 // 2**b)
        assert bool((out[name] >= 0).all())  # after a ReLU
    assert net.channels["relu4_3"] == channels[3]


def test_imagenet_normalisation_is_applied_inside_and_gray_is_repeated():
    net = VGG16Features(width=0.25, seed=3)
    gray = torch.rand(2, 1, 16, 16)
    rgb = gray.repeat(1, 3, 1, 1)
    assert torch.equal(net(gray, layers=("relu1_1",))["relu1_1"],
                       net(rgb, layers=("relu1_1",))["relu1_1"])
    # reference: the first conv + ReLU applied by hand on (x - mean) / std
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    conv = net.features[0]
    want = torch.relu(torch.nn.functional.conv2d((rgb - mean) / std, conv.weight, conv.bias,
                                                 padding=1))
    assert torch.allclose(net(rgb, layers=("relu1_1",))["relu1_1"], want, atol=1e-6)
    unnormalised = torch.relu(torch.nn.functional.conv2d(rgb, conv.weight, conv.bias, padding=1))
    assert not torch.allclose(want, unnormalised, atol=1e-3)


def test_frozen_network_passes_gradients_to_the_input_only():
    net = offline_feature_net()
    x = torch.rand(1, 1, 32, 32, requires_grad=True)
    net.train()  # a parent calling train() must not unfreeze anything
    net(x, layers=("relu3_3",))["relu3_3"].sum().backward()
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())
    assert x.grad is not None and bool(torch.isfinite(x.grad).all()) and x.grad.abs().sum() > 0


def test_offline_network_is_deterministic_and_seeded():
    a, b, c = offline_feature_net(0), offline_feature_net(0), offline_feature_net(1)
    for (ka, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), ka
    assert not torch.equal(a.features[0].weight, c.features[0].weight)
    # Kaiming scaling keeps activations of order one through the depth
    out = a(torch.rand(1, 3, 64, 64))
    for name, v in out.items():
        assert 0.05 < float(v.std()) < 20, name
    assert "offline" in a.source


def test_errors_are_clear():
    net = offline_feature_net()
    with pytest.raises(ValueError, match="too small for layer 'relu4_3'.*at least 8"):
        net(torch.rand(1, 1, 6, 6), layers=("relu1_2", "relu4_3"))
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\) or \(N, 3, H, W\)"):
        net(torch.rand(1, 2, 16, 16))
    with pytest.raises(ValueError, match="VGG19 layer"):
        net(torch.rand(1, 1, 32, 32), layers=("relu5_4",))
    with pytest.raises(ValueError, match="unknown layer"):
        net(torch.rand(1, 1, 32, 32), layers=("conv1",))
    with pytest.raises(ValueError, match="none of these"):
        load_feature_net("imagenett", verbose=False)


def test_auto_never_downloads_at_smoke(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LOSSBOOK_BUDGET", "smoke")

    def boom(*a, **k):
        raise AssertionError("auto tried the network at the smoke budget")

    monkeypatch.setattr(V, "_reachable", boom)
    monkeypatch.setattr(V, "_download", boom)
    net = load_feature_net("auto", cache_dir=tmp_path)
    assert "offline" in net.source
    line = capsys.readouterr().out.strip()
    assert line.count("\n") == 0 and "offline" in line and "smoke" in line


def test_auto_gives_up_quickly_without_network(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LOSSBOOK_BUDGET", "cpu")
    # a non-routable address (TEST-NET-1, RFC 5737): the probe must time out, not hang
    monkeypatch.setattr(V, "VGG16_URL", "https://192.0.2.1/vgg16-397923af.pth")
    monkeypatch.setattr(V, "_download", lambda *a, **k: pytest.fail("downloaded anyway"))
    t0 = time.perf_counter()
    net = load_feature_net("auto", cache_dir=tmp_path, timeout=1.0)
    assert time.perf_counter() - t0 < 5.0
    assert "offline" in net.source and "not reachable" in capsys.readouterr().out


def test_auto_uses_a_verified_cached_file(monkeypatch, tmp_path, weights_file, capsys):
    monkeypatch.setenv("LOSSBOOK_BUDGET", "smoke")
    monkeypatch.setattr(V, "VGG16_URL", "https://192.0.2.1/" + weights_file.name)
    (tmp_path / weights_file.name).write_bytes(weights_file.read_bytes())
    net = load_feature_net("auto", sha256=sha(weights_file), cache_dir=tmp_path)
    assert net.width == 1.0 and "ImageNet" in net.source
    assert "cache" in capsys.readouterr().out
    # a cached file with the wrong hash is not used (and the smoke budget never downloads)
    net = load_feature_net("auto", sha256="1" * 64, cache_dir=tmp_path)
    assert "offline" in net.source


def test_known_imagenet_hash_matches_the_file_name():
    # torchvision names its files after the first 8 hex digits of the SHA-256
    assert V.VGG16_URL.endswith("vgg16-" + V.VGG16_SHA256[:8] + ".pth")
    assert len(V.VGG16_SHA256) == 64
