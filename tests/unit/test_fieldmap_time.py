"""Several fieldmaps per session matched to the BOLD runs by acquisition time (LAION-fMRI):
discovery (weights checked by hand), the plan's summary line, the geometry step that registers
and combines them, and the simulator that writes such sessions."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from echoprep.io import bids_index
from echoprep.io.bids import BIDSInputError, discover
from echoprep.io.bids_fmap_time import clock_text, parse_clock, parse_datetime, time_weights
from echoprep.io.paths import sidecar_path
from helpers.bidstree import (
    bold_path,
    default_affine,
    edit_sidecar,
    fmap_path,
    make_bids_tree,
    write_json,
    write_nifti,
)
from helpers.plans import make_plan

RUNS = ("01", "02", "03", "04")
#: Session -> acquisition time of each BOLD run (12 volumes x 1.9 s: centre + 11.4 s) and of
#: each fieldmap (run-01, run-02 of their own).
BOLD_TIMES = {
    "01": ("09:01:00", "09:02:00", "09:04:00", "09:05:00"),
    "02": ("10:00:00", "10:01:10", "10:03:00", "10:04:00"),
}
FMAP_TIMES = {"01": ("09:00:00", "09:03:00"), "02": ("10:01:00", "10:02:30")}
#: By hand: run centre c, fieldmaps at t1 < t2: w2 = (c - t1) / (t2 - t1).
EXPECTED = {
    ("01", "01"): [("01", 1 - 71.4 / 180), ("02", 71.4 / 180)],
    ("01", "02"): [("01", 1 - 131.4 / 180), ("02", 131.4 / 180)],
    ("01", "03"): [("02", 1.0)],  # after the last fieldmap: the nearest one
    ("01", "04"): [("02", 1.0)],
    ("02", "01"): [("01", 1.0)],  # before the first
    ("02", "02"): [("01", 1 - 21.4 / 90), ("02", 21.4 / 90)],
    ("02", "03"): [("02", 1.0)],
    ("02", "04"): [("02", 1.0)],
}
NEAREST = {
    ("01", "01"): "01",
    ("01", "02"): "02",
    ("02", "02"): "01",
}


def _set_bold_time(root: Path, ses: str, run: str, value: str | None) -> None:
    for echo in (1, 2, 3):
        for part in ("mag", "phase"):
            edit_sidecar(
                bold_path(root, ses=ses, run=run, echo=echo, part=part), AcquisitionTime=value
            )


def laion_layout(root: Path, *, sidecar_times: bool = True, scans: bool = False) -> Path:
    """2 sessions x 4 BOLD runs x 2 GRE fieldmaps (run-01, run-02 of their own), no
    IntendedFor; times in the sidecars and/or in each session's scans.tsv."""
    make_bids_tree(root, sessions=("01", "02"), runs=RUNS, data=False)
    for ses in ("01", "02"):
        rows = []
        for run, when in zip(RUNS, BOLD_TIMES[ses], strict=True):
            _set_bold_time(root, ses, run, when if sidecar_times else None)
            for echo in (1, 2, 3):
                for part in ("mag", "phase"):
                    path = bold_path(root, ses=ses, run=run, echo=echo, part=part)
                    rows.append((f"func/{path.name}", f"2024-03-0{ses[-1]}T{when}"))
        for run, when in zip(("01", "02"), FMAP_TIMES[ses], strict=True):
            for kind in ("magnitude1", "phasediff"):
                path = fmap_path(root, kind, ses=ses, run=run)
                write_nifti(path, (6, 7, 5), data=False)
                meta: dict = {"AcquisitionTime": when} if sidecar_times else {}
                if kind == "phasediff":
                    meta |= {"EchoTime1": 0.00408, "EchoTime2": 0.0051}
                write_json(sidecar_path(path), meta)
                rows.append((f"fmap/{path.name}", f"2024-03-0{ses[-1]}T{when}.000000"))
        if scans:
            text = "filename\tacq_time\n" + "".join(f"{a}\t{b}\n" for a, b in rows)
            (root / f"sub-01/ses-{ses}/sub-01_ses-{ses}_scans.tsv").write_text(text)
    return root


