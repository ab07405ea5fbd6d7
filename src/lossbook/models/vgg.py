r"""Feature networks for perceptual and texture losses: VGG16 in torchvision's layout.

:class:`VGG16Features` is the convolutional part of VGG16 (Simonyan & Zisserman 2015)
built layer for layer as torchvision builds it (``features.0`` ... ``features.30``), so
torchvision's ImageNet state dict loads by its own keys -- without importing
torchvision. It returns the activations of named layers (``relu1_2``, ``relu2_2``,
``relu3_3``, ``relu4_3``, ``relu5_3``, and every other ``reluB_K``).

:func:`load_feature_net` gives the network the book uses:

``"imagenet"``
    torchvision's published VGG16 weights (``vgg16-397923af.pth``, 528 MiB), fetched
    with :func:`lossbook.data.download` (SHA-256 verified, cached, atomic).
``"offline"``
    The offline feature network (:func:`offline_feature_net`): VGG16's layout at a
    quarter of its width with seeded random weights. No download, deterministic.
``"auto"``
    ``"imagenet"`` when the weights are cached or can be fetched within a few seconds,
    otherwise ``"offline"``, with one printed line saying which and why. At the
    ``smoke`` budget it never touches the network.
a path or URL
    A state dict in torchvision's key layout (a local file, or a ``file://`` /
    ``https://`` URL fetched through :func:`lossbook.data.download`).

Why a random network offline. Texture synthesis and feature inversion do not need
trained filters: a network with random weights and VGG's multi-scale architecture
already captures enough local statistics to synthesise textures (Ustyuzhaninov et al.
2017) and to invert shallow layers back to the pixels. What a random network does not
have is the *semantic* invariance of ImageNet features, so the chapter's statements
about deep layers are phrased to hold for both networks, and its output says which one
ran. A quarter of the width (16 to 128 channels instead of 64 to 512) keeps the same
layer names, strides and receptive fields at one sixteenth of the cost, which is what
lets the chapter run on two CPU cores.

SRGAN's "VGG54" (``relu5_4``) is a VGG19 layer: VGG19 has four convolutions in blocks
3 to 5 (configuration "E"), so ``relu5_4`` would need that configuration and
torchvision's ``vgg19-dcbb9e9d.pth``; VGG16 stops at ``relu5_3``.

References
----------
K. Simonyan, A. Zisserman, "Very deep convolutional networks for large-scale image
recognition", ICLR 2015.
J. Johnson, A. Alahi, L. Fei-Fei, "Perceptual losses for real-time style transfer and
super-resolution", ECCV 2016.
I. Ustyuzhaninov, W. Brendel, L. Gatys, M. Bethge, "What does it take to generate natural
textures?", ICLR 2017.
"""

from __future__ import annotations

import hashlib
import os
import threading
import urllib.parse
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

