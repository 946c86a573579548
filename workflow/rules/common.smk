# Input discovery, derivative path helpers and the command prefix shared by every rule.

import json
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

from echoprep.io.bids import BIDSInputError, discover
from echoprep.io.paths import run_dir, run_output, run_prefix
from echoprep.stages.combine import OUTPUTS as COMBINE_OUTPUTS
from echoprep.stages.nordic import KERNEL_OPTIONS as NORDIC_OPTIONS
from echoprep.stages.nordic import OUTPUTS as NORDIC_OUTPUTS

OUT = Path(config["output_dir"])
WORK = Path(config["work_dir"])
LOGS = WORK / "logs"
BENCH = WORK / "benchmarks"
PKG_DIR = Path(workflow.basedir) / "workflow"
# matplotlib (imported by tedana, nilearn and the report, also while Snakemake builds the DAG)
# caches fonts under $HOME unless told otherwise: keep every write inside work_dir
# (tests/e2e/test_resume_safety.py); a value the user set is kept
MPLCONFIGDIR = os.environ.setdefault("MPLCONFIGDIR", str(WORK / "tmp" / "matplotlib"))

try:
    DATASET = discover(
        config["bids_dir"],
        participant_label=config["participant_label"] or None,
        exclude=config["exclude"],
        sessions=config["sessions"] or None,
        task=config["task"],
        cache_dir=WORK / "bids_index",
        # spatial preprocessing (spatial.smk) needs a T1w per subject and the fieldmaps
        require_t1w=config["spatial"]["enabled"]
        and config["spatial"]["output_space"] == "T1w",
        use_fieldmaps=config["spatial"]["enabled"] and config["spatial"]["fieldmap"],
    )
except BIDSInputError as exc:
    raise WorkflowError(str(exc)) from None

#: Runs by their file-name stem ("sub-01_ses-01_task-images_run-01").
RUNS = {run_prefix(r.entities): r for r in DATASET.runs}
#: NORDIC variants: "raw" = NORDIC off, "nordic" = on (config nordic.enabled).
NORDIC_VARIANTS = ["raw", "nordic"] if config["nordic"]["enabled"] else ["raw"]


wildcard_constraints:
    run_prefix=r"sub-[A-Za-z0-9]+(_[a-z]+-[A-Za-z0-9]+)*",
    run_dir=r"sub-[A-Za-z0-9]+(/ses-[A-Za-z0-9]+)?/func",
    nordic=r"raw|nordic",
    echo=r"[0-9]+",


# Every shell command runs `python -m echoprep` with the package from this checkout. Inside a
# conda env (or module) "python" is the env's; without a deployment method it is the one of the
# environment running Snakemake (its venv holds echoprep's dependencies). Snakemake itself sets
# OMP/OPENBLAS/MKL_NUM_THREADS to each job's threads.
_path = (
    ""
    if workflow.deployment_settings.deployment_method
    else f"export PATH={Path(sys.prefix) / 'bin'}:$PATH; "
)
shell.prefix(
    # the prefix is formatted like a shell command: braces for the shell are doubled twice
    f"set -euo pipefail; {_path}export PYTHONPATH={PKG_DIR}${{{{PYTHONPATH:+:$PYTHONPATH}}}}; "
    f"export MPLCONFIGDIR={MPLCONFIGDIR}; "
)


def run_of(wildcards):
    """The discovered Run a job's wildcards refer to."""
    return RUNS[wildcards.run_prefix]


def run_key(run):
    """(run_dir, run_prefix) of a discovered Run."""
    return run_dir(run.entities), run_prefix(run.entities)


def run_mb(run, copies):
    """Memory (MB) for `copies` float32 copies of all echoes of a run, plus 500 MB."""
    nvox = run.shape[0] * run.shape[1] * run.shape[2]
    return int(500 + copies * len(run.echoes) * nvox * run.n_volumes * 4 / 1e6)


def config_json():
    """The validated config as sorted JSON (the same config in another key order is no change)."""
    return json.dumps(config, sort_keys=True)


# --- NORDIC (nordic.smk) ----------------------------------------------------------------


def nordic_outputs(run=None, echo="{echo}"):
    """NORDIC output files (and sidecars) of one echo, as patterns or for a run."""
    key = run_key(run) if run is not None else ("{run_dir}", "{run_prefix}")
    files = {}
    for name, (suffix, entities, ext) in NORDIC_OUTPUTS.items():
        ents = {"echo": echo, **entities}
        for label, extension in ((name, ext), (f"{name}_json", ".json")):
            files[label] = str(
                run_output(OUT / "nordic", key, suffix, extension, **ents)
            )
    return files


def echo_of(wildcards):
    """The EchoFiles of a job's run and echo."""
    for e in run_of(wildcards).echoes:
        if str(e.echo) == wildcards.echo:
            return e
    raise WorkflowError(f"{wildcards.run_prefix} has no echo {wildcards.echo}")


def nordic_inputs(wildcards):
    """Magnitude (+ phase when the run has it and magnitude_only is off) of one echo."""
    e = echo_of(wildcards)
    files = {"mag": str(e.mag)}
    if e.phase is not None and not config["nordic"]["magnitude_only"]:
        files["phase"] = str(e.phase)
    return files


def nordic_options():
    """The kernel options of the config, as sorted JSON."""
    return json.dumps({k: config["nordic"][k] for k in NORDIC_OPTIONS}, sort_keys=True)


def noise_volumes_to_drop(wildcards):
    """Trailing noise volumes the combine stage drops (NORDIC removes its own by default)."""
    if config["spatial"]["enabled"]:
        return 0  # the spatial stage dropped them (spatial_noise_volumes)
    n = config["nordic"]["noise_volumes"]
    return (
        n if wildcards.nordic == "raw" or config["nordic"]["keep_noise_volumes"] else 0
    )


# --- echo handling (combine.smk) -------------------------------------------------------


def combine_root(nordic):
    return OUT / f"combine-{nordic}"


def combine_outputs(variant, run=None, nordic="{nordic}"):
    """Output files (and their JSON sidecars) of a combine variant, as patterns or for a run."""
    key = run_key(run) if run is not None else ("{run_dir}", "{run_prefix}")
    files = {}
    for name, (suffix, entities, ext, _tool) in COMBINE_OUTPUTS[variant].items():
        if spatial_space():  # resampled echoes: names carry their space (spatial.smk)
            entities = {"space": spatial_space(), **entities}
        for label, extension in ((name, ext), (f"{name}_json", ".json")):
            path = run_output(combine_root(nordic), key, suffix, extension, **entities)
            files[label] = str(path)
    return files


def echo_inputs(wildcards):
    """Magnitude image per echo of the run (echo-time order) for the NORDIC variant."""
    run = run_of(wildcards)
    if config["spatial"]["enabled"]:  # the spatially preprocessed echoes (spatial.smk)
        return [preproc_echo(run, e.echo, wildcards.nordic) for e in run.echoes]
    if wildcards.nordic == "raw":
        return [str(e.mag) for e in run.echoes]
    return [nordic_outputs(run, str(e.echo))["bold"] for e in run.echoes]


