"""The cortical surface (docs/surface.md): ribbon sampling against nilearn and analytic truth,
the mask and field of view, sphere resampling, the alignment of orig.mgz, the stage's GIFTI
files read by nilearn and nibabel, FreeSurfer discovery's errors, surface ROIs against the same
ROI as a volumetric mask."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from echoprep.io.freesurfer import (
    FreeSurferError,
    check_subject,
    nilearn_fsaverage5,
    read_gifti_data,
    read_mesh,
    read_surface_roi,
    surface_roi_name,
    write_label,
    write_surface,
)
from echoprep.io.rois import find_surface_roi_files
from echoprep.kernels.geometry.transforms import rigid_matrix
from echoprep.kernels.surface import (
    depth_points,
    resample_to_sphere,
    ribbon_matrix,
    sphere_matrix,
    transform_size,
)
from echoprep.simulate.anatomy_files import write_anatomy
from echoprep.simulate.freesurfer import conform, subdivide, write_freesurfer
from echoprep.simulate.presets import PRESETS
from echoprep.simulate.truth import truth_paths
from echoprep.stages.rois.table import run_roi_table
from echoprep.stages.surface import run_surface_sample
from echoprep.stages.surface.align import align_orig
from helpers.bidstree import write_freesurfer_subject

# ---------------------------------------------------------------------------------------------
# fixtures: fsaverage5's left hemisphere over a 2 mm grid with a smooth map


@pytest.fixture(scope="module")
def mesh():
    white, faces = read_mesh(nilearn_fsaverage5("white", "L"))
    pial, _ = read_mesh(nilearn_fsaverage5("pial", "L"))
    return white, pial, faces


def _smooth(xyz: np.ndarray) -> np.ndarray:
    return np.sin(xyz[:, 0] / 9.0) + np.cos(xyz[:, 1] / 13.0) + 0.01 * xyz[:, 2]


@pytest.fixture(scope="module")
def volume():
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-90.0, -126.0, -72.0]
    shape = (91, 109, 91)
    ijk = np.indices(shape).reshape(3, -1).T
    data = _smooth(ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(shape).astype(np.float32)
    return nib.Nifti1Image(data, affine)


def test_ribbon_sampling_matches_nilearn_and_the_truth_at_the_depths(mesh, volume):
    """Known answer: a smooth map sampled at 7 depths equals nilearn's ``vol_to_surf(kind=
    "depth")`` on the same meshes (r >= 0.99; here to float precision) and the map's value
    averaged over the vertex's depth points (r >= 0.99)."""
    from nilearn import surface

    white, pial, faces = mesh
    data = np.asarray(volume.dataobj)
    ribbon = ribbon_matrix(
        white, pial, np.linalg.inv(volume.affine), data.shape, np.ones(data.shape, bool), 7
    )
    ours = ribbon.sample(data.reshape(-1)[ribbon.voxels])
    theirs = surface.vol_to_surf(
        volume,
        surf_mesh=(pial, faces),
        inner_mesh=(white, faces),
        kind="depth",
        n_samples=7,
        interpolation="linear",
    )
    assert np.corrcoef(ours, theirs)[0, 1] >= 0.99
    assert np.max(np.abs(ours - theirs)) < 1e-4
    truth = _smooth(depth_points(white, pial, 7).reshape(-1, 3)).reshape(7, -1).mean(axis=0)
    assert np.corrcoef(ours, truth)[0, 1] >= 0.99
    assert not ribbon.empty.any()
    # each non-empty row sums to one
    assert np.allclose(np.asarray(ribbon.matrix.sum(axis=1)).ravel(), 1.0, atol=1e-5)


def test_voxels_outside_the_mask_never_reach_a_vertex_and_the_fov_is_counted(mesh, volume):
    """A map of 1 inside the mask and 1e6 outside samples to exactly 1 wherever a vertex has a
    value; a field of view cut at y = -20 mm leaves the anterior vertices NaN, counted."""
    white, pial, _ = mesh
    data = np.asarray(volume.dataobj)
    mask = np.zeros(data.shape, bool)
    mask[:, :60] = True  # y < about -6 mm
    spiked = np.where(mask, 1.0, 1e6).astype(np.float32)
    ribbon = ribbon_matrix(white, pial, np.linalg.inv(volume.affine), data.shape, mask, 5)
    values = ribbon.sample(spiked.reshape(-1)[ribbon.voxels])
    has = np.isfinite(values)
    assert has.sum() > 1000 and np.allclose(values[has], 1.0)
    assert ribbon.outside_mask.sum() > 1000
    # field of view: the grid's first 53 planes in y (y < -20 mm)
    cut = data[:, :53]
    ribbon = ribbon_matrix(
        white, pial, np.linalg.inv(volume.affine), cut.shape, np.ones(cut.shape, bool), 5
    )
    mid = (white + pial) / 2
    assert ribbon.outside_fov.sum() > 1000
    assert np.all(mid[ribbon.outside_fov, 1] > -21.5)
    assert np.all(mid[~ribbon.outside_fov, 1] < -18.5)


