"""CPU-hours (and GPU-hours) of the LAION-fMRI dataset: a job census times the session table.

``benchmarks/laion_session.py`` measures one 2x3 comparison session (every variant, the
held-out fits, the subject's anatomy and summaries). With the default config each subject's
first two sessions are such sessions (``comparison.sessions: []``, so that each takes its
planted responses from the other); the others fit ``glm.all_sessions_variants``
(nordic-optcom) and run only what that needs. This script counts what each kind of session
runs and prices it with the measured per-job CPU time:

1. ``echoprep simulate --preset tiny --sessions 2 --runs 12 --no-freesurfer`` (the job
   structure does not depend on the image size; the surface rules, for subjects with a
   FreeSurfer folder, are priced apart in docs/resources.md), and a copy without ``ses-02``.
2. ``snakemake -n`` of each with the config (default: ``config/config.yaml``; ``--config
   KEY=VALUE ...`` adds to it); the one-session table is the comparison session with the
   subject's rules, the difference of the two job tables what the second (comparison)
   session adds, and the same difference with ``comparison.sessions: ['01']`` what a regular
   session adds.
3. Each job is priced with the mean CPU seconds of its rule in the session table
   (``--table``, default ``benchmarks/laion_session.json``); a per-run chain job (rules
   ``nordic`` and ``spatial_resample``) with the sum over its steps
   (``Plan.chains.chain_steps``). Subject rules are priced as measured on one session: an
   underestimate for those that read every session of a subject (the cross-session noise
   ceiling, the subject report).

4. The dataset: ``snakemake -n`` of a header-only raw tree of ``--subjects`` x ``--sessions``
   sessions of 12 runs at LAION geometry (``benchmarks/plan_scale.py``'s tree, cached in
   ``--tree-dir``; default 5 x 33, LAION-fMRI itself: 5 participants x 33 sessions, each
   subject's first two sessions comparison sessions, the other 155 regular ones), every job
   priced as above. The per-session figures times the sessions
   (``subjects x (comparison + second + (sessions - 2) x regular)``) are printed beside it as
   a check.

Printed: the census, the comparison session (which should reproduce the table's
``session_2x3_cpu_hours``: a check of the census), the second comparison session, a regular
session, the dataset, and last one line::

    regular_session_cpu_hours=<x> comparison_session_cpu_hours=<y>
    second_comparison_session_cpu_hours=<w> dataset_cpu_hours=<z>

(``dataset_cpu_hours`` from the tree's census). ``--sessions 165`` prices five times
LAION-fMRI (a 5 x 165 tree: 9,900 runs; its dry run takes about 2 minutes here).

``--gpu`` adds a second column: the same sessions and dataset with ``nordic.device: cuda`` and
``glm.device: cuda`` (the census counted again with those settings added), in CPU-hours and
GPU-hours. It is a model built from the measurements, not a metered GPU session
(:func:`gpu_model`, shared with ``benchmarks/laion_session.py``): each job of a GPU-capable
step keeps the CPU time that is not its kernel (reading, masks, writing, sidecars) and trades
the kernel's CPU time for the device run's CPU time and the device's seconds (GPU-hours: the
device kernel's wall time plus its one-off start, torch and the CUDA context, once per job,
counted as CPU time on one core too). The kernel's CPU time is measured on the table's machine
(:data:`KERNEL_CPU`: NORDIC with the table's 2 threads, the GLM engine with one BLAS thread
by ``benchmarks/glm_job_kernel.py``, a lower bound of its share of a 2-thread job); the
device figures are read from the H100 runs on the final code (:data:`DEVICE_FILES`; the
H200 runs of issue 43 stay in ``benchmarks/`` as history). Device time and
CPU time per fit are taken as proportional to the voxels x volumes the fit reads, relative to
the case measured. Steps:

- ``nordic`` (a step of the per-run NORDIC chain job): one kernel call per echo;
- ``glm``: one full fit of the session's runs;
- ``glm_heldout``: ``comparison.splits`` x 2 half fits, each on half the runs (the voxel-volumes
  of ``splits`` full fits);
- ``glm_reference``: one type-B fit (no GLMdenoise, no ridge); its CPU kernel is measured as
  such, its device time taken as a full fit's (an upper bound: no type-B device run was
  measured; the model gives this job no CPU gain).

The last line then adds::

    gpu_regular_session_cpu_hours=<a> gpu_regular_session_gpu_hours=<b>
    gpu_second_comparison_session_cpu_hours=<e> gpu_second_comparison_session_gpu_hours=<f>
    gpu_dataset_cpu_hours=<c> gpu_dataset_gpu_hours=<d>

A GPU job holds its GPU for the whole job (the NORDIC chain job: its geometry, resampling and
optcom steps too), so an allocation billed by the hour costs more GPU-hours than the device
time counted here. Run::

    .venv/bin/python benchmarks/laion_dataset.py [--subjects 5] [--sessions 33]
        [--table benchmarks/laion_session.json] [--config KEY=VALUE ...] [--gpu]
        [--tree-dir /tmp/echoprep-plan-scale]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"
TABLE_ROW = re.compile(r"^(\w+)\s+(\d+)\s*$")
#: Rules whose jobs run once per run and session (the rest: per session or per subject).
CHAINS = {"nordic": "nordic", "spatial_resample": "raw"}
#: The config settings of the GPU column (``--gpu``).
GPU_SETTINGS = {"nordic": {"device": "cuda"}, "glm": {"device": "cuda"}}

# --------------------------------------------------------------------------------------
# the GPU model
# --------------------------------------------------------------------------------------

#: Device runs the model reads (an NVIDIA H100 80GB HBM3 node, 16 cores, on the code of
#: b4f072b): NORDIC of one LAION echo (``benchmarks/nordic.py --cases b z --device cpu cuda
#: --threads 16``, its case ``b``) and the GLM engine on a 150,000-voxel session
#: (``benchmarks/glm.py --cases b --threads 16 --device cpu cuda``); their ``cuda`` records.
#: The H200 runs (``*_gpu_h200*.json``) came from the code before the NORDIC rank-deficient
#: route, its workspace-aware batch size and the GLM engine's last speed changes.
DEVICE_FILES = {
    "nordic": ROOT / "benchmarks" / "nordic_gpu_h100.json",
    "glm": ROOT / "benchmarks" / "glm_gpu_h100_full.json",
}
#: The NORDIC case of :data:`DEVICE_FILES` that is one LAION echo.
NORDIC_CASE = "b"
#: CPU seconds of the kernels alone on the session table's machine (the 2-core VM, AMD EPYC),
#: and the voxel-volumes of the call measured; 2026-11-26, beside another benchmark (load 2-5
#: on the 2 cores):
#:
#: - ``nordic``: one LAION echo with the table's 2 threads, ``benchmarks/nordic.py --cases b
#:   --threads 2 --device cpu`` (46.6 CPU-s with 1 thread: the kernel's own thread pool wastes
#:   little when the cores are shared);
#: - ``glm``: the engine's full fit (FITHRF_GLMDENOISE_RR, defaults) at the geometry of one
#:   ``glm`` job: 253,680 voxels (:data:`GLM_BRAIN_FRACTION`), 12 runs x 163 volumes at TR 1.9 s,
#:   352 conditions x 3 = 1,056 trials (88 a run, as the session), data from
#:   ``echoprep.simulate.glm_session.make_session`` as in ``benchmarks/glm.py`` (its 2-volume
#:   spacing of onsets relaxed to 1, which 88 trials in 163 volumes need); CPU time of the fit
#:   alone. With **one** BLAS thread: with two, OpenBLAS's threads busy-wait for each other on
#:   the shared cores (37,500 voxels: 118.5 CPU-s with 2 threads, 20.6 with 1), which says
#:   nothing about a job alone on 2 cores. One thread is a lower bound of the kernel's share of
#:   a 2-thread job, so the CPU time this model removes is a lower bound too;
#: - ``glm_typeb``: the same fit stopped at type B (``wantglmdenoise=0, wantfracridge=0``, as
#:   the ``glm_reference`` job), one BLAS thread.
KERNEL_CPU: dict[str, dict[str, float]] = {
    "nordic": {"cpu_s": 50.9, "voxel_volumes": 90 * 110 * 72 * 163},
    "glm": {"cpu_s": 132.8, "voxel_volumes": 253_680 * 12 * 163},
    "glm_typeb": {"cpu_s": 36.6, "voxel_volumes": 253_680 * 12 * 163},
}
#: Share of the functional matrix a session's GLM fits: the simulator's brain voxels in the
#: LAION slab (``echoprep.simulate.anatomy.tissue_fractions``, brain fraction >= 0.5: 253,680
#: of 90 x 110 x 72; the analysis mask is those voxels on the T1w-aligned grid).
GLM_BRAIN_FRACTION = 253_680 / (90 * 110 * 72)


@dataclass(frozen=True)
class Device:
    """A device run: voxel-volumes of the call, its wall and CPU seconds, its one-off start."""

    voxel_volumes: int
    wall_s: float
    cpu_s: float
    setup_s: float


@dataclass(frozen=True)
class GpuJob:
    """One job (or chain step) of a GPU-capable step with ``device: cuda``, modelled."""

    cpu_s: float  #: CPU seconds of the job
    gpu_s: float  #: device seconds (kernel wall + the one-off start)
    kernel_cpu_s: float  #: the CPU kernel's seconds in the measured job, replaced


def devices() -> dict[str, Device]:
    """The ``cuda`` records of :data:`DEVICE_FILES` (the mean of repeated ones)."""
    records = json.loads(DEVICE_FILES["nordic"].read_text())
    nordic = [r for r in records if r["device"] == "cuda" and r["case"] == NORDIC_CASE]
    glm = json.loads(DEVICE_FILES["glm"].read_text())["cases"][0]["runs"]["cuda"]
    glm_work = glm["n_voxels"] * glm["runs"] * glm["volumes"]
    return {
        "nordic": Device(
            math.prod(nordic[0]["shape"]),
            mean(r["wall_s"] for r in nordic),
            mean(r["cpu_s"] for r in nordic),
            mean(r["setup_s"] for r in nordic),
        ),
        "glm": Device(glm_work, glm["wall_s"], glm["cpu_s"], glm["init_s"]),
    }


def config_splits(config: dict[str, Any] | None = None) -> int:
    """``comparison.splits`` of a validated config (None: ``config/config.yaml``'s, or 2)."""
    if config is None:
        import yaml

        config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    return int((config.get("comparison") or {}).get("splits", 2))


def gpu_model(
    rules: list[dict[str, Any]], geometry: dict[str, Any], splits: int | None = None
) -> dict[str, GpuJob]:
    """Per GPU-capable step of a session table (``rules``: its rows, ``geometry``: its
    geometry), the job with ``nordic.device`` and ``glm.device`` set to ``cuda``: the measured
    CPU seconds less :data:`KERNEL_CPU` (scaled by the job's voxel-volumes), plus the device
    run's CPU seconds and its start; GPU seconds: the device's wall (scaled the same way) and
    its start. ``splits``: ``comparison.splits`` (None: the config file's)."""
    if str(ROOT / "workflow") not in sys.path:
        sys.path.insert(0, str(ROOT / "workflow"))
    from echoprep.simulate.presets import PRESETS

    cpu = {r["rule"]: float(r["cpu_s_mean"]) for r in rules}
    nx, ny, nz = geometry["shape"]
    run = nx * ny * nz * geometry["volumes_per_run"]
    fit = round(GLM_BRAIN_FRACTION * nx * ny * nz) * geometry["volumes_per_run"]
    fit *= geometry["runs_per_session"]
    halves = 2 * (config_splits() if splits is None else splits)
    echoes = len(PRESETS[geometry["preset"]].tes)
    # step: (CPU kernel, device run, calls per job, voxel-volumes per call)
    calls = {
        "nordic": ("nordic", "nordic", echoes, run),
        "glm": ("glm", "glm", 1, fit),
        "glm_heldout": ("glm", "glm", halves, fit / 2),
        "glm_reference": ("glm_typeb", "glm", 1, fit),
    }
    device = devices()
    out = {}
    for step, (kernel, name, n, work) in calls.items():
        if step not in cpu:
            continue
        k, d = KERNEL_CPU[kernel], device[name]
        kernel_s = min(n * k["cpu_s"] * work / k["voxel_volumes"], cpu[step])
        scale = work / d.voxel_volumes
        out[step] = GpuJob(
            cpu_s=cpu[step] - kernel_s + n * d.cpu_s * scale + d.setup_s,
            gpu_s=n * d.wall_s * scale + d.setup_s,
            kernel_cpu_s=kernel_s,
        )
    return out


def gpu_prices(cpu: dict[str, float], model: dict[str, GpuJob]) -> tuple[dict, dict]:
    """CPU and GPU seconds per job of every rule or step in ``cpu`` with the GPU settings."""
    return (
        {**cpu, **{k: m.cpu_s for k, m in model.items()}},
        {**dict.fromkeys(cpu, 0.0), **{k: m.gpu_s for k, m in model.items()}},
    )


# --------------------------------------------------------------------------------------
# the census
# --------------------------------------------------------------------------------------


def job_counts(bids: Path, work: Path, config: list[str]) -> Counter[str]:
    """Jobs per rule of ``snakemake -n`` on ``bids`` (the "Job stats" table)."""
    cmd = [str(SNAKEMAKE), "-n", "--cores", "2", "--config", f"bids_dir={bids}"]
    cmd += [f"output_dir={work / 'out'}", f"work_dir={work / 'work'}", *config]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"dry run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    counts: Counter[str] = Counter()
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("Job stats:"))
    for line in lines[start + 3 :]:
        m = TABLE_ROW.match(line)
        if not m:
            break
        if m.group(1) not in ("total", "all"):
            counts[m.group(1)] = int(m.group(2))
    return counts