def _weights(run) -> list[tuple[str, float]]:
    return [(f.image.name.split("_run-")[1][:2], w) for f, w, _ in run.fieldmap.combine]


def _check_expected(ds, rule: str = "acquisition time (interpolate)") -> None:
    for run in ds.runs:
        fm = run.fieldmap
        assert fm is not None and fm.rule == rule and fm.kind == "phasediff"
        got = _weights(run)
        want = EXPECTED[run.session, run.run]
        assert [g[0] for g in got] == [w[0] for w in want], (run.session, run.run)
        assert [g[1] for g in got] == pytest.approx([w[1] for w in want], abs=1e-6)
        # the registration target: the session's first fieldmap, whose files the job reads too
        assert fm.target.image == fmap_path(ds.root, "phasediff", ses=run.session, run="01")
        assert set(fm.files) >= {fm.target.image, fm.target.magnitude}
        assert fm.note is None and run.fieldmap_note is None


# --------------------------------------------------------------------------------------
# the rules


def test_time_weights_and_clock_by_hand():
    times = [0.0, 100.0, 400.0]
    assert time_weights(25.0, times, "interpolate") == [(0, 0.75), (1, 0.25)]
    assert time_weights(250.0, times, "interpolate") == [(1, 0.5), (2, 0.5)]
    assert time_weights(100.0, times, "interpolate") == [(1, 1.0)]  # on a fieldmap
    assert time_weights(-5.0, times, "interpolate") == [(0, 1.0)]  # before the first
    assert time_weights(999.0, times, "interpolate") == [(2, 1.0)]  # after the last
    assert time_weights(260.0, times, "nearest") == [(2, 1.0)]
    assert time_weights(50.0, times, "nearest") == [(0, 1.0)]  # a tie: the earlier one
    assert parse_clock("09:41:27.5") == pytest.approx(34887.5)
    assert parse_clock("9:41") is None and parse_clock("25:00:00") is None
    assert parse_datetime("2024-03-05T09:41:27.123456") == (738950, pytest.approx(34887.123456))
    assert parse_datetime("2024-03-05 09:41:27") is None
    assert clock_text(34887.5) == "09:41:27.5" and clock_text(32400) == "09:00:00"


def test_laion_layout_by_acquisition_time_in_the_sidecars(tmp_path):
    """No IntendedFor, fieldmaps numbered on their own: rule 2 serves every run (before, it
    paired fieldmap run-01 with BOLD run-01 and left runs 3 and 4 uncorrected)."""
    ds = discover(laion_layout(tmp_path / "ds"))
    assert len(ds.runs) == 8
    _check_expected(ds)
    run = ds.get_run("01", "01", "01")
    assert run.fieldmap.run_time == pytest.approx(9 * 3600 + 60 + 11.4)
    assert run.fieldmap.target_time == pytest.approx(9 * 3600)
    spec = run.fieldmap.as_spec()
    assert spec["rule"] == "acquisition time (interpolate)"
    assert [c["time"] for c in spec["combine"]] == [9 * 3600, 9 * 3600 + 180]
    assert spec["target"]["image"].endswith("sub-01_ses-01_run-01_phasediff.nii.gz")