def echo_times(wildcards):
    """Echo times (s) of the run, space-separated."""
    return " ".join(f"{t:.6g}" for t in run_of(wildcards).echo_times)


def repetition_time(wildcards):
    return run_of(wildcards).repetition_time


def tedana_inputs(wildcards):
    """Echoes of the ICA-denoised job; on NORDIC runs with tedana.nordic_tedpca: raw_run also
    the sidecar of the same run's NORDIC-off ICA-denoised output, whose component count the
    NORDIC run uses (the criteria fail on NORDIC-denoised data)."""
    files = {"echoes": echo_inputs(wildcards)}
    if wildcards.nordic == "nordic" and config["tedana"]["nordic_tedpca"] == "raw_run":
        raw = combine_outputs("denoised", run_of(wildcards), "raw")
        files["raw_components"] = raw["mixing_json"]
    return files


def tedana_options(wildcards):
    """config tedana, without nordic_tedpca for NORDIC-off runs (changing it reruns only the
    NORDIC runs' jobs)."""
    opts = dict(config["tedana"])
    if wildcards.nordic != "nordic":
        opts.pop("nordic_tedpca", None)
    return opts


def tedana_pca_args(wildcards, input):
    """--tedpca, and how NORDIC runs choose their ICA dimensionality (tedana rule)."""
    import shlex

    opts = config["tedana"]
    args = ["--tedpca", str(opts["tedpca"])]
    if wildcards.nordic == "nordic":
        args += ["--nordic-tedpca", str(opts["nordic_tedpca"])]
        if "raw_components" in input.keys():
            args += ["--raw-components", input.raw_components]
    return " ".join(shlex.quote(str(a)) for a in args)


def combine_targets():
    """Every combine output requested by the config, plus the dataset descriptions."""
    targets = []
    if "nordic" in NORDIC_VARIANTS:
        targets.append(str(OUT / "nordic" / "dataset_description.json"))
    for nordic in NORDIC_VARIANTS:
        targets.append(str(combine_root(nordic) / "dataset_description.json"))
        for run in DATASET.runs:
            for variant in config["variants"]["combine"]:
                targets.extend(combine_outputs(variant, run, nordic).values())
    return targets


# --- GLMsingle and noise ceilings (glm.smk) ---------------------------------------------

import re

from echoprep.io.paths import sidecar_path
from echoprep.stages import glm as glm_stage
from echoprep.stages import noiseceiling as nc_stage

#: Every preprocessing variant a GLM can be fitted to: "<nordic>-<combine>".
GLM_ALL_VARIANTS = [
    f"{n}-{c}" for n in ("raw", "nordic") for c in ("single", "optcom", "denoised")
]


def _strip_label(label, prefix):
    label = str(label)
    return label[len(prefix) + 1 :] if label.startswith(f"{prefix}-") else label


def glm_variants():
    """The variants produced by this config (NORDIC side enabled, echo handling configured)."""
    combines = config["variants"]["combine"]
    return [
        v
        for v in GLM_ALL_VARIANTS
        if v.split("-")[0] in NORDIC_VARIANTS and v.split("-")[1] in combines
    ]


def comparison_sessions(subject):
    """Sessions of a subject in the 2x3 comparison: config comparison.sessions (labels, with
    or without "ses-") that the subject has; empty = its first session."""
    wanted = [
        _strip_label(s, "ses")
        for s in (config.get("comparison") or {}).get("sessions") or []
    ]
    sessions = DATASET.sessions(subject)
    if not wanted:
        return sessions[:1]
    return [s for s in sessions if s in wanted]


def glm_variant_sessions() -> dict[str, list[tuple[str, str | None]]]:
    """Variant -> (subject, session) pairs that get a GLMsingle fit: all variants for the
    comparison sessions, glm.all_sessions_variants for every session. Variants this config
    does not produce are left out."""
    everywhere = set(config["glm"]["all_sessions_variants"])
    out = {}
    for variant in glm_variants():
        pairs = []
        for sub in DATASET.subjects():
            chosen = comparison_sessions(sub)
            for ses in DATASET.sessions(sub):
                if variant in everywhere or ses in chosen:
                    pairs.append((sub, ses))
        if pairs:
            out[variant] = pairs
    return out


def glm_task():
    return DATASET.runs[0].task


#: Sessions by their output stem ("sub-01_ses-01_task-images") -> (subject, session).
GLM_SESSIONS = {
    glm_stage.session_key(sub, ses, glm_task())[1]: (sub, ses)
    for sub in DATASET.subjects()
    for ses in DATASET.sessions(sub)
}


def glm_space():
    """Space label of the echo-handling outputs ("T1w" when their names carry space-T1w)."""
    name = Path(combine_outputs(config["variants"]["combine"][0])["bold"]).name
    m = re.search(r"_space-([A-Za-z0-9]+)_", name)
    return m.group(1) if m else None


def glm_root(nordic="{nordic}", combine="{combine}"):
    return OUT / f"glmsingle-{nordic}-{combine}"


def _with_sidecars(paths):
    files = {}
    for key, path in paths.items():
        files[key] = str(path)
        if str(path).endswith((".nii.gz", ".tsv", ".h5")):
            files[f"{key}_json"] = str(sidecar_path(path))
    return files


def glm_output_keys():
    keys = list(glm_stage.DEFAULT_OUTPUTS)
    return keys + ["model"] if config["glm"]["hdf5"] else keys


def glm_outputs(nordic="{nordic}", combine="{combine}", subject=None, session=None):
    """GLMsingle output files (and sidecars) of one session, as patterns or for a session."""
    key = (
        glm_stage.session_key(subject, session, glm_task())
        if subject is not None
        else ("{ses_dir}", "{ses_prefix}")
    )
    paths = glm_stage.output_paths(
        glm_root(nordic, combine), key, space=glm_space(), keys=glm_output_keys()
    )
    return _with_sidecars(paths)


def nc_session_outputs(
    nordic="{nordic}", combine="{combine}", subject=None, session=None
):
    """The session noise-ceiling map (and sidecar), as a pattern or for a session."""
    key = (
        glm_stage.session_key(subject, session, glm_task())
        if subject is not None
        else ("{ses_dir}", "{ses_prefix}")
    )
    path = nc_stage.session_output_path(
        glm_root(nordic, combine), key, space=glm_space()
    )
    return _with_sidecars({"nc": path})


def nc_subject_outputs(nordic="{nordic}", combine="{combine}", subject=None):
    """A subject's cross-session maps (allrep, r2mean, ncsnr), as patterns or for a subject."""
    key = (
        nc_stage.subject_key(subject, glm_task())
        if subject is not None
        else ("{sub_dir}", "{sub_prefix}")
    )
    paths = nc_stage.subject_output_paths(
        glm_root(nordic, combine), key, space=glm_space()
    )
    return _with_sidecars(paths)


