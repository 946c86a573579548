"""Deterministic HDF5 files without h5py: neutralise the object timestamps HDF5 writes.

ITK (and so ANTs) writes transforms (``*_xfm.h5``) with the HDF5 library's defaults, which
record the wall-clock time of creation and modification in every object header. Two runs with
identical transforms therefore give files that differ byte for byte (measured on the anatomy
stage's composite transforms: 8 bytes of time plus the 4-byte checksum in each object header,
nothing else). :func:`neutralise_times` sets those times to 0 (the epoch) and recomputes the
header checksums, so identical content gives identical bytes; HDF5 readers (ITK, h5py) do not
use the times.

Only version-2 object headers (signature ``OHDR``, written with a version-2/3 superblock as ITK
does) keep times in their prefix (flag bit 5: access, modification, change and birth time, 4
bytes each). A candidate ``OHDR`` is changed only when its stored Jenkins lookup3 checksum
matches its bytes, so data that happens to contain the signature is never touched.
"""

from __future__ import annotations

import os
from pathlib import Path

_MASK = 0xFFFFFFFF
_SIGNATURE = b"OHDR"
#: Flag bit 5 of a version-2 object header: the four times are stored.
_TIMES_STORED = 0x20
#: Flag bit 4: maximum compact / minimum dense attribute counts are stored (2 + 2 bytes).
_PHASE_CHANGE_STORED = 0x10


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle`` as HDF5's ``H5_checksum_lookup3`` computes it."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    pos = 0
    while length > 12:
        a = (a + int.from_bytes(data[pos : pos + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[pos + 4 : pos + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[pos + 8 : pos + 12], "little")) & _MASK
        # mix(a, b, c)
        a = (a - c) & _MASK
        a ^= _rot(c, 4)
        c = (c + b) & _MASK
        b = (b - a) & _MASK
        b ^= _rot(a, 6)
        a = (a + c) & _MASK
        c = (c - b) & _MASK
        c ^= _rot(b, 8)
        b = (b + a) & _MASK
        a = (a - c) & _MASK
        a ^= _rot(c, 16)
        c = (c + b) & _MASK
        b = (b - a) & _MASK
        b ^= _rot(a, 19)
        a = (a + c) & _MASK
        c = (c - b) & _MASK
        c ^= _rot(b, 4)
        b = (b + a) & _MASK
        length -= 12
        pos += 12
    if length == 0:
        return c
    tail = data[pos : pos + length].ljust(12, b"\0")
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    # final(a, b, c)
    c ^= b
    c = (c - _rot(b, 14)) & _MASK
    a ^= c
    a = (a - _rot(c, 11)) & _MASK
    b ^= a
    b = (b - _rot(a, 25)) & _MASK
    c ^= b
    c = (c - _rot(b, 16)) & _MASK
    a ^= c
    a = (a - _rot(c, 4)) & _MASK
    b ^= a
    b = (b - _rot(a, 14)) & _MASK
    c ^= b
    c = (c - _rot(b, 24)) & _MASK
    return c


def _header_length(buf: bytearray | bytes, pos: int) -> int | None:
    """Bytes of the version-2 object header at ``pos`` (checksum included), or None."""
    if len(buf) < pos + 7 or buf[pos + 4] != 2:
        return None
    flags = buf[pos + 5]
    size_len = 1 << (flags & 0x03)
    at = pos + 6 + (16 if flags & _TIMES_STORED else 0) + (4 if flags & _PHASE_CHANGE_STORED else 0)
    if len(buf) < at + size_len:
        return None
    chunk = int.from_bytes(buf[at : at + size_len], "little")
    end = at + size_len + chunk + 4
    return end - pos if end <= len(buf) else None


def neutralise_times(path: str | Path, time: int = 0) -> int:
    """Set every object time in an HDF5 file to ``time`` (seconds since the epoch), in place.

    Returns the number of object headers changed. The file is rewritten atomically (a
    temporary file in the same folder, then renamed), and only when something changed.
    """
    p = Path(path)
    buf = bytearray(p.read_bytes())
    if not buf.startswith(b"\x89HDF\r\n\x1a\n"):
        raise ValueError(f"{p}: expected an HDF5 file; found no HDF5 signature")
    stamp = int(time).to_bytes(4, "little") * 4
    changed = 0
    pos = buf.find(_SIGNATURE)
    while pos >= 0:
        n = _header_length(buf, pos)
        if n is not None and buf[pos + 5] & _TIMES_STORED:
            body = bytes(buf[pos : pos + n - 4])
            if int.from_bytes(buf[pos + n - 4 : pos + n], "little") == lookup3(body):
                if buf[pos + 6 : pos + 22] != stamp:
                    buf[pos + 6 : pos + 22] = stamp
                    buf[pos + n - 4 : pos + n] = lookup3(bytes(buf[pos : pos + n - 4])).to_bytes(
                        4, "little"
                    )
                    changed += 1
                pos = buf.find(_SIGNATURE, pos + n)
                continue
        pos = buf.find(_SIGNATURE, pos + 1)
    if changed:
        tmp = p.with_name(f".{p.name}.times.tmp")
        tmp.write_bytes(bytes(buf))
        os.replace(tmp, p)
    return changed


__all__ = ["lookup3", "neutralise_times"]
