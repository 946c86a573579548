"""How much of the session's true responses each variant's planted chain gives back, against
what its published betas carry of them (docs/comparison.md, "Where the bias against NORDIC
comes from").

On a case kept by ``benchmarks/comparison_regimes.py --keep`` (a simulated session whose
workflow ran through the comparison), this script simulates the same session without responses
(the same seeds: the same noise, motion and physiology; ``amplitude_scale`` 1e-9), then runs the
case's own ``planted_run`` commands with the true responses in place of the planted ones: the
``+`` echoes are the session's, the ``-`` echoes the response-free session's, so half their
difference is half the true responses' share of the echoes. Each variant's planted fit then
gives what its chain carries of the true responses, ``N``; what its published betas carry of
them is ``T`` (both: covariance over images of the repeat averages, z-scored per run, with the
true image means, summed over the ROI voxels every variant fitted). ``N / T`` is 1 where the
planted chain treats responses as the real chain does. Two modes:

- ``frozen`` (the workflow's chain): NORDIC's decisions on the data applied to both
  (``echoprep nordic --companions``, a linear map: the kept time courses, or the tangent map
  where the case's design plants responses from other sessions, as the workflow runs it; the
  JSON records the design's ``source``);
- ``secant``: NORDIC decides anew on each (the secant from no response to the data's own:
  what NORDIC keeps of them, its decisions included).

With ``--part image`` the ``+`` echoes are the twin without trial-to-trial variability and the
``-`` echoes the response-free twin: their difference is the image means' responses alone, as
the simulator wrote them (what the workflow's planted responses copy). With ``--part
image-in-data`` the ``+`` echoes are the data and the ``-`` echoes the data less those
responses: the same difference, but NORDIC deciding anew (``secant``) sees the rest of the
data's responses on both sides, as it does in the published run (``secant`` is then exactly
what NORDIC keeps of the image means' responses in the data; ``frozen`` is the map applied to
them, as with ``image``). With ``--part trial``
the twin keeps the image means and leaves out the responses' trial-to-trial variability (the
same draws: the simulator's trial deviations set to 0), so half the difference is half that
variability's share of the echoes: ``N / T`` is then the
share of what the betas carry of the true image means that comes through the trial-to-trial
part of the responses (0 for a linear chain; NORDIC's kept components, which the whole
responses raised, can pass image-locked signal through it).

A case of several sessions (``comparison_regimes.py --sessions N``) is read per session
(``--session``; the response-free twin is simulated with all of them, as the case was). A
case with the spatial stage (``--spatial``) is read where its output grid is the simulator's
(the regime preset without motion: the native grid); the script says so otherwise.

Nothing of the case is overwritten: the planted series and fits go to ``--scratch``.

    .venv/bin/python benchmarks/planted_secant.py --case DIR [--session S]
        [--part all|trial|image|image-in-data] [--mode frozen secant] [--only-planted-voxels]
        [--scratch DIR] [--json FILE]

About 2 minutes per mode for a 4-run case of the regime preset (2-core VM).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from unittest import mock

import nibabel as nib
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from planted_oracle import design_paths  # noqa: E402

from echoprep.io.events import read_trials  # noqa: E402
from echoprep.io.images import atomic_save, float_image, load_image  # noqa: E402
from echoprep.kernels.fidelity import image_means  # noqa: E402
from echoprep.kernels.noiseceiling import zscore_within  # noqa: E402
from echoprep.kernels.planted_fidelity import recovered_z  # noqa: E402
from echoprep.simulate import design as sim_design  # noqa: E402
from echoprep.simulate import simulate_dataset  # noqa: E402
from echoprep.simulate.response import REGIMES  # noqa: E402
from echoprep.simulate.truth import truth_paths  # noqa: E402
from echoprep.variants import ALL_VARIANTS as VARIANTS  # noqa: E402

#: The twins each ``--part`` sends through the chains, ``(+, -)``: ``None`` is the case's own
#: data, a name the part of the responses the twin leaves out (:func:`response_free`).
TWINS: dict[str, tuple[str | None, str]] = {
    "all": (None, "all"),
    "trial": (None, "trial"),
    "image": ("trial", "all"),
    "image-in-data": (None, "image"),
}
#: The folder under ``--scratch`` of each twin.
TWIN_FOLDERS = {
    "all": "bids-noresponse",
    "trial": "bids-notrialvariability",
    "image": "bids-noimageresponse",
}


def func(session: str) -> str:
    """The relative path stem of the simulated subject's series in ``session``."""
    return f"sub-01/ses-{session}/func/sub-01_ses-{session}_task-images_"


