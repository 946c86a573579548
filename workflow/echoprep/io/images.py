"""Reading and writing NIfTI images for the stages: clear errors, float32 outputs, atomic saves."""

from __future__ import annotations

import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
from isal import igzip

from echoprep.io.atomic import atomic_path, copy_file
from echoprep.io.paths import sidecar_path

#: ISA-L compression level of every ``.nii.gz`` the stages write (0-3; level 1 compresses a
#: 445 MiB float32 BOLD series to the ratio of zlib level 1, 0.88, in a quarter of its CPU time:
#: docs/performance.md).
GZIP_LEVEL = 1


def _gzip_writer(fh):
    """A gzip stream (ISA-L) without file name or time stamp in its header: the same data give
    the same bytes on one machine (ISA-L may choose other matches on another CPU; the
    decompressed bytes are the same everywhere), and the BIDS validator warns on neither."""
    return igzip.IGzipFile(filename="", fileobj=fh, mode="wb", mtime=0, compresslevel=GZIP_LEVEL)


def write_nifti(img: nib.Nifti1Image, path: str | Path) -> None:
    """Write ``img`` to ``path`` (not atomic: :func:`atomic_save` is the stages' writer).

    ``.nii.gz``: streamed through ISA-L's gzip (:data:`GZIP_LEVEL`), memory bounded by
    nibabel's write chunks; otherwise :func:`nibabel.save`.
    """
    path = Path(path)
    if not path.name.endswith(".gz"):
        nib.save(img, path)
        return
    with open(path, "wb") as fh, _gzip_writer(fh) as gz:
        img.to_file_map({"image": nib.FileHolder(fileobj=gz)})


class StageInputError(ValueError):
    """An input of a stage is unusable; the message names the file and the fix."""


def load_image(path: str | Path, what: str = "NIfTI image", ndim: int | None = None):
    """Open a NIfTI image (header only; data stay on disk until read).

    Parameters
    ----------
    path
        The file.
    what
        What the file should be, for the message (e.g. "magnitude series").
    ndim
        Required number of dimensions (4 for a BOLD series), or None.

    Raises
    ------
    StageInputError
        Unreadable file, or the wrong number of dimensions.
    """
    path = Path(path)
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several types for unreadable files
        raise StageInputError(
            f"{path}: expected a readable {what}; found an unreadable file ({exc}). "
            "Fix: re-export or re-download the file."
        ) from exc
    if ndim is not None and len(img.shape) != ndim:
        raise StageInputError(
            f"{path}: expected a {ndim}D {what}; found shape {img.shape}. "
            "Fix: pass the 4D BOLD series (x, y, z, volumes) of the echo."
        )
    return img


