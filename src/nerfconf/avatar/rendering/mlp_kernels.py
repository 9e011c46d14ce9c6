"""The avatar's MLPs for CPU inference: cache-sized chunks of BLAS products inside numba's threads.

Measured on the 2-core AMD EPYC this project runs on (``nerfconf bench render``):

- OpenBLAS sgemm runs an (S, 64) x (64, 64) product at about 60 GMAC/s on one core;
  the fused numba loops this replaced reached about 12, because every multiply-add
  also loaded and stored its accumulator;
- the products stay fast only when their operands sit in cache, so samples go in
  chunks of ``CHUNK`` rows, and each chunk runs all of a network's layers before the
  next starts; bias, ReLU and the output heads are loops over the chunk, still in cache;
- one chunk per core with single-threaded BLAS was 1.8x faster than OpenBLAS splitting
  each product over both cores, so the chunks run in a numba ``prange`` (numba's
  ``np.dot`` calls scipy's BLAS) and ``threadpoolctl`` keeps that BLAS to one thread
  while a network runs. Python worker threads did the same work 1.4x slower, because
  numba's OpenMP threads spin after every parallel region and took their cores.

``InferenceMlp`` computes ``BlendshapeField``'s function (tested against it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from threadpoolctl import ThreadpoolController

from nerfconf.avatar.fields.hashgrid_kernels import encode_points

#: Samples per chunk: 2048 x 80 float32 inputs and two 2048 x 64 activations fit in L2.
CHUNK = 2048


@njit(nogil=True, fastmath=True, cache=True)
def _bias_relu(h, b):
    n, k = h.shape
    for s in range(n):
        for j in range(k):
            v = h[s, j] + b[j]
            h[s, j] = v if v > np.float32(0.0) else np.float32(0.0)


@njit(nogil=True, fastmath=True, cache=True)
def _density_head(h, b, w_sigma, b_sigma, sigma):
    """Last density layer in place: ``h = relu(h + b)``, ``sigma = softplus(h . w_sigma + b_sigma)``
    (torch's softplus: linear above 20)."""
    n, k = h.shape
    for s in range(n):
        a = b_sigma
        for j in range(k):
            v = h[s, j] + b[j]
            v = v if v > np.float32(0.0) else np.float32(0.0)
            h[s, j] = v
            a += v * w_sigma[j]
        sigma[s] = a if a > np.float32(20.0) else np.log1p(np.exp(a))


@njit(nogil=True, fastmath=True, cache=True)
def _sh4(x, y, z, o):
    """Real spherical harmonics to degree 4 of a unit direction, in ``field.spherical_harmonics``' order."""
    xx, yy, zz = x * x, y * y, z * z
    o[0] = 0.28209479177387814
    o[1] = -0.48860251190291987 * y
    o[2] = 0.48860251190291987 * z
    o[3] = -0.48860251190291987 * x
    o[4] = 1.0925484305920792 * x * y
    o[5] = -1.0925484305920792 * y * z
    o[6] = 0.94617469575755997 * zz - 0.31539156525251999
    o[7] = -1.0925484305920792 * x * z
    o[8] = 0.54627421529603959 * (xx - yy)
    o[9] = 0.59004358992664352 * y * (-3.0 * xx + yy)
    o[10] = 2.8906114426405538 * x * y * z
    o[11] = 0.45704579946446572 * y * (1.0 - 5.0 * zz)
    o[12] = 0.3731763325901154 * z * (5.0 * zz - 3.0)
    o[13] = 0.45704579946446572 * x * (1.0 - 5.0 * zz)
    o[14] = 1.4453057213202769 * z * (xx - yy)
    o[15] = 0.59004358992664352 * x * (-xx + 3.0 * yy)


@njit(nogil=True, fastmath=True, cache=True)
def _colour_input(hidden, sel, rays, dirs, out):
    """``out[s] = [hidden[sel[s]], SH(dirs[rays[sel[s]]])]`` for one chunk of ``sel``."""
    n_h = hidden.shape[1]
    for s in range(sel.shape[0]):
        q = sel[s]
        for j in range(n_h):
            out[s, j] = hidden[q, j]
        r = rays[q]
        _sh4(dirs[r, 0], dirs[r, 1], dirs[r, 2], out[s, n_h:])


@njit(nogil=True, fastmath=True, cache=True)
def _colour_head(h, b, w_t, b_out, rgb):
    """``rgb = sigmoid(relu(h + b) w_t.T + b_out)``; ``w_t`` is (3, H) so each row is contiguous."""
    n, k = h.shape
    for s in range(n):
        a0, a1, a2 = b_out[0], b_out[1], b_out[2]
        for j in range(k):
            v = max(h[s, j] + b[j], np.float32(0.0))  # branch-free, so the loop vectorises
            a0 += v * w_t[0, j]
            a1 += v * w_t[1, j]
            a2 += v * w_t[2, j]
        rgb[s, 0] = np.float32(1.0) / (np.float32(1.0) + np.exp(-a0))
        rgb[s, 1] = np.float32(1.0) / (np.float32(1.0) + np.exp(-a1))
        rgb[s, 2] = np.float32(1.0) / (np.float32(1.0) + np.exp(-a2))


@njit(nogil=True, fastmath=True, cache=True)
def _density_chunk(enc, w1, b1, w2, b2, w_sigma, b_sigma, hidden, sigma):
    a = np.empty((enc.shape[0], w1.shape[1]), np.float32)
    np.dot(enc, w1, a)
    _bias_relu(a, b1)
    np.dot(a, w2, hidden)
    _density_head(hidden, b2, w_sigma, b_sigma, sigma)


@njit(parallel=True, fastmath=True, cache=True)
def density_mlp(enc, w1, b1, w2, b2, w_sigma, b_sigma, hidden, sigma):
    """``hidden = relu(relu(enc w1 + b1) w2 + b2)``, ``sigma = softplus(hidden . w_sigma + b_sigma)``."""
    n = enc.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        _density_chunk(enc[lo:hi], w1, b1, w2, b2, w_sigma, b_sigma, hidden[lo:hi], sigma[lo:hi])


@njit(nogil=True, cache=True)
def _encoded(x, lo, hi, table, level_params):
    """The hash encoding (hi - lo, L*F) of points ``x[lo:hi]``: one chunk, used while in cache."""
    enc = np.empty((hi - lo, table.shape[0] * table.shape[2]), np.float32)
    encode_points(x, lo, hi, table, level_params, enc, 0)
    return enc


@njit(parallel=True, fastmath=True, cache=True)
def field_density(x, table, level_params, w1, b1, w2, b2, w_sigma, b_sigma, hidden, sigma):
    """``density_mlp`` of the hash encoding of points ``x`` (unit cube), chunk by chunk, so
    that each chunk's encoding is used while it is still in cache."""
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        enc = _encoded(x, lo, hi, table, level_params)
        _density_chunk(enc, w1, b1, w2, b2, w_sigma, b_sigma, hidden[lo:hi], sigma[lo:hi])


@njit(parallel=True, fastmath=True, cache=True)
def colour_mlp(hidden, sel, rays, dirs, w_c1, b_c1, w_c2, b_c2, w_c3, b_c3, rgb):
    """Colour net for samples ``sel``: input ``[hidden[sel[s]], SH(dirs[rays[sel[s]]])]``."""
    n = sel.shape[0]
    n_h = w_c2.shape[0]
    n_chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(n_chunks):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        x = np.empty((hi - lo, w_c1.shape[0]), np.float32)
        _colour_input(hidden, sel[lo:hi], rays, dirs, x)
        a = np.empty((hi - lo, n_h), np.float32)
        np.dot(x, w_c1, a)
        _bias_relu(a, b_c1)
        b = np.empty((hi - lo, n_h), np.float32)
        np.dot(a, w_c2, b)
        _colour_head(b, b_c2, w_c3, b_c3, rgb[lo:hi])


@njit(nogil=True, fastmath=True, cache=True)
def _decoder_chunk(enc, w1, b1, w2, b2, out, sigma):
    a = np.empty((enc.shape[0], w1.shape[1]), np.float32)
    np.dot(enc, w1, a)
    _bias_relu(a, b1)
    np.dot(a, w2, out)
    n, k = out.shape
    for s in range(n):
        for j in range(k):
            out[s, j] += b2[j]
        v = out[s, 0]
        sigma[s] = v if v > np.float32(20.0) else np.log1p(np.exp(v))


@njit(parallel=True, fastmath=True, cache=True)
def field_decoder(x, table, level_params, w1, b1, w2, b2, out, sigma):
    """The deferred field's per-sample work: the hash encoding of unit-cube points ``x``, then
    ``out = relu(enc w1 + b1) w2 + b2`` (density logit, then the feature) and
    ``sigma = softplus(out[:, 0])``, chunk by chunk while each chunk is in cache."""
    n = x.shape[0]
    for c in prange((n + CHUNK - 1) // CHUNK):
        lo = c * CHUNK
        hi = min(n, lo + CHUNK)
        enc = _encoded(x, lo, hi, table, level_params)
        _decoder_chunk(enc, w1, b1, w2, b2, out[lo:hi], sigma[lo:hi])


class _Blas:
    """Keeps scipy's BLAS, which numba's ``np.dot`` calls, to one thread while a kernel runs."""

    _controller = None

    @classmethod
    def single_threaded(cls):
        if cls._controller is None:
            # scipy's BLAS, the one numba's np.dot calls, is loaded once numba has compiled a np.dot
            import scipy.linalg.cython_blas  # noqa: F401, PLC0415

            cls._controller = ThreadpoolController().select(user_api="blas")
        return cls._controller.limit(limits=1)


def _f32(x) -> np.ndarray:
    return np.ascontiguousarray(x.detach().double().numpy(), np.float32)


@dataclass
class ColourMlp:
    """The colour net for inference: first layer on ``[feature, SH(direction)]`` (feature first)."""

    w_c1: np.ndarray  # (G + 16, H)
    b_c1: np.ndarray
    w_c2: np.ndarray
    b_c2: np.ndarray
    w_c3: np.ndarray  # (3, H), transposed for the head kernel
    b_c3: np.ndarray

    @classmethod
    def from_net(cls, color_net, sh_mask, w_geo=None, b_geo=None) -> ColourMlp:
        """``w_geo`` (G, X) and ``b_geo`` (G,): a linear map from X inputs to the feature, folded in."""
        import torch  # noqa: PLC0415

        c1, c2, c3 = (color_net[i] for i in (0, 2, 4))
        with torch.no_grad():
            wc1 = c1.weight.double()  # (H, 16 + G)
            w_sh, w_g = wc1[:, :16] * sh_mask.double(), wc1[:, 16:]  # the field's masked harmonics
            b_c1 = c1.bias.double()
            if w_geo is not None:
                b_c1 = b_c1 + b_geo.double() @ w_g.T
                w_g = w_g @ w_geo.double()  # (H, X)
            return cls(w_c1=_f32(torch.cat([w_g.T, w_sh.T], dim=0)), b_c1=_f32(b_c1), w_c2=_f32(c2.weight.T),
                       b_c2=_f32(c2.bias), w_c3=_f32(c3.weight), b_c3=_f32(c3.bias))

    def __call__(self, hidden: np.ndarray, sel: np.ndarray, rays: np.ndarray, dirs: np.ndarray) -> np.ndarray:
        """RGB (len(sel), 3) of rows ``sel`` of ``hidden``, seen along the unit directions ``dirs[rays[sel]]``."""
        rgb = np.empty((len(sel), 3), np.float32)
        with _Blas.single_threaded():
            colour_mlp(hidden, sel, rays, dirs, self.w_c1, self.b_c1, self.w_c2, self.b_c2, self.w_c3,
                       self.b_c3, rgb)
        return rgb


class _Outputs:
    """A per-sample output buffer that the next call overwrites: a frame's worth is tens of MB,
    and fresh pages for it each frame cost more than the products."""

    def __init__(self, width: int) -> None:
        self._buffer = np.empty((0, width), np.float32)

    def get(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if len(self._buffer) < n:
            self._buffer = np.empty((max(n, 2 * len(self._buffer)), self._buffer.shape[1]), np.float32)
        return self._buffer[:n], np.empty(n, np.float32)


@dataclass
class InferenceMlp:
    """A per-sample field's two MLPs rearranged for inference (same function, fewer multiplies).

    The density net's geometry outputs feed only the colour net's first layer, so the
    two linear maps fold into one matrix on the density net's last hidden layer; the
    colour net's first layer then takes ``[hidden, SH(direction)]`` (64 + 16 values).
    """

    w1: np.ndarray  # (L*F, H)
    b1: np.ndarray
    w2: np.ndarray  # (H, H)
    b2: np.ndarray
    w_sigma: np.ndarray  # (H,)
    b_sigma: float
    colour: ColourMlp

    deferred = False

    def __post_init__(self) -> None:
        self._out = _Outputs(self.w2.shape[0])  # per sample: the last hidden layer

    @classmethod
    def from_field(cls, field) -> InferenceMlp | DeferredMlp:
        """The inference form of ``field``'s networks, for either shading."""
        import torch  # noqa: PLC0415

        if field.config.deferred:
            return DeferredMlp.from_field(field)
        d1, d2, d3 = (field.density_net[i] for i in (0, 2, 4))
        with torch.no_grad():
            w3, b3 = d3.weight.double(), d3.bias.double()  # (1 + G, H)
            return cls(
                w1=_f32(d1.weight.T), b1=_f32(d1.bias), w2=_f32(d2.weight.T), b2=_f32(d2.bias),
                # the reference's shifted softplus, softplus(h - 1), folds into the bias
                w_sigma=_f32(w3[0]), b_sigma=float(b3[0]) - 1.0,
                colour=ColourMlp.from_net(field.color_net, field.sh_mask, w3[1:], b3[1:]),
            )

    @property
    def hidden(self) -> int:
        return self.w2.shape[0]

    def density(self, enc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Density (S,) and the last hidden layer (S, H) from the encoding (S, L*F); the hidden
        layer lives in a buffer that the next call overwrites."""
        hidden, sigma = self._out.get(len(enc))
        with _Blas.single_threaded():
            density_mlp(np.ascontiguousarray(enc, np.float32), self.w1, self.b1, self.w2, self.b2,
                        self.w_sigma, np.float32(self.b_sigma), hidden, sigma)
        return sigma, hidden

    def density_at(self, x: np.ndarray, table: np.ndarray, level_params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``density`` of the hash encoding of unit-cube points ``x`` (S, 3) in the blended
        ``table`` (``hashgrid_kernels.level_params`` gives ``level_params``)."""
        hidden, sigma = self._out.get(len(x))
        with _Blas.single_threaded():
            field_density(x, table, level_params, self.w1, self.b1, self.w2, self.b2, self.w_sigma,
                          np.float32(self.b_sigma), hidden, sigma)
        return sigma, hidden


@dataclass
class DeferredMlp:
    """A deferred field's networks for inference: the per-sample decoder and the per-pixel colour net."""

    w1: np.ndarray  # (L*F, D)
    b1: np.ndarray
    w2: np.ndarray  # (D, 1 + G)
    b2: np.ndarray  # (1 + G,), the density's shift folded in
    colour: ColourMlp

    deferred = True

    def __post_init__(self) -> None:
        self._out = _Outputs(self.w2.shape[1])  # per sample: the density logit, then the feature

    @classmethod
    def from_field(cls, field) -> DeferredMlp:
        import torch  # noqa: PLC0415

        d1, d2 = field.density_net[0], field.density_net[2]
        with torch.no_grad():
            b2 = d2.bias.double().clone()
            b2[0] -= 1.0  # the field's shifted softplus, softplus(h - 1)
            return cls(w1=_f32(d1.weight.T), b1=_f32(d1.bias), w2=_f32(d2.weight.T), b2=_f32(b2),
                       colour=ColourMlp.from_net(field.color_net, field.sh_mask))

    @property
    def features(self) -> int:
        return self.w2.shape[1] - 1

    def density_at(self, x: np.ndarray, table: np.ndarray, level_params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Density (S,) and the decoder's output (S, 1 + G): the density logit, then the feature
        (in a buffer the next call overwrites) at unit-cube points ``x`` in the blended ``table``."""
        out, sigma = self._out.get(len(x))
        with _Blas.single_threaded():
            field_decoder(x, table, level_params, self.w1, self.b1, self.w2, self.b2, out, sigma)
        return sigma, out
