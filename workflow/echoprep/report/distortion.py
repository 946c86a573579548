"""The report's distortion-correction figure: one run before and after, and the field's change.

Before: the mean of the run's first volumes of the raw reference echo (native grid, distorted);
after: the run's boldref (the same echo, distortion corrected, native grid); beside them the
voxel shifts applied (the run's mean). A sagittal and an axial slice through the middle of the
head, where the phase-encoding axis lies in the image plane. With frame-wise correction a
second panel plots, per volume, how far the shifts move from their mean (median and 95th
percentile over the head, voxels): breathing and motion show as its rhythm and steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np

from echoprep.report.figures import to_png

#: Volumes of the raw echo averaged for the "before" image.
BEFORE_VOLUMES = 10


def sdc_figure(
    echo: str | Path, boldref: str | Path, geometry: str | Path
) -> tuple[bytes, dict[str, Any]]:
    """Before/after images of one run and, with frame-wise correction, the change over time.

    Parameters
    ----------
    echo
        The run's raw reference echo (4D, native grid).
    boldref
        The run's boldref (distortion corrected, native grid).
    geometry
        The run's geometry file (``desc-geometry_xfm.npz``: ``vsm``, ``pe_axis``,
        ``vsm_maps``/``vsm_courses`` when frame-wise).

    Returns
    -------
    (bytes, dict)
        PNG, and ``{"corrected": bool, "framewise": bool, "max_shift": voxels,
        "change_p95": voxels}`` (``change_p95``: the 95th percentile over volumes of the
        head's 95th-percentile change; 0 without frame-wise correction).
    """
    img = nib.load(str(echo))
    n = min(BEFORE_VOLUMES, img.shape[3] if len(img.shape) > 3 else 1)
    before = np.asarray(img.dataobj[..., :n], np.float32).reshape(*img.shape[:3], -1).mean(-1)
    after = np.asarray(nib.load(str(boldref)).dataobj, np.float32)
    with np.load(geometry) as z:
        geo = {k: z[k] for k in z.files}
    vsm = geo["vsm"] if geo["vsm"].size else np.zeros(after.shape, np.float32)
    maps, courses = geo.get("vsm_maps"), geo.get("vsm_courses")
    framewise = maps is not None and maps.size > 0
    head = after > 0.1 * float(np.percentile(after, 98))
    rows = 2 if framewise else 1
    fig = plt.figure(figsize=(10, 3.6 * rows), constrained_layout=True)
    grid = fig.add_gridspec(rows, 6)
    mid = [
        int(np.median(ix)) if ix.size else n // 2
        for ix, n in zip(np.nonzero(head), head.shape, strict=True)
    ]
    lim = float(np.percentile(np.abs(vsm[head]), 99.5)) if head.any() else 1.0
    views = (
        ("sagittal", lambda a: np.rot90(a[mid[0]])),
        ("axial", lambda a: np.rot90(a[..., mid[2]])),
    )
    for v, (name, cut) in enumerate(views):
        top = float(np.percentile(after, 99.5)) or 1.0
        for k, (title, data, kw) in enumerate(
            (
                ("before", before, {"cmap": "gray", "vmin": 0, "vmax": top}),
                ("after", after, {"cmap": "gray", "vmin": 0, "vmax": top}),
                ("shift (voxels)", vsm, {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}),
            )
        ):
            ax = fig.add_subplot(grid[0, 3 * v + k])
            im = ax.imshow(cut(data), **kw)
            ax.contour(cut(head.astype(float)), levels=[0.5], colors="y", linewidths=0.5)
            ax.set_title(f"{title}, {name}", fontsize=8)
            ax.axis("off")
            if k == 2:
                fig.colorbar(im, ax=ax, shrink=0.7)
    change_p95 = 0.0
    if framewise:
        inside = head.reshape(-1)
        flat = maps.reshape(len(maps), -1)[:, inside]
        change = np.abs(courses @ flat)  # (t, n_head) voxels
        p50 = np.median(change, axis=1)
        p95 = np.percentile(change, 95, axis=1)
        change_p95 = float(np.percentile(p95, 95))
        ax = fig.add_subplot(grid[1, :])
        ax.plot(p50, color="k", lw=0.9, label="median over the head")
        ax.plot(p95, color="C3", lw=0.9, label="95th percentile")
        ax.set_xlabel("volume")
        ax.set_ylabel("|shift - run mean| (voxels)")
        ax.legend(fontsize=7, frameon=False)
        ax.set_title("frame-wise field: change of the shifts over the run", fontsize=8)
    stats = {
        "corrected": bool(geo["vsm"].size),
        "framewise": framewise,
        "max_shift": float(np.abs(vsm).max()) if vsm.size else 0.0,
        "change_p95": change_p95,
    }
    return to_png(fig), stats


__all__ = ["BEFORE_VOLUMES", "sdc_figure"]
