"""Byte-reproducible NIfTI and TSV writing, and the scanner-like BIDS sidecars.

NIfTI files are gzip-compressed with ``mtime=0`` and no stored file name, so the same data give
the same bytes; 4D series are streamed volume chunk by volume chunk (NIfTI stores x fastest and
volumes last), so a run never has to be held in memory at once. Files appear atomically
(temporary file in the same folder, then rename).
"""

from __future__ import annotations

import gzip
import os
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

#: gzip level: 1 as nibabel uses (speed matters for the large presets).
COMPRESSLEVEL = 1

#: Siemens phase: [-pi, pi) stored as integers [-4096, 4095].
PHASE_SCALE = 4096 / np.pi


@contextmanager
def _atomic(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def nifti_header(
    shape: Sequence[int],
    affine: np.ndarray,
    dtype: np.dtype | type,
    *,
    tr: float | None = None,
    descrip: str = "echoprep simulator",
) -> nib.Nifti1Header:
    """A NIfTI-1 header: sform = qform = ``affine`` (code 1, scanner), units mm and s.

    Parameters
    ----------
    shape
        3D or 4D data shape.
    affine
        4×4 voxel → world (RAS, mm).
    dtype
        Stored data type; integer types get ``scl_slope = 1``, ``scl_inter = 0``.
    tr
        Repetition time (s) stored in ``pixdim[4]`` of 4D data.
    """
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(tuple(int(s) for s in shape))
    hdr.set_data_dtype(np.dtype(dtype).newbyteorder("<"))
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    zooms = list(np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0)))
    if len(shape) == 4:
        zooms.append(float(tr) if tr is not None else 1.0)
    hdr.set_zooms(zooms)
    hdr.set_xyzt_units("mm", "sec")
    if np.issubdtype(np.dtype(dtype), np.integer):
        hdr["scl_slope"] = 1.0
        hdr["scl_inter"] = 0.0
    hdr.set_dim_info(freq=0, phase=1, slice=2)
    hdr["descrip"] = descrip.encode()[:79]
    hdr["vox_offset"] = 352
    return hdr


class NiftiWriter:
    """Stream a gzip NIfTI to disk deterministically, volume block by volume block.

    Use as a context manager; the file appears (atomically) on a clean exit, after the number
    of bytes written has been checked against the header.

    Parameters
    ----------
    path
        Output ``.nii.gz`` path.
    header
        From :func:`nifti_header`; its shape and dtype are what must be supplied.
    """

    def __init__(self, path: str | Path, header: nib.Nifti1Header) -> None:
        self.path = Path(path)
        self.header = header
        self.dtype = header.get_data_dtype()
        self.shape = header.get_data_shape()
        self.written = 0

    def __enter__(self) -> NiftiWriter:
        self._ctx = _atomic(self.path)
        self._fh = self._ctx.__enter__()
        self._gz = gzip.GzipFile(
            filename="", mode="wb", fileobj=self._fh, mtime=0, compresslevel=COMPRESSLEVEL
        )
        self.header.write_to(self._gz)
        return self

    def write(self, block: np.ndarray) -> None:
        """Append volumes: ``block`` of shape (n_k, nx, ny, nz) (or one 3D volume)."""
        block = np.asarray(block)
        vols = block[None] if block.ndim == 3 else block
        for vol in vols:
            buf = np.asarray(vol, dtype=self.dtype).tobytes(order="F")
            self._gz.write(buf)
            self.written += len(buf)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._gz.close()
        expected = int(np.prod(self.shape)) * self.dtype.itemsize
        if exc_type is None and self.written != expected:
            exc = ValueError(
                f"{self.path.name}: wrote {self.written} data bytes, header says {expected}"
            )
            self._ctx.__exit__(ValueError, exc, None)
            raise exc
        self._ctx.__exit__(exc_type, exc, tb)


def write_nifti(
    path: str | Path, header: nib.Nifti1Header, data: np.ndarray | Iterable[np.ndarray]
) -> Path:
    """Write a gzip NIfTI deterministically.

    Parameters
    ----------
    path
        Output ``.nii.gz`` path.
    header
        From :func:`nifti_header`.
    data
        The whole array of the header's shape, or an iterable of volume blocks, each of shape
        ``(n_k, nx, ny, nz)`` (volume-major), whose ``n_k`` add up to the number of volumes.
    """
    with NiftiWriter(path, header) as out:
        if isinstance(data, np.ndarray):
            if data.shape != out.shape:
                raise ValueError(f"data shape {data.shape} does not match the header's {out.shape}")
            arr = data if data.ndim == 3 else np.moveaxis(data, -1, 0)
            out.write(arr)
        else:
            for block in data:
                out.write(block)
    return Path(path)


def write_tsv(path: str | Path, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a BIDS TSV (tab separated, header row, ``n/a`` for missing, floats as ``%.6g``)."""

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "n/a"
        if isinstance(v, float | np.floating):
            return f"{float(v):.6g}"
        return str(v)

    lines = ["\t".join(columns)] + ["\t".join(fmt(v) for v in row) for row in rows]
    path = Path(path)
    with _atomic(path) as fh:
        fh.write(("\n".join(lines) + "\n").encode())
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write a text file atomically."""
    path = Path(path)
    with _atomic(path) as fh:
        fh.write(text.encode())
    return path


def quantize_magnitude(mag: np.ndarray) -> np.ndarray:
    """Magnitude → int16 (rounded, clipped to [0, 32767])."""
    return np.clip(np.rint(mag), 0, 32767).astype(np.int16)


def quantize_phase(phase: np.ndarray) -> np.ndarray:
    """Phase in rad, [-pi, pi] → int16 [-4096, 4095] (Siemens; ``rad = value * pi / 4096``)."""
    q = np.rint(phase * PHASE_SCALE).astype(np.int32)
    q[q >= 4096] -= 8192
    q[q < -4096] += 8192
    return q.astype(np.int16)