def _img(path: Path | str) -> np.ndarray:
    return np.asarray(nib.load(str(path)).dataobj, np.float64)


def response_free(case: Path, out: Path, part: str = "all") -> Path:
    """Simulate the case's sessions (same seeds) into ``out`` without the part of the
    responses ``part`` names: ``all`` (``amplitude_scale`` 1e-9: no response), or ``trial``
    (the trial-to-trial variability set to 0, the image means kept: the same draws, so the
    data minus this twin is the responses' trial-to-trial part alone), or ``image`` (the
    magnitude echoes of the data less the image means' responses, the ``trial`` twin less the
    ``all`` one, next to them in ``out``'s folder: the data with its trial-to-trial part, noise,
    motion and physiology, without the image means)."""
    if (out / "dataset_description.json").exists():
        return out
    if part == "image":
        with_means = response_free(case, out.parent / TWIN_FOLDERS["trial"], "trial")
        without = response_free(case, out.parent / TWIN_FOLDERS["all"], "all")
        for mag in sorted((case / "bids").rglob("*_part-mag_bold.nii.gz")):
            rel = mag.relative_to(case / "bids")
            img = nib.load(str(mag))
            means = _img(with_means / rel) - _img(without / rel)
            target = out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            data = np.asarray(img.dataobj, np.float64)
            atomic_save(float_image((data - means).astype(np.float32), img), target)
        shutil.copy(case / "bids" / "dataset_description.json", out / "dataset_description.json")
        return out
    sim = json.loads((case / "bids" / "dataset_description.json").read_text())
    sim = sim["echoprepSimulation"]
    model = REGIMES[sim.get("response", {}).get("name", "default")]
    if part == "all":
        model = dataclasses.replace(model, amplitude_scale=1e-9 * model.amplitude_scale)

    def no_trial_noise(model: object, white: np.ndarray, smooth: object) -> np.ndarray:
        return np.zeros_like(white)  # drawn as always, then not used

    with contextlib.ExitStack() as stack:
        if part == "trial":
            stack.enter_context(mock.patch.object(sim_design, "trial_noise", no_trial_noise))
        simulate_dataset(
            out,
            sim["preset"],
            seed=sim["seed"],
            subjects=1,
            sessions=sim.get("sessions", 1),
            runs=sim["runs"],
            shared_images=sim.get("shared_images", False),
            motion=sim["motion"],
            fieldmap=sim["fieldmap"],
            response=model,
        )
    return out


def dry_commands(case: Path, session: str) -> tuple[list[str], list[str]]:
    """The case's planted_run and planted_glm shell commands of ``session`` (a forced dry
    run)."""
    stem = func(session)
    targets = [
        str(case / f"results/glmsingle-{v}/{stem}stat-effect_desc-plantedBetas_statmap.nii.gz")
        for v in VARIANTS
    ]
    cmd = [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), *targets]
    cmd += ["--configfile", str(case / "config.yaml"), "--cores", "1", "-n", "-p"]
    cmd += ["--rerun-triggers", "mtime", "--forcerun", "planted_run"]
    text = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    runs = re.findall(r"Shell command: \( (.*?) \) 2> \S+", text)
    glms = re.findall(r"Shell command: (python -m echoprep glm-planted .*?) 2> \S+", text)
    return runs, glms


def _words(step: str, flag: str) -> list[str]:
    return re.search(flag + r" (.*?)(?: --|$)", step).group(1).split()  # type: ignore[union-attr]