def nc_repeats_output(nordic="{nordic}", combine="{combine}", subject=None, n="{nrep}"):
    """The ceiling map for an average of n repeats (and sidecar) of a subject."""
    key = (
        nc_stage.subject_key(subject, glm_task())
        if subject is not None
        else ("{sub_dir}", "{sub_prefix}")
    )
    root = glm_root(nordic, combine)
    # a label must be alphanumeric or a whole wildcard: build with a stand-in, then put it in
    label = "XnrepX" if n == "{nrep}" else str(int(n))
    path = run_output(
        root,
        key,
        "statmap",
        ".nii.gz",
        space=glm_space(),
        desc=f"Noiseceiling{label}rep",
    )
    return {
        k: v.replace("XnrepX", "{nrep}")
        for k, v in _with_sidecars({"nc": path}).items()
    }


def glm_session_of(wildcards):
    return GLM_SESSIONS[wildcards.ses_prefix]


def glm_runs(wildcards):
    return DATASET.runs_of(*glm_session_of(wildcards))


def glm_brain_mask(subject):
    """The functional-grid brain mask of a subject when spatial preprocessing provides one
    (func_brain_mask, spatial.smk); None: GLMsingle's brainthresh rule decides."""
    provider = globals().get("func_brain_mask")
    return provider(subject) if provider is not None else None


def glm_inputs(wildcards):
    """The session's preprocessed BOLD (one per run), events and its analysis mask (every
    variant of the session is fitted on that one mask)."""
    runs = glm_runs(wildcards)
    sub, ses = glm_session_of(wildcards)
    return {
        "bold": [
            combine_outputs(wildcards.combine, r, wildcards.nordic)["bold"]
            for r in runs
        ],
        "events": [str(r.events) for r in runs],
        "mask": analysis_mask(sub, ses),
    }


# --- analysis mask (glm.smk): one per subject and session, shared by its variants --------

import shlex

from echoprep.stages import glm_mask as glm_mask_stage

ANALYSIS = OUT / glm_mask_stage.ROOT_NAME


def glm_session_variants(subject, session):
    """The variants fitted for a (subject, session), in glm_variants() order."""
    return [
        v for v, pairs in glm_variant_sessions().items() if (subject, session) in pairs
    ]


def analysis_mask(subject=None, session=None):
    """The analysis mask of a session (brain voxels with valid data in every run of every
    variant fitted there), as a pattern or for a session. Per session, not per subject: a new
    session leaves the masks (and fits) of the others alone."""
    key = (
        glm_stage.session_key(subject, session, glm_task())
        if subject is not None
        else ("{ses_dir}", "{ses_prefix}")
    )
    return str(glm_mask_stage.output_path(ANALYSIS, key, space=glm_space()))


def analysis_mask_outputs():
    mask = analysis_mask()
    return {"mask": mask, "json": str(sidecar_path(mask))}


def analysis_mask_inputs(wildcards):
    """Every fitted variant's echo-handling output of every run of the session, and the
    brain mask when spatial preprocessing provides one."""
    sub, ses = glm_session_of(wildcards)
    runs = DATASET.runs_of(sub, ses)
    files = {}
    for variant in glm_session_variants(sub, ses):
        nordic, combine = variant.split("-")
        files[variant] = [combine_outputs(combine, r, nordic)["bold"] for r in runs]
    brain = glm_brain_mask(sub)
    if brain:
        files["brain"] = str(brain)
    return files


def analysis_mask_params(wildcards, input):
    """``--bold VARIANT RUN...`` per variant, run labels, brain mask and space."""
    sub, ses = glm_session_of(wildcards)
    runs = DATASET.runs_of(sub, ses)
    args = []
    for variant in glm_session_variants(sub, ses):
        args += ["--bold", variant, *input[variant]]
    args += ["--run-labels", *[r.run or str(i + 1) for i, r in enumerate(runs)]]
    if "brain" in input.keys():
        args += ["--brain-mask", input.brain]
    if glm_space():
        args += ["--space", glm_space()]
    return " ".join(shlex.quote(str(a)) for a in args)


def analysis_mask_mb(wildcards, attempt):
    """Memory (MB): one run read in float32 three times (data, finite flags, reductions),
    the per-run flags of every run and variant, plus 1 GB; times attempt."""
    runs = glm_runs(wildcards)
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    n_flags = 2 * len(runs) * len(glm_session_variants(*glm_session_of(wildcards)))
    nbytes = 3 * 4 * nvox * max(r.n_volumes for r in runs) + n_flags * nvox
    return int((1000 + nbytes / 1e6) * attempt)


# --- type-B reference betas (glm.smk) ------------------------------------------------


def reference_variant():
    """The variant whose type-B betas (assumed HRF, least squares, no GLMdenoise, no
    ridge) are the comparison's reference: comparison.reference when this config produces
    it; the default raw-optcom falls back to raw-single, then to another NORDIC-off variant.
    None when no NORDIC-off variant is produced (a low-rank-denoised reference would defeat
    its purpose; the comparison then ranks by NC and says why)."""
    wanted = (config.get("comparison") or {}).get("reference") or "raw-optcom"
    produced = glm_variants()
    if wanted in produced:
        return wanted
    if wanted == "raw-optcom":
        fallback = [v for v in ("raw-single", *produced) if v in produced]
        fallback = [v for v in fallback if v.startswith("raw-")]
        return fallback[0] if fallback else None
    raise WorkflowError(
        f"comparison.reference: expected a variant this config produces "
        f"({', '.join(produced) or 'none'}); found {wanted!r}. Fix: choose one of them."
    )


def reference_outputs(
    nordic="{nordic}", combine="{combine}", subject=None, session=None
):
    """The type-B reference betas (and sidecar) of a session, as patterns or for a session."""
    key = (
        glm_stage.session_key(subject, session, glm_task())
        if subject is not None
        else ("{ses_dir}", "{ses_prefix}")
    )
    paths = glm_stage.output_paths(
        glm_root(nordic, combine), key, space=glm_space(), keys=["betas_typeb"]
    )
    return _with_sidecars(paths)


def reference_betas(subject, session):
    """Path of the type-B single-trial betas of the reference variant for a comparison
    session (4D, one volume per trial in the order of that variant's type-D trials TSV).
    """
    variant = reference_variant()
    if variant is None:
        return None
    nordic, combine = variant.split("-")
    return reference_outputs(nordic, combine, subject, session)["betas_typeb"]


def reference_trials(subject, session):
    """The trials table of the reference variant's session (None without a reference)."""
    variant = reference_variant()
    if variant is None:
        return None
    return glm_outputs(*variant.split("-"), subject, session)["trials"]


def reference_targets():
    """The reference betas of every comparison session (the comparison's only consumer: none
    when the report, and with it the comparison, is off)."""
    if not config["report"]["enabled"]:
        return []
    variant = reference_variant()
    if variant is None:
        return []
    nordic, combine = variant.split("-")
    pairs = glm_variant_sessions().get(variant, [])
    targets = []
    for sub in DATASET.subjects():
        for ses in comparison_sessions(sub):
            if (sub, ses) in pairs:
                targets.extend(reference_outputs(nordic, combine, sub, ses).values())
    return targets