def test_sphere_resampling_is_exact_on_the_same_sphere_and_averages_on_a_coarser_one():
    """nnfr: the same sphere is the identity; a subdivided sphere's map of its coarse vertices'
    values resamples back to them exactly where all neighbours agree; NaN sources are left
    out; a constant stays constant."""
    sphere, faces = read_mesh(nilearn_fsaverage5("sphere", "L"))
    values = np.random.default_rng(0).normal(size=len(sphere)).astype(np.float32)
    same = sphere_matrix(sphere * 0.5, sphere)  # radius does not matter
    assert np.allclose(resample_to_sphere(same, values), values)
    fine_faces, _, fine = subdivide(faces, sphere=sphere)
    assert fine is not None and len(fine) == 40962
    matrix = sphere_matrix(fine, sphere)
    const = resample_to_sphere(matrix, np.full(len(fine), 3.0))
    assert np.allclose(const, 3.0)
    with_nan = np.full(len(fine), 3.0)
    with_nan[len(sphere) :] = np.nan  # only the coarse vertices have values
    back = resample_to_sphere(matrix, with_nan)
    assert np.allclose(back, 3.0)  # every target has its own vertex as forward neighbour
    assert matrix.shape == (len(sphere), len(fine)) and fine_faces.shape[0] == 4 * len(faces)


def test_alignment_recovers_a_shifted_and_rotated_orig(tmp_path):
    """orig.mgz conformed from a copy of the T1w moved by 4.2 mm and 3.5 deg: the rigid
    refinement recovers the move within 0.2 mm and 0.2 deg (tiny preset's 4 mm T1w)."""
    paths = write_anatomy(tmp_path, PRESETS["tiny"], 0, 1)
    t1 = nib.load(paths[0])
    centre = np.array([0.0, -17.0, 10.0])
    move = rigid_matrix(np.array([2.3, -1.7, 3.1, *np.deg2rad([2.0, -1.5, 2.5])]), center=centre)
    orig = conform(np.asarray(t1.dataobj, np.float32), move @ t1.affine)
    nib.save(orig, tmp_path / "orig.mgz")
    mask = truth_paths(tmp_path, "01", "01")["T1w_brain_mask"]
    found, record = align_orig(tmp_path / "orig.mgz", paths[0], mask, refine=True, seed=1)
    shift, angle = transform_size(found @ np.linalg.inv(move), centre)
    assert shift < 0.2 and angle < 0.2, (shift, angle)
    assert transform_size(move, centre)[0] > 4.0  # the move itself is not small
    assert "Mattes" in record["Method"]


