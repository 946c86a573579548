"""A FreeSurfer-like subject for a simulated participant (:func:`write_freesurfer`).

``derivatives/freesurfer/sub-<label>/`` with what echoprep's surface stage reads
(docs/surface.md): ``mri/orig.mgz`` (the raw T1w conformed as FreeSurfer does: 256³ voxels of
1 mm, LIA orientation, centred on the T1w, uint8) and, per hemisphere, ``surf/<h>.white``,
``<h>.pial``, ``<h>.sphere.reg`` and ``<h>.inflated`` in FreeSurfer's surface coordinates
(tkr-RAS of ``orig.mgz``).

The meshes are nilearn's packaged fsaverage5 (10,242 vertices per hemisphere), subdivided
:func:`subdivisions` times (each triangle into four: 40,962 vertices at one, 163,842, fsaverage's
own count, at two), placed on the simulated brain: fsaverage's white surface (about MNI space)
is moved along its normals to the nearest crossing of the template's white-matter fraction
0.5 within ±6 mm (the simulated grey/white boundary; vertices without one, about a tenth, stay
where fsaverage has them), and the pial surface goes out from there along the normal to where
the grey + white fraction falls below 0.5 (0.5–5 mm; else fsaverage's thickness). Both then go
through the subject's transforms into the T1w scanner space (:func:`.anatomy.subject_transform`,
:func:`.anatomy.t1w_pose`) and to tkr-RAS. ``sphere.reg`` is the fsaverage5 sphere itself
(subdivided, on radius 100): vertex for vertex registered to fsaverage5, so resampling to
fsaverage5 through it is exact at zero subdivisions. ``inflated`` is fsaverage5's inflated
surface (for figures). No ``label/`` folder (surface ROIs are the user's, config ``rois.dir``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import freesurfer as nfs
from scipy import ndimage

from echoprep.io.freesurfer import HEMIS, nilearn_fsaverage5, read_mesh
from echoprep.kernels.surface import vertex_normals
from echoprep.simulate.anatomy import _mni_1mm, subject_transform, t1w_pose
from echoprep.simulate.presets import Preset

log = logging.getLogger(__name__)

#: Conformed grid of ``orig.mgz``: voxels per side and size (mm).
CONFORM_SIZE, CONFORM_MM = 256, 1.0
#: LIA orientation of a conformed FreeSurfer volume (voxel axes -> RAS directions).
LIA = np.array([[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
#: Search range (mm) for the white-matter boundary along the normal, and the step.
SNAP_MM, STEP_MM = 6.0, 0.25
#: Cortical thickness range (mm) of the simulated pial surface.
THICKNESS_MM = (0.5, 5.0)


def freesurfer_root(root: str | Path) -> Path:
    """``<root>/derivatives/freesurfer``: where the simulator writes the subjects."""
    return Path(root) / "derivatives" / "freesurfer"


def subdivisions(p: Preset) -> int:
    """Mesh subdivisions of a preset: 0 for T1w voxels of 3 mm or more (tiny), 1 from 1.5 mm
    (demo), 2 below (laion: fsaverage's 163,842 vertices per hemisphere)."""
    if p.t1w_voxel_size >= 3.0:
        return 0
    return 1 if p.t1w_voxel_size >= 1.5 else 2


def subdivide(
    faces: np.ndarray, *coords: np.ndarray, sphere: np.ndarray | None = None
) -> tuple[np.ndarray, list[np.ndarray], np.ndarray | None]:
    """Split every triangle into four at its edges' midpoints.

    Parameters
    ----------
    faces
        ``(F, 3)`` vertex indices.
    *coords
        ``(V, 3)`` coordinate sets of the mesh (midpoints are averages).
    sphere
        ``(V, 3)`` sphere coordinates: midpoints put back on the sphere's radius.

    Returns
    -------
    tuple
        ``(faces (4F, 3), [coords (V + E, 3) ...], sphere or None)``; the old vertices keep
        their numbers.
    """
    faces = np.asarray(faces, np.int64)
    n = int(max(c.shape[0] for c in coords)) if coords else int(sphere.shape[0])  # type: ignore[union-attr]
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mid = n + inverse.reshape(3, -1).T  # (F, 3): ab, bc, ca
    a, b, c = faces.T
    ab, bc, ca = mid.T
    new_faces = np.concatenate(
        [np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))]
    )
    out = [np.concatenate([x, (x[unique[:, 0]] + x[unique[:, 1]]) / 2]) for x in coords]
    new_sphere = None
    if sphere is not None:
        radius = np.linalg.norm(sphere, axis=1).mean()
        m = (sphere[unique[:, 0]] + sphere[unique[:, 1]]) / 2
        m *= radius / np.linalg.norm(m, axis=1, keepdims=True)
        new_sphere = np.concatenate([sphere, m])
    return new_faces, out, new_sphere