def read_array(img: nib.Nifti1Image, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """The data of an image opened by :func:`load_image`, as ``dtype``.

    The same array as ``np.asarray(img.dataobj, dtype)`` (and ``img.get_fdata(dtype=...)`` for
    a float ``dtype``). An unscaled ``.nii.gz`` is decompressed by ISA-L straight into the
    array (about 0.65 x nibabel's zlib reading CPU for a LAION-size series; memory: the array);
    any other image is read by nibabel.

    Parameters
    ----------
    img
        The image (data not yet read).
    dtype
        The returned array's type.

    Returns
    -------
    numpy.ndarray
        The image's shape, in the file's (Fortran) order.

    Raises
    ------
    StageInputError
        A ``.nii.gz`` that ends before its data do.
    """
    proxy = img.dataobj
    path = getattr(proxy, "file_like", None)
    fast = (
        isinstance(proxy, nib.arrayproxy.ArrayProxy)
        and isinstance(path, str | Path)
        and str(path).endswith(".gz")
        and proxy.order == "F"
        and float(proxy.slope) == 1.0
        and float(proxy.inter) == 0.0
    )
    if not fast:
        return np.asarray(proxy, dtype)
    raw = np.empty(proxy.shape, proxy.dtype, order="F")
    view = memoryview(raw.reshape(-1, order="F")).cast("B")
    got = 0
    with igzip.open(path, "rb") as fh:
        fh.seek(int(proxy.offset))
        while got < view.nbytes:
            n = fh.readinto(view[got:])
            if not n:
                break
            got += n
    if got < view.nbytes:
        raise StageInputError(
            f"{path}: expected {view.nbytes} bytes of image data; found {got} (a truncated "
            "file). Fix: write the file again (re-run the job that made it, or re-export it)."
        )
    return raw.astype(dtype, copy=False)


def series_tr(path: str | Path, img: nib.Nifti1Image, fix: str = "Fix: pass --tr.") -> float:
    """Sampling interval (s) of a BOLD series: ``RepetitionTime`` of its JSON sidecar, else the
    NIfTI header's 4th zoom (ms converted when the header says so); ``fix`` ends the error
    raised when neither gives one."""
    side = sidecar_path(path)
    if side.exists():
        try:
            tr = json.loads(side.read_text()).get("RepetitionTime")
        except json.JSONDecodeError:
            tr = None
        if tr:
            return float(tr)
    zoom = float(img.header.get_zooms()[3]) if len(img.shape) == 4 else 0.0
    unit = img.header.get_xyzt_units()[1]
    if unit == "msec":
        zoom /= 1000.0
    if not (zoom > 0):
        raise StageInputError(
            f"{path}: expected the repetition time in the JSON sidecar (RepetitionTime) or the "
            f"NIfTI header (pixdim[4]); found neither. {fix}"
        )
    return zoom


def check_same_grid(
    img: nib.Nifti1Image,
    ref: nib.Nifti1Image,
    *,
    path: str | Path,
    ref_path: str | Path,
    what: str = "image",
    fix: str = "Fix: pass images resampled to the same grid (same run, space and resolution).",
    atol: float = 1e-3,
) -> None:
    """Refuse an image whose voxel grid (first 3 dimensions and affine) differs from ``ref``'s.

    Parameters
    ----------
    img, ref
        The image checked and the reference image (headers only are read).
    path, ref_path
        Their files, for the message.
    what
        What ``img`` is, for the message (e.g. "brain mask").
    fix
        The fix given in the message.
    atol
        Tolerance on the affine entries (mm).

    Raises
    ------
    StageInputError
        Naming both files, the expected grid (shape, affine) and the one found.
    """
    same_shape = tuple(img.shape[:3]) == tuple(ref.shape[:3])
    if same_shape and np.allclose(img.affine, ref.affine, atol=atol):
        return
    raise StageInputError(
        f"{path}: expected a {what} on the grid of {ref_path} (shape {tuple(ref.shape[:3])}, "
        f"affine {np.round(ref.affine, 3).tolist()}); found shape {tuple(img.shape[:3])}, "
        f"affine {np.round(img.affine, 3).tolist()}. {fix}"
    )


def load_mask_on_grid(
    path: str | Path,
    like: nib.Nifti1Image,
    *,
    like_path: str | Path,
    what: str,
    fix: str,
    atol: float = 1e-3,
) -> np.ndarray:
    """A mask (voxels > 0) that must lie on the grid of ``like``.

    Parameters
    ----------
    path
        The mask image (3D, or 4D with one volume).
    like, like_path
        The image whose grid the mask must share, and its file (for the message).
    what, fix, atol
        As in :func:`check_same_grid`.

    Returns
    -------
    numpy.ndarray
        Bool, shape ``like.shape[:3]``.

    Raises
    ------
    StageInputError
        Unreadable file, or another grid.
    """
    img = load_image(path, what)
    check_same_grid(img, like, path=path, ref_path=like_path, what=what, fix=fix, atol=atol)
    return np.asanyarray(img.dataobj).reshape(like.shape[:3]) > 0


def float_image(data: np.ndarray, like: nib.Nifti1Image) -> nib.Nifti1Image:
    """A float32 image with the geometry and header of ``like`` (scaling reset to 1, 0)."""
    header = like.header.copy()
    header.set_data_dtype(np.float32)
    img = nib.Nifti1Image(np.asarray(data, dtype=np.float32), like.affine, header)
    img.header.set_slope_inter(1.0, 0.0)
    return img


#: BIDS suffixes of the 4D outputs whose 4th axis is time (``pixdim[4]`` is the TR in s). The
#: other 4D outputs (single-trial betas: one volume per trial) have no time axis, and NIfTI has
#: no unit for "trials", so their time unit stays unknown.
TIME_SERIES_SUFFIXES = ("bold",)


def is_time_series(path: str | Path) -> bool:
    """Whether the output ``path`` is a time series by its BIDS suffix (``*_bold.nii.gz``)."""
    name = Path(path).name.removesuffix(".gz").removesuffix(".nii")
    return name.rsplit("_", 1)[-1] in TIME_SERIES_SUFFIXES


def _fill_units(header, ndim: int, time_axis: bool) -> None:
    """Set the unknown ``xyzt_units`` of ``header`` (see :func:`set_units`)."""
    xyz, t = header.get_xyzt_units()
    new_xyz = "mm" if xyz == "unknown" else xyz
    new_t = "sec" if t == "unknown" and time_axis and ndim == 4 else t
    if (new_xyz, new_t) != (xyz, t):
        header.set_xyzt_units(new_xyz, new_t)


def set_units(img: nib.Nifti1Image, *, time_axis: bool) -> nib.Nifti1Image:
    """Fill in the NIfTI ``xyzt_units`` left unknown (in place): millimetres for the voxel
    axes (every image echoprep writes has an affine in mm), seconds for the 4th axis of a time
    series. Units already set are kept.

    Parameters
    ----------
    img
        The image; its header is changed, its data are not.
    time_axis
        True: a 4D image's 4th axis is time (``pixdim[4]`` in s).

    Returns
    -------
    nibabel.Nifti1Image
        ``img``.
    """
    _fill_units(img.header, len(img.shape), time_axis)
    return img


def atomic_save(img: nib.Nifti1Image, out: str | Path, *, time_axis: bool | None = None) -> Path:
    """The one NIfTI writer of the stages: fill in unknown units (:func:`set_units`), save to a
    temporary name in the same folder, then rename (no half-written outputs).

    Parameters
    ----------
    img
        The image (its header's unknown units are set in place).
    out
        The output file.
    time_axis
        Whether a 4D image's 4th axis is time; None: from the BIDS suffix of ``out``
        (:func:`is_time_series`).
    """
    out = Path(out)
    set_units(img, time_axis=is_time_series(out) if time_axis is None else time_axis)
    with atomic_path(out) as tmp:
        write_nifti(img, tmp)
    return out


def stored_header(path: str | Path) -> nib.Nifti1Header:
    """The NIfTI-1 header of ``path`` as stored in the file (nibabel's ``img.header`` moves the
    scaling to the data proxy); reads only the first 348 bytes (decompressed)."""
    path = Path(path)
    opener = igzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        return nib.Nifti1Header.from_fileobj(io.BytesIO(fh.read(348)), check=False)


def copy_if_float32(src: str | Path, out: str | Path) -> bool:
    """Copy ``src`` to ``out`` (atomic) when that gives what :func:`atomic_save` of its data as
    float32 (:func:`float_image`) would write: a float32 NIfTI-1 without scaling and with its
    units set, compressed as ``out`` is (both ``.nii.gz``, or neither). Decoding and re-encoding
    such a file changes nothing but the CPU spent.

    Returns
    -------
    bool
        Whether it copied; False: nothing written (the caller writes the image).
    """
    src, out = Path(src), Path(out)
    if src.name.endswith(".gz") != out.name.endswith(".gz") or not src.name.endswith(
        (".nii", ".nii.gz")
    ):
        return False
    header = stored_header(src)
    if int(header["sizeof_hdr"]) != 348 or bytes(header["magic"]) != b"n+1\x00":
        return False  # not single-file NIfTI-1 (NIfTI-2, a pair): the caller writes it
    xyz, t = header.get_xyzt_units()
    time_axis = is_time_series(out) and len(header.get_data_shape()) == 4
    if (
        header.get_data_dtype() != np.float32
        or tuple(float(v) for v in (header["scl_slope"], header["scl_inter"])) != (1.0, 0.0)
        or xyz == "unknown"
        or (time_axis and t == "unknown")
    ):
        return False
    copy_file(src, out)
    return True


def save_tool_output(src: str | Path, out: str | Path, *, time_axis: bool | None = None) -> Path:
    """Write the NIfTI file ``src`` of an external tool (tedana) to ``out`` with our header
    conventions (units, :func:`set_units`): only the header changes; the data bytes (values,
    type, scaling) stay exactly as the tool wrote them. Atomic; ``src`` is removed.

    Parameters
    ----------
    src
        The tool's file (``.nii`` or ``.nii.gz``, NIfTI-1 or -2).
    out
        The output file (gzip-compressed when it ends in ``.gz``, without a time stamp or name
        in the gzip header, so the same input gives the same bytes).
    time_axis
        As in :func:`atomic_save`.
    """
    src, out = Path(src), Path(out)
    img = load_image(src, "NIfTI image written by the tool")
    raw = igzip.decompress(src.read_bytes()) if src.name.endswith(".gz") else src.read_bytes()
    # the header as stored (nibabel's img.header has its scaling moved to the data proxy)
    header = type(img.header).from_fileobj(io.BytesIO(raw))
    _fill_units(header, len(img.shape), is_time_series(out) if time_axis is None else time_axis)
    block = header.binaryblock
    data = block + raw[len(block) :]
    with atomic_path(out) as tmp:
        if out.name.endswith(".gz"):
            with open(tmp, "wb") as fh, _gzip_writer(fh) as gz:
                gz.write(data)
        else:
            tmp.write_bytes(data)
    src.unlink()
    return out