def test_laion_layout_by_acq_time_in_scans_tsv_read_once_per_session(tmp_path, monkeypatch):
    root = laion_layout(tmp_path / "ds", sidecar_times=False, scans=True)
    reads: list[Path] = []
    real = bids_index._read_tsv

    def counted(path: Path):
        reads.append(path)
        return real(path)

    monkeypatch.setattr(bids_index, "_read_tsv", counted)
    cache = tmp_path / "work" / "bids_index"
    ds = discover(root, cache_dir=cache)
    _check_expected(ds)
    assert sorted(p.name for p in reads) == ["sub-01_ses-01_scans.tsv", "sub-01_ses-02_scans.tsv"]
    # the tables are cached with the sidecars: a new discovery (its dataset cache removed)
    # reads none of them again
    for stored in cache.glob("dataset-*.pickle"):
        stored.unlink()
    reads.clear()
    assert discover(root, cache_dir=cache) == ds and reads == []
    # an edited scans.tsv is found
    scans = root / "sub-01/ses-01/sub-01_ses-01_scans.tsv"
    scans.write_text(scans.read_text().replace("T09:03:00.000000", "T09:01:11.400000"))
    moved = discover(root, cache_dir=cache).get_run("01", "01", "01")
    assert _weights(moved) == [("02", 1.0)]  # the second fieldmap now at the run's centre


def test_nearest_takes_the_single_nearest_fieldmap(tmp_path):
    ds = discover(laion_layout(tmp_path / "ds"), fieldmap_time="nearest")
    for run in ds.runs:
        assert run.fieldmap.rule == "acquisition time (nearest)"
        key = (run.session, run.run)
        want = NEAREST.get(key) or EXPECTED[key][0][0]
        assert _weights(run) == [(want, 1.0)], key


def test_intended_for_still_comes_first(tmp_path):
    root = laion_layout(tmp_path / "ds")
    target = bold_path(root, ses="01", run="03", echo=1).relative_to(root / "sub-01")
    edit_sidecar(fmap_path(root, "phasediff", ses="01", run="01"), IntendedFor=[str(target)])
    ds = discover(root)
    run = ds.get_run("01", "01", "03")
    assert run.fieldmap.rule == "IntendedFor" and not run.fieldmap.combine
    assert run.fieldmap.image == fmap_path(root, "phasediff", ses="01", run="01")
    assert ds.get_run("01", "01", "04").fieldmap.rule == "acquisition time (interpolate)"


def _intended_for_every_run(root: Path, ses: str) -> None:
    """Both fieldmaps of a session name every run of it in IntendedFor (as converters often
    write them)."""
    runs = [str(bold_path(root, ses=ses, run=r, echo=1).relative_to(root / "sub-01")) for r in RUNS]
    for fmap_run in ("01", "02"):
        edit_sidecar(fmap_path(root, "phasediff", ses=ses, run=fmap_run), IntendedFor=runs)


def test_a_run_that_several_fieldmaps_name_in_intended_for_is_matched_by_time(tmp_path):
    """Legal BIDS that was refused ("one fieldmap for ..."): IntendedFor of both fieldmaps
    names every run. With acquisition times the run gets the fieldmaps around its centre, as
    without IntendedFor, and the plan's line says why; without times, the one with its run
    entity, else the first by name."""
    root = laion_layout(tmp_path / "ds")
    _intended_for_every_run(root, "01")
    plan = make_plan(root, tmp_path / "p")
    for run in plan.dataset.runs:
        fm = run.fieldmap
        assert fm.rule == "acquisition time (interpolate)"
        assert _weights(run) == [(k, pytest.approx(w)) for k, w in EXPECTED[run.session, run.run]]
        named = run.session == "01"
        assert fm.note == ("IntendedFor names it in 2 fieldmaps" if named else None)
        assert fm.as_spec().get("note") == fm.note
    assert plan.sdc_summary() == (
        "Distortion correction: 8 of 8 run(s) with their fieldmap (phasediff; 4 by acquisition "
        "time, interpolated, 4 by acquisition time, interpolated (IntendedFor names it in 2 "
        "fieldmaps))."
    )
    untimed = laion_layout(tmp_path / "untimed", sidecar_times=False)
    _intended_for_every_run(untimed, "01")
    ds = discover(untimed)
    for run_label, fmap_run, why in (
        ("01", "01", "its run entity"),
        ("02", "02", "its run entity"),
        ("03", "01", "the first by name"),
    ):
        fm = ds.get_run("01", "01", run_label).fieldmap
        assert (fm.rule, fm.image) == (
            "IntendedFor",
            fmap_path(untimed, "phasediff", ses="01", run=fmap_run),
        )
        assert fm.note == f"2 fieldmaps, no acquisition times to choose by: {why}"
        assert not fm.combine


