"""Order-0 Exp-Golomb codes (H.264 ue(v)/se(v)), the paper's entropy coder."""

from __future__ import annotations

from nerfconf.codec.bitio import BitReader, BitWriter
from nerfconf.codec.entropy import CoderId, CoderState, check_levels
from nerfconf.codec.errors import BitstreamError


def signed_to_unsigned(v: int) -> int:
    """0, 1, -1, 2, -2, ... -> 0, 1, 2, 3, 4, ... (the se(v) mapping)."""
    return 2 * v - 1 if v > 0 else -2 * v


def unsigned_to_signed(u: int) -> int:
    return (u + 1) >> 1 if u & 1 else -(u >> 1)


def ue_bits(u: int) -> int:
    """Length in bits of ue(u)."""
    return 2 * (u + 1).bit_length() - 1


def se_bits(v: int) -> int:
    return ue_bits(signed_to_unsigned(v))


def write_ue(w: BitWriter, u: int) -> None:
    x = u + 1
    # n-1 leading zeros then x itself in n bits is x written in 2n-1 bits.
    w.write(x, 2 * x.bit_length() - 1)


def write_se(w: BitWriter, v: int) -> None:
    write_ue(w, signed_to_unsigned(v))


def read_ue(r: BitReader, max_prefix: int) -> int:
    """Read ue(v); a prefix longer than ``max_prefix`` zeros cannot be ours."""
    zeros = 0
    while r.read_bit() == 0:
        zeros += 1
        if zeros > max_prefix:
            raise BitstreamError(f"Exp-Golomb prefix longer than {max_prefix} bits")
    return ((1 << zeros) | r.read(zeros)) - 1


def read_se(r: BitReader, max_prefix: int) -> int:
    return unsigned_to_signed(read_ue(r, max_prefix))


class ExpGolombCoder:
    """The paper's coder: order-0 Exp-Golomb of signed values.

    I-frames take each level at its fixed width or Exp-Golomb of its distance
    from the mid level, whichever is shorter for the frame, flagged by the first bit.
    """

    coder_id = CoderId.EXP_GOLOMB

    def __init__(self, bits: tuple[int, ...]) -> None:
        self.bits = bits
        self.mid = tuple(1 << (b - 1) for b in bits)
        self.top = [(1 << b) - 1 for b in bits]
        self._max_prefix = max(bits)

    def encode_intra(self, q: list[int]) -> tuple[bytes, CoderState]:
        w = BitWriter()
        centred = [v - m for v, m in zip(q, self.mid)]
        if sum(se_bits(v) for v in centred) < sum(self.bits):
            w.write(1, 1)
            for v in centred:
                write_se(w, v)
        else:
            w.write(0, 1)
            for v, b in zip(q, self.bits):
                w.write(v, b)
        return w.to_bytes(), CoderState()

    def encode_inter(self, levels: list[int], ref: tuple[int, ...], state: CoderState) -> tuple[bytes, CoderState]:
        w = BitWriter()
        for v, p in zip(levels, ref):
            write_se(w, v - p)
        return w.to_bytes(), state

    def decode_intra(self, body: bytes) -> tuple[list[int], CoderState]:
        r = BitReader(body)
        if r.read_bit():
            q = [read_se(r, self._max_prefix) + m for m in self.mid]
        else:
            q = [r.read(b) for b in self.bits]
        r.expect_padding()
        check_levels(q, self.top)
        return q, CoderState()

    def decode_inter(self, body: bytes, ref: tuple[int, ...], state: CoderState) -> tuple[list[int], CoderState]:
        r = BitReader(body)
        levels = [p + read_se(r, self._max_prefix) for p in ref]
        r.expect_padding()
        check_levels(levels, self.top)
        return levels, state