def chain_steps(
    bids: Path, work: Path, config: list[str]
) -> tuple[dict[str, tuple[str, ...]], dict[str, Any]]:
    """The steps of each per-run chain rule under the config (``Plan.chains.chain_steps``) and
    the validated config (a section given on the command line updates the file's, as
    Snakemake's ``--config`` does)."""
    sys.path.insert(0, str(ROOT / "workflow"))
    import yaml

    from echoprep.config import validate_config
    from echoprep.io.bids import discover
    from echoprep.plan import Plan, discovery_options

    given = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for item in config:
        key, _, value = item.partition("=")
        value = yaml.safe_load(value)
        both = isinstance(value, dict) and isinstance(given.get(key), dict)
        given[key] = {**given[key], **value} if both else value
    given.update(bids_dir=str(bids), output_dir=str(work / "o"), work_dir=str(work / "w"))
    cfg = validate_config(given)
    dataset = discover(cfg["bids_dir"], **discovery_options(cfg), cache_dir=work / "idx")
    plan = Plan(cfg, dataset)
    sides = plan.chains.chain_sides()
    steps = {rule: plan.chains.chain_steps(side) for rule, side in CHAINS.items() if side in sides}
    return steps, cfg


def with_gpu(config: list[str]) -> list[str]:
    """``config`` (``KEY=VALUE`` items) with :data:`GPU_SETTINGS` added to their sections."""
    import yaml

    sections = {k: dict(v) for k, v in GPU_SETTINGS.items()}
    rest = []
    for item in config:
        key, _, value = item.partition("=")
        given = yaml.safe_load(value)
        if key in sections and isinstance(given, dict):
            sections[key] = {**given, **sections[key]}
        else:
            rest.append(item)
    dump = {k: yaml.safe_dump(v, default_flow_style=True).strip() for k, v in sections.items()}
    return rest + [f"{k}={v}" for k, v in dump.items()]