def glm_params(wildcards, input):
    """Command-line arguments of the glm rule that depend on the session."""
    sub, ses = glm_session_of(wildcards)
    runs = glm_runs(wildcards)
    args = ["--run-labels", *[r.run or str(i + 1) for i, r in enumerate(runs)]]
    if ses:
        args += ["--session", ses]
    if "mask" in input.keys():
        args += ["--mask", input.mask]
    if glm_space():
        args += ["--space", glm_space()]
    return " ".join(args)


def glm_options(**overrides):
    """The glm: config section (with overrides) as sorted JSON."""
    return json.dumps({**config["glm"], **overrides}, sort_keys=True)


def reference_glm_options(wildcards):
    """Options of a type-B fit: the comparison's reference uses the assumed (canonical) HRF,
    since a reference must share no data-driven choice with the variants it judges (a
    per-voxel library HRF chosen on one variant's data favours that variant); the visual ROI's
    source keeps the library HRF, whose run-level test is better calibrated."""
    variant = f"{wildcards.nordic}-{wildcards.combine}"
    if variant == reference_variant():
        return glm_options(wantlibrary=0)
    return glm_options()


def _events_rows(path):
    with open(path) as fh:
        return max(0, sum(1 for line in fh if line.strip()) - 1)


def glm_mb(wildcards, attempt):
    """Memory (MB) of a GLMsingle fit: the masked data (<= 60 % of the grid, float32), one run
    read in float32 twice, three single-trial arrays of the engine and two full-grid copies of
    the betas when written, the engine's chunk temporaries, plus 1 GB; times attempt."""
    runs = glm_runs(wildcards)
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    vols = sum(r.n_volumes for r in runs)
    trials = sum(_events_rows(r.events) for r in runs if r.events) or vols
    chunk = min(config["glm"]["chunklen"], nvox)
    fitted = 0.6 * nvox
    nbytes = 4 * (
        fitted * vols
        + 2 * nvox * max(r.n_volumes for r in runs)
        + 3 * fitted * trials
        + 2 * nvox * trials
        + 4 * chunk * vols
        + 2 * chunk * len(runs) * 20
    )
    return int((1000 + nbytes / 1e6) * attempt)


def glm_minutes(wildcards, attempt):
    """Runtime (min): 20 + about 5 min per 10^9 voxel-volumes; times attempt."""
    runs = glm_runs(wildcards)
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    vols = sum(r.n_volumes for r in runs)
    return int((20 + 0.6 * nvox * vols / 2e8) * attempt)


def nc_session_mb(wildcards, attempt):
    """Memory (MB) of a session noise ceiling: the 4D betas (float32) three times + 500 MB."""
    runs = glm_runs(wildcards)
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    trials = sum(_events_rows(r.events) for r in runs if r.events)
    return int((500 + 3 * 4 * nvox * trials / 1e6) * attempt)


def glm_subject_of(wildcards):
    return _strip_label(wildcards.sub_prefix.split("_")[0], "sub")


def nc_subject_inputs(wildcards):
    """Betas, trials, masks and R² of every session of the subject for the variant."""
    sub = glm_subject_of(wildcards)
    outs = [
        glm_outputs(wildcards.nordic, wildcards.combine, sub, ses)
        for ses in DATASET.sessions(sub)
    ]
    return {
        "betas": [o["betas"] for o in outs],
        "trials": [o["trials"] for o in outs],
        "mask": [o["mask"] for o in outs],
        "r2": [o["r2"] for o in outs],
    }


def nc_subject_mb(wildcards, attempt):
    """Memory (MB): the subject's betas (float32, all sessions) twice, one session's 4D image
    once more, plus 500 MB."""
    sub = glm_subject_of(wildcards)
    runs = [r for r in DATASET.runs if r.subject == sub]
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    trials = sum(_events_rows(r.events) for r in runs if r.events)
    return int((500 + 3 * 4 * nvox * trials / 1e6) * attempt)


def subject_repeat_counts(subject):
    """Distinct repeat counts (>= 2) of the subject's stimuli over all its sessions, when they
    are mixed (else [])."""
    runs = [r for r in DATASET.runs if r.subject == subject and r.events]
    try:
        counts = nc_stage.stimulus_counts(
            [r.events for r in runs],
            label_column=config["glm"]["label_column"],
            blank_trial_types=config["glm"]["blank_trial_types"],
        )
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None
    return nc_stage.mixed_repeat_counts(counts)


def glm_targets():
    """Every GLMsingle output and noise-ceiling map requested by the config, the analysis
    masks of the fitted sessions and the type-B reference betas."""
    targets = []
    everywhere = set(config["glm"]["all_sessions_variants"])
    fitted = sorted(
        {p for pairs in glm_variant_sessions().values() for p in pairs}, key=str
    )
    if fitted:
        targets.append(str(ANALYSIS / "dataset_description.json"))
    for sub, ses in fitted:
        mask = analysis_mask(sub, ses)
        targets.extend([mask, str(sidecar_path(mask))])
    targets.extend(reference_targets())
    for variant, pairs in glm_variant_sessions().items():
        nordic, combine = variant.split("-")
        targets.append(str(glm_root(nordic, combine) / "dataset_description.json"))
        for sub, ses in pairs:
            targets.extend(glm_outputs(nordic, combine, sub, ses).values())
            targets.extend(nc_session_outputs(nordic, combine, sub, ses).values())
        if variant not in everywhere:
            continue
        for sub in sorted({s for s, _ in pairs}):
            targets.extend(nc_subject_outputs(nordic, combine, sub).values())
            for n in subject_repeat_counts(sub):
                targets.extend(nc_repeats_output(nordic, combine, sub, n).values())
    return targets


# --- ROIs, comparison and reports (rois.smk, report.smk) ----------------------------

from echoprep.stages import anatomy as anatomy_stage
from echoprep.stages import comparison as comparison_stage
from echoprep.stages import report as report_stage
from echoprep.stages import rois as rois_stage

ROIS = OUT / "rois"
COMPARISON = OUT / "comparison"
REPORTS = OUT / "reports"
REPORT_CAPTIONS = Path(workflow.basedir) / "workflow" / "report"


def provided(name, *args):
    """A helper defined by another stage's rules (func_grid, func_brain_mask of spatial.smk)
    called with args; None when that file is not included or the helper returns None."""
    fn = globals().get(name)
    return fn(*args) if fn is not None else None


def rois_enabled():
    """ROIs, ROI tables and the comparison need the GLM and noise-ceiling stages."""
    return bool(glm_variant_sessions())


