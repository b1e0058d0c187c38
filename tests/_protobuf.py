"""A protobuf encoder of the tests' own, independent of guildlite's decoder (``_tfevents``): enough
of the wire format to write TensorBoard ``Event`` records by hand, well-formed or hostile."""

from __future__ import annotations


def varint(n: int) -> bytes:
    """``n`` as a base-128 varint; a negative number as its 64-bit two's complement, as protobuf
    writes it."""
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num: int, wire: int, payload: bytes) -> bytes:
    """Field ``num`` of wire type ``wire``: ``payload`` as given (a varint or a fixed-size value),
    or with its length in front for wire type 2 (bytes, strings, messages)."""
    key = varint(num << 3 | wire)
    return key + (varint(len(payload)) + payload if wire == 2 else payload)