def planted_rules(cpu: dict[str, float]) -> dict[str, float]:
    """CPU s per job of the planted rules, which the session table predates: ``planted_run``
    and ``planted_glm`` from ``benchmarks/planted_cost.py``'s figures at LAION size,
    ``planted_design`` as ``rois_visual`` (each reads the reference fit's betas of a session
    once) plus its response-shape estimate. Empty when ``planted_cost.json`` is missing."""
    path = ROOT / "benchmarks" / "planted_cost.json"
    if not path.exists():
        return {}
    figures = json.loads(path.read_text())
    return {
        "planted_run": float(sum(figures["per_run_cpu_s"].values())),
        "planted_glm": float(figures["planted_glm_cpu_s"]) / 6,
        "planted_design": cpu.get("rois_visual", 0.0)
        + float(figures.get("planted_design_shape_cpu_s", 0.0)),
    }


def price(
    counts: Counter[str], cpu: dict[str, float], steps: dict[str, tuple[str, ...]]
) -> tuple[float, list[tuple[str, int, float]]]:
    """CPU seconds of the jobs ``counts`` and the rows (rule, jobs, CPU s per job)."""
    rows = []
    for rule, n in sorted(counts.items()):
        parts = steps.get(rule, (rule,))
        missing = [p for p in parts if p not in cpu]
        if missing:
            raise SystemExit(f"the session table has no CPU time for {missing} (rule {rule})")
        rows.append((rule, n, sum(cpu[p] for p in parts)))
    return sum(n * c for _, n, c in rows), rows


