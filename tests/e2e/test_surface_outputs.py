"""The demo's cortical surface (docs/surface.md): the simulator's FreeSurfer-like subject gives
betas, noise ceilings and R² on fsnative and fsaverage5 that nibabel, nilearn and pybids read,
the betas follow the simulator's true responses at the vertices' cortical positions about as
well as the volume's do at its voxels, and the report shows the noise ceiling on the inflated
surface."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from echoprep.io import outputs
from echoprep.io.freesurfer import read_gifti_data, read_mesh
from echoprep.kernels.surface import depth_points
from echoprep.simulate import truth_paths

pytestmark = pytest.mark.slow

VARIANT = ("nordic", "optcom")
#: The surface betas' median per-vertex correlation with the truth at the vertices may fall at
#: most this far below the volume's median per-voxel correlation with the truth on its grid
#: (measured on tiny: docs/surface.md §3).
TRUTH_MARGIN = 0.05


def _session_file(demo, name: str, hemi: str, space: str) -> Path:
    key = outputs.session_key("01", "01", "images")
    return outputs.get(f"surface.{name}").path(
        demo["results"],
        key,
        hemi=hemi,
        surface_space=space,
        nordic=VARIANT[0],
        combine=VARIANT[1],
    )


def _anat_file(demo, name: str, hemi: str | None = None) -> Path:
    o = outputs.get(f"surface_anatomy.{name}")
    return o.path(demo["results"], o.subject_key("01"), hemi=hemi)


def test_surface_files_read_by_nibabel_nilearn_and_pybids(demo):
    from bids import BIDSLayout
    from nilearn import plotting, surface

    trials = pd.read_csv(
        outputs.get("glm.trials").path(
            demo["results"],
            outputs.session_key("01", "01", "images"),
            nordic=VARIANT[0],
            combine=VARIANT[1],
        ),
        sep="\t",
    )
    for hemi in "LR":
        white, _ = read_mesh(_anat_file(demo, "white", hemi))
        for space, vertices in (("fsnative", len(white)), ("fsaverage5", 10242)):
            path = _session_file(demo, "betas", hemi, space)
            betas = surface.load_surf_data(str(path)).astype(float)
            assert betas.shape == (vertices, len(trials)), path
            assert len(nib.load(path).darrays) == len(trials)
            side = json.loads(path.with_name(path.name.replace(".func.gii", ".json")).read_text())
            assert side["Hemisphere"] == hemi and side["Space"] == space
            nc = read_gifti_data(_session_file(demo, "nc", hemi, space))
            assert nc.shape == (vertices,) and np.nanmax(nc) > 0
    mid = _anat_file(demo, "midthickness", "L")
    nc = np.nan_to_num(read_gifti_data(_session_file(demo, "nc", "L", "fsnative")))
    assert plotting.plot_surf_stat_map(str(mid), nc, hemi="left", engine="matplotlib")
    folder = demo["results"] / f"glmsingle-{VARIANT[0]}-{VARIANT[1]}"
    layout = BIDSLayout(str(folder), validate=False, is_derivative=True)
    found = layout.get(hemi="L", space="fsnative", extension=".func.gii", return_type="filename")
    assert any("desc-SingletrialBetas" in f for f in found), found


def _truth_at(demo, points_t1w: np.ndarray) -> np.ndarray:
    """The simulator's true betas (BOLD world) at T1w-world points: ``(points, trials)``."""
    tp = truth_paths(demo["bids"], "01", "01")
    img = nib.load(tp["betas"])
    pose = np.array(json.loads(tp["bold_to_T1w"].read_text())["Matrix"])
    q = np.linalg.inv(img.affine) @ np.linalg.inv(pose)
    ijk = points_t1w @ q[:3, :3].T + q[:3, 3]
    data = np.asarray(img.dataobj, np.float32)
    return np.stack(
        [
            ndimage.map_coordinates(data[..., k], ijk.T, order=1, mode="constant")
            for k in range(data.shape[3])
        ],
        axis=1,
    )


def _median_r(est: np.ndarray, truth: np.ndarray) -> float:
    est = est - est.mean(axis=1, keepdims=True)
    truth = truth - truth.mean(axis=1, keepdims=True)
    r = (est * truth).sum(axis=1) / np.sqrt((est**2).sum(axis=1) * (truth**2).sum(axis=1))
    return float(np.median(r))


def test_surface_betas_follow_the_truth_at_the_vertices(demo):
    """Per vertex of the responsive cortex, the correlation over trials between the sampled
    betas and the true betas at the vertex's ribbon (depth-averaged); the same per voxel for
    the volume's betas and the truth at the voxel: the surface's median at most
    :data:`TRUTH_MARGIN` below the volume's."""
    surf_r, surf_n = [], 0
    for hemi in "LR":
        white, _ = read_mesh(_anat_file(demo, "white", hemi))
        pial, _ = read_mesh(_anat_file(demo, "pial", hemi))
        pts = depth_points(white, pial, 7)
        truth = np.mean([_truth_at(demo, p) for p in pts], axis=0)
        est = read_gifti_data(_session_file(demo, "betas", hemi, "fsnative"))
        active = np.isfinite(est[:, 0]) & (
            truth.std(axis=1) > 0.5 * np.percentile(truth.std(axis=1), 99)
        )
        surf_r.append((est[active], truth[active]))
        surf_n += int(active.sum())
    est = np.concatenate([e for e, _ in surf_r])
    truth = np.concatenate([t for _, t in surf_r])
    surface_median = _median_r(est, truth)
    betas = nib.load(
        outputs.get("glm.betas").path(
            demo["results"],
            outputs.session_key("01", "01", "images"),
            space="T1w",
            nordic=VARIANT[0],
            combine=VARIANT[1],
        )
    )
    ijk = np.indices(betas.shape[:3]).reshape(3, -1).T
    world = ijk @ betas.affine[:3, :3].T + betas.affine[:3, 3]
    truth_v = _truth_at(demo, world)
    vol = np.asarray(betas.dataobj, np.float32).reshape(-1, betas.shape[3])
    sd = truth_v.std(axis=1)
    active_v = (sd > 0.5 * np.percentile(sd, 99.9)) & np.any(vol != 0, axis=1)
    volume_median = _median_r(vol[active_v], truth_v[active_v])
    print(
        f"median r with truth: surface {surface_median:.3f} ({surf_n} vertices), volume "
        f"{volume_median:.3f} ({int(active_v.sum())} voxels)"
    )
    assert surf_n > 100 and active_v.sum() > 20
    assert surface_median >= volume_median - TRUTH_MARGIN


def test_the_report_shows_the_noise_ceiling_on_the_inflated_surface(demo):
    html = (demo["results"] / "reports" / "sub-01.html").read_text()
    section = html.split("Noise ceiling on the cortical surface", 1)
    assert len(section) == 2
    assert section[1].count("data:image/png;base64") >= 2
    assert "hemisphere L" in section[1] and "hemisphere R" in section[1]
    assert "inflated surface" in section[1]