def test_a_run_without_a_time_falls_back_to_the_run_entity_and_the_plan_says_so(tmp_path):
    root = laion_layout(tmp_path / "ds")
    _set_bold_time(root, "01", "02", None)  # has a fieldmap run-02 of its own number
    _set_bold_time(root, "01", "03", None)  # has none
    plan = make_plan(root, tmp_path / "p")
    run2 = plan.dataset.get_run("01", "01", "02")
    assert run2.fieldmap.rule == "run entity" and run2.fieldmap.note == (
        "no acquisition time for the run"
    )
    assert run2.fieldmap.image == fmap_path(root, "phasediff", ses="01", run="02")
    run3 = plan.dataset.get_run("01", "01", "03")
    assert run3.fieldmap is None and run3.fieldmap_note == "no acquisition time for the run"
    assert plan.sdc_summary() == (
        "Distortion correction: 7 of 8 run(s) with their fieldmap (phasediff; 6 by acquisition "
        "time, interpolated, 1 by run entity (no acquisition time for the run)); 1 without a "
        "fieldmap, not corrected: sub-01_ses-01_task-images_run-03 (no acquisition time for "
        "the run: 1). Corrected and uncorrected runs differ in geometry: give every run what "
        "the method needs, choose another spatial.sdc, or set spatial.sdc: none to correct "
        "none."
    )


def test_malformed_times_are_all_reported_with_file_and_fix(tmp_path):
    root = laion_layout(tmp_path / "ds", sidecar_times=False, scans=True)
    _set_bold_time(root, "01", "01", "9h01")
    scans = root / "sub-01/ses-02/sub-01_ses-02_scans.tsv"
    scans.write_text(scans.read_text().replace("2024-03-02T10:01:00.000000", "2024-03-02 10:01"))
    with pytest.raises(BIDSInputError) as err:
        discover(root)
    first, second = err.value.problems
    assert (
        first.file
        == "sub-01/ses-01/func/sub-01_ses-01_task-images_run-01_echo-1_part-mag_bold.json"
    )
    assert first.expected == 'AcquisitionTime as "HH:MM:SS[.ffffff]" (BIDS), e.g. "09:41:27.5"'
    assert first.found == "AcquisitionTime = '9h01'"
    assert first.fix.startswith('write the time as BIDS does ("HH:MM:SS[.ffffff]"')
    assert "spatial.fieldmap: false" in first.fix
    assert second.file == "sub-01/ses-02/sub-01_ses-02_scans.tsv"
    assert second.expected.startswith(
        'acq_time of fmap/sub-01_ses-02_run-01_phasediff.nii.gz as "YYYY-MM-DDTHH:MM:SS[.ffffff]"'
    )
    assert second.found == "acq_time = '2024-03-02 10:01'"
    discover(root, use_fieldmaps=False)  # times are not read without fieldmaps