def planted_voxels(case: Path, session: str) -> np.ndarray:
    """The ``(x, y, z)`` mask of the voxels the case's design of ``session`` plants."""
    with np.load(design_paths(case)[session]) as d:
        mask = np.zeros(tuple(int(n) for n in d["shape"]), bool)
        mask[tuple(np.asarray(d["voxels"]).T)] = True
    return mask


def run_chains(
    case: Path,
    free: Path,
    scratch: Path,
    mode: str,
    session: str = "01",
    top: Path | None = None,
    only_planted: bool = False,
) -> dict[str, Path]:
    """Each variant's planted fit of the true responses (module docstring); returns its betas
    per variant, in the units of half the true responses (the planted runs' half difference
    of ``+`` = the data, or the twin ``top``, and ``-`` = the twin ``free``). With
    ``only_planted`` the ``+`` echoes differ from ``-`` only in the voxels the design plants
    (:func:`planted_voxels`): the true responses cut at the analysis mask's edge, as the
    workflow's planting is."""
    work = str(case / "work")
    runs, glms = dry_commands(case, session)
    inside = planted_voxels(case, session)[..., None] if only_planted else None
    env = dict(os.environ, PYTHONPATH=str(ROOT / "workflow"))
    py = f"{sys.executable} -m"
    for command in runs:
        steps = [
            s.replace("python -m", py).replace(work, str(scratch)) for s in command.split(" && ")
        ]
        k = next(i for i, s in enumerate(steps) if " planted echoes " in s)
        echoes = steps[k]
        mags = _words(echoes, "--mag")
        plus, minus = _words(echoes, "--plus"), _words(echoes, "--minus")
        diff = _words(echoes, "--difference")
        subprocess.run(steps[0], shell=True, check=True)
        for e, mag in enumerate(mags):
            img = load_image(mag, "magnitude series", ndim=4)
            data = np.asarray(img.dataobj, np.float32)
            if top is not None:
                data = _img(top / Path(mag).relative_to(case / "bids")).astype(np.float32)
            none = _img(free / Path(mag).relative_to(case / "bids")).astype(np.float32)
            if inside is not None:
                data = np.where(inside, data, none)
            for path, arr in ((plus[e], data), (minus[e], none), (diff[e], (data - none) / 2)):
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                atomic_save(float_image(arr, img), path)
        rest = steps[k + 1 :]
        if mode == "secant":
            # NORDIC on each side with its own decisions instead of the data's
            n = next(i for i, s in enumerate(rest) if " --companions " in s)
            nordic = rest[n]
            head = nordic.split(" --companions ")[0]
            outs = _words(nordic, "--out-companions")
            tail = "--options-json" + nordic.split("--options-json", 1)[1]
            # the tangent map is a map of the data's decisions: no map when NORDIC decides anew
            tail = re.sub(r" --companion-map (\$\(.*?\)|\S+)", "", tail)
            sides = []
            for side, out in ((plus, outs[: len(mags)]), (minus, outs[len(mags) :])):
                h = head.replace("--mag " + " ".join(mags), "--mag " + " ".join(side))
                sides.append(f"{h} --out {' '.join(f'bold={o}' for o in out)} {tail}")
            rest[n : n + 1] = sides
        subprocess.run(" && ".join(rest), shell=True, check=True, env=env, cwd=ROOT)
    fits = {}
    for command in glms:
        found = re.search(r"glmsingle-([a-z]+-[a-z]+)/", command)
        assert found is not None
        variant = found.group(1)
        fits[variant] = scratch / f"{variant}_plantedBetas.nii.gz"
        command = re.sub(r" --out .*$", f" --out betas={fits[variant]}", command)
        command = command.replace("python -m", py).replace(work, str(scratch))
        subprocess.run(command, shell=True, check=True, env=env, cwd=ROOT)
    return fits


