"""Issue 41's acceptance: the tiny demo's outputs read with the standard BIDS readers.

- pybids indexes the raw dataset and every derivative folder at once (``validate=True``), finds
  the outputs by ``desc``, ``suffix`` and ``space``, reads a BOLD derivative's metadata, and no
  table's column description turns up as an entity's value (docs/glm.md §11, "Column names and
  pybids");
- nilearn finds the confounds of every BOLD derivative beside it: ``load_confounds`` reads
  those of the per-echo series (the only name it takes, below), its lookup finds them for the
  single-echo, optimally combined and ICA-denoised ones, and ``first_level_from_bids`` models
  the optimally combined series with them (docs/outputs.md, "Reading the outputs with pybids and
  nilearn").
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

#: The confound columns of the fMRIPrep 24-parameter motion model (nilearn's motion="full").
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
FULL_MOTION = [
    f"{m}{s}" for m in MOTION for s in ("", "_derivative1", "_power2", "_derivative1_power2")
]


def _derivative_folders(demo) -> list[Path]:
    """Every derivative folder of the demo: the workflow's and the simulator's truth."""
    found = [p.parent for p in demo["results"].glob("*/dataset_description.json")]
    found += [p.parent for p in (demo["bids"] / "derivatives").glob("*/dataset_description.json")]
    return sorted(found)


def _bold_derivatives(demo) -> dict[str, list[Path]]:
    """The BOLD series a user would model, by kind (globbed: independent of the registry)."""
    res = demo["results"]
    kinds = {
        "echo": sorted(res.glob("preproc-*/sub-*/ses-*/func/*_echo-*_desc-preproc_bold.nii.gz")),
        **{
            c: sorted(res.glob(f"combine-*/sub-*/ses-*/func/*_desc-{c}_bold.nii.gz"))
            for c in ("single", "optcom", "denoised")
        },
    }
    assert all(kinds.values()), {k: len(v) for k, v in kinds.items()}
    return kinds


def _folder(demo, path: str) -> str:
    """The derivative folder (below ``results``) of a file."""
    return Path(path).relative_to(demo["results"]).parts[0]


@pytest.fixture(scope="module")
def layout(demo):
    from bids import BIDSLayout

    folders = [str(p) for p in _derivative_folders(demo)]
    return BIDSLayout(str(demo["bids"]), derivatives=folders, validate=True)


def test_pybids_indexes_the_raw_dataset_and_every_derivative_folder(demo, layout):
    folders = _derivative_folders(demo)
    assert len(folders) > 10 and set(layout.derivatives.keys()) == {p.name for p in folders}
    # a query by desc, suffix and space gets exactly the files on disk
    optcom = layout.get(desc="optcom", suffix="bold", space="T1w", extension=".nii.gz")
    assert sorted(Path(f.path) for f in optcom) == _bold_derivatives(demo)["optcom"]
    echoes = layout.get(desc="preproc", suffix="bold", echo=2, extension=".nii.gz")
    assert {_folder(demo, f.path) for f in echoes} == {"preproc-raw", "preproc-nordic"}
    trials = layout.get(desc="SingletrialBetas", suffix="trials", extension=".tsv")
    on_disk = sorted(demo["results"].glob("*/sub-*/ses-*/func/*_desc-SingletrialBetas_trials.tsv"))
    assert sorted(Path(f.path) for f in trials) == on_disk
    betas = layout.get(desc="SingletrialBetas", suffix="statmap", space="T1w", extension=".nii.gz")
    on_disk = sorted(
        demo["results"].glob("*/sub-*/ses-*/func/*_desc-SingletrialBetas_statmap.nii.gz")
    )
    assert sorted(Path(f.path) for f in betas) == on_disk
    confounds = layout.get(desc="confounds", suffix="timeseries", extension=".tsv")
    assert {_folder(demo, f.path) for f in confounds} == {
        "spatial",
        "combine-raw",
        "combine-nordic",
        "preproc-raw",
        "preproc-nordic",
    }
    # the metadata of a BOLD derivative, with its sidecar's TR
    raw_tr = json.loads(next(demo["bids"].rglob("*_echo-1_part-mag_bold.json")).read_text())
    metadata = layout.get_metadata(optcom[0].path)
    assert metadata["RepetitionTime"] == pytest.approx(raw_tr["RepetitionTime"])


def test_no_column_description_is_an_entity_value(demo, layout):
    """A TSV sidecar's column keys are metadata to pybids: none may be an entity name (nor its
    plural, which ``get_<entity>s()`` resolves), or its description lands among the entity's
    values. ``label`` (the condition of a trial or image: the LAION-fMRI loader reads the
    trials table's by that name) is the documented exception: no table's file name has a
    ``label-`` entity, so it clashes with nothing, and ``get_labels()`` stays clean."""
    assert layout.get_subjects() == ["01"]
    assert layout.get_sessions() == sorted(p.name[4:] for p in demo["bids"].glob("sub-01/ses-*"))
    assert layout.get_runs() == [1, 2]
    assert layout.get_tasks() == ["images"]
    import bids

    config = Path(bids.__file__).parent / "layout" / "config"
    names = set()
    for part in ("bids.json", "derivatives.json"):
        names |= {e["name"] for e in json.loads((config / part).read_text())["entities"]}
    for entity in ("subject", "session", "run", "task", "echo", "space", "desc", "roi", "label"):
        values = layout.get(return_type="id", target=entity)
        assert not [v for v in values if isinstance(v, dict | list)], entity
    for entity in ("echo", "space", "desc", "label"):
        assert layout.get(return_type="id", target=entity), entity
    assert "GM" in layout.get_labels()  # label-GM_probseg: file names, not the label columns
    names |= {f"{n}s" for n in names} | {"echoes"}
    clashes = {}
    for folder in [demo["bids"], *_derivative_folders(demo)]:
        for side in folder.rglob("*.json"):
            if side.name == "dataset_description.json" or not side.with_suffix(".tsv").exists():
                continue
            keys = set(json.loads(side.read_text())) & names - {"label"}
            if keys:
                clashes[str(side)] = sorted(keys)
    assert clashes == {}


def test_load_confounds_finds_the_confounds_of_every_bold_derivative(demo):
    """nilearn looks for the confounds beside the image, named from its entities without
    desc (and, dropping further entities, without space and echo). For the per-echo series
    (``desc-preproc``) its public ``load_confounds`` does that and returns fMRIPrep's
    24-parameter motion model and the cosine basis; nilearn 0.12.1 takes no other desc by name
    (:func:`test_load_confounds_reads_only_desc_preproc_names`), so for the single-echo,
    optimally combined and ICA-denoised series the same lookup is checked through the function
    ``load_confounds`` calls."""
    from nilearn.interfaces.fmriprep import load_confounds
    from nilearn.interfaces.fmriprep.load_confounds_utils import _get_file_name

    for kind, images in _bold_derivatives(demo).items():
        for img in images:
            prefix = img.name.split("_echo-")[0].split("_space-")[0]
            expected = img.parent / f"{prefix}_desc-confounds_timeseries.tsv"
            spatial = demo["results"] / "spatial" / img.relative_to(img.parents[3]).parent
            assert expected.read_bytes() == (spatial / expected.name).read_bytes()
            side = json.loads(expected.with_suffix(".json").read_text())
            assert side["Sources"] and "RepetitionTime" in side
            n_volumes = nib.load(img).shape[3]
            if kind == "echo":
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    confounds, sample_mask = load_confounds(
                        str(img), strategy=("motion", "high_pass"), motion="full"
                    )
                assert sample_mask is None and confounds.shape[0] == n_volumes
                assert set(FULL_MOTION) <= set(confounds.columns)
                assert any(c.startswith("cosine") for c in confounds.columns)
                assert np.isfinite(confounds.to_numpy()).all()
            else:
                # the lookup load_confounds makes after its name check (a private function:
                # nilearn has no public one; the name check is the next test)
                assert Path(_get_file_name(str(img))) == expected
                assert len(pd.read_csv(expected, sep="\t")) == n_volumes


def test_load_confounds_reads_only_desc_preproc_names(demo):
    """nilearn 0.12.1's ``load_confounds`` accepts a NIfTI only under fMRIPrep's name
    ``*_desc-preproc_bold.nii.gz`` (its ``_check_images``) and refuses the combined series'
    names before it looks for a confounds file. When this fails, nilearn has lifted the
    restriction: test those series in the test above with ``load_confounds`` itself and
    update the README ("Reading the outputs with pybids and nilearn")."""
    from nilearn.interfaces.fmriprep import load_confounds

    optcom = _bold_derivatives(demo)["optcom"][0]
    with pytest.raises(ValueError, match="Invalid file type"):
        load_confounds(str(optcom), strategy=("motion",), motion="basic")


def test_first_level_from_bids_models_the_optcom_series(demo):
    from nilearn.glm.first_level import first_level_from_bids

    derivatives = demo["results"] / "combine-raw"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # slice timing reference, drift terms: nilearn's notes
        models, imgs, events, confounds = first_level_from_bids(
            str(demo["bids"]),
            "images",
            space_label="T1w",
            img_filters=[("desc", "optcom")],
            derivatives_folder=os.path.relpath(derivatives, demo["bids"]),
            n_jobs=1,
        )
    assert len(models) == 1 and models[0].subject_label == "01"
    optcom = [p for p in _bold_derivatives(demo)["optcom"] if p.is_relative_to(derivatives)]
    assert sorted(Path(p).resolve() for p in imgs[0]) == [p.resolve() for p in optcom]
    raw_tr = json.loads(next(demo["bids"].rglob("*_echo-1_part-mag_bold.json")).read_text())
    assert models[0].t_r == pytest.approx(raw_tr["RepetitionTime"])
    assert len(events[0]) == len(confounds[0]) == len(optcom)
    for img, table in zip(optcom, confounds[0], strict=True):
        assert len(table) == nib.load(img).shape[3] and set(FULL_MOTION) <= set(table.columns)
    # the model fits on the series with the six motion parameters as confounds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the events' stim_name column is not used
        model = models[0].fit(
            [str(p) for p in imgs[0]],
            events=events[0],
            confounds=[c[list(MOTION)] for c in confounds[0]],
        )
    # the image trials against the implicit baseline (trial types "new" and "old" by run)
    image_trials = [
        np.array([c in ("new", "old") for c in dm.columns], float) for dm in model.design_matrices_
    ]
    assert all(v.sum() == 1 for v in image_trials)
    effect = model.compute_contrast(image_trials, output_type="effect_size").get_fdata()
    assert np.isfinite(effect).all() and np.abs(effect).max() > 0


def test_the_output_copied_elsewhere_reads_the_same(demo, tmp_path):
    """The output folder and the raw dataset copied to another place (same relative layout):
    pybids indexes the copy with validation and finds the same files, nilearn reads the copied
    confounds, and ``first_level_from_bids`` models the copied optcom series: nothing in the
    outputs points back to the original folders."""
    import shutil

    from bids import BIDSLayout
    from nilearn.interfaces.fmriprep import load_confounds

    copy = tmp_path / "moved"
    moved = {
        "base": copy,
        "results": copy / demo["results"].relative_to(demo["base"]),
        "bids": copy / demo["bids"].relative_to(demo["base"]),
    }
    shutil.copytree(demo["results"], moved["results"], symlinks=True)
    shutil.copytree(demo["bids"], moved["bids"])
    folders = [str(p) for p in _derivative_folders(moved)]
    layout = BIDSLayout(str(moved["bids"]), derivatives=folders, validate=True)
    optcom = layout.get(desc="optcom", suffix="bold", space="T1w", extension=".nii.gz")
    assert sorted(Path(f.path) for f in optcom) == _bold_derivatives(moved)["optcom"]
    assert "RepetitionTime" in layout.get_metadata(optcom[0].path)
    echo = _bold_derivatives(moved)["echo"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        confounds, _ = load_confounds(str(echo), strategy=("motion",), motion="basic")
    assert set(confounds.columns) == set(MOTION) and len(confounds) == nib.load(echo).shape[3]
    from nilearn.glm.first_level import first_level_from_bids

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models, imgs, _, _ = first_level_from_bids(
            str(moved["bids"]),
            "images",
            space_label="T1w",
            img_filters=[("desc", "optcom")],
            derivatives_folder=os.path.relpath(moved["results"] / "combine-raw", moved["bids"]),
            n_jobs=1,
        )
    assert len(models) == 1 and all(Path(p).is_relative_to(copy) for p in imgs[0])