__all__ = [
    "VGG16Features",
    "VGG16_LAYERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VGG16_URL",
    "VGG16_SHA256",
    "offline_feature_net",
    "load_feature_net",
    "load_vgg16_state_dict",
    "default_cache_dir",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_SHA256 = "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0"
"""SHA-256 of torchvision's ``vgg16-397923af.pth`` (553,433,881 bytes; torchvision names
its files after the first 8 hex digits of this hash)."""

# VGG16, configuration "D": channels per convolution, "M" = 2x2 max-pool.
_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def _layer_names() -> dict[str, int]:
    """``{"relu1_1": 1, "relu1_2": 3, ..., "relu5_3": 29}``: index of each ReLU in
    torchvision's ``features``."""
    names, block, conv, i = {}, 1, 0, 0
    for v in _CFG:
        if v == "M":
            block, conv, i = block + 1, 0, i + 1
        else:
            conv += 1
            names[f"relu{block}_{conv}"] = i + 1
            i += 2
    return names


VGG16_LAYERS: dict[str, int] = _layer_names()
"""Named layers of :class:`VGG16Features` and their index in ``features``."""

_POOLS_BEFORE = {name: int(name[4]) - 1 for name in VGG16_LAYERS}


class VGG16Features(nn.Module):
    r"""VGG16's convolutional layers, returning the activations of named ReLU layers.

    The input is an image batch in ``[0, 1]``, gray (1 channel, repeated to 3) or RGB;
    the ImageNet normalisation :math:`(x - \mu) / \sigma` with
    :math:`\mu = (0.485, 0.456, 0.406)`, :math:`\sigma = (0.229, 0.224, 0.225)` is
    applied **inside** the network, so callers pass images as they are. The network is
    frozen: its parameters never receive gradients, the input does.

    Parameters
    ----------
    width : float
        Channel multiplier: 1.0 is VGG16 (64 ... 512 channels); the offline network
        uses 0.25 (16 ... 128).
    weights : mapping, optional
        A state dict with torchvision's keys (``features.0.weight`` ...); extra keys
        (``classifier.*``) are ignored. See :func:`load_vgg16_state_dict`.
    seed : int, optional
        Without ``weights``: draw Kaiming-normal random weights from this seed
        (deterministic on every machine; biases zero).

    Shapes
    ------
    ``(N, 1 or 3, H, W) -> {name: (N, C_l, H / 2^b, W / 2^b)}`` where ``b`` is the number
    of pools before the layer (0 for ``relu1_*``, 4 for ``relu5_*``; sizes floor) and
    ``C_l`` = 64, 128, 256, 512, 512 times ``width`` for blocks 1 to 5. A layer of block
    ``b + 1`` needs ``H, W >= 2^b``.

    Examples
    --------
    >>> net = VGG16Features(width=0.25, seed=0)
    >>> feats = net(torch.rand(2, 1, 32, 32), layers=("relu1_2", "relu3_3"))
    >>> tuple(feats["relu3_3"].shape)
    (2, 64, 8, 8)
    """

    def __init__(self, width: float = 1.0, *, weights: Mapping[str, torch.Tensor] | None = None,
                 seed: int | None = 0) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
            raise ValueError(f"width must be a positive number (1.0 = VGG16); got {width!r}.")
        self.width = float(width)
        layers: list[nn.Module] = []
        cin = 3
        for v in _CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                cout = max(1, round(v * self.width))
                layers += [nn.Conv2d(cin, cout, kernel_size=3, padding=1), nn.ReLU(inplace=False)]
                cin = cout
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
                             persistent=False)
        if weights is not None:
            load_vgg16_state_dict(self, weights)
        else:
            self._random_init(0 if seed is None else seed)
        self.requires_grad_(False)
        self.eval()
        self.source = "random weights" if weights is None else "given weights"

    @torch.no_grad()
    def _random_init(self, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * m.kernel_size[0] * m.kernel_size[1]
                std = (2.0 / fan_in) ** 0.5  # Kaiming: keeps the activations' scale
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                m.bias.zero_()

    def train(self, mode: bool = True) -> VGG16Features:
        """Stay in eval mode: the feature network is frozen (it has no dropout or
        batch norm, so this only keeps ``model.train()`` of a parent harmless)."""
        return super().train(False)

    @property
    def channels(self) -> dict[str, int]:
        """Channels of every named layer."""
        out = {}
        for name, idx in VGG16_LAYERS.items():
            out[name] = self.features[idx - 1].out_channels
        return out

    @staticmethod
    def min_size(layers: Sequence[str]) -> int:
        """Smallest image side for which every layer in ``layers`` has at least 1 pixel."""
        return 2 ** max(_POOLS_BEFORE[n] for n in layers)

    def check_layers(self, layers: Sequence[str]) -> tuple[str, ...]:
        """Validate layer names; return them as a tuple."""
        if isinstance(layers, str):
            layers = (layers,)
        layers = tuple(layers)
        if not layers:
            raise ValueError("layers must name at least one layer, e.g. ('relu2_2',).")
        for name in layers:
            if name not in VGG16_LAYERS:
                hint = (" relu5_4 (SRGAN's VGG54) is a VGG19 layer; VGG16's deepest is "
                        "relu5_3." if name == "relu5_4" else "")
                raise ValueError(f"unknown layer {name!r}; VGG16 has {', '.join(VGG16_LAYERS)}."
                                 + hint)
        return layers

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Gray -> 3 channels, then ImageNet normalisation (what :meth:`forward` feeds
        the first convolution)."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] not in (1, 3):
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"the feature network expects images of shape (N, 1, H, W) or (N, 3, H, W) "
                f"with values in [0, 1]; got {got}. Gray images are repeated to 3 channels; "
                "for other channel counts pick or average channels first."
            )
        if not torch.is_floating_point(x):
            raise TypeError(f"images must be floating point; got {x.dtype}. Use x.float() "
                            "(and divide 8-bit images by 255).")
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, x: torch.Tensor,
                layers: Sequence[str] = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"),
                ) -> dict[str, torch.Tensor]:
        """Activations of ``layers`` for images ``x`` in ``[0, 1]`` (see the class)."""
        layers = self.check_layers(layers)
        need = self.min_size(layers)
        if min(x.shape[-2:]) < need:
            deepest = max(layers, key=lambda n: VGG16_LAYERS[n])
            raise ValueError(
                f"images of {x.shape[-2]} x {x.shape[-1]} are too small for layer {deepest!r}: "
                f"it comes after {_POOLS_BEFORE[deepest]} 2x2 pools, so H and W must be at "
                f"least {need}. Use larger images or shallower layers."
            )
        wanted = {VGG16_LAYERS[n]: n for n in layers}
        last = max(wanted)
        h = self.prepare(x)
        out: dict[str, torch.Tensor] = {}
        for i, m in enumerate(self.features):
            h = m(h)
            if i in wanted:
                out[wanted[i]] = h
            if i == last:
                break
        return out