def test_the_plan_passes_every_fieldmap_and_names_the_rules(tmp_path):
    root = laion_layout(tmp_path / "ds")
    plan = make_plan(root, tmp_path / "p")
    assert plan.sdc_summary() == (
        "Distortion correction: 8 of 8 run(s) with their fieldmap (phasediff; 8 by acquisition "
        "time, interpolated)."
    )
    run = plan.dataset.get_run("01", "01", "02")
    names = sorted(Path(p).name for p in plan.spatial.geometry_inputs(run)["fieldmap"])
    assert names == [
        "sub-01_ses-01_run-01_magnitude1.nii.gz",
        "sub-01_ses-01_run-01_phasediff.nii.gz",
        "sub-01_ses-01_run-02_magnitude1.nii.gz",
        "sub-01_ses-01_run-02_phasediff.nii.gz",
    ]
    words = shlex.split(plan.spatial.geometry_args(run, None))
    spec = json.loads(words[words.index("--fieldmap-json") + 1])
    assert [c["weight"] for c in spec["combine"]] == pytest.approx([0.27, 0.73])
    nearest = make_plan(root, tmp_path / "n", spatial={"fieldmap_time": "nearest"})
    assert nearest.sdc_summary().endswith("(phasediff; 8 by acquisition time, nearest).")
    # IntendedFor for some runs, the run entity for others (no times): both named
    for ses in ("01", "02"):
        for run_label in RUNS:
            _set_bold_time(root, ses, run_label, None)
    for run_label in ("01", "02"):
        target = bold_path(root, ses="02", run=run_label, echo=1).relative_to(root / "sub-01")
        edit_sidecar(
            fmap_path(root, "phasediff", ses="02", run=run_label), IntendedFor=[str(target)]
        )
    mixed = make_plan(root, tmp_path / "m")
    assert mixed.sdc_summary().startswith(
        "Distortion correction: 4 of 8 run(s) with their fieldmap (phasediff; 2 by IntendedFor, "
        "2 by run entity (no acquisition time for the run)); 4 without a fieldmap"
    )


# --------------------------------------------------------------------------------------
# the geometry step: two fieldmaps, a known field at two times, the head moved in between

SHAPE = (26, 28, 22)
VOX = 3.0


#: Blobs of the synthetic head's texture: amplitude, centre (mm), SD (mm).
_BLOBS = [
    (a, c, sd)
    for a, c, sd in zip(
        np.random.default_rng(1).uniform(200, 600, 12),
        np.random.default_rng(2).uniform(-20, 20, (12, 3)),
        np.random.default_rng(3).uniform(4, 8, 12),
        strict=True,
    )
]


