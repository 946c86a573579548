"""Cost of the surface step at LAION-fMRI size (docs/surface.md): CPU-seconds and peak memory.

One simulated participant at the laion preset (1 mm T1w) with its FreeSurfer-like subject
(fsaverage5 subdivided twice: 163,842 vertices per hemisphere, 327,684 in all, about
LAION's ~300,000 fsnative vertices), then the two commands the rules run, each its own metered
process (CPU = user + system of the process and its children, peak = its largest resident
memory, ``ru_maxrss``):

1. ``surface anatomy`` (rule ``surface_anatomy``, once per subject): the rigid refinement of
   ``orig.mgz`` to the T1w and the GIFTI surfaces;
2. ``surface sample`` (rule ``surface_session``, per GLM fit): a session's single-trial betas
   (``--trials``, default 1,050; noise inside the brain, 0 outside, on a 1.8 mm T1w-aligned
   grid of the brain's box: LAION's functional grid), its noise ceiling and R² to fsnative and
   to a template of fsaverage's density (the subject's own sphere, 163,842 vertices, stands in
   for fsaverage, which is not shipped).

The inputs are made in a child process (:func:`prepare`), so that the metered commands start
from a small parent (a child's ``ru_maxrss`` starts at its parent's resident size at the fork);
the simulated subject and the maps in ``--dir`` are reused when present.

Printed: per step CPU-s, wall s and peak GiB, and the step against its target: the surface
step per GLM fit "well under the GLM's own time" (README cost table: ``glm`` 370 CPU-s per
fit at LAION size), here at most half of it, 185 CPU-s.

    .venv/bin/python benchmarks/surface.py [--trials 1050] [--dir D] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from echoprep.io.freesurfer import nilearn_fsaverage5, read_mesh, write_surface
from echoprep.kernels.rois import resample_nearest
from echoprep.simulate.anatomy_files import write_anatomy
from echoprep.simulate.freesurfer import subdivide, write_freesurfer
from echoprep.simulate.presets import PRESETS
from echoprep.simulate.truth import truth_paths
from echoprep.simulate.writer import NiftiWriter, nifti_header

#: The GLM's CPU-s per fit at LAION size (README cost table) and the target share of it.
GLM_CPU_S = 370.0
TARGET_SHARE = 0.5
VOXEL_MM = 1.8


def _metered(args: list[str]) -> dict[str, float]:
    """Run ``python -m echoprep <args>``; its wall s, CPU s and peak GiB (its own rusage,
    ``os.wait4``)."""
    t0 = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "echoprep", *args], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"echoprep {' '.join(args[:2])} failed ({proc.returncode})")
    wall = time.perf_counter() - t0
    cpu = usage.ru_utime + usage.ru_stime
    return {
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_gib": round(usage.ru_maxrss / 2**20, 2),
    }


def _grid(mask_path: Path) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    """A 1.8 mm grid on the T1w's axes around the brain (5 mm margin) and the brain on it."""
    img = nib.load(mask_path)
    brain = np.asarray(img.dataobj) > 0
    idx = np.argwhere(brain)
    lo = img.affine[:3, :3] @ idx.min(axis=0) + img.affine[:3, 3] - 5
    hi = img.affine[:3, :3] @ idx.max(axis=0) + img.affine[:3, 3] + 5
    shape = tuple(int(n) for n in np.ceil((hi - lo) / VOXEL_MM) + 1)
    affine = np.diag([VOXEL_MM, VOXEL_MM, VOXEL_MM, 1.0])
    affine[:3, 3] = lo
    on_grid = resample_nearest(brain.astype(np.uint8), img.affine, shape, affine) > 0
    return shape, affine, on_grid  # type: ignore[return-value]