def visual_source(subject):
    """(nordic, combine, session) whose GLM outputs define the subject's visual ROI."""
    variant = config["rois"]["visual"]["variant"] or next(iter(glm_variants()), None)
    if variant not in glm_variants():
        raise WorkflowError(
            f"rois.visual.variant: expected a variant this config produces "
            f"({', '.join(glm_variants())}); found {variant!r}. Fix: choose one of them (the "
            "default raw-single needs nordic-off outputs and the single-echo variant)."
        )
    wanted = config["rois"]["visual"]["session"]
    sessions = comparison_sessions(subject) or DATASET.sessions(subject)
    session = _strip_label(wanted, "ses") if wanted else sessions[0]
    if session not in DATASET.sessions(subject):
        raise WorkflowError(
            f"rois.visual.session: sub-{subject} has no session {wanted!r}; it has "
            f"{DATASET.sessions(subject)}"
        )
    pairs = glm_variant_sessions().get(variant, [])
    if (subject, session) not in pairs:
        raise WorkflowError(
            f"rois.visual: {variant} is not fitted for sub-{subject} ses-{session}. Fix: use a "
            "comparison session (comparison.sessions) or add the variant to "
            "glm.all_sessions_variants."
        )
    nordic, combine = variant.split("-")
    return nordic, combine, session


def visual_glm(subject):
    """The GLM outputs (dict) the visual ROI of a subject is computed from."""
    nordic, combine, session = visual_source(subject)
    return glm_outputs(nordic, combine, subject, session)


def roi_grid(subject):
    """The functional grid of a subject: the T1w-aligned reference of spatial preprocessing,
    else the GLM mask the visual ROI comes from (same grid as every GLM output)."""
    return provided("func_grid", subject) or visual_glm(subject)["mask"]


def roi_brain_mask(subject):
    """Brain mask on the functional grid (d' outside = brain - ROI): spatial's, else the GLM
    mask of the visual ROI's source."""
    return provided("func_brain_mask", subject) or visual_glm(subject)["mask"]


def roi_space():
    return glm_space()


def roi_res(subject):
    """res label of the subject's ROI masks (config rois.res, else the functional voxel size:
    spatial.voxel_size for a T1w-aligned grid when set, else the raw BOLD's)."""
    if config["rois"]["res"]:
        return config["rois"]["res"]
    spatial = config.get("spatial") or {}
    size = spatial.get("voxel_size") if provided("func_grid", subject) else None
    if size is None:
        import nibabel

        run = [r for r in DATASET.runs if r.subject == subject][0]
        size = nibabel.load(run.echoes[0].mag).header.get_zooms()[:3]
    return rois_stage.res_label(size)


def user_rois(subject):
    """The user ROI files of a subject (rois.dir), by (category, label)."""
    try:
        found = rois_stage.find_roi_files(config["rois"]["dir"], subject)
    except ValueError as exc:
        raise WorkflowError(str(exc)) from None
    return {(f.category, f.label): f for f in found}


def roi_masks(subject):
    """Every ROI mask of a subject on its functional grid (visual ROI first)."""
    res = roi_res(subject)
    masks = [
        rois_stage.roi_mask_path(
            ROIS,
            subject,
            rois_stage.VISUAL_CATEGORY,
            rois_stage.VISUAL_LABEL,
            res,
            roi_space(),
        )
    ]
    for category, label in user_rois(subject):
        masks.append(
            rois_stage.roi_mask_path(ROIS, subject, category, label, res, roi_space())
        )
    return [str(m) for m in masks]


def visual_roi(subject):
    return roi_masks(subject)[0]


def user_roi_inputs(wildcards):
    found = user_rois(wildcards.subject).get(
        (wildcards.roi_category, wildcards.roi_label)
    )
    if found is None:
        raise WorkflowError(
            f"no ROI {wildcards.roi_category}/{wildcards.roi_label} for sub-{wildcards.subject} "
            f"in rois.dir ({config['rois']['dir']})"
        )
    files = {"mask": str(found.path), "reference": roi_grid(wildcards.subject)}
    if found.space != "T1w":
        xfm = anatomy_stage.output_paths(
            OUT / "anat", wildcards.subject, ["xfm_from_template"]
        )["xfm_from_template"]
        files["xfm"] = str(xfm)
    return files


def user_roi_params(wildcards, input):
    found = user_rois(wildcards.subject)[(wildcards.roi_category, wildcards.roi_label)]
    args = (
        f"--space {found.space} --category {wildcards.roi_category}"
        f" --grid-space {roi_space() or 'native'}"
    )
    if "xfm" in input.keys():
        args += f" --xfm-from-template {input.xfm}"
    return args


def visual_roi_inputs(wildcards):
    glm = visual_glm(wildcards.subject)
    files = {k: glm[k] for k in ("betas", "trials", "summary", "onoff_r2")}
    if config["rois"]["visual"]["method"] != "blank_trials":
        # the run-level test needs least-squares betas (type D's ridge and autoscale offset
        # make the runs look alike): the type-B betas of the source (rule glm_reference)
        nordic, combine, session = visual_source(wildcards.subject)
        files["betas"] = reference_outputs(nordic, combine, wildcards.subject, session)[
            "betas_typeb"
        ]
    files["mask"] = roi_brain_mask(wildcards.subject)
    # the ROI lies inside the analysis mask of its source session (the voxels every variant
    # was fitted on)
    files["analysis"] = analysis_mask(
        wildcards.subject, visual_source(wildcards.subject)[2]
    )
    return files


def visual_roi_mb(wildcards, attempt):
    """Memory (MB): the source session's 4D betas (float32) three times + 500 MB."""
    _, _, session = visual_source(wildcards.subject)
    runs = DATASET.runs_of(wildcards.subject, session)
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    trials = sum(_events_rows(r.events) for r in runs if r.events)
    return int((500 + 3 * 4 * nvox * trials / 1e6) * attempt)


def visual_roi_variant(wildcards):
    nordic, combine, _ = visual_source(wildcards.subject)
    return f"{nordic}-{combine}"


def roi_table_path(nordic="{nordic}", combine="{combine}", subject=None, session=None):
    """The ROI table (and sidecar) of a session and variant, as patterns or for a session."""
    folder, stem = (
        glm_stage.session_key(subject, session, glm_task())
        if subject is not None
        else ("{ses_dir}", "{ses_prefix}")
    )
    path = glm_root(nordic, combine) / folder / rois_stage.roi_table_name(stem)
    return {"tsv": str(path), "json": str(path.with_suffix(".json"))}


def roi_table_inputs(wildcards):
    sub, ses = glm_session_of(wildcards)
    return {
        "nc": nc_session_outputs(wildcards.nordic, wildcards.combine, sub, ses)["nc"],
        "r2": glm_outputs(wildcards.nordic, wildcards.combine, sub, ses)["r2"],
        "masks": roi_masks(sub),
    }


def roi_targets():
    """ROI masks of every subject and the ROI table of every fitted session and variant."""
    if not rois_enabled():
        return []
    targets = [str(ROIS / "dataset_description.json")]
    for sub in DATASET.subjects():
        targets.extend(roi_masks(sub))
    for variant, pairs in glm_variant_sessions().items():
        nordic, combine = variant.split("-")
        for sub, ses in pairs:
            targets.extend(roi_table_path(nordic, combine, sub, ses).values())
    return targets


