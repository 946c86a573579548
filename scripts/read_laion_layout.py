#!/usr/bin/env python
"""Read echoprep's outputs the way the LAION-fMRI data loader (``laion_fmri``) does.

The loader reads below ``<root>/derivatives/`` (echoprep's ``output_dir``), and only these
paths (``<task>``: ``images`` in LAION-fMRI, ``<space>``: ``T1w``)::

    glmsingle-tedana/sub-XX/ses-YY/func/sub-XX_ses-YY_task-<task>_space-<space>_stat-effect_desc-SingletrialBetas_statmap.nii.gz
    glmsingle-tedana/sub-XX/ses-YY/func/sub-XX_ses-YY_task-<task>_space-<space>_desc-Noiseceiling_statmap.nii.gz
    glmsingle-tedana/sub-XX/ses-YY/func/sub-XX_ses-YY_task-<task>_desc-SingletrialBetas_trials.tsv
    glmsingle-tedana/sub-XX/sub-XX_task-<task>_space-<space>_desc-meanR2gt15mask_mask.nii.gz
    glmsingle-tedana/sub-XX/sub-XX_task-<task>_space-<space>_desc-Noiseceiling<Allrep|Nrep>_statmap.nii.gz
    atlases/sub-XX/rois/<roi>.nii.gz

This script uses nothing of echoprep (numpy, nibabel and pandas only) and nothing but these
paths: subjects are the ``sub-*`` folders of ``glmsingle-tedana/``, sessions their ``ses-*``
folders. Per subject and session it prints the betas as trials x voxels inside the mask, the
trials with a label, the session noise ceiling inside the mask and, per subject, the subject
noise ceilings and the ROIs with their voxel counts. A missing path ends it with exit status
1 and a message naming the path.

Usage::

    python scripts/read_laion_layout.py RESULTS [--task images] [--space T1w] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd


class LayoutError(Exception):
    """A path the loader reads is missing or unusable."""


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise LayoutError(
            f"missing {what}: expected {path}. Is publish.laion on, and did the workflow finish?"
        )
    return path


def _load(path: Path, what: str) -> np.ndarray:
    return np.asarray(nib.load(_need(path, what)).dataobj)


def _stats(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {
        "min": float(values.min()),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }


def read_subject(root: Path, subject: str, task: str, space: str) -> dict[str, Any]:
    """Everything the loader reads for one subject (``subject`` without ``sub-``)."""
    glm = root / "glmsingle-tedana" / f"sub-{subject}"
    stem = f"sub-{subject}_task-{task}_space-{space}"
    mask = _load(glm / f"{stem}_desc-meanR2gt15mask_mask.nii.gz", "meanR2gt15mask") > 0
    n_voxels = int(mask.sum())
    out: dict[str, Any] = {"subject": subject, "mask_voxels": n_voxels, "sessions": {}}

    ceilings = {}
    pattern = re.compile(rf"{re.escape(stem)}_desc-Noiseceiling(Allrep|[0-9]+rep)_statmap\.nii\.gz")
    for path in sorted(glm.glob(f"{stem}_desc-Noiseceiling*_statmap.nii.gz")):
        m = pattern.fullmatch(path.name)
        if m:
            values = _load(path, "subject noise ceiling")
            ceilings[m.group(1)] = _stats(values[mask]) if n_voxels else {}
    if "Allrep" not in ceilings:
        _need(glm / f"{stem}_desc-NoiseceilingAllrep_statmap.nii.gz", "subject noise ceiling")
    out["noise_ceilings"] = ceilings

    sessions = sorted(p.name[len("ses-") :] for p in glm.glob("ses-*") if p.is_dir())
    if not sessions:
        raise LayoutError(f"missing sessions: expected ses-* folders in {glm}")
    for ses in sessions:
        func = glm / f"ses-{ses}" / "func"
        prefix = f"sub-{subject}_ses-{ses}_task-{task}"
        betas = _load(
            func / f"{prefix}_space-{space}_stat-effect_desc-SingletrialBetas_statmap.nii.gz",
            "single-trial betas",
        )
        if betas.ndim != 4 or betas.shape[:3] != mask.shape:
            raise LayoutError(
                f"betas of sub-{subject} ses-{ses}: expected 4D on the mask's grid "
                f"{mask.shape}; found shape {betas.shape}"
            )
        matrix = betas[mask].T  # trials x voxels
        trials = pd.read_csv(
            _need(func / f"{prefix}_desc-SingletrialBetas_trials.tsv", "trials table"),
            sep="\t",
            dtype={"label": str},
        )
        if "label" not in trials.columns:
            raise LayoutError(f"trials table of sub-{subject} ses-{ses}: no column 'label'")
        nc = _load(func / f"{prefix}_space-{space}_desc-Noiseceiling_statmap.nii.gz", "session NC")
        out["sessions"][ses] = {
            "betas_shape": list(matrix.shape),
            "trials": len(trials),
            "labelled_trials": int(trials["label"].notna().sum()),
            "labels": int(trials["label"].nunique()),
            "noise_ceiling": _stats(nc[mask]) if n_voxels else {},
        }

    rois_dir = root / "atlases" / f"sub-{subject}" / "rois"
    rois = sorted(rois_dir.glob("*.nii.gz"))
    if not rois:
        raise LayoutError(f"missing ROIs: expected <roi>.nii.gz files in {rois_dir}")
    out["rois"] = {}
    for path in rois:
        roi = _load(path, "ROI mask") > 0
        name = path.name[: -len(".nii.gz")]
        out["rois"][name] = {"voxels": int(roi.sum()), "in_mask": int((roi & mask).sum())}
    return out


def read_layout(root: Path, task: str, space: str) -> list[dict[str, Any]]:
    """Every subject of ``root/glmsingle-tedana``."""
    glm = root / "glmsingle-tedana"
    subjects = sorted(p.name[len("sub-") :] for p in glm.glob("sub-*") if p.is_dir())
    if not subjects:
        raise LayoutError(f"missing subjects: expected sub-* folders in {glm}")
    return [read_subject(root, sub, task, space) for sub in subjects]


def _fmt(stats: dict[str, float]) -> str:
    if not stats:
        return "no voxel in the mask"
    return f"median {stats['median']:.1f} % (range {stats['min']:.1f}-{stats['max']:.1f} %)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the derivatives folder (echoprep's output_dir)")
    parser.add_argument("--task", default="images")
    parser.add_argument("--space", default="T1w")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary here")
    args = parser.parse_args(argv)
    try:
        found = read_layout(args.root, args.task, args.space)
    except LayoutError as exc:
        print(f"read_laion_layout: {exc}", file=sys.stderr)
        return 1
    for sub in found:
        print(f"sub-{sub['subject']}: meanR2gt15mask {sub['mask_voxels']} voxels")
        for ses, info in sub["sessions"].items():
            n_trials, n_vox = info["betas_shape"]
            print(
                f"  ses-{ses}: betas {n_trials} trials x {n_vox} voxels; "
                f"{info['labelled_trials']} trials with a label ({info['labels']} labels); "
                f"noise ceiling {_fmt(info['noise_ceiling'])}"
            )
        for name, stats in sub["noise_ceilings"].items():
            print(f"  subject noise ceiling {name}: {_fmt(stats)}")
        for name, roi in sub["rois"].items():
            print(f"  ROI {name}: {roi['voxels']} voxels ({roi['in_mask']} in the mask)")
    if args.json:
        args.json.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