# ---------------------------------------------------------------------------------------------
# the simulator's subject through the sampling stage


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """The tiny preset's T1w, its FreeSurfer-like subject, its surfaces in T1w space as GIFTI
    (FreeSurfer's geometry alone: FreeSurfer ran on this T1w) and a smooth map on a 3 mm grid
    of the T1w world."""
    root = tmp_path_factory.mktemp("surface")
    t1w = write_anatomy(root, PRESETS["tiny"], 0, 1)[0]
    fs = write_freesurfer(root, PRESETS["tiny"], 0, 1, t1w)
    from echoprep.io.freesurfer import tkr_to_scanner

    m = tkr_to_scanner(fs / "mri" / "orig.mgz")
    surfaces = {}
    for hemi, prefix in (("L", "lh"), ("R", "rh")):
        for name, fs_name in (("white", "white"), ("pial", "pial"), ("sphere", "sphere.reg")):
            coords, faces = read_mesh(fs / "surf" / f"{prefix}.{fs_name}")
            if name != "sphere":
                coords = coords @ m[:3, :3].T + m[:3, 3]
            path = root / f"{name}_{hemi}.surf.gii"
            write_surface(coords, faces, path)
            surfaces[f"{name}_{hemi}"] = path
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    affine[:3, 3] = [-80.0, -120.0, -60.0]
    shape = (54, 70, 60)
    ijk = np.indices(shape).reshape(3, -1).T
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    data = _smooth(world).reshape(shape).astype(np.float32)
    maps = {}
    # a noise ceiling as estimated: a smooth field (about ±10 points) and independent voxel
    # scatter of 10 points (docs/noise-ceiling.md §4: single-voxel estimates scatter by several)
    scatter = np.random.default_rng(1).normal(0.0, 10.0, shape)
    nc_map = 50 + 5 * data + scatter
    for name, arr in (("nc", nc_map), ("betas", np.stack([data, -data], axis=-1))):
        maps[name] = root / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(arr.astype(np.float32), affine), maps[name])
        (root / f"{name}.json").write_text(json.dumps({"Units": "%", "Description": name}))
    brain = nib.load(truth_paths(root, "01", "01")["T1w_brain_mask"])
    from echoprep.kernels.rois import resample_nearest

    mask = resample_nearest(np.asarray(brain.dataobj), brain.affine, shape, affine)
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), affine), root / "mask.nii.gz")
    return {"root": root, "surfaces": surfaces, "maps": maps, "mask": root / "mask.nii.gz"}


def test_sampled_maps_are_gifti_that_nilearn_and_nibabel_read(simulated, tmp_path):
    """The stage's files: one data array per beta, NaN only outside the mask, the sidecar
    carries the source's units and the counts; nilearn's load_surf_data and
    plot_surf_stat_map and nibabel read them unchanged; fsaverage5 through sphere.reg (the
    simulator's is fsaverage5's own) equals fsnative here."""
    from nilearn import plotting, surface

    outs = {
        f"{m}_{h}_{s}": tmp_path / f"{m}_{h}_{s}.func.gii"
        for m in ("nc", "betas")
        for h in "LR"
        for s in ("fsnative", "fsaverage5")
    }
    spheres = {h: nilearn_fsaverage5("sphere", h) for h in "LR"}
    run_surface_sample(
        simulated["maps"],
        simulated["mask"],
        simulated["surfaces"],
        outs,
        depths=7,
        template="fsaverage5",
        template_spheres=spheres,
    )
    # nilearn reads several data arrays as an object array (its own choice, fMRIPrep's files too)
    betas = surface.load_surf_data(str(outs["betas_L_fsnative"])).astype(np.float64)
    assert betas.shape == (10242, 2)
    assert len(nib.load(outs["betas_L_fsnative"]).darrays) == 2
    finite = np.isfinite(betas[:, 0])
    assert finite.mean() > 0.8
    assert np.allclose(betas[finite, 0], -betas[finite, 1], atol=1e-5)
    nc = surface.load_surf_data(str(outs["nc_L_fsnative"])).astype(np.float64)
    assert np.allclose(nc, read_gifti_data(outs["nc_L_fsaverage5"]), equal_nan=True)
    side = json.loads(outs["nc_L_fsnative"].with_name("nc_L_fsnative.json").read_text())
    assert side["Units"] == "%" and side["Hemisphere"] == "L" and side["Space"] == "fsnative"
    assert side["VerticesWithoutValue"] == int(np.isnan(nc).sum())
    counts = side["SurfaceSampling"]
    assert counts["OutsideFieldOfView"] + counts["OutsideMask"] == int(np.isnan(nc).sum())
    white = read_mesh(simulated["surfaces"]["white_L"])
    fig = plotting.plot_surf_stat_map(white, np.nan_to_num(nc), hemi="left", engine="matplotlib")
    assert fig is not None