def comparison_paths():
    return {
        k: str(v)
        for k, v in comparison_stage.output_paths(COMPARISON, glm_task()).items()
    }


def comparison_entries(subject=None):
    """One dict per comparison session and variant (of one subject when given): the keys of
    comparison_stage.ENTRY_KEYS (NC map, ROI, brain, the variant's fit mask, betas and trials,
    and the session's type-B reference betas)."""
    entries = []
    for sub in [subject] if subject else DATASET.subjects():
        for ses in comparison_sessions(sub):
            reference = reference_betas(sub, ses)
            for variant in glm_variants():
                if (sub, ses) not in glm_variant_sessions().get(variant, []):
                    continue
                nordic, combine = variant.split("-")
                glm = glm_outputs(nordic, combine, sub, ses)
                entries.append(
                    {
                        "subject": sub,
                        "session": ses or "n/a",
                        "variant": variant,
                        "nc": nc_session_outputs(nordic, combine, sub, ses)["nc"],
                        "roi": visual_roi(sub),
                        "brain": roi_brain_mask(sub),
                        "mask": glm["mask"],
                        "betas": glm["betas"],
                        "trials": glm["trials"],
                        "reference": reference,
                        "reference_trials": reference_trials(sub, ses),
                    }
                )
    return entries


def comparison_subject_paths(subject="{subject}"):
    return {
        k: str(v)
        for k, v in comparison_stage.subject_output_paths(
            COMPARISON, subject, glm_task()
        ).items()
    }


def comparison_subjects():
    """Subjects with at least one comparison session that the GLM fits."""
    return [sub for sub in DATASET.subjects() if comparison_entries(sub)]


def comparison_subject_inputs(wildcards):
    entries = comparison_entries(wildcards.subject)
    keys = ("nc", "roi", "brain", "mask", "betas", "trials", "reference")
    return {k: sorted({str(e[k]) for e in entries if e[k]}) for k in keys}


def comparison_subject_args(wildcards):
    words = [
        comparison_stage.entry_words(e) for e in comparison_entries(wildcards.subject)
    ]
    return " ".join(f"--entry {w}" for w in words)


def comparison_subject_mb(wildcards, attempt):
    """Memory (MB): one session's 4D betas (float32) read twice (variant and reference) and
    their ROI copies, + 1 GB."""
    sessions = comparison_sessions(wildcards.subject) or DATASET.sessions(
        wildcards.subject
    )
    runs = DATASET.runs_of(wildcards.subject, sessions[0])
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    trials = sum(_events_rows(r.events) for r in runs if r.events)
    return int((1000 + 2.5 * 4 * nvox * trials / 1e6) * attempt)


def comparison_inputs(wildcards):
    subjects = comparison_subjects()
    return {
        "tables": [comparison_subject_paths(s)["tsv"] for s in subjects],
        "bootstraps": [comparison_subject_paths(s)["bootstrap"] for s in subjects],
    }


def report_session(subject):
    return (comparison_sessions(subject) or DATASET.sessions(subject))[0]


def report_inputs(wildcards):
    """Every input the subject's report shows that this config produces."""
    sub = wildcards.subject
    ses = report_session(sub)
    runs = DATASET.runs_of(sub, ses)
    combines = config["variants"]["combine"]
    files = {}
    if "nordic" in NORDIC_VARIANTS:
        shown = "single" if "single" in combines else combines[0]
        files["bold_raw"] = combine_outputs(shown, runs[0], "raw")["bold"]
        files["bold_nordic"] = combine_outputs(shown, runs[0], "nordic")["bold"]
    if "optcom" in combines:
        files["t2star"] = combine_outputs("optcom", runs[0], NORDIC_VARIANTS[-1])[
            "t2star"
        ]
    grid = provided("func_grid", sub)
    if grid:
        files["confounds"] = [
            str(
                run_output(
                    OUT / "spatial", run_key(r), "timeseries", ".tsv", desc="confounds"
                )
            )
            for r in runs
        ]
        if sub in DATASET.t1w:
            files["underlay"] = str(
                anatomy_stage.output_paths(OUT / "anat", sub, ["preproc"])["preproc"]
            )
        else:
            files["underlay"] = grid
    shown = [
        v for v in glm_variants() if (sub, ses) in glm_variant_sessions().get(v, [])
    ]
    if shown:
        top = "nordic-optcom" if "nordic-optcom" in shown else shown[-1]
        files["r2"] = glm_outputs(*top.split("-"), sub, ses)["r2"]
        files["nc"] = [nc_session_outputs(*v.split("-"), sub, ses)["nc"] for v in shown]
        files["roi_tables"] = [
            roi_table_path(*v.split("-"), sub, ses)["tsv"] for v in shown
        ]
        # the subject's own comparison (not the group one: a new subject must not rerun the
        # reports of the others)
        if comparison_entries(sub):
            own = comparison_subject_paths(sub)
            files["comparison_table"] = own["tsv"]
            files["comparison_bootstrap"] = own["bootstrap"]
    if diagnostics_pairs(sub):
        files["diagnostics"] = diagnostics_outputs(sub)["tsv"]
    return files


def report_args(wildcards, input):
    """Command-line arguments for the inputs present."""
    sub = wildcards.subject
    ses = report_session(sub)
    shown = [
        v for v in glm_variants() if (sub, ses) in glm_variant_sessions().get(v, [])
    ]
    keys = input.keys()
    args = [f"--subject {sub}"] + ([f"--session {ses}"] if ses else [])
    for key, flag in (
        ("bold_raw", "--bold-raw"),
        ("bold_nordic", "--bold-nordic"),
        ("t2star", "--t2star"),
        ("underlay", "--underlay"),
        ("r2", "--r2"),
    ):
        if key in keys:
            args.append(f"{flag} {input[key]}")
    if "underlay" in keys:
        kind = "T1w" if sub in DATASET.t1w else "functional reference"
        args.append(f"--underlay-kind '{kind}'")
    if "confounds" in keys:
        args.append("--confounds " + " ".join(input.confounds))
    if "r2" in keys:
        top = "nordic-optcom" if "nordic-optcom" in shown else shown[-1]
        args.append(f"--r2-variant {top}")
    if "nc" in keys:
        args.append("--nc " + " ".join(f"{v}={p}" for v, p in zip(shown, input.nc)))
        args.append(
            "--roi-table "
            + " ".join(f"{v}={p}" for v, p in zip(shown, input.roi_tables))
        )
    if "comparison_table" in keys:
        args.append(f"--comparison-table {input.comparison_table}")
        args.append(f"--comparison-bootstrap {input.comparison_bootstrap}")
        args.append(f"--rank-by {config['comparison']['rank_by']}")
    if "diagnostics" in keys:
        args.append(f"--diagnostics {input.diagnostics}")
    return " ".join(args)


from echoprep.stages import diagnostics as diagnostics_stage