def transfer(case: Path, fits: dict[str, Path], session: str = "01") -> dict[str, dict[str, float]]:
    """``T``, ``N`` and ``N / T`` per variant (module docstring)."""
    truth = truth_paths(case / "bids", "01", session)
    stem = func(session)
    keep = _img(truth["active_mask"]) > 0
    rois = case / "results/rois/sub-01/visual"
    keep &= _img(next(rois.glob("*_label-visuallyResponsive_mask.nii.gz"))) > 0
    for v in VARIANTS:
        keep &= _img(case / f"results/glmsingle-{v}/{stem}desc-GLMsingle_mask.nii.gz") > 0
    true_means = _img(truth["image_means"])[keep]
    images = pd.read_csv(truth["images"], sep="\t", dtype={"label": str})["label"].to_numpy()
    trials = read_trials(
        case / f"results/glmsingle-raw-single/{stem}desc-SingletrialBetas_trials.tsv"
    )
    runs = trials["run"].astype(str).to_numpy()
    labels = trials["label"].astype(str).to_numpy()
    n = true_means.shape[1]

    def cov_with_truth(x: np.ndarray) -> float:
        means = image_means(x, labels, images)
        a = means - means.mean(axis=1, keepdims=True)
        b = true_means - true_means.mean(axis=1, keepdims=True)
        return float((a * b).sum() / n)

    out = {}
    for v in VARIANTS:
        betas = _img(
            case / f"results/glmsingle-{v}/{stem}stat-effect_desc-SingletrialBetas_statmap.nii.gz"
        )[keep]
        t = cov_with_truth(zscore_within(betas, runs))
        got = cov_with_truth(recovered_z(_img(fits[v])[keep], betas, runs, 0.5))
        out[v] = {"T": round(t, 3), "N": round(got, 3), "ratio": round(got / t, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--case", type=Path, required=True, help="a case kept by comparison_regimes")
    ap.add_argument("--mode", nargs="+", default=["frozen", "secant"], choices=["frozen", "secant"])
    ap.add_argument("--scratch", type=Path, default=None, help="default: <case>_secant")
    ap.add_argument("--session", default="01", help="comparison session label (default 01)")
    ap.add_argument(
        "--part",
        default="all",
        choices=list(TWINS),
        help="the part of the true responses sent through the chains: all (the default), "
        "trial (their trial-to-trial variability alone, the image means left out), image "
        "(the image means' responses alone: the twin without trial variability minus the "
        "response-free twin) or image-in-data (the same, as the data minus the data without "
        "them)",
    )
    ap.add_argument(
        "--only-planted-voxels",
        action="store_true",
        help="the true responses only in the voxels the case's design plants (cut at the "
        "analysis mask's edge, as the workflow's planted responses are)",
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    case = args.case.resolve()
    truth = truth_paths(case / "bids", "01", args.session)["active_mask"]
    stem = func(args.session)
    grid = case / f"results/glmsingle-raw-single/{stem}desc-GLMsingle_mask.nii.gz"
    want, got = nib.load(truth), nib.load(grid)
    if want.shape[:3] != got.shape[:3] or not np.allclose(want.affine, got.affine, atol=1e-3):
        raise SystemExit(
            f"{grid}: expected the simulator's truth grid {want.shape[:3]} (a case without "
            f"spatial preprocessing, or one whose output grid is the native one, without "
            f"motion); found {got.shape[:3]} with another affine or shape"
        )
    scratch = (args.scratch or case.with_name(case.name + "_secant")).resolve()
    plus, minus = TWINS[args.part]
    free = response_free(case, scratch / TWIN_FOLDERS[minus], minus)
    top = None if plus is None else response_free(case, scratch / TWIN_FOLDERS[plus], plus)
    result = {}
    for mode in args.mode:
        folder = scratch / mode
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        fits = run_chains(case, free, folder, mode, args.session, top, args.only_planted_voxels)
        result[mode] = transfer(case, fits, args.session)
        print(f"{mode}: N / T (1: the planted chain carries the true responses as the betas do)")
        for v, r in result[mode].items():
            print(f"  {v:<16} T {r['T']:9.3f}  N {r['N']:9.3f}  N / T {r['ratio']:.3f}")
    if args.json:
        with np.load(design_paths(case)[args.session]) as d:
            source = str(d["source"]) if "source" in d.files else "session"
        out = {"case": case.name, "session": args.session, "source": source, "part": args.part}
        out["only_planted_voxels"] = args.only_planted_voxels
        out |= result
        args.json.write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