def test_a_label_roi_and_the_same_roi_as_a_mask_give_the_same_noise_ceiling(simulated, tmp_path):
    """A posterior ROI given as FreeSurfer .label files (the vertices whose midthickness lies
    in it) and as a volumetric mask on the grid (the brain voxels its ribbon crosses): the ROI
    table's median noise ceilings agree within their sampling error (twice the standard error
    of their difference, each median's SE by bootstrap over its voxels or vertices)."""
    nc_img = nib.load(simulated["maps"]["nc"])
    nc = np.asarray(nc_img.dataobj)
    shape, affine = nc.shape, nc_img.affine
    ijk = np.indices(shape).reshape(3, -1).T
    world = (ijk @ affine[:3, :3].T + affine[:3, 3]).reshape(*shape, 3)
    brain = np.asarray(nib.load(simulated["mask"]).dataobj) > 0
    in_roi = lambda xyz: (xyz[..., 1] < -60) & (xyz[..., 2] > 0)  # noqa: E731
    # the volumetric ROI: brain voxels of the region that the ribbon crosses
    outs = {f"nc_{h}_fsnative": tmp_path / f"nc_{h}.func.gii" for h in "LR"}
    run_surface_sample(
        {"nc": simulated["maps"]["nc"]}, simulated["mask"], simulated["surfaces"], outs, depths=7
    )
    rois = tmp_path / "rois" / "sub-01" / "visual"
    rois.mkdir(parents=True)
    ribbon_voxels = np.zeros(shape, bool)
    for hemi, prefix in (("L", "lh"), ("R", "rh")):
        white, _ = read_mesh(simulated["surfaces"][f"white_{hemi}"])
        pial, _ = read_mesh(simulated["surfaces"][f"pial_{hemi}"])
        mid = (white + pial) / 2
        vertices = np.flatnonzero(in_roi(mid))
        write_label(vertices, mid[vertices], rois / f"{prefix}.posterior.label")
        pts = depth_points(white[vertices], pial[vertices], 7).reshape(-1, 3)
        idx = np.round(pts @ np.linalg.inv(affine)[:3, :3].T + np.linalg.inv(affine)[:3, 3]).astype(
            int
        )
        ok = np.all((idx >= 0) & (idx < shape), axis=1)
        ribbon_voxels[tuple(idx[ok].T)] = True
    volume_roi = ribbon_voxels & brain & in_roi(world)
    mask_path = tmp_path / "grid" / "visual" / "sub-01_space-T1w_res-3_label-posterior_mask.nii.gz"
    mask_path.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(volume_roi.astype(np.uint8), affine), mask_path)
    found = find_surface_roi_files(tmp_path / "rois", "01")
    assert [(f.category, f.hemi) for f in found] == [("visual", "L"), ("visual", "R")]
    table = tmp_path / "table.tsv"
    nc_space = tmp_path / "sub-01_space-T1w_desc-Noiseceiling_statmap.nii.gz"
    nib.save(nc_img, nc_space)
    run_roi_table(
        nc_space,
        [mask_path],
        table,
        surface_nc={h: outs[f"nc_{h}_fsnative"] for h in "LR"},
        surface_roi_files=[(f.category, f.path) for f in found],
    )
    rows = [line.split("\t") for line in table.read_text().splitlines()]
    assert rows[0][-1] == "space"
    by_space = {r[-1]: r for r in rows[1:]}
    assert set(by_space) == {"T1w", "fsnative"}
    vol_median, surf_median = float(by_space["T1w"][3]), float(by_space["fsnative"][3])
    rng = np.random.default_rng(0)

    def se(values: np.ndarray) -> float:
        return float(np.std([np.median(rng.choice(values, values.size)) for _ in range(300)]))

    vertices = np.concatenate([read_gifti_data(outs[f"nc_{h}_fsnative"]) for h in "LR"])
    labels = np.concatenate(
        [read_surface_roi(f.path, 10242)["posterior"] for f in found]
    ) & np.isfinite(vertices)
    error = np.hypot(se(nc[volume_roi]), se(vertices[labels]))
    print(f"median NC: volume {vol_median:.2f}, surface {surf_median:.2f}, SE {error:.2f}")
    assert abs(vol_median - surf_median) <= 2 * error, (vol_median, surf_median, error)
    assert int(by_space["fsnative"][2]) > 1000 and int(by_space["T1w"][2]) > 1000


# ---------------------------------------------------------------------------------------------
# names, discovery, errors


def test_surface_roi_names_freesurfer_and_bids_like():
    assert surface_roi_name("lh.V1_exvivo.thresh.label").label == "V1exvivothresh"
    assert surface_roi_name("rh.aparc.annot").hemi == "R"
    roi = surface_roi_name("sub-01_hemi-L_space-fsnative_label-FFA_mask.func.gii")
    assert (roi.hemi, roi.label, roi.space) == ("L", "FFA", "fsnative")
    with pytest.raises(FreeSurferError, match="hemisphere in the name"):
        surface_roi_name("V1.label")


def test_a_label_of_another_mesh_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "lh.V1.label"
    write_label(np.array([0, 5, 50]), np.zeros((3, 3)), path)
    with pytest.raises(
        FreeSurferError,
        match=r"lh\.V1\.label: expected a ROI on the subject's fsnative mesh \(12 vertices",
    ):
        read_surface_roi(path, 12)
    assert read_surface_roi(path, 60)["V1"].sum() == 3


