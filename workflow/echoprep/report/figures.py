"""Figures of the subject report, returned as PNG bytes (matplotlib, Agg backend).

Every function takes arrays or image paths and returns ``bytes`` of a PNG; nothing is written to
disk. Maps are shown as axial mosaics on one :class:`Display` per subject: one grid, one
anatomical underlay, one set of axial slices and the outline of the visual ROI, shared by every
map figure, so the tSNR, T2*, R² and noise-ceiling figures show the same brain positions.

Inside the brain every value is drawn opaque with a sequential colour map whose two ends differ
in hue and lightness (:data:`MAP_CMAP`, viridis: 0 dark purple, maximum yellow), so a voxel at 0
never looks like one at the maximum; outside the brain the map is transparent over the anatomy.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd
from matplotlib import colors as mcolors
from matplotlib.cm import ScalarMappable
from scipy import ndimage

#: Resolution of the PNGs (dots per inch).
DPI = 90
#: Colour map of every quantitative map (perceptually uniform; 0 and maximum clearly apart).
MAP_CMAP = "viridis"
#: Colour of the visual-ROI outline (a red that viridis and the grey underlay never take).
ROI_COLOUR = "#ff1a1a"
#: Axial slices per mosaic.
N_SLICES = 6

ImageLike = str | Path | nib.Nifti1Image


def _img(x: ImageLike) -> nib.Nifti1Image:
    return nib.load(x) if isinstance(x, str | Path) else x


def to_png(fig) -> bytes:
    """PNG bytes of a matplotlib figure (the figure is closed)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def slice_indices(n: int, k: int = N_SLICES, mask: np.ndarray | None = None) -> list[int]:
    """``k`` evenly spaced axial slices, within the slices where ``mask`` has voxels."""
    if mask is not None and mask.any():
        z = np.flatnonzero(mask.reshape(-1, mask.shape[-1]).any(axis=0))
        lo, hi = int(z[0]), int(z[-1])
    else:
        lo, hi = 0, n - 1
    k = max(1, min(k, hi - lo + 1))
    return sorted({round(float(v)) for v in np.linspace(lo, hi, k + 2)[1:-1]} or {lo})


def choose_slices(
    n: int, k: int = N_SLICES, extent: np.ndarray | None = None, roi: np.ndarray | None = None
) -> list[int]:
    """The axial slices of a subject's figures.

    Parameters
    ----------
    n
        Slices of the grid (its third dimension).
    k
        How many slices.
    extent
        3D mask (shape ``(x, y, n)``) whose axial extent the slices span evenly (the brain);
        None: the whole grid.
    roi
        3D mask of the visual ROI (same shape): the slice with the most ROI voxels is always
        one of them (it replaces the nearest evenly spaced slice), so the outline shows.

    Returns
    -------
    list of int
        Sorted slice indices along the third axis.
    """
    zs = slice_indices(n, k, extent)
    if roi is not None and roi.any():
        counts = roi.reshape(-1, roi.shape[-1]).sum(axis=0)
        best = int(np.argmax(counts))
        if best not in zs:
            nearest = min(range(len(zs)), key=lambda i: abs(zs[i] - best))
            zs[nearest] = best
    return sorted(set(zs))


