"""Figures of the subject report, returned as PNG bytes (matplotlib, Agg backend).

Every function takes arrays or image paths and returns ``bytes`` of a PNG; nothing is written to
disk. Maps are shown as axial mosaics; overlays are drawn on an underlay resampled (linearly, in
world coordinates) into the map's grid, so a T1w-aligned map sits on the subject's T1w.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

#: Resolution of the PNGs (dots per inch).
DPI = 90

ImageLike = str | Path | nib.Nifti1Image


def _img(x: ImageLike) -> nib.Nifti1Image:
    return nib.load(x) if isinstance(x, str | Path) else x


def to_png(fig) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def slice_indices(n: int, k: int = 6, mask: np.ndarray | None = None) -> list[int]:
    """``k`` evenly spaced axial slices, within the slices where ``mask`` has voxels."""
    if mask is not None and mask.any():
        z = np.flatnonzero(mask.reshape(-1, mask.shape[-1]).any(axis=0))
        lo, hi = int(z[0]), int(z[-1])
    else:
        lo, hi = 0, n - 1
    k = max(1, min(k, hi - lo + 1))
    return sorted({round(float(v)) for v in np.linspace(lo, hi, k + 2)[1:-1]} or {lo})


def resample_to(
    image: ImageLike, shape: Sequence[int], affine: np.ndarray, order: int = 1
) -> np.ndarray:
    """Resampling of a 3D image into a grid (world coordinates, no transform); ``order`` 1 is
    linear, 0 nearest neighbour (maps shown on a finer anatomical grid keep their voxels)."""
    img = _img(image)
    data = np.asarray(img.dataobj, np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    src_from_tgt = np.linalg.inv(img.affine) @ np.asarray(affine, float)
    return ndimage.affine_transform(
        data,
        src_from_tgt[:3, :3],
        offset=src_from_tgt[:3, 3],
        output_shape=tuple(int(n) for n in shape[:3]),
        order=order,
        mode="constant",
        cval=0.0,
    )


def _tsnr_mean(bold: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    """tSNR and temporal mean of a 4D series: read once as float32 (one decompression of a
    .nii.gz), statistics one slice at a time in float64 (temporaries of one slice)."""
    data = np.asarray(_img(bold).dataobj, np.float32)
    shape = data.shape[:3]
    mean = np.zeros(shape, np.float32)
    out = np.zeros(shape, np.float32)
    for z in range(shape[2]):
        sl = data[:, :, z, :].astype(np.float64)
        m = sl.mean(axis=-1)
        sd = sl.std(axis=-1, ddof=1)
        mean[:, :, z] = m
        out[:, :, z] = np.divide(m, sd, out=np.zeros_like(m), where=sd > 0)
    return out, mean


def tsnr(bold: ImageLike) -> tuple[np.ndarray, np.ndarray]:
    """Temporal SNR (mean / SD over time, SD ``ddof=1``) of a 4D series and its affine; 0 where
    the SD is 0."""
    img = _img(bold)
    return _tsnr_mean(img)[0], img.affine


def _rot(a: np.ndarray) -> np.ndarray:
    return np.rot90(a)  # x left→right, y bottom→top (radiological look is not attempted)


def mosaic(
    rows: Mapping[str, np.ndarray],
    *,
    underlay: np.ndarray | None = None,
    cmap: str = "viridis",
    vmin: float | None = None,
    vmax: float | None = None,
    threshold: float | None = None,
    label: str = "",
    title: str = "",
    n_slices: int = 6,
) -> bytes:
    """Axial mosaic: one row per map (same slices, same colour scale), optional underlay.

    Parameters
    ----------
    rows
        Row title → 3D map (all the same shape).
    underlay
        3D grey-scale image of the same shape drawn below the maps; values of a map at or below
        ``threshold`` are then transparent.
    cmap, vmin, vmax, label
        Colour scale (defaults: 0 and the 99th percentile of the non-zero values) and its label.
    """
    maps = list(rows.items())
    first = maps[0][1]
    nonzero = np.concatenate([np.ravel(m[np.isfinite(m) & (m != 0)]) for _, m in maps])
    if vmin is None:
        vmin = 0.0
    if vmax is None:
        vmax = float(np.percentile(nonzero, 99)) if nonzero.size else 1.0
        vmax = vmax if vmax > vmin else vmin + 1.0
    support = np.any([m != 0 for _, m in maps], axis=0)
    zs = slice_indices(first.shape[2], n_slices, support)
    fig, axes = plt.subplots(
        len(maps),
        len(zs),
        figsize=(1.9 * len(zs) + 0.9, 1.9 * len(maps) + 0.5),
        squeeze=False,
        constrained_layout=True,
    )
    last = None
    for r, (name, data) in enumerate(maps):
        for c, z in enumerate(zs):
            ax = axes[r, c]
            ax.set_axis_off()
            sl = data[:, :, z].astype(float)
            if underlay is not None:
                u = underlay[:, :, z]
                hi = float(np.percentile(underlay[underlay > 0], 99)) if (underlay > 0).any() else 1
                ax.imshow(_rot(u), cmap="gray", vmin=0, vmax=hi, interpolation="nearest")
                cut = vmin if threshold is None else threshold
                sl = np.ma.masked_where(~(sl > cut), sl)
            last = ax.imshow(_rot(sl), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
            if c == 0:
                ax.set_title(f"{name}  (z={z})", fontsize=8, loc="left")
            elif r == 0:
                ax.set_title(f"z={z}", fontsize=7)
    if last is not None:
        fig.colorbar(last, ax=axes, shrink=0.8, label=label)
    if title:
        fig.suptitle(title, fontsize=10)
    return to_png(fig)


def tsnr_figure(
    before: ImageLike, after: ImageLike, mask: np.ndarray | None = None
) -> tuple[bytes, dict[str, float]]:
    """tSNR before and after NORDIC (mosaics + histograms) and the median tSNR of each.

    Parameters
    ----------
    before, after
        The same run's 4D series without and with NORDIC (same grid).
    mask
        Voxels for the medians and histograms (default: GLMsingle's ``brainthresh`` rule on the
        mean image of ``before``, mean > 0.1 x its 99th percentile).

    Returns
    -------
    (bytes, dict)
        PNG and ``{"median_before", "median_after", "ratio"}``.
    """
    t0, mean = _tsnr_mean(_img(before))
    t1, _ = _tsnr_mean(_img(after))
    if t0.shape != t1.shape:
        raise ValueError(f"tSNR: the two series differ in grid ({t0.shape} vs {t1.shape})")
    if mask is None:
        m = (mean > 0.1 * np.percentile(mean, 99)) & (t0 > 0) & (t1 > 0)
    else:
        m = np.asarray(mask, bool)
    stats = {
        "median_before": float(np.median(t0[m])) if m.any() else float("nan"),
        "median_after": float(np.median(t1[m])) if m.any() else float("nan"),
    }
    stats["ratio"] = (
        stats["median_after"] / stats["median_before"] if stats["median_before"] else float("nan")
    )
    vmax = float(np.percentile(np.concatenate([t0[m], t1[m]]), 99)) if m.any() else None
    png = mosaic(
        {"NORDIC off": t0 * m, "NORDIC on": t1 * m},
        cmap="magma",
        vmax=vmax,
        label="tSNR",
        title="Temporal SNR of one run before and after NORDIC",
    )
    fig, ax = plt.subplots(figsize=(6, 2.6), constrained_layout=True)
    bins = np.linspace(0, vmax or 1.0, 60)
    ax.hist(t0[m], bins=bins, alpha=0.6, label=f"off (median {stats['median_before']:.1f})")
    ax.hist(t1[m], bins=bins, alpha=0.6, label=f"on (median {stats['median_after']:.1f})")
    ax.set_xlabel("tSNR")
    ax.set_ylabel("voxels")
    ax.legend(fontsize=8, frameon=False)
    return _stack([png, to_png(fig)]), stats


def _stack(pngs: Sequence[bytes]) -> bytes:
    """Stack PNGs vertically into one PNG (white background)."""
    from PIL import Image

    ims = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    width = max(i.width for i in ims)
    out = Image.new("RGB", (width, sum(i.height for i in ims)), "white")
    y = 0
    for i in ims:
        out.paste(i, (0, y))
        y += i.height
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def t2star_figure(t2star: ImageLike) -> bytes:
    """Mosaic of a T2* map (s or ms; shown in ms, 0–99th percentile)."""
    img = _img(t2star)
    data = np.asarray(img.dataobj, np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    finite = data[np.isfinite(data) & (data > 0)]
    scale = 1000.0 if finite.size and np.median(finite) < 1.0 else 1.0  # seconds -> ms
    data = np.nan_to_num(data) * scale
    return mosaic({"T2*": data}, cmap="inferno", label="T2* (ms)", title="T2* map (tedana)")


def motion_figure(confounds: Sequence[str | Path]) -> tuple[bytes, dict[str, float]]:
    """Head-motion traces of the runs (translations mm, rotations degrees, FD mm).

    Rotations in the confounds are radians (fMRIPrep's convention) and are drawn in degrees.

    Returns
    -------
    (bytes, dict)
        PNG and ``{"max_fd", "mean_fd"}`` over all runs.
    """
    tables = [pd.read_csv(p, sep="\t", na_values=["n/a"]) for p in confounds]
    fig, axes = plt.subplots(3, 1, figsize=(9, 6), sharex=True, constrained_layout=True)
    offset = 0
    fds = []
    for k, t in enumerate(tables):
        x = np.arange(len(t)) + offset
        for ax, cols, scale in (
            (axes[0], ("trans_x", "trans_y", "trans_z"), 1.0),
            (axes[1], ("rot_x", "rot_y", "rot_z"), 180.0 / np.pi),
        ):
            for j, c in enumerate(cols):
                if c in t:
                    ax.plot(x, t[c] * scale, color=f"C{j}", lw=0.9, label=c if k == 0 else None)
        if "framewise_displacement" in t:
            fd = t["framewise_displacement"].to_numpy(float)
            fds.append(fd[np.isfinite(fd)])
            axes[2].plot(x, fd, color="k", lw=0.9)
        if k:
            for ax in axes:
                ax.axvline(offset - 0.5, color="0.6", lw=0.8, ls="--")
        offset += len(t)
    axes[0].set_ylabel("translation (mm)")
    axes[1].set_ylabel("rotation (°)")
    axes[2].set_ylabel("FD (mm)")
    axes[2].set_xlabel("volume (runs concatenated; dashed lines separate runs)")
    for ax in axes[:2]:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, ncol=3, frameon=False, loc="upper left")
    fd_all = np.concatenate(fds) if fds else np.array([])
    stats = {
        "max_fd": float(fd_all.max()) if fd_all.size else float("nan"),
        "mean_fd": float(fd_all.mean()) if fd_all.size else float("nan"),
    }
    fig.suptitle("Head motion", fontsize=10)
    return to_png(fig), stats


def overlay_figure(
    maps: Mapping[str, ImageLike],
    underlay: ImageLike | None,
    *,
    label: str,
    title: str,
    threshold: float = 0.0,
    cmap: str = "hot",
    vmax: float | None = None,
) -> bytes:
    """Maps (rows) over an underlay (T1w or boldref).

    The display grid is the underlay's when it is finer than the maps (the maps then go to it
    by nearest neighbour, so each functional voxel stays a visible block over the anatomy),
    else the first map's (the underlay resampled linearly); no underlay: the first map's grid.
    """
    items = list(maps.items())
    ref = _img(items[0][1])
    under_img = _img(underlay) if underlay is not None else None

    def voxel(img: nib.Nifti1Image) -> float:
        return float(np.prod(np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(axis=0))))

    if under_img is not None and voxel(under_img) < voxel(ref):
        shape, affine = under_img.shape[:3], under_img.affine
    else:
        shape, affine = ref.shape[:3], ref.affine
    arrays = {}
    for name, m in items:
        img = _img(m)
        arrays[name] = np.nan_to_num(resample_to(img, shape, affine, order=0))
    under = resample_to(under_img, shape, affine) if under_img is not None else None
    return mosaic(
        arrays,
        underlay=under,
        cmap=cmap,
        vmax=vmax,
        threshold=threshold,
        label=label,
        title=title,
    )


__all__ = [
    "mosaic",
    "motion_figure",
    "overlay_figure",
    "resample_to",
    "slice_indices",
    "t2star_figure",
    "to_png",
    "tsnr",
    "tsnr_figure",
]