def test_freesurfer_problems_name_the_file_and_the_fix(tmp_path):
    folder = write_freesurfer_subject(tmp_path / "sub-01")
    assert check_subject("01", folder, tmp_path).vertices == {"L": 12, "R": 12}
    (folder / "surf" / "rh.pial").unlink()
    write_freesurfer_subject(tmp_path / "other", vertices=6)
    (tmp_path / "other" / "surf" / "lh.white").replace(folder / "surf" / "lh.white")
    with pytest.raises(FreeSurferError) as err:
        check_subject("01", folder, tmp_path)
    text = str(err.value)
    assert "rh.pial: missing" in text and "Fix:" in text


def test_inconsistent_vertex_counts_are_one_error(tmp_path):
    folder = write_freesurfer_subject(tmp_path / "sub-01")
    write_freesurfer_subject(tmp_path / "other", vertices=6)
    (tmp_path / "other" / "surf" / "lh.white").replace(folder / "surf" / "lh.white")
    with pytest.raises(FreeSurferError, match=r"lh\.white 6, lh\.pial 12, lh\.sphere\.reg 12"):
        check_subject("01", folder, tmp_path)


def test_subdivision_keeps_the_old_vertices_and_doubles_edges():
    sphere, faces = read_mesh(nilearn_fsaverage5("sphere", "L"))
    new_faces, (coords,), _ = subdivide(faces, sphere)
    assert np.allclose(coords[: len(sphere)], sphere)
    assert len(coords) == 40962 and len(new_faces) == 4 * len(faces)


def test_surface_files_use_the_registry_names():
    from echoprep.io import outputs

    o = outputs.get("surface.betas")
    key = outputs.session_key("01", "01", "images")
    path = o.path("/r", key, hemi="L", surface_space="fsnative", nordic="nordic", combine="optcom")
    assert path == Path(
        "/r/glmsingle-nordic-optcom/sub-01/ses-01/func/sub-01_ses-01_task-images_hemi-L_"
        "space-fsnative_stat-effect_desc-SingletrialBetas_statmap.func.gii"
    )


def test_annotation_and_gifti_rois(tmp_path):
    """An .annot gives one ROI per named region (unknown left out, names alphanumeric); a GIFTI
    mask one ROI, non-zero inside; both checked against the hemisphere's vertex count."""
    from nibabel import freesurfer as nfs

    from echoprep.io.freesurfer import write_func

    labels = np.array([0, 1, 1, 2, 2, 2, -1, 0])
    ctab = np.array([[25, 5, 25, 0, 0], [220, 20, 10, 0, 1], [20, 220, 10, 0, 2]])
    annot = tmp_path / "lh.aparc.annot"
    nfs.write_annot(str(annot), labels, ctab, [b"unknown", b"V1_exvivo", b"lateral.occipital"])
    rois = read_surface_roi(annot, 8)
    assert set(rois) == {"V1exvivo", "lateraloccipital"}
    assert rois["V1exvivo"].tolist() == [False, True, True, False, False, False, False, False]
    gifti = tmp_path / "sub-01_hemi-R_space-fsnative_label-FFA_mask.func.gii"
    write_func(np.array([0, 0, 1, 1, 0], np.float32), gifti, hemi="R")
    assert read_surface_roi(gifti, 5)["FFA"].sum() == 2
    with pytest.raises(FreeSurferError, match="5 values"):
        read_surface_roi(gifti, 6)
    # found in rois.dir by name, with their category; a space other than fsnative is refused
    (tmp_path / "rois" / "sub-01" / "face").mkdir(parents=True)
    gifti.replace(tmp_path / "rois" / "sub-01" / "face" / gifti.name)
    found = find_surface_roi_files(tmp_path / "rois", "01")
    assert [(f.category, f.hemi) for f in found] == [("face", "R")]
    assert find_surface_roi_files(tmp_path / "rois", "02") == []
    bad = tmp_path / "rois" / "other" / "hemi-L_space-fsaverage_label-V1.label"
    bad.parent.mkdir()
    write_label(np.array([1]), np.zeros((1, 3)), bad)
    with pytest.raises(ValueError, match="expected a surface ROI on the subject's own surface"):
        find_surface_roi_files(tmp_path / "rois", "01")