def resample_to(
    image: ImageLike, shape: Sequence[int], affine: np.ndarray, order: int = 1
) -> np.ndarray:
    """Resampling of a 3D image into a grid (world coordinates, no transform); ``order`` 1 is
    linear, 0 nearest neighbour (maps shown on a finer anatomical grid keep their voxels)."""
    img = _img(image)
    data = np.asarray(img.dataobj, np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    data = np.nan_to_num(data.reshape(img.shape[:3]))
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


def _voxel_volume(img: nib.Nifti1Image) -> float:
    return float(np.prod(np.sqrt((np.asarray(img.affine)[:3, :3] ** 2).sum(axis=0))))


@dataclass(frozen=True, eq=False)
class Display:
    """Where one subject's maps are drawn: grid, underlay, slices and ROI outline.

    Attributes
    ----------
    shape, affine
        The display grid (3D shape, 4×4 voxel-to-world affine in mm).
    slices
        Axial slice indices shown in every mosaic.
    underlay
        Grey-scale anatomy on the grid (shape ``shape``), or None.
    roi
        Boolean mask of the visual ROI on the grid (outlined on every map), or None.
    inside
        Boolean brain mask on the grid (maps are opaque inside it), or None (each figure then
        uses its maps' own support).
    """

    shape: tuple[int, int, int]
    affine: np.ndarray
    slices: tuple[int, ...]
    underlay: np.ndarray | None = None
    roi: np.ndarray | None = None
    inside: np.ndarray | None = None

    def resample(self, image: ImageLike, order: int = 0) -> np.ndarray:
        """A 3D image on the display grid (nearest neighbour by default)."""
        return resample_to(image, self.shape, self.affine, order=order)

    def resample_array(self, data: np.ndarray, affine: np.ndarray, order: int = 0) -> np.ndarray:
        """A 3D array with its affine on the display grid."""
        return self.resample(nib.Nifti1Image(np.asarray(data, np.float32), affine), order)

    def slice_mm(self) -> list[float]:
        """World z (mm) of each shown slice, at the centre of the grid's x-y plane."""
        cx, cy = (self.shape[0] - 1) / 2, (self.shape[1] - 1) / 2
        return [float((self.affine @ np.array([cx, cy, z, 1.0]))[2]) for z in self.slices]

    def describe(self) -> str:
        """The slices in words, for captions."""
        mm = ", ".join(f"{v:.0f}" for v in self.slice_mm())
        return f"axial slices at z = {mm} mm (the same in every map of this page)"


def display_grid(
    reference: ImageLike,
    underlay: ImageLike | None = None,
    *,
    brain: ImageLike | None = None,
    roi: ImageLike | None = None,
    n_slices: int = N_SLICES,
) -> Display:
    """The display of a subject's maps.

    The grid is the underlay's when it is finer than ``reference`` (maps then go to it by
    nearest neighbour, so each functional voxel stays a visible block over the anatomy), else
    the reference's (the underlay resampled linearly). The slices span the brain mask (else the
    reference's non-zero voxels) evenly and always include the slice with the most ROI voxels.

    Parameters
    ----------
    reference
        A functional map of the subject (e.g. its noise ceiling) whose grid the maps share.
    underlay
        Anatomical background (T1w or the functional reference), or None.
    brain
        Brain mask (any grid in the same world space) or None.
    roi
        Visual ROI mask (any grid in the same world space) or None.
    n_slices
        Slices per mosaic.
    """
    ref = _img(reference)
    under_img = _img(underlay) if underlay is not None else None
    if under_img is not None and _voxel_volume(under_img) < _voxel_volume(ref):
        shape, affine = tuple(int(v) for v in under_img.shape[:3]), np.asarray(under_img.affine)
    else:
        shape, affine = tuple(int(v) for v in ref.shape[:3]), np.asarray(ref.affine)
    under = resample_to(under_img, shape, affine, order=1) if under_img is not None else None
    inside = resample_to(brain, shape, affine, order=0) > 0.5 if brain is not None else None
    roi_mask = resample_to(roi, shape, affine, order=0) > 0.5 if roi is not None else None
    if roi_mask is not None and not roi_mask.any():
        roi_mask = None
    extent = inside if inside is not None and inside.any() else None
    if extent is None:
        extent = resample_to(ref, shape, affine, order=0) != 0
    zs = choose_slices(shape[2], n_slices, extent, roi_mask)
    return Display(shape, affine, tuple(zs), under, roi_mask, inside)


def _default_display(first: np.ndarray, n_slices: int) -> Display:
    support = np.isfinite(first) & (first != 0)
    zs = choose_slices(first.shape[2], n_slices, support)
    return Display(tuple(int(v) for v in first.shape[:3]), np.eye(4), tuple(zs))


def map_rgba(
    values: np.ndarray,
    inside: np.ndarray,
    *,
    cmap: str = MAP_CMAP,
    vmin: float = 0.0,
    vmax: float = 1.0,
) -> np.ndarray:
    """RGBA of a map: opaque colour-mapped values inside the brain, transparent outside.

    Parameters
    ----------
    values
        Map values, any shape (NaN: no data, transparent).
    inside
        Boolean mask of the same shape: where the map is drawn (0 included).
    cmap, vmin, vmax
        Colour scale; values beyond it take the end colours.

    Returns
    -------
    numpy.ndarray
        Shape ``values.shape + (4,)``, float in [0, 1]; alpha 1 inside, 0 outside.
    """
    v = np.asarray(values, float)
    norm = mcolors.Normalize(vmin=vmin, vmax=vmax, clip=True)
    rgba = plt.get_cmap(cmap)(norm(np.nan_to_num(v)))
    rgba[..., 3] = (np.asarray(inside, bool) & np.isfinite(v)).astype(float)
    return rgba


def _rot(a: np.ndarray) -> np.ndarray:
    return np.rot90(a)  # x left→right, y bottom→top (radiological look is not attempted)


def mosaic(
    rows: Mapping[str, np.ndarray],
    *,
    display: Display | None = None,
    inside: np.ndarray | None = None,
    cmap: str = MAP_CMAP,
    vmin: float | None = None,
    vmax: float | None = None,
    label: str = "",
    title: str = "",
    n_slices: int = N_SLICES,
) -> bytes:
    """Axial mosaic: one row per map (same slices, same colour scale) on a display.

    Parameters
    ----------
    rows
        Row title → 3D map on the display grid (all the same shape).
    display
        The subject's :class:`Display` (underlay, slices, ROI outline); None: the maps' own
        grid, evenly spaced slices through their non-zero voxels, no underlay.
    inside
        Boolean mask (display grid) where the maps are drawn opaque, 0 included; None: the
        display's brain mask, else the voxels where any row is non-zero.
    cmap, vmin, vmax, label
        Colour scale (defaults: 0 and the 99th percentile of the values inside) and the colour
        bar's label (with the unit).
    """
    maps = list(rows.items())
    first = np.asarray(maps[0][1])
    display = display or _default_display(first, n_slices)
    if inside is None:
        inside = display.inside
    if inside is None:
        inside = np.any([np.isfinite(m) & (m != 0) for _, m in maps], axis=0)
    inside = np.asarray(inside, bool)
    values = np.concatenate([np.ravel(m[inside & np.isfinite(m)]) for _, m in maps])
    vmin = 0.0 if vmin is None else vmin
    if vmax is None:
        vmax = float(np.percentile(values, 99)) if values.size else 1.0
    vmax = vmax if vmax > vmin else vmin + 1.0
    under = display.underlay
    under_hi = 1.0
    if under is not None and (under > 0).any():
        under_hi = float(np.percentile(under[under > 0], 99))
    zs, mm = display.slices, display.slice_mm()
    fig, axes = plt.subplots(
        len(maps),
        len(zs),
        figsize=(2.3 * len(zs) + 1.0, 2.3 * len(maps) + 0.7),
        squeeze=False,
        constrained_layout=True,
    )
    for r, (name, data) in enumerate(maps):
        for c, z in enumerate(zs):
            ax = axes[r, c]
            ax.set_axis_off()
            if under is not None:
                ax.imshow(
                    _rot(under[:, :, z]),
                    cmap="gray",
                    vmin=0,
                    vmax=under_hi,
                    interpolation="nearest",
                )
            rgba = map_rgba(data[:, :, z], inside[:, :, z], cmap=cmap, vmin=vmin, vmax=vmax)
            ax.imshow(_rot(rgba), interpolation="nearest")
            if display.roi is not None and display.roi[:, :, z].any():
                outline = _rot(display.roi[:, :, z].astype(float))
                for colour, width in (("white", 2.6), (ROI_COLOUR, 1.4)):  # red on a white halo
                    ax.contour(outline, levels=[0.5], colors=[colour], linewidths=width)
            if c == 0:
                ax.set_title(f"{name}  (z = {mm[c]:.0f} mm)", fontsize=8, loc="left")
            elif r == 0:
                ax.set_title(f"z = {mm[c]:.0f} mm", fontsize=7)
    scale = ScalarMappable(mcolors.Normalize(vmin=vmin, vmax=vmax), plt.get_cmap(cmap))
    fig.colorbar(scale, ax=axes, shrink=0.8 if len(maps) < 3 else 0.5, label=label)
    if display.roi is not None:
        title = f"{title}\n(red outline: visually responsive ROI)" if title else title
    if title:
        fig.suptitle(title, fontsize=10)
    return to_png(fig)


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


def tsnr_figure(
    before: ImageLike,
    after: ImageLike,
    mask: np.ndarray | None = None,
    display: Display | None = None,
) -> tuple[bytes, dict[str, float]]:
    """tSNR before and after NORDIC (mosaics + histograms) and the median tSNR of each.

    Parameters
    ----------
    before, after
        The same run's 4D series without and with NORDIC (same grid).
    mask
        Voxels for the medians and histograms (default: GLMsingle's ``brainthresh`` rule on the
        mean image of ``before``, mean > 0.1 x its 99th percentile).
    display
        The subject's display (slices, underlay, ROI outline); None: the series' own grid.

    Returns
    -------
    (bytes, dict)
        PNG and ``{"median_before", "median_after", "ratio"}``.
    """
    before_img, after_img = _img(before), _img(after)
    t0, mean = _tsnr_mean(before_img)
    t1, _ = _tsnr_mean(after_img)
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
    rows = {"NORDIC off": t0 * m, "NORDIC on": t1 * m}
    inside = m
    if display is not None:
        aff = before_img.affine
        rows = {k: display.resample_array(v, aff) for k, v in rows.items()}
        inside = display.resample_array(m.astype(np.float32), aff) > 0.5
    png = mosaic(
        rows,
        display=display,
        inside=inside,
        vmax=vmax,
        label="tSNR (mean / SD over time)",
        title="Temporal SNR of one run before and after NORDIC",
    )
    fig, ax = plt.subplots(figsize=(6, 2.6), constrained_layout=True)
    bins = np.linspace(0, vmax or 1.0, 60)
    ax.hist(t0[m], bins=bins, alpha=0.6, label=f"off (median {stats['median_before']:.1f})")
    ax.hist(t1[m], bins=bins, alpha=0.6, label=f"on (median {stats['median_after']:.1f})")
    ax.set_xlabel("tSNR (mean / SD over time)")
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


def t2star_figure(t2star: ImageLike, display: Display | None = None) -> bytes:
    """Mosaic of a T2* map (s or ms; shown in ms, 0–99th percentile), opaque where T2* > 0.

    ``display``: the subject's display (slices, underlay, ROI outline); None: the map's grid.
    """
    img = _img(t2star)
    data = np.asarray(img.dataobj, np.float32)
    if data.ndim == 4:
        data = data[..., 0]
    finite = data[np.isfinite(data) & (data > 0)]
    scale = 1000.0 if finite.size and np.median(finite) < 1.0 else 1.0  # seconds -> ms
    data = np.nan_to_num(data) * scale
    inside = data > 0
    if display is not None:
        data = display.resample_array(data, img.affine)
        inside = display.resample_array(inside.astype(np.float32), img.affine) > 0.5
    return mosaic(
        {"T2*": data}, display=display, inside=inside, label="T2* (ms)", title="T2* map (tedana)"
    )


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
    underlay: ImageLike | None = None,
    *,
    label: str,
    title: str,
    display: Display | None = None,
    inside: Mapping[str, ImageLike | None] | None = None,
    cmap: str = MAP_CMAP,
    vmax: float | None = None,
) -> bytes:
    """Maps (rows) over the subject's display (see :func:`display_grid`).

    Parameters
    ----------
    maps
        Row title → 3D map image.
    underlay
        Used only without ``display`` (a display is then built from the first map).
    display
        The subject's display; maps go to its grid by nearest neighbour.
    inside
        Row title → the mask where that map is defined (e.g. its GLM's fitted mask) or None;
        the union over rows is where the maps are drawn opaque, 0 included. Without any:
        the display's brain mask, else the rows' non-zero voxels.
    label, title, cmap, vmax
        Colour bar label (with the unit), figure title, colour scale.
    """
    items = list(maps.items())
    if display is None:
        display = display_grid(items[0][1], underlay)
    arrays = {name: display.resample(m) for name, m in items}
    masks = [m for m in (inside or {}).values() if m is not None]
    union = None
    if masks:
        union = np.any([display.resample(m) > 0.5 for m in masks], axis=0)
    return mosaic(
        arrays, display=display, inside=union, cmap=cmap, vmax=vmax, label=label, title=title
    )


__all__ = [
    "MAP_CMAP",
    "N_SLICES",
    "ROI_COLOUR",
    "Display",
    "choose_slices",
    "display_grid",
    "map_rgba",
    "mosaic",
    "motion_figure",
    "overlay_figure",
    "resample_to",
    "slice_indices",
    "t2star_figure",
    "to_png",
    "tsnr_figure",
]
