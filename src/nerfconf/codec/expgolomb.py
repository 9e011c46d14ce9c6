"""Order-0 Exp-Golomb codes (H.264 ue(v)/se(v)), the paper's entropy coder."""

from __future__ import annotations

from nerfconf.codec.bitio import BitReader, BitWriter
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
