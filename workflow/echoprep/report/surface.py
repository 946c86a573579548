"""The report's cortical-surface section: the noise ceiling on the inflated surface.

One figure per hemisphere (lateral, medial and posterior views, one colour scale for both
hemispheres), drawn with nilearn's ``plot_surf_stat_map`` from the session noise ceiling
sampled to the subject's own surface (``..._hemi-<L|R>_space-fsnative_desc-Noiseceiling_
statmap.func.gii``) on FreeSurfer's inflated surface (``surf/<h>.inflated``), or on the
midthickness surface when the subject has no inflated one. Vertices without a value (outside
the field of view or the GLM's mask) are drawn as 0 % and counted in the caption.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from echoprep.io.freesurfer import read_gifti_data, read_mesh
from echoprep.report.figures import to_png
from echoprep.report.html import Section

#: Views of each hemisphere's figure.
VIEWS = ("lateral", "medial", "posterior")


def surface_figure(
    values: np.ndarray, coords: np.ndarray, faces: np.ndarray, hemi: str, vmax: float
) -> bytes:
    """One hemisphere's map on a mesh, :data:`VIEWS` side by side, as PNG bytes.

    Parameters
    ----------
    values
        ``(V,)`` the map (%, NaN: no value).
    coords, faces
        ``(V, 3)`` and ``(F, 3)``: the mesh (inflated or midthickness).
    hemi
        ``L`` or ``R``.
    vmax
        Top of the colour scale.
    """
    from nilearn import plotting

    side = {"L": "left", "R": "right"}[hemi]
    shown = np.where(np.isfinite(values), values, 0.0)
    fig, axes = plt.subplots(
        1, len(VIEWS), figsize=(3.2 * len(VIEWS), 3.0), subplot_kw={"projection": "3d"}
    )
    for ax, view in zip(axes, VIEWS, strict=True):
        plotting.plot_surf_stat_map(
            (coords, faces),
            shown,
            hemi=side,
            view=view,
            cmap="viridis",
            vmin=0.0,
            vmax=vmax,
            symmetric_cbar=False,
            colorbar=view == VIEWS[-1],
            axes=ax,
            figure=fig,
            title=f"{side} {view}",
            engine="matplotlib",
        )
    png = to_png(fig)
    plt.close(fig)
    return png


def surface_section(
    nc: Mapping[str, str | Path], meshes: Mapping[str, str | Path], variant: str | None
) -> Section:
    """The section "Noise ceiling on the cortical surface" (module docstring).

    Parameters
    ----------
    nc
        ``L``/``R`` -> the session noise ceiling on fsnative (``.func.gii``).
    meshes
        ``L``/``R`` -> the inflated (or midthickness) surface of the subject.
    variant
        The variant of the maps, for the captions.
    """
    s = Section("Noise ceiling on the cortical surface")
    try:
        data = {h: np.asarray(read_gifti_data(nc[h]), float).ravel() for h in ("L", "R")}
        finite = np.concatenate([d[np.isfinite(d)] for d in data.values()])
        vmax = float(np.percentile(finite, 99)) if finite.size else 1.0
        for hemi in ("L", "R"):
            coords, faces = read_mesh(meshes[hemi])
            png = surface_figure(data[hemi], coords, faces, hemi, max(vmax, 1e-6))
            kind = "inflated" if "inflated" in Path(meshes[hemi]).name else "midthickness"
            missing = int(np.isnan(data[hemi]).sum())
            s.figures.append(
                (
                    f"Session noise ceiling (%) of {variant or 'the variant shown'}, hemisphere "
                    f"{hemi}, sampled through the cortical ribbon (docs/surface.md), on the "
                    f"{kind} surface of {Path(nc[hemi]).name}; {missing} of "
                    f"{data[hemi].size} vertices without a value (outside the field of view or "
                    "the GLM's mask; drawn as 0 %).",
                    png,
                )
            )
    except Exception as exc:  # a figure that fails must not lose the report
        s.warnings.append(f"surface figure failed: {exc}")
    return s


__all__ = ["VIEWS", "surface_figure", "surface_section"]