def census(
    config: list[str],
) -> tuple[Counter, Counter, Counter, dict[str, tuple[str, ...]], dict]:
    """Jobs per rule of a comparison session (with the subject's rules), of a second
    comparison session (the default ``comparison.sessions: []`` compares each subject's first
    two) and of one more (regular) session under ``config``, the chain steps and the validated
    config."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        two = t / "two" / "bids"
        sim = [str(PYTHON), "-m", "echoprep", "simulate", "--preset", "tiny"]
        sim += ["--subjects", "1", "--sessions", "2", "--runs", "12", str(two)]
        # without a FreeSurfer folder, like the dataset's header-only tree: the surface rules
        # are priced apart (docs/resources.md, surface_session and surface_anatomy)
        sim += ["--no-freesurfer"]
        subprocess.run(sim, cwd=ROOT, check=True, capture_output=True)
        one = t / "one" / "bids"
        shutil.copytree(two, one, ignore=lambda d, names: ["ses-02"] if "ses-02" in names else [])
        c2 = job_counts(two, t / "two", config)
        c1 = job_counts(one, t / "one", config)
        # ses-02 a regular session: only ses-01 compared
        first_only = [*config, "comparison={sessions: ['01']}"]
        regular = job_counts(two, t / "reg", first_only) - job_counts(one, t / "one1", first_only)
        steps, cfg = chain_steps(one, t / "one", config)
    return c1, c2 - c1, regular, steps, cfg


def tree_census(size: str, tree_dir: Path, config: list[str]) -> Counter[str]:
    """Jobs per rule of ``snakemake -n`` on the header-only tree of ``size`` (``"5x33"``,
    ``benchmarks/plan_scale.py``'s tree at LAION geometry, built in ``tree_dir`` unless
    there)."""
    from plan_scale import ensure_tree, parse_sizes  # benchmarks/ (this script's folder)

    tree = Path(ensure_tree(tree_dir, parse_sizes(size)[0])["path"])
    with tempfile.TemporaryDirectory() as tmp:
        return job_counts(tree, Path(tmp), config)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument(
        "--sessions", type=int, default=33, help="sessions per subject (LAION-fMRI: 33)"
    )
    ap.add_argument(
        "--tree-dir",
        type=Path,
        default=Path("/tmp/echoprep-plan-scale"),
        help="where the header-only tree is built or found (benchmarks/plan_scale.py's --dir)",
    )
    ap.add_argument("--table", type=Path, default=ROOT / "benchmarks" / "laion_session.json")
    ap.add_argument("--config", nargs="*", default=[], help="KEY=VALUE added to the config")
    ap.add_argument(
        "--gpu", action="store_true", help="add the column of nordic.device and glm.device cuda"
    )
    args = ap.parse_args(argv)
    table = json.loads(args.table.read_text())
    cpu = {r["rule"]: float(r["cpu_s_mean"]) for r in table["rules"]}
    # rules the session table has no job of (the config snapshot, dataset descriptions, the
    # confounds tables copied beside the NORDIC series and LAION-layout links are sub-second
    # local jobs; a missing one fails loudly in price())
    for light in ("config_snapshot", "dataset_description", "confounds"):
        cpu.setdefault(light, 0.0)
    cpu.update(planted_rules(cpu))
    first, second, regular, steps, _ = census(args.config)
    first_s, first_rows = price(first, cpu, steps)
    second_s, second_rows = price(second, cpu, steps)
    regular_s, regular_rows = price(regular, cpu, steps)
    for rule, parts in steps.items():
        print(f"chain {rule}: steps {' + '.join(parts)}")
    for title, rows in (
        ("comparison session", first_rows),
        ("second session (a comparison session under the default)", second_rows),
        ("regular session", regular_rows),
    ):
        print(f"\n{title}: rule, jobs, CPU s per job (session table), CPU h")
        for rule, n, c in rows:
            print(f"  {rule:22s} {n:4d} {c:9.1f} {n * c / 3600:7.3f}")
    first_h, second_h, regular_h = first_s / 3600, second_s / 3600, regular_s / 3600
    # the second session is a comparison session where it plans other jobs than a regular one
    compared = 2 if args.sessions > 1 and second != regular else 1
    per_session_h = args.subjects * (
        first_h + (compared - 1) * second_h + (args.sessions - compared) * regular_h
    )
    table_h = table["totals"]["session_2x3_cpu_hours"]
    planted_h = sum(n * c for rule, n, c in first_rows if rule.startswith("planted")) / 3600
    print(
        f"\ncomparison session (with the subject's rules) {first_h:.2f} CPU-h "
        f"(the session table says {table_h:.2f}; the census prices the table's rows, and the "
        f"planted pass, which the table predates: {planted_h:.2f} CPU-h, planted_cost.json)"
    )
    print(f"second comparison session {second_h:.2f} CPU-h")
    print(f"regular session {regular_h:.2f} CPU-h")
    size = f"{args.subjects}x{args.sessions}"
    tree = tree_census(size, args.tree_dir, args.config)
    dataset_s, dataset_rows = price(tree, cpu, steps)
    dataset_h = dataset_s / 3600
    print(f"\ndataset {size} (census of its header-only tree): rule, jobs, CPU s per job, CPU h")
    for rule, n, c in dataset_rows:
        print(f"  {rule:22s} {n:6d} {c:9.1f} {n * c / 3600:9.1f}")
    print(
        f"dataset {args.subjects} subjects x {args.sessions} sessions "
        f"({args.subjects * compared} comparison + "
        f"{args.subjects * (args.sessions - compared)} regular sessions, "
        f"{sum(tree.values()):,} jobs): {dataset_h:,.0f} CPU-h (per-session figures times the "
        f"sessions: {per_session_h:,.0f}; if every session were a comparison session: "
        f"{args.subjects * args.sessions * first_h:,.0f})"
    )
    line = (
        f"regular_session_cpu_hours={regular_h:.2f} comparison_session_cpu_hours={first_h:.2f} "
        f"second_comparison_session_cpu_hours={second_h:.2f} dataset_cpu_hours={dataset_h:.0f}"
    )
    if args.gpu:
        line += " " + gpu_column(args, table, cpu, (first_h, second_h, regular_h, dataset_h))
    print(line)
    return 0


def gpu_column(
    args: argparse.Namespace,
    table: dict[str, Any],
    cpu: dict[str, float],
    cpu_hours: tuple[float, float, float, float],
) -> str:
    """Print the GPU column (the census again with :data:`GPU_SETTINGS`, priced with
    :func:`gpu_model`) beside the CPU one; return the ``gpu_...=`` figures of the last line."""
    config = with_gpu(args.config)
    first, second, regular, steps, cfg = census(config)
    model = gpu_model(table["rules"], table["geometry"], config_splits(cfg))
    cpu_g, gpu_g = gpu_prices(cpu, model)
    print(f"\nGPU column: --config {' '.join(config)} (a model, not a metered session)")
    for step, m in model.items():
        print(
            f"  {step:14s} CPU s per job {cpu[step]:7.1f} -> {m.cpu_s:6.1f} "
            f"(CPU kernel {m.kernel_cpu_s:6.1f} replaced), GPU s per job {m.gpu_s:6.1f}"
        )
    hours = []
    for title, counts in (
        ("comparison session", first),
        ("second comparison session", second),
        ("regular session", regular),
    ):
        c_s, rows = price(counts, cpu_g, steps)
        g_s, g_rows = price(counts, gpu_g, steps)
        hours.append((c_s / 3600, g_s / 3600))
        print(f"\n{title} with the GPU settings: rule, jobs, CPU s and GPU s per job, CPU h, GPU h")
        for (rule, n, c), (_, _, g) in zip(rows, g_rows, strict=True):
            print(f"  {rule:22s} {n:4d} {c:9.1f} {g:7.1f} {n * c / 3600:7.3f} {n * g / 3600:7.3f}")
    (first_c, first_g), (second_c, second_g), (regular_c, regular_g) = hours
    tree = tree_census(f"{args.subjects}x{args.sessions}", args.tree_dir, config)
    data_c, data_g = price(tree, cpu_g, steps)[0] / 3600, price(tree, gpu_g, steps)[0] / 3600
    print(f"\n{'':28s} {'CPU config':>12s} {'nordic.device, glm.device cuda':>32s}")
    for title, c, (gc, gg), d in (
        ("comparison session", cpu_hours[0], (first_c, first_g), 2),
        ("second comparison session", cpu_hours[1], (second_c, second_g), 2),
        ("regular session", cpu_hours[2], (regular_c, regular_g), 2),
        (f"dataset {args.subjects} x {args.sessions} sessions", cpu_hours[3], (data_c, data_g), 0),
    ):
        print(f"{title:28s} {c:>6,.{d}f} CPU-h {gc:>12,.{d}f} CPU-h {gg:>7,.{d + 1}f} GPU-h")
    return (
        f"gpu_regular_session_cpu_hours={regular_c:.2f} gpu_regular_session_gpu_hours="
        f"{regular_g:.3f} gpu_second_comparison_session_cpu_hours={second_c:.2f} "
        f"gpu_second_comparison_session_gpu_hours={second_g:.3f} "
        f"gpu_dataset_cpu_hours={data_c:.0f} gpu_dataset_gpu_hours={data_g:.1f}"
    )


if __name__ == "__main__":
    raise SystemExit(main())