def prepare(root: Path, trials: int) -> None:
    """The simulated subject (reused when in ``root``), the GLM's maps of one session on a
    1.8 mm grid and the template spheres (module docstring)."""
    t0 = time.perf_counter()
    fs = root / "bids" / "derivatives" / "freesurfer" / "sub-01"
    if not (fs / "surf" / "rh.inflated").is_file():
        t1w = write_anatomy(root / "bids", PRESETS["laion"], 0, 1)[0]
        write_freesurfer(root / "bids", PRESETS["laion"], 0, 1, t1w)
        print(f"simulated T1w and FreeSurfer subject: {time.perf_counter() - t0:.0f} s")
    betas = root / "betas.nii.gz"
    if betas.is_file() and nib.load(betas).shape[3:] == (trials,):
        print(f"reusing {betas} and the maps beside it")
        return
    mask_t1 = truth_paths(root / "bids", "01", "01")["T1w_brain_mask"]
    shape, affine, brain = _grid(mask_t1)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    with NiftiWriter(
        root / "betas.nii.gz", nifti_header((*shape, trials), affine, np.float32)
    ) as w:
        for start in range(0, trials, 50):
            n = min(50, trials - start)
            block = np.zeros((n, *shape), np.float32)
            block[:, brain] = rng.standard_normal((n, int(brain.sum())), np.float32)
            w.write(block)
    for name in ("nc", "r2"):
        data = np.where(brain, 30.0, 0.0).astype(np.float32)
        nib.save(nib.Nifti1Image(data, affine), root / f"{name}.nii.gz")
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), affine), root / "mask.nii.gz")
    # the template: fsaverage5's sphere subdivided twice (fsaverage's 163,842 vertices)
    for hemi in "LR":
        sphere, faces = read_mesh(nilearn_fsaverage5("sphere", hemi))
        for _ in range(2):
            faces, _, sphere = subdivide(faces, sphere=sphere)
        assert sphere is not None
        write_surface(sphere, faces, root / f"template_{hemi}.surf.gii")
    print(
        f"grid {shape} ({int(brain.sum())} brain voxels), {trials} betas written: "
        f"{time.perf_counter() - t0:.0f} s"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=1050)
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    root = args.dir or Path(tempfile.mkdtemp(prefix="echoprep-surface-"))
    root.mkdir(parents=True, exist_ok=True)
    child = multiprocessing.get_context("spawn").Process(target=prepare, args=(root, args.trials))
    child.start()
    child.join()
    if child.exitcode:
        raise SystemExit(f"preparing the inputs failed ({child.exitcode})")
    fs = root / "bids" / "derivatives" / "freesurfer" / "sub-01"
    t1w = next((root / "bids" / "sub-01").rglob("*_T1w.nii.gz"))
    mask_t1 = truth_paths(root / "bids", "01", "01")["T1w_brain_mask"]
    out = root / "out"
    out.mkdir(exist_ok=True)
    surf = [
        f"{p}.{n}={fs / 'surf' / f'{p}.{n}'}"
        for p in ("lh", "rh")
        for n in ("white", "pial", "sphere.reg")
    ]
    names = ("white", "pial", "midthickness", "sphere")
    outs = {f"{n}_{h}": out / f"{n}_{h}.surf.gii" for n in names for h in "LR"}
    anatomy = _metered(
        ["surface", "anatomy", "--orig", str(fs / "mri" / "orig.mgz"), "--surf", *surf,
         "--t1w", str(t1w), "--brain-mask", str(mask_t1), "--threads", "1",
         "--out", f"xfm={out / 'xfm.txt'}", *(f"{k}={v}" for k, v in outs.items())]
    )  # fmt: skip
    maps = {name: root / f"{name}.nii.gz" for name in ("betas", "nc", "r2")}
    templates = {h: root / f"template_{h}.surf.gii" for h in "LR"}
    shape = nib.load(maps["nc"]).shape
    sample_out = [
        f"{m}_{h}_{s}={out / f'{m}_{h}_{s}.func.gii'}"
        for m in ("betas", "nc", "r2")
        for h in "LR"
        for s in ("fsnative", "fsaverage")
    ]
    sample = _metered(
        [
            "surface",
            "sample",
            "--map",
            *(f"{k}={v}" for k, v in maps.items()),
            "--mask",
            str(root / "mask.nii.gz"),
            "--surfaces",
            *(f"{n}_{h}={outs[f'{n}_{h}']}" for n in ("white", "pial", "sphere") for h in "LR"),
            "--template",
            "fsaverage",
            "--template-sphere",
            *(f"{h}={p}" for h, p in templates.items()),
            "--threads",
            "1",
            "--out",
            *sample_out,
        ]
    )
    vertices = sum(len(read_mesh(outs[f"white_{h}"])[0]) for h in "LR")
    size = sum(
        (out / f"betas_{h}_{s}.func.gii").stat().st_size
        for h in "LR"
        for s in ("fsnative", "fsaverage")
    )
    target = TARGET_SHARE * GLM_CPU_S
    rows = {"surface_anatomy (per subject)": anatomy, "surface_session (per GLM fit)": sample}
    gib = size / 2**30
    print(
        f"\n{vertices} fsnative vertices, {args.trials} betas; betas on the surfaces {gib:.2f} GiB"
    )
    print(f"{'step':32s} {'CPU s':>8s} {'wall s':>8s} {'peak GiB':>9s}")
    for name, r in rows.items():
        print(f"{name:32s} {r['cpu_s']:8.1f} {r['wall_s']:8.1f} {r['peak_gib']:9.2f}")
    verdict = "met" if sample["cpu_s"] <= target else "NOT met"
    share = f"{TARGET_SHARE:.0%} of the GLM's {GLM_CPU_S:.0f}"
    print(f"target: surface_session <= {target:.0f} CPU-s ({share}): {verdict}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "vertices": vertices,
                    "trials": args.trials,
                    "grid": list(shape),
                    "betas_gib": size / 2**30,
                    "steps": rows,
                    "target_cpu_s": target,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