def _head_value(xyz: np.ndarray) -> np.ndarray:
    """A textured ellipsoidal head (magnitude, a smooth edge) at world points (..., 3), mm."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    r = np.sqrt((x / 30) ** 2 + (y / 34) ** 2 + (z / 26) ** 2)
    texture = sum(a * np.exp(-np.sum((xyz - c) ** 2, axis=-1) / (2 * sd**2)) for a, c, sd in _BLOBS)
    return (800 + texture) / (1 + np.exp((r - 1) / 0.05))


def _field(xyz: np.ndarray, minutes: float) -> np.ndarray:
    """Off-resonance of the head at world points, Hz: a static part and a drift."""
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    static = 45 * np.exp(-((x - 5) ** 2 + (y - 20) ** 2 + (z + 8) ** 2) / (2 * 15.0**2)) - 0.4 * z
    return static + minutes * (1.5 + 0.03 * y - 0.02 * x)


def _rigid(t, angles_deg) -> np.ndarray:
    a, b, c = np.radians(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    m = np.eye(4)
    m[:3, :3] = rz @ ry @ rx
    m[:3, 3] = t
    return m


def _write_fieldmap(folder: Path, name: str, minutes: float, head_to_scanner: np.ndarray):
    """A Hz fieldmap and its magnitude of the head moved by ``head_to_scanner``."""
    affine = default_affine(SHAPE, VOX)
    ijk = np.stack(np.indices(SHAPE), -1).reshape(-1, 3)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    head = (world - head_to_scanner[:3, 3]) @ np.linalg.inv(head_to_scanner[:3, :3]).T
    mag = _head_value(head).reshape(SHAPE).astype(np.float32)
    hz = _field(head, minutes).reshape(SHAPE).astype(np.float32)
    paths = {}
    for kind, data in (("fieldmap", hz), ("magnitude", mag)):
        paths[kind] = folder / f"{name}_{kind}.nii.gz"
        nib.save(nib.Nifti1Image(data, affine), paths[kind])
    return {
        "image": str(paths["fieldmap"]),
        "kind": "fieldmap",
        "magnitude": str(paths["magnitude"]),
        "echo_time1": None,
        "echo_time2": None,
        "units": "Hz",
        "epi": [],
    }


def test_two_fieldmaps_registered_and_combined_equal_the_interpolated_truth(tmp_path):
    """Fieldmap A at 0 min (the registration target, motion-free), B at 10 min with the head
    moved by 2.4 mm and 3 degrees; a run centred at 6 min gets 0.4 A + 0.6 B, which must be
    the field of 6 min in A's space; without the registration it is not."""
    from echoprep.stages.spatial.fieldmaps import load_run_fieldmap

    a = _write_fieldmap(tmp_path, "a", 0.0, np.eye(4))
    b = _write_fieldmap(tmp_path, "b", 10.0, _rigid([1.5, -1.5, 1.2], [2.0, -1.0, 3.0]))
    spec = {
        **b,
        "rule": "acquisition time (interpolate)",
        "combine": [a | {"weight": 0.4, "time": 32400.0}, b | {"weight": 0.6, "time": 33000.0}],
        "target": a | {"time": 32400.0},
        "run_time": 32760.0,
    }
    hz, affine, mask, record = load_run_fieldmap(spec)
    ijk = np.stack(np.indices(SHAPE), -1).reshape(-1, 3)
    world = ijk @ affine[:3, :3].T + affine[:3, 3]
    truth = _field(world, 6.0).reshape(SHAPE)
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, iterations=2)
    err = np.abs(hz - truth)[inner]
    assert inner.sum() > 1000
    assert np.percentile(err, 95) < 0.35 and err.mean() < 0.1, (err.mean(), err.max())
    rows = record["Fieldmaps"]
    assert record["Rule"] == "acquisition time (interpolate)"
    assert record["RunCentreTime"] == "09:06:00" and record["RegistrationTargetTime"] == "09:00:00"
    assert [r["Weight"] for r in rows] == [0.4, 0.6]
    assert rows[0]["Registration"].startswith("identity")
    moved = np.asarray(rows[1]["FieldmapFromTarget"])
    assert np.abs(moved[:3, 3]).max() > 1.0  # found the move
    # the same without registration: B's field lands displaced and the error is larger
    unregistered = spec | {"combine": [c | {"magnitude": None} for c in spec["combine"]]}
    hz_u, _, mask_u, rec_u = load_run_fieldmap(unregistered)
    assert mask_u is None and rec_u["Fieldmaps"][1]["Registration"].startswith("none")
    err_u = np.abs(hz_u - truth)[inner]
    assert np.percentile(err_u, 95) > 3 * np.percentile(err, 95)


def test_the_geometry_sidecar_records_the_rule_fieldmaps_and_times(tmp_path):
    """The simulator's session fieldmaps through run_geometry: the sidecar's
    FieldmapCorrection names the rule, each fieldmap with its weight and time, the run's
    centre; the files read are the sources."""
    from echoprep.simulate import simulate_dataset
    from echoprep.stages.spatial.run import run_geometry

    root = simulate_dataset(tmp_path / "sim", "tiny", runs=2, fieldmaps_per_session=2)
    run = discover(root).get_run("01", "01", "01")
    out = {"boldref": tmp_path / "boldref.nii.gz"}
    record = run_geometry(
        run.echoes[1].mag,
        out,
        repetition_time=run.repetition_time,
        slice_timing=run.slice_timing,
        fieldmap=run.fieldmap.as_spec(),
        pe_direction=run.pe_direction,
        readout_time=run.total_readout_time,
    )
    fc = record["FieldmapCorrection"]
    assert fc["Applied"] and fc["Rule"] == "acquisition time (interpolate)"
    assert [Path(r["Image"]).name for r in fc["Fieldmaps"]] == [
        "sub-01_ses-01_run-01_phasediff.nii.gz",
        "sub-01_ses-01_run-02_phasediff.nii.gz",
    ]
    assert [r["Weight"] for r in fc["Fieldmaps"]] == [0.5, 0.5]
    assert fc["RunCentreTime"] == "09:02:25.5"  # 09:01:00 + 90 x 1.9 s / 2
    assert [r["AcquisitionTime"] for r in fc["Fieldmaps"]] == ["09:00:00", "09:04:51"]
    side = json.loads(sidecar_path(out["boldref"]).read_text())
    names = {Path(s).name for s in side["Sources"]}
    assert "sub-01_ses-01_run-02_magnitude1.nii.gz" in names, names