def load_vgg16_state_dict(model: VGG16Features, state: Mapping[str, torch.Tensor]) -> None:
    """Copy torchvision-layout weights (``features.{i}.weight/bias``) into ``model``.

    Keys outside ``features.*`` (the classifier) are ignored. Raises ``ValueError``
    naming the first missing key, or the first key whose shape differs.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"expected a state dict (a mapping of names to tensors); got "
                         f"{type(state).__name__}.")
    own = model.state_dict()
    for key, value in own.items():
        if key not in state:
            raise ValueError(
                f"the state dict lacks {key!r} (it has {len(state)} keys, e.g. "
                f"{list(state)[:3]}); expected torchvision's VGG16 layout "
                "(features.0.weight ... features.28.bias)."
            )
        got = state[key]
        if not isinstance(got, torch.Tensor) or tuple(got.shape) != tuple(value.shape):
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
            raise ValueError(f"{key!r} has shape {shape} but the network expects "
                             f"{tuple(value.shape)}; is it a VGG16 (not VGG19/VGG16-BN) state "
                             "dict, and is width=1.0?")
    model.load_state_dict({k: state[k] for k in own}, strict=True)


def offline_feature_net(seed: int = 0) -> VGG16Features:
    """The offline feature network: VGG16's layout at width 0.25, seeded random weights.

    Deterministic (the same weights on every machine for a seed), no download. See the
    module docstring for why a random network serves the chapter's demonstrations.
    """
    net = VGG16Features(width=0.25, seed=seed)
    net.source = (f"offline feature network (VGG16 layout, 1/4 width, random weights, "
                  f"seed {seed})")
    return net


def default_cache_dir() -> Path:
    """Where downloaded weights are kept: ``$LOSSBOOK_CACHE`` or ``~/.cache/lossbook``."""
    return Path(os.environ.get("LOSSBOOK_CACHE", Path.home() / ".cache" / "lossbook"))


def _download(url: str, sha256: str, cache_dir: Path, timeout: float) -> Path:
    try:  # the ground-floor module of DESIGN §2, where it exists
        from ..download import download  # type: ignore[import-not-found]
    except ImportError:
        from ..data.download import download
    return download(url, sha256, cache_dir, timeout=timeout)


def _sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, corrupt, or not a torch file
        raise ValueError(
            f"could not read a state dict from {path} ({type(err).__name__}: {err}); the file "
            "is truncated, corrupt or not a torch.save file. Delete it and fetch it again."
        ) from err
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict.")
    return dict(state)


def _net_from_file(path: Path, source: str) -> VGG16Features:
    net = VGG16Features(width=1.0, weights=_read_state(path))
    net.source = source
    return net


_REACHABLE: dict[str, bool] = {}


def _reachable(url: str, seconds: float) -> bool:
    """Whether ``url``'s host accepts a TCP connection within ``seconds`` (DNS included:
    the probe runs in a daemon thread that is abandoned when time runs out). A failed
    probe is remembered for the process, so later calls do not wait again."""
    if _REACHABLE.get(url) is False:
        return False
    import socket

    parts = urllib.parse.urlparse(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((parts.hostname, port), timeout=seconds):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(seconds)
    _REACHABLE[url] = bool(result and result[0])
    return _REACHABLE[url]


def load_feature_net(
    weights: str | os.PathLike = "auto",
    *,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    timeout: float = 3.0,
    device: str | torch.device | None = None,
    seed: int = 0,
    verbose: bool = True,
) -> VGG16Features:
    """The feature network for perceptual and texture losses (frozen, eval mode).

    Parameters
    ----------
    weights : {"auto", "imagenet", "offline"} or path or URL
        See the module docstring. ``"auto"``: ImageNet VGG16 if cached or reachable,
        else the offline network (never the network at the ``smoke`` budget).
    sha256 : str, optional
        Expected SHA-256 of the weights file: defaults to :data:`VGG16_SHA256` for
        ``"imagenet"``; required for a URL; for a local path, checked when given.
    cache_dir : path, optional
        Download cache (default :func:`default_cache_dir`).
    timeout : float
        Seconds ``"auto"`` waits for the server before falling back (default 3), and the
        socket timeout of the download.
    device : str or torch.device, optional
        Move the network there.
    seed : int
        Seed of the offline network's random weights.
    verbose : bool
        ``"auto"`` prints one line saying which network it uses and why.

    Returns
    -------
    VGG16Features
        With ``.source`` describing the weights (print it with the results).

    Raises
    ------
    ValueError
        Wrong hash, truncated file, or a state dict without VGG16's keys (the message
        names the first missing key).
    ConnectionError
        ``"imagenet"`` or a URL that cannot be fetched (``"auto"`` falls back instead).
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    kind = str(weights) if isinstance(weights, str) else None

    def done(net: VGG16Features) -> VGG16Features:
        return net.to(device) if device is not None else net

    if kind == "offline":
        return done(offline_feature_net(seed))
    if kind in ("imagenet", "auto"):
        expected = sha256 or VGG16_SHA256
        source = "ImageNet VGG16 (torchvision weights, SHA-256 verified)"
        if kind == "imagenet":
            return done(_net_from_file(_download(VGG16_URL, expected, cache, timeout * 20),
                                       source))
        from ..budget import get_budget

        cached = cache / Path(urllib.parse.urlparse(VGG16_URL).path).name
        reason = ""
        net = None
        if cached.is_file():  # verified here, without the network
            if _sha256_of(cached) != expected.strip().lower():
                reason = f"the cached {cached.name} does not match the expected SHA-256"
            else:
                try:
                    net, reason = _net_from_file(cached, source), "found in the cache"
                except ValueError as err:
                    reason = f"the cached file is unusable ({err})"
        if net is None and get_budget().name == "smoke":
            reason = reason or "the smoke budget never downloads"
        elif net is None and not _reachable(VGG16_URL, timeout):
            reason = reason or (f"{urllib.parse.urlparse(VGG16_URL).hostname} is not "
                                f"reachable within {timeout:g} s")
        elif net is None:
            try:
                net = _net_from_file(_download(VGG16_URL, expected, cache, 600.0), source)
                reason = "downloaded"
            except (ValueError, ConnectionError) as err:
                reason = f"the download failed ({err})"
        if net is None:
            net = offline_feature_net(seed)
        if verbose:
            print(f"Feature network: {net.source} -- {reason}.")
        return done(net)
    # a path or a URL
    text = os.fspath(weights)
    scheme = urllib.parse.urlparse(text).scheme
    if scheme in ("file", "http", "https"):
        if sha256 is None:
            raise ValueError(f"loading weights from the URL {text!r} needs sha256=... (64 hex "
                             "digits) so that a changed or corrupted file is refused.")
        return done(_net_from_file(_download(text, sha256, cache, timeout * 20),
                                   f"VGG16 weights from {text}"))
    path = Path(text)
    if not path.is_file():
        raise ValueError(f"weights must be 'auto', 'imagenet', 'offline', a file or a URL; "
                         f"got {text!r}, which is none of these (no such file).")
    if sha256 is not None:
        got = _sha256_of(path)
        if got != str(sha256).strip().lower():
            raise ValueError(f"SHA-256 mismatch for {path}: expected {sha256}, got {got}. "
                             "The file is not the one you meant, or it is corrupted.")
    return done(_net_from_file(path, f"VGG16 weights from {path}"))