def _sample(arr: np.ndarray, vox_from_mni: np.ndarray, points: np.ndarray) -> np.ndarray:
    ijk = points.reshape(-1, 3) @ vox_from_mni[:3, :3].T + vox_from_mni[:3, 3]
    values = ndimage.map_coordinates(arr, ijk.T, order=1, mode="constant", cval=0.0)
    return values.reshape(points.shape[:-1])


def place_on_template(
    white: np.ndarray, pial: np.ndarray, faces: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """White and pial surfaces (MNI mm) following the template's tissue fractions (module
    docstring).

    Parameters
    ----------
    white, pial
        ``(V, 3)`` fsaverage's surfaces (MNI mm).
    faces
        ``(F, 3)``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(white, pial)``, each ``(V, 3)`` float64 MNI mm.
    """
    maps, affine = _mni_1mm()
    vox = np.linalg.inv(affine)
    normals = vertex_normals(white, faces)
    steps = np.arange(-SNAP_MM, SNAP_MM + STEP_MM / 2, STEP_MM)
    line = white[None] + steps[:, None, None] * normals[None]
    wm = _sample(maps["wm"], vox, line)  # (S, V)
    crossing = (wm[:-1] >= 0.5) & (wm[1:] < 0.5)
    where = np.where(crossing, np.abs(steps[:-1] + STEP_MM / 2)[:, None], np.inf)
    best = np.argmin(where, axis=0)
    found = np.isfinite(where[best, np.arange(white.shape[0])])
    lo, hi = wm[best, np.arange(white.shape[0])], wm[best + 1, np.arange(white.shape[0])]
    frac = np.clip((lo - 0.5) / np.maximum(lo - hi, 1e-6), 0, 1)
    offset = np.where(found, steps[best] + frac * STEP_MM, 0.0)
    new_white = white + offset[:, None] * normals
    out_steps = np.arange(THICKNESS_MM[0], THICKNESS_MM[1] + STEP_MM / 2, STEP_MM)
    out_line = new_white[None] + out_steps[:, None, None] * normals[None]
    tissue = _sample(maps["gm"] + maps["wm"], vox, out_line)  # (S, V)
    below = tissue < 0.5
    has = below.any(axis=0)
    first = np.argmax(below, axis=0)
    default = np.clip(np.linalg.norm(pial - white, axis=1), *THICKNESS_MM)
    thickness = np.where(has, out_steps[first], default)
    return new_white, new_white + thickness[:, None] * normals


def conformed_affine(center: np.ndarray) -> np.ndarray:
    """``(4, 4)`` vox2ras of a 256³ 1 mm LIA volume centred at ``center`` (mm)."""
    affine = np.eye(4)
    affine[:3, :3] = LIA * CONFORM_MM
    affine[:3, 3] = np.asarray(center, float) - affine[:3, :3] @ np.full(3, CONFORM_SIZE / 2)
    return affine


def conform(data: np.ndarray, affine: np.ndarray) -> nib.MGHImage:
    """The T1w as FreeSurfer's ``orig.mgz``: trilinear onto :func:`conformed_affine` around the
    image's centre, scaled to 0–255 (99.9th percentile of the head at 255), uint8."""
    center = affine[:3, :3] @ ((np.asarray(data.shape) - 1) / 2) + affine[:3, 3]
    target = conformed_affine(center)
    vox_from_target = np.linalg.inv(affine) @ target
    out = np.zeros((CONFORM_SIZE,) * 3, np.float32)
    step = 32
    grid = np.indices((CONFORM_SIZE, CONFORM_SIZE, step), dtype=np.float32)
    for z0 in range(0, CONFORM_SIZE, step):
        ijk = grid.reshape(3, -1).copy()
        ijk[2] += z0
        src = vox_from_target[:3, :3] @ ijk + vox_from_target[:3, 3:4]
        out[:, :, z0 : z0 + step] = ndimage.map_coordinates(
            np.asarray(data, np.float32), src, order=1, cval=0.0
        ).reshape(CONFORM_SIZE, CONFORM_SIZE, step)
    top = np.percentile(out[out > 0], 99.9) if np.any(out > 0) else 1.0
    scaled = np.clip(np.round(out / top * 255.0), 0, 255).astype(np.uint8)
    return nib.MGHImage(scaled, target)


def _write_geometry(path: Path, coords: np.ndarray, faces: np.ndarray) -> None:
    """A FreeSurfer surface with a fixed "created by" line (nibabel's default names the user
    and the time: the same seed must give the same bytes)."""
    nfs.write_geometry(str(path), coords, faces, create_stamp="created by echoprep simulate")


def write_freesurfer(root: str | Path, p: Preset, seed: int, sub: int, t1w: str | Path) -> Path:
    """Write the FreeSurfer-like subject of participant ``sub`` (module docstring).

    Parameters
    ----------
    root
        The simulated dataset's root.
    p, seed, sub
        Preset, dataset seed and subject number (the anatomy's transforms).
    t1w
        The subject's simulated raw T1w (``orig.mgz`` is conformed from it).

    Returns
    -------
    pathlib.Path
        The subject folder.
    """
    label = f"{sub:02d}"
    folder = freesurfer_root(root) / f"sub-{label}"
    (folder / "mri").mkdir(parents=True, exist_ok=True)
    (folder / "surf").mkdir(parents=True, exist_ok=True)
    img = nib.load(t1w)
    orig = conform(np.asarray(img.dataobj, np.float32), np.asarray(img.affine, float))
    nib.save(orig, folder / "mri" / "orig.mgz")
    tkr_from_scanner = np.asarray(orig.header.get_vox2ras_tkr(), float) @ np.linalg.inv(
        np.asarray(orig.header.get_vox2ras(), float)
    )
    pose, _ = t1w_pose(seed, sub)
    # MNI mm -> BOLD world -> T1w world -> tkr-RAS of orig.mgz
    tkr_from_mni = tkr_from_scanner @ pose @ np.linalg.inv(subject_transform(seed, sub))
    levels = subdivisions(p)
    for hemi, prefix in HEMIS.items():
        white, faces = read_mesh(nilearn_fsaverage5("white", hemi))
        pial, _ = read_mesh(nilearn_fsaverage5("pial", hemi))
        sphere, _ = read_mesh(nilearn_fsaverage5("sphere", hemi))
        inflated, _ = read_mesh(nilearn_fsaverage5("infl", hemi))
        for _ in range(levels):
            faces, (white, pial, inflated), sphere = subdivide(
                faces, white, pial, inflated, sphere=sphere
            )
        assert sphere is not None
        white, pial = place_on_template(white, pial, faces)
        for name, coords in (("white", white), ("pial", pial)):
            tkr = coords @ tkr_from_mni[:3, :3].T + tkr_from_mni[:3, 3]
            _write_geometry(folder / "surf" / f"{prefix}.{name}", tkr, faces)
        sphere = sphere * (100.0 / np.linalg.norm(sphere, axis=1, keepdims=True))
        _write_geometry(folder / "surf" / f"{prefix}.sphere.reg", sphere, faces)
        _write_geometry(folder / "surf" / f"{prefix}.inflated", inflated, faces)
        log.info("sub-%s %s: %d vertices", label, prefix, white.shape[0])
    return folder


__all__ = [
    "CONFORM_MM",
    "CONFORM_SIZE",
    "conform",
    "conformed_affine",
    "freesurfer_root",
    "place_on_template",
    "subdivide",
    "subdivisions",
    "write_freesurfer",
]