# --------------------------------------------------------------------------------------
# the simulator


def test_the_simulator_writes_session_fieldmaps_at_known_times(tmp_path):
    from echoprep.simulate import simulate_dataset
    from echoprep.simulate.session_fieldmaps import FIELDMAP_POSE, drift_map, field_at
    from echoprep.simulate.truth import truth_paths

    root = simulate_dataset(tmp_path / "sim", "tiny", runs=3, fieldmaps_per_session=2)
    fmap = root / "sub-01/ses-01/fmap"
    assert sorted(p.name for p in fmap.glob("*.nii.gz")) == [
        f"sub-01_ses-01_run-0{r}_{k}.nii.gz"
        for r in (1, 2)
        for k in ("magnitude1", "magnitude2", "phasediff")
    ]
    meta = json.loads((fmap / "sub-01_ses-01_run-02_phasediff.json").read_text())
    assert meta["AcquisitionTime"] == "09:04:51" and "IntendedFor" not in meta
    # 09:00:00 fieldmap 1 (60 s), run 1 (90 x 1.9 s) + 60 s, fieldmap 2, run 2, run 3
    starts = ["09:01:00", "09:05:51", "09:09:42"]
    for run, start in zip(("01", "02", "03"), starts, strict=True):
        side = json.loads(sidecar_path(bold_path(root, run=run, echo=2)).read_text())
        assert side["AcquisitionTime"] == start
    scans = (root / "sub-01/ses-01/sub-01_ses-01_scans.tsv").read_text().splitlines()
    assert scans[0] == "filename\tacq_time"
    assert "fmap/sub-01_ses-01_run-02_phasediff.nii.gz\t2024-03-04T09:04:51" in scans
    assert (
        "func/sub-01_ses-01_task-images_run-03_echo-1_part-mag_bold.nii.gz\t2024-03-04T09:09:42"
        in scans
    )
    # fieldmap 2 measures the field of its time in its head position: in the head's centre
    # (away from the edge the move touches) its phase difference follows f0 + 4.85 min x drift
    from echoprep.simulate.anatomy import subject_anatomy
    from echoprep.simulate.presets import PRESETS
    from echoprep.simulate.session_fieldmaps import session_clock

    anat = subject_anatomy(PRESETS["tiny"], 0, 1)
    clock = session_clock(PRESETS["tiny"], 3, 2, 1)
    assert clock.fieldmap_times == (32400.0, 32691.0)
    brain = nib.load(truth_paths(root, "01", "01")["brain_mask"]).get_fdata() > 0
    dphi = nib.load(fmap / "sub-01_ses-01_run-01_phasediff.nii.gz").get_fdata() * np.pi / 4096
    hz = dphi / (2 * np.pi * 1.02e-3)
    assert np.median(np.abs(hz - field_at(anat, clock, 32400.0))[brain]) < 2.0
    assert np.all(FIELDMAP_POSE[:3] != 0) and drift_map(anat).mean() == pytest.approx(0.5)
    # each run is distorted by the field at its centre: the truth per volume
    from echoprep.simulate.truth import run_field_path

    field3 = nib.load(run_field_path(root, "01", "01", "03")).get_fdata()[..., 0]
    want = field_at(anat, clock, clock.run_centre(3))
    assert np.abs(field3 - want)[brain].max() < 1e-3
    params = json.loads((root / "dataset_description.json").read_text())["echoprepSimulation"]
    assert params["fieldmaps_per_session"] == 2
    with pytest.raises(ValueError, match="fieldmaps_per_session"):
        simulate_dataset(tmp_path / "bad", "tiny", runs=2, fieldmaps_per_session=3)