def diagnostics_pairs(subject):
    """(session, combine) of the subject's comparison sessions where both the NORDIC-off and
    the NORDIC-on GLM of that echo handling are fitted (empty: no NORDIC diagnostics).
    """
    if "nordic" not in NORDIC_VARIANTS or not rois_enabled():
        return []
    fitted = glm_variant_sessions()
    return [
        (ses, combine)
        for ses in comparison_sessions(subject)
        for combine in config["variants"]["combine"]
        if all(
            (subject, ses) in fitted.get(f"{n}-{combine}", []) for n in NORDIC_VARIANTS
        )
    ]


def diagnostics_outputs(subject="{subject}"):
    """The NORDIC diagnostics table of a subject (and its sidecar), as patterns or for one."""
    path = diagnostics_stage.output_path(REPORTS, subject, glm_task())
    return {"tsv": str(path), "json": str(sidecar_path(path))}


def _diagnostics_items(subject):
    """(tsnr, glm, nordic_json) argument tuples of a subject's diagnostics."""
    tsnr, glm, sidecars = [], [], []
    pairs = diagnostics_pairs(subject)
    for ses, combine in pairs:
        label = ses or "n/a"
        for run in DATASET.runs_of(subject, ses):
            raw, nordic = (
                combine_outputs(combine, run, n)["bold"] for n in NORDIC_VARIANTS
            )
            tsnr.append((label, combine, raw, nordic))
        for n in NORDIC_VARIANTS:
            g = glm_outputs(n, combine, subject, ses)
            glm.append((label, combine, n, g["betas"], g["trials"], g["mask"]))
    for ses in sorted({s for s, _ in pairs}, key=lambda s: s or ""):
        for run in DATASET.runs_of(subject, ses):
            for e in run.echoes:
                sidecars.append(
                    (ses or "n/a", nordic_outputs(run, str(e.echo))["bold_json"])
                )
    return tsnr, glm, sidecars


def diagnostics_inputs(wildcards):
    """Echo-handling outputs with NORDIC off and on, their GLM fits, the NORDIC sidecars and
    the subject's visual ROI and brain mask."""
    sub = wildcards.subject
    tsnr, glm, sidecars = _diagnostics_items(sub)
    return {
        "roi": visual_roi(sub),
        "brain": roi_brain_mask(sub),
        "bold": [p for item in tsnr for p in item[2:]],
        "glm": [p for item in glm for p in item[3:]],
        "nordic_json": [item[1] for item in sidecars],
    }


def diagnostics_args(wildcards, input):
    """``--tsnr``, ``--glm`` and ``--nordic-json`` arguments of the subject's diagnostics."""
    tsnr, glm, sidecars = _diagnostics_items(wildcards.subject)
    args = [f"--tsnr {' '.join(map(str, t))}" for t in tsnr]
    args += [f"--glm {' '.join(map(str, g))}" for g in glm]
    args += [f"--nordic-json {' '.join(map(str, j))}" for j in sidecars]
    return " ".join(args)


def diagnostics_mb(wildcards, attempt):
    """Memory (MB): a session's 4D betas three times or one run's series twice (float32),
    plus 1 GB."""
    sub = wildcards.subject
    sessions = {ses for ses, _ in diagnostics_pairs(sub)}
    runs = [r for ses in sessions for r in DATASET.runs_of(sub, ses)]
    if not runs:
        return 1000 * attempt
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    trials = sum(_events_rows(r.events) for r in runs if r.events)
    vols = max(r.n_volumes for r in runs)
    return int((1000 + 4 * nvox * max(3 * trials, 2 * vols) / 1e6) * attempt)


def report_mb(wildcards, attempt):
    """Memory (MB): two float32 copies of one run's 4D series (tSNR) + 1 GB."""
    runs = DATASET.runs_of(wildcards.subject, report_session(wildcards.subject))
    nvox = runs[0].shape[0] * runs[0].shape[1] * runs[0].shape[2]
    return int((1000 + 2 * 4 * nvox * runs[0].n_volumes / 1e6) * attempt)


def report_targets():
    """The comparison outputs and one HTML report per subject, with the folders'
    dataset descriptions."""
    if not config["report"]["enabled"]:
        return []
    targets = [str(REPORTS / "dataset_description.json")]
    targets += [str(REPORTS / f"sub-{sub}.html") for sub in DATASET.subjects()]
    for sub in DATASET.subjects():
        if diagnostics_pairs(sub):
            targets.extend(diagnostics_outputs(sub).values())
    if rois_enabled() and comparison_entries():
        targets.append(str(COMPARISON / "dataset_description.json"))
        targets.extend(comparison_paths().values())
    return targets


# --- spatial (anatomy.smk, spatial.smk) ---------------------------------------------------

import shlex

from echoprep.io.paths import sidecar_path

from echoprep.stages import anatomy as anatomy_stage
from echoprep.stages import spatial as spatial_stage

SPATIAL_ROOT = OUT / "spatial"
#: A run's file stem (run entities only; keeps subject-level names such as
#: sub-01_space-T1w_boldref from matching the per-run patterns).
SPATIAL_RUN_PREFIX = (
    r"sub-[A-Za-z0-9]+(_ses-[A-Za-z0-9]+)?_task-[A-Za-z0-9]+"
    r"(_(acq|ce|rec|dir|run)-[A-Za-z0-9]+)*"
)
ANAT_ROOT = OUT / "anat"


wildcard_constraints:
    subject=r"[A-Za-z0-9]+",


def spatial_space():
    """Space label of the resampled echoes: "T1w", or None (spatial off, or native grid)."""
    spatial = config["spatial"]
    return "T1w" if spatial["enabled"] and spatial["output_space"] == "T1w" else None


def _sidecared(paths, skip=()):
    files = {}
    for key, path in paths.items():
        files[key] = str(path)
        if key not in skip:
            files[f"{key}_json"] = str(sidecar_path(path))
    return files


def anat_outputs(subject="{subject}"):
    """Anatomy outputs (and sidecars) of a subject, as patterns or for a subject."""
    # the segmentation look-up table (dseg.tsv) has no sidecar
    return _sidecared(
        anatomy_stage.output_paths(ANAT_ROOT, subject), skip=("dseg_tsv",)
    )


def anat_out_args(wildcards, output):
    """``--out KEY=PATH`` items of the anatomy rule."""
    keys = anatomy_stage.DEFAULT_OUTPUTS
    return " ".join(f"{k}={shlex.quote(str(output[k]))}" for k in keys)


def anat_t1w(wildcards):
    """The subject's T1w (any session's anat/)."""
    try:
        return str(DATASET.t1w[wildcards.subject])
    except KeyError:
        raise WorkflowError(
            f"sub-{wildcards.subject}: no T1w image found; add one (sub-X/anat/ or "
            "sub-X/ses-Y/anat/) or set spatial.output_space: native"
        ) from None


def anat_options():
    return json.dumps(config["anatomy"], sort_keys=True)


def spatial_options():
    return json.dumps(spatial_stage.stage_options(config["spatial"]), sort_keys=True)


def reference_run(subject):
    """The subject's reference run (first run of its first session): runs and sessions are
    aligned to it."""
    return next(r for r in DATASET.runs if r.subject == subject)


