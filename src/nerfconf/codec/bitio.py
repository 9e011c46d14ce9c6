"""MSB-first bit packing, with reads that fail loudly instead of padding silently."""

from __future__ import annotations

from nerfconf.codec.errors import BitstreamError


class BitWriter:
    """Accumulates bits in one Python int; frames are a few hundred bits."""

    __slots__ = ("_acc", "_n")

    def __init__(self) -> None:
        self._acc = 0
        self._n = 0

    def write(self, value: int, width: int) -> None:
        self._acc = (self._acc << width) | value
        self._n += width

    def __len__(self) -> int:
        return self._n

    def to_bytes(self) -> bytes:
        """The bits, zero-padded to a whole byte."""
        pad = -self._n % 8
        return ((self._acc << pad)).to_bytes((self._n + pad) // 8, "big")


class BitReader:
    __slots__ = ("_value", "_total", "_pos")

    def __init__(self, data: bytes) -> None:
        self._value = int.from_bytes(data, "big")
        self._total = len(data) * 8
        self._pos = 0

    @property
    def remaining(self) -> int:
        return self._total - self._pos

    def read(self, width: int) -> int:
        end = self._pos + width
        if end > self._total:
            raise BitstreamError(f"frame body truncated: needed {width} more bits, {self.remaining} left")
        self._pos = end
        return (self._value >> (self._total - end)) & ((1 << width) - 1)

    def read_bit(self) -> int:
        if self._pos >= self._total:
            raise BitstreamError("frame body truncated: needed 1 more bit, 0 left")
        self._pos += 1
        return (self._value >> (self._total - self._pos)) & 1

    def expect_padding(self) -> None:
        """The writer pads with fewer than 8 zero bits; anything else is not ours."""
        left = self.remaining
        if left >= 8:
            raise BitstreamError(f"frame body has {left // 8} unexpected trailing byte(s)")
        if left and self.read(left) != 0:
            raise BitstreamError("frame body padding bits are not zero")