def spatial_run_outputs(run=None):
    """Per-run geometry outputs (and sidecars), as patterns or for a run."""
    key = run_key(run) if run is not None else ("{run_dir}", "{run_prefix}")
    return _sidecared(spatial_stage.run_outputs(SPATIAL_ROOT, key))


def spatial_subject_outputs(subject="{subject}"):
    """Per-subject grid outputs (and sidecars), as patterns or for a subject."""
    return _sidecared(spatial_stage.subject_outputs(SPATIAL_ROOT, subject))


def preproc_root(nordic="{nordic}"):
    return OUT / f"preproc-{nordic}"


def preproc_echo(run=None, echo="{echo}", nordic="{nordic}"):
    """A resampled echo of a run (preproc-<nordic>/), as a pattern or for a run."""
    key = run_key(run) if run is not None else ("{run_dir}", "{run_prefix}")
    return str(
        spatial_stage.echo_output(preproc_root(nordic), key, echo, spatial_space())
    )


def preproc_echo_outputs():
    """The resample rule's outputs: temporary unless spatial.keep_echoes."""
    bold = preproc_echo()
    files = {"bold": bold, "bold_json": str(sidecar_path(bold))}
    if config["spatial"]["keep_echoes"]:
        return files
    return {k: temp(v) for k, v in files.items()}


def func_grid(subject):
    """The subject's functional grid image (space-T1w boldref), or None (spatial disabled or
    native output)."""
    if not spatial_space():
        return None
    return spatial_subject_outputs(subject)["boldref"]


def func_brain_mask(subject):
    """The anatomy brain mask on the subject's functional grid, or None (spatial disabled or
    native output)."""
    if not spatial_space():
        return None
    return spatial_subject_outputs(subject)["brain_mask"]


def _spatial_reference_echo(run):
    n = config["spatial"]["reference_echo"]
    if n > len(run.echoes):
        raise WorkflowError(
            f"{run_prefix(run.entities)}: spatial.reference_echo is {n} but the run has "
            f"{len(run.echoes)} echoes; set spatial.reference_echo to 1..{len(run.echoes)}"
        )
    return run.echoes[n - 1]


def spatial_noise_volumes(nordic):
    """Trailing noise volumes the spatial stage drops from the echoes of a NORDIC variant
    (NORDIC removes its own by default)."""
    n = config["nordic"]["noise_volumes"]
    return n if nordic == "raw" or config["nordic"]["keep_noise_volumes"] else 0


def _use_fieldmap(run):
    return run.fieldmap is not None and config["spatial"]["fieldmap"]


def spatial_run_inputs(wildcards):
    """Raw reference echo, the fieldmap files, the reference run's boldref (other runs)."""
    run = run_of(wildcards)
    files = {"echo": str(_spatial_reference_echo(run).mag)}
    if _use_fieldmap(run):
        files["fieldmap"] = [str(p) for p in run.fieldmap.files]
    ref = reference_run(run.subject)
    if ref is not run:
        files["reference"] = spatial_run_outputs(ref)["boldref"]
    return files


def spatial_run_params(wildcards, input):
    """Command-line arguments of spatial_run that depend on the run."""
    run = run_of(wildcards)
    args = ["--tr", str(run.repetition_time)]
    args += ["--drop-volumes", str(config["nordic"]["noise_volumes"])]
    if run.slice_timing:
        args += ["--slice-timing", *[f"{t:.6g}" for t in run.slice_timing]]
    if _use_fieldmap(run):
        args += ["--fieldmap-json", json.dumps(run.fieldmap.as_spec(), sort_keys=True)]
        if run.pe_direction:
            args += ["--pe-direction", run.pe_direction]
        if run.total_readout_time:
            args += ["--readout-time", f"{run.total_readout_time:.8g}"]
    if "reference" in input.keys():
        args += ["--reference-boldref", input.reference]
    return " ".join(shlex.quote(a) for a in args)


def spatial_subject_inputs(wildcards):
    """The reference run's boldref and the anatomy's T1w and brain mask."""
    anat = anat_outputs(wildcards.subject)
    ref = reference_run(wildcards.subject)
    return {
        "boldref": spatial_run_outputs(ref)["boldref"],
        "t1w": anat["preproc"],
        "mask": anat["brain_mask"],
    }


def _echo_source(run, echo, nordic):
    for e in run.echoes:
        if str(e.echo) == str(echo):
            return (
                str(e.mag)
                if nordic == "raw"
                else nordic_outputs(run, str(e.echo))["bold"]
            )
    raise WorkflowError(f"{run_prefix(run.entities)} has no echo {echo}")


def spatial_resample_inputs(wildcards):
    """One echo of a variant, the run's geometry, the output grid (+ its transform)."""
    run = run_of(wildcards)
    files = {
        "echo": _echo_source(run, wildcards.echo, wildcards.nordic),
        "geometry": spatial_run_outputs(run)["xfm"],
    }
    if spatial_space():
        grid = spatial_subject_outputs(run.subject)
        files["grid"] = grid["boldref"]
        files["xfm"] = grid["xfm"]
    else:
        files["grid"] = spatial_run_outputs(reference_run(run.subject))["boldref"]
    return files


def spatial_resample_params(wildcards, input):
    """Command-line arguments of spatial_resample that depend on the job."""
    run = run_of(wildcards)
    te = next(e.echo_time for e in run.echoes if str(e.echo) == wildcards.echo)
    args = ["--te", f"{te:.6g}"]
    args += ["--drop-volumes", str(spatial_noise_volumes(wildcards.nordic))]
    if "xfm" in input.keys():
        args += ["--ref-xfm", input.xfm]
    return " ".join(shlex.quote(str(a)) for a in args)


def spatial_mb(wildcards, attempt):
    """Memory (MB): one echo in float32 four times (input, slice timing, output) + 1 GB."""
    run = run_of(wildcards)
    return int((1000 + run_mb(run, 4 / len(run.echoes)) - 500) * attempt)


def combine_repetition_time(wildcards):
    """Repetition time (s) of the echo-handling inputs: tr_out after upsampling."""
    spatial = config["spatial"]
    if spatial["enabled"] and spatial["slice_timing"] and spatial["tr_out"]:
        return spatial["tr_out"]
    return repetition_time(wildcards)


def spatial_targets():
    """Anatomy and spatial outputs that are targets by themselves (the echoes are pulled in
    by the echo-handling rules)."""
    if not config["spatial"]["enabled"]:
        return []
    targets = [str(SPATIAL_ROOT / "dataset_description.json")]
    targets += [
        str(preproc_root(n) / "dataset_description.json") for n in NORDIC_VARIANTS
    ]
    for sub in DATASET.subjects():
        if spatial_space():
            targets.append(str(ANAT_ROOT / "dataset_description.json"))
            targets.extend(anat_outputs(sub).values())
            targets.extend(spatial_subject_outputs(sub).values())
    for run in DATASET.runs:
        targets.extend(spatial_run_outputs(run).values())
    return sorted(set(targets))
