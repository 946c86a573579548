"""One LAION-fMRI-size session through the real workflow: per-rule wall, CPU, peak memory.

What runs (the default config, ``config/config.yaml``: the full 2x3 comparison):

1. ``echoprep simulate --preset laion --runs N`` (90 x 110 x 72 voxels at 1.8 mm, 3 echoes,
   magnitude + phase, 163 volumes at TR 1.9 s, fieldmaps, head motion; T1w at 1 mm).
2. Snakemake runs every per-run rule (``--until``: spatial per run, the per-run chains --
   NORDIC, the resampling into space-T1w, single echo, optcom --, tedana on raw and on NORDIC
   data; each step of a chain is metered and reported as a row of its own)
   on those N runs, with the subject rules they need (anatomy, spatial_subject).
3. The session is made LAION-size: runs N+1..12 are added to the raw dataset and to the
   derivatives as hard links of the simulated runs' files (run r reuses run ``(r-1) % N + 1``;
   its events come from the simulator's 12-run design, so images repeat across runs). No data
   is written for them, and Snakemake (``--rerun-triggers mtime``) takes them as done.
4. Snakemake runs the rest of the workflow on the 12-run session: the analysis mask, one
   GLMsingle fit per variant (6) plus the reference fit, noise ceilings, ROIs, comparison,
   report, LAION layout.

Every job runs alone (a ``bench_slot`` resource of 1), with ``--cores`` (default 2). Each
``python -m echoprep`` process is started through a meter (this script's ``_meter`` mode, put
first on ``PATH`` as ``python``) that records its wall time, CPU time (user + system of the
process and its children, ``wait4``), peak memory (the larger of ``ru_maxrss`` and the
sampled resident memory of the whole process tree) and the threads it ran with
(``OMP_NUM_THREADS`` as Snakemake set it, and the most threads seen). Jobs are matched to rules
through ``snakemake --summary``.

Printed: a table per rule, then per-session totals for the 2x3: per-run rules x 12 runs (mean
over the N simulated runs) + the session and subject rules as measured, and last one line::

    session_2x3_cpu_hours=<x> max_job_peak_gib=<y> max_run_rule_minutes=<z>

The table's last two columns and the line after the totals are the GPU column: each job of a
GPU-capable step (the NORDIC step, ``glm``, ``glm_heldout``, ``glm_reference``) with
``nordic.device`` and ``glm.device`` set to ``cuda``, in CPU seconds and GPU seconds. They are
a model (``benchmarks/laion_dataset.py``, ``gpu_model``: the measured job less its CPU kernel,
plus the device run measured on an H200), not metered here; ``--markdown JSON --gpu`` prints
them for a table already measured.

Targets (issue 18): 2x3 session <= 3 CPU-hours, every job <= 16 GiB, every per-run rule
<= 10 min. ``--json FILE`` writes the table (``benchmarks/laion_session.json`` is the one the
workflow's resources are checked against, ``tests/unit/test_resources_measured.py``).
Run::

    .venv/bin/python benchmarks/laion_session.py --runs 1 [--cores 2] [--dir D] [--keep]
        [--json benchmarks/laion_session.json]
    .venv/bin/python benchmarks/laion_session.py --markdown benchmarks/laion_session.json [--gpu]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SESSION_RUNS = 12
TARGET_CPU_HOURS = 3.0
TARGET_PEAK_GIB = 16.0
TARGET_RUN_MINUTES = 10.0
RUN_RE = re.compile(r"_run-(\d+)")


# --------------------------------------------------------------------------------------
# the meter: one python -m echoprep process, measured
# --------------------------------------------------------------------------------------


def _stderr_target() -> str:
    """Where this process's stderr goes: each rule's shell sends it to the job's log."""
    try:
        return os.readlink("/proc/self/fd/2")
    except OSError:
        return ""


def meter(argv: list[str]) -> int:
    """Run ``argv`` (the real python and its arguments), write one record, return its code."""
    import psutil

    out_dir = Path(os.environ["ECHOPREP_BENCH_RECORDS"])
    load = os.getloadavg()[0]
    t0 = time.time()
    proc = subprocess.Popen([os.environ["ECHOPREP_BENCH_PY"], *argv])
    ps = psutil.Process(proc.pid)
    tree_peak = 0
    threads_peak = 0
    status = rusage = None
    while True:
        pid, status, rusage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            procs = [ps, *ps.children(recursive=True)]
            rss = threads = 0
            for p in procs:
                try:
                    rss += p.memory_info().rss
                    threads += p.num_threads()
                except psutil.Error:
                    pass
            tree_peak = max(tree_peak, rss)
            threads_peak = max(threads_peak, threads)
        except psutil.Error:
            pass
        time.sleep(0.2)
    wall = time.time() - t0
    code = os.waitstatus_to_exitcode(status)
    record = {
        "argv": argv,
        "start": t0,
        "wall_s": wall,
        "cpu_s": rusage.ru_utime + rusage.ru_stime,
        "maxrss_bytes": rusage.ru_maxrss * 1024,
        "tree_peak_bytes": tree_peak,
        "log": _stderr_target(),
        "threads_allocated": int(os.environ.get("OMP_NUM_THREADS", "1") or 1),
        "threads_peak": threads_peak,
        "exit": code,
        "load_at_start": load,
    }
    (out_dir / f"{t0:.6f}_{proc.pid}.json").write_text(json.dumps(record))
    return code


# --------------------------------------------------------------------------------------
# running the workflow
# --------------------------------------------------------------------------------------


def _metered_python(venv: Path) -> list[str]:
    """A venv over the project's .venv whose ``bin/python`` is the meter; returns the command
    that runs Snakemake with it. The workflow puts ``sys.prefix/bin`` first on each job's PATH
    (workflow/rules/common.smk), so every ``python -m echoprep`` of a job goes through it."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python3*/site-packages"))
    project_site = next((ROOT / ".venv").glob("lib/python3*/site-packages"))
    pth = f"import site; site.addsitedir({str(project_site)!r})\n"
    (site / "echoprep_bench.pth").write_text(pth)
    real = sorted(venv.glob("bin/python3.*"))[0]
    shim = venv / "bin" / "python"
    shim.unlink()
    here = Path(__file__).resolve()
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{here}" _meter "$@"\n')
    shim.chmod(0o755)
    return [str(real), "-m", "snakemake"]


def _snakemake(
    snakemake: list[str],
    d: Path,
    cores: int,
    extra: list[str],
    env: dict[str, str],
    log: Path,
    targets: list[str],
) -> None:
    cmd = [
        *snakemake,
        *targets,
        "--cores",
        str(cores),
        "--config",
        f"bids_dir={d / 'bids'}",
        f"output_dir={d / 'results'}",
        f"work_dir={d / 'work'}",
        "--default-resources",
        "bench_slot=1",
        "--resources",
        "bench_slot=1",
        *extra,
    ]
    shown = " ".join(cmd[len(snakemake) + len(targets) :])
    print(f"+ snakemake [{len(targets)} target files] {shown}", flush=True)
    with log.open("a") as fh:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    if done.returncode:
        tail = log.read_text().splitlines()[-60:]
        raise SystemExit("snakemake failed (log " + str(log) + "):\n" + "\n".join(tail))


def _summary(d: Path, env: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Output path -> rule and log path -> rule, from ``snakemake --summary`` (no job runs)."""
    cmd = [
        str(ROOT / ".venv" / "bin" / "snakemake"),
        "--cores",
        "1",
        "--config",
        f"bids_dir={d / 'bids'}",
        f"output_dir={d / 'results'}",
        f"work_dir={d / 'work'}",
        "--summary",
    ]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    rules: dict[str, str] = {}
    logs: dict[str, str] = {}
    for line in done.stdout.splitlines():
        cols = line.split("\t")
        if len(cols) >= 4 and cols[0] != "output_file":
            rules[cols[0]] = cols[2]
            for log in cols[3].split(","):
                if log.strip() not in ("", "-"):
                    logs[str(Path(log.strip()).resolve())] = cols[2]
    return rules, logs


def _per_run_rules(outputs: dict[str, str]) -> list[str]:
    return sorted({rule for path, rule in outputs.items() if RUN_RE.search(Path(path).name)})


# --------------------------------------------------------------------------------------
# making the session LAION-size
# --------------------------------------------------------------------------------------


def _renamed(path: Path, src: int, dst: int) -> Path:
    return Path(str(path).replace(f"_run-{src:02d}", f"_run-{dst:02d}"))


def _link_or_copy(src: Path, dst: Path, text_swap: tuple[str, str] | None) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        return
    if text_swap and src.suffix in (".json", ".tsv", ".txt"):
        dst.write_text(src.read_text().replace(*text_swap))
        st = src.stat()
        os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        os.link(src, dst)


def extend_raw(bids: Path, n_sim: int, seed: int, preset: str) -> None:
    """Add raw runs n_sim+1..12 (hard links; events of the simulator's 12-run design)."""
    sys.path.insert(0, str(ROOT / "workflow"))
    from echoprep.simulate.design import session_design
    from echoprep.simulate.presets import PRESETS

    design = session_design(PRESETS[preset], SESSION_RUNS, seed, 1, 1)
    files = [p for p in sorted(bids.glob("sub-*/**/*")) if p.is_file() and RUN_RE.search(p.name)]
    for run in range(n_sim + 1, SESSION_RUNS + 1):
        src = (run - 1) % n_sim + 1
        for f in files:
            if f"_run-{src:02d}" not in f.name:
                continue
            dst = _renamed(f, src, run)
            if f.name.endswith("_events.tsv"):
                rows = design[design["run"] == run]
                dst.write_text(
                    rows[["onset", "duration", "trial_type", "stim_name"]].to_csv(
                        sep="\t", index=False
                    )
                )
                st = f.stat()
                os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            else:
                _link_or_copy(f, dst, (f"_run-{src:02d}", f"_run-{run:02d}"))


def extend_derivatives(d: Path, n_sim: int) -> int:
    """Hard-link every per-run output of runs 1..n_sim to runs n_sim+1..12; count the files."""
    n = 0
    for top in (d / "results", d / "work"):
        files = [p for p in sorted(top.rglob("*")) if p.is_file() and RUN_RE.search(str(p))]
        for run in range(n_sim + 1, SESSION_RUNS + 1):
            src = (run - 1) % n_sim + 1
            for f in files:
                rel = str(f.relative_to(top))
                if f"run-{src:02d}" not in rel:
                    continue
                dst = top / rel.replace(f"run-{src:02d}", f"run-{run:02d}")
                _link_or_copy(f, dst, None)
                n += 1
    return n


# --------------------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------------------


#: Sub-command of a per-run step -> the step's name (``echoprep.plan.chains``): a chain job
#: (rules ``nordic``, ``spatial_resample``: :data:`CHAIN_JOB_RULES`) runs several steps, one
#: metered process each, all writing to the job's log; each is a row of its own, as the step's
#: own rule would be (the subject's ``spatial_reference`` runs ``spatial run`` too: its own row).
CHAIN_JOB_RULES = ("nordic", "spatial_resample")
STEP_OF_COMMAND = {
    ("spatial", "run"): "spatial_run",
    ("nordic",): "nordic",
    ("spatial", "resample"): "spatial_resample",
    ("combine", "single"): "single_echo",
    ("combine", "optcom"): "optcom",
}


def _command(argv: list[str]) -> tuple[str, ...]:
    """The sub-command words of a ``python -m echoprep ...`` argv (``("combine", "optcom")``)."""
    return tuple(a for a in argv[2:4] if not a.startswith("-"))


def collect(records_dir: Path, logs: dict[str, str], per_run: set[str]) -> list[dict]:
    jobs = []
    latest: dict[tuple[str, tuple[str, ...]], dict] = {}
    for f in sorted(records_dir.glob("*.json")):  # named by start time: the last run wins
        rec = json.loads(f.read_text())
        if rec["argv"][:2] == ["-m", "echoprep"]:
            latest[(rec["log"] or f.name, _command(rec["argv"]))] = rec
    per_run = per_run | set(STEP_OF_COMMAND.values())
    for (_, command), rec in latest.items():
        rule = logs.get(str(Path(rec["log"]).resolve()) if rec["log"] else "")
        if rule is None:
            rule = "echoprep " + " ".join(command)
        elif command in STEP_OF_COMMAND and rule in CHAIN_JOB_RULES:
            rule = STEP_OF_COMMAND[command]
        runs = sorted({int(m) for a in rec["argv"] for m in RUN_RE.findall(a)})
        jobs.append(
            {
                "rule": rule,
                "per_run": rule in per_run,
                "run": runs[0] if len(runs) == 1 else None,
                "wall_s": round(rec["wall_s"], 2),
                "cpu_s": round(rec["cpu_s"], 2),
                "peak_gib": round(max(rec["maxrss_bytes"], rec["tree_peak_bytes"]) / 2**30, 3),
                "threads": rec["threads_allocated"],
                "threads_peak": rec["threads_peak"],
                "exit": rec["exit"],
                "load_at_start": round(rec["load_at_start"], 2),
            }
        )
    return jobs


def summarise(jobs: list[dict], n_sim: int) -> tuple[list[dict], dict[str, float]]:
    by_rule: dict[str, list[dict]] = defaultdict(list)
    for j in jobs:
        by_rule[j["rule"]].append(j)
    rows = []
    for rule, js in sorted(by_rule.items(), key=lambda kv: -sum(j["cpu_s"] for j in kv[1])):
        per_run = js[0]["per_run"]
        runs_seen = len({j["run"] for j in js}) if per_run else 1
        rows.append(
            {
                "rule": rule,
                "scope": "run" if per_run else "session/subject",
                "jobs": len(js),
                "jobs_per_session": (
                    round(len(js) / max(runs_seen, 1) * SESSION_RUNS) if per_run else len(js)
                ),
                "wall_s_mean": round(sum(j["wall_s"] for j in js) / len(js), 1),
                "wall_s_max": round(max(j["wall_s"] for j in js), 1),
                "cpu_s_mean": round(sum(j["cpu_s"] for j in js) / len(js), 1),
                "peak_gib_max": round(max(j["peak_gib"] for j in js), 2),
                "threads": max(j["threads"] for j in js),
                "cores_used": round(
                    sum(j["cpu_s"] for j in js) / max(sum(j["wall_s"] for j in js), 1e-9), 2
                ),
            }
        )
    run_cpu = sum(j["cpu_s"] for j in jobs if j["per_run"]) / n_sim * SESSION_RUNS
    rest_cpu = sum(j["cpu_s"] for j in jobs if not j["per_run"])
    run_wall = sum(j["wall_s"] for j in jobs if j["per_run"]) / n_sim * SESSION_RUNS
    rest_wall = sum(j["wall_s"] for j in jobs if not j["per_run"])
    totals = {
        "session_2x3_cpu_hours": round((run_cpu + rest_cpu) / 3600, 3),
        "per_run_rules_cpu_hours": round(run_cpu / 3600, 3),
        "session_subject_rules_cpu_hours": round(rest_cpu / 3600, 3),
        "session_2x3_wall_hours_one_job_at_a_time": round((run_wall + rest_wall) / 3600, 3),
        "max_job_peak_gib": round(max(j["peak_gib"] for j in jobs), 2),
        "max_load_at_start": max(j["load_at_start"] for j in jobs),
        "max_run_rule_minutes": round(
            max((j["wall_s"] for j in jobs if j["per_run"]), default=0.0) / 60, 2
        ),
    }
    return rows, totals


def gpu_columns(rows: list[dict], geometry: dict[str, Any]) -> dict[str, Any]:
    """The GPU column of the table: ``benchmarks/laion_dataset.py``'s model (``gpu_model``:
    ``nordic.device`` and ``glm.device`` cuda, from the H200 device runs; not metered)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from laion_dataset import gpu_model

    return gpu_model(rows, geometry)


def gpu_session_hours(rows: list[dict], totals: dict[str, float], gpu: dict[str, Any]) -> str:
    """The per-session 2x3 line of the GPU column: CPU-hours and GPU-hours."""
    saved = sum(
        r["jobs_per_session"] * (r["cpu_s_mean"] - gpu[r["rule"]].cpu_s)
        for r in rows
        if r["rule"] in gpu
    )
    gpu_s = sum(r["jobs_per_session"] * gpu[r["rule"]].gpu_s for r in rows if r["rule"] in gpu)
    cpu_h = totals["session_2x3_cpu_hours"] - saved / 3600
    return (
        f"with nordic.device and glm.device cuda (a model: benchmarks/laion_dataset.py): "
        f"{cpu_h:.2f} CPU-h + {gpu_s / 3600:.3f} GPU-h per 2x3 session"
    )


def print_table(
    rows: list[dict], totals: dict[str, float], cores: int, geometry: dict[str, Any]
) -> None:
    gpu = gpu_columns(rows, geometry)
    head = f"{'rule':24s} {'scope':15s} {'jobs':>4s} {'/ses':>4s} {'wall s':>14s} "
    head += f"{'CPU s':>8s} {'peak GiB':>8s} {'thr':>3s} {'cores':>5s} {'CPU s cuda':>10s} "
    head += f"{'GPU s':>6s}"
    print(head)
    for r in rows:
        wall = f"{r['wall_s_mean']:.1f} ({r['wall_s_max']:.0f})"
        g = gpu.get(r["rule"])
        print(
            f"{r['rule']:24s} {r['scope']:15s} {r['jobs']:4d} {r['jobs_per_session']:4d} "
            f"{wall:>14s} {r['cpu_s_mean']:8.1f} {r['peak_gib_max']:8.2f} {r['threads']:3d} "
            f"{r['cores_used']:5.2f} {g.cpu_s if g else r['cpu_s_mean']:10.1f} "
            f"{g.gpu_s if g else 0.0:6.1f}"
        )
    print(
        f"\nwall: mean (max) per job; CPU: mean per job; /ses: jobs per 12-run session; "
        f"cores: CPU / wall; each job ran alone with --cores {cores}. CPU s cuda, GPU s: per job "
        f"with nordic.device and glm.device cuda, modelled (benchmarks/laion_dataset.py)."
    )
    print(
        f"per-session 2x3: per-run rules {totals['per_run_rules_cpu_hours']:.2f} CPU-h "
        f"+ session and subject rules {totals['session_subject_rules_cpu_hours']:.2f} CPU-h "
        f"= {totals['session_2x3_cpu_hours']:.2f} CPU-h (target {TARGET_CPU_HOURS}); "
        f"one job at a time {totals['session_2x3_wall_hours_one_job_at_a_time']:.2f} h wall"
    )
    print(gpu_session_hours(rows, totals, gpu))
    print(f"highest 1-min load average at a job's start: {totals['max_load_at_start']:.2f}")
    print(
        f"largest job peak {totals['max_job_peak_gib']:.2f} GiB (target {TARGET_PEAK_GIB}); "
        f"longest per-run job {totals['max_run_rule_minutes']:.2f} min "
        f"(target {TARGET_RUN_MINUTES})"
    )


def _geometry(preset: str, n_sim: int) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "workflow"))
    from echoprep.simulate.presets import PRESETS

    p = PRESETS[preset]
    return {
        "preset": preset,
        "shape": list(p.shape),
        "voxel_mm": p.voxel_size,
        "volumes_per_run": p.n_volumes,
        "trials_per_run": p.image_trials_per_run + p.blank_trials_per_run,
        "runs_per_session": SESSION_RUNS,
        "simulated_runs": n_sim,
    }


def markdown(measured: dict[str, Any], gpu: bool = False) -> str:
    """The README's per-rule table from a ``--json`` table (``gpu``: with the GPU column,
    :func:`gpu_columns`, and the session's line)."""
    model = gpu_columns(measured["rules"], measured["geometry"]) if gpu else {}
    extra = " CPU s / job, cuda | GPU s / job |" if gpu else ""
    lines = [
        "| rule | per | jobs / session | threads | wall s, mean (max) | CPU s / job | peak GiB |"
        + extra,
        "|---|---|---|---|---|---|---|" + ("---|---|" if gpu else ""),
    ]
    for r in measured["rules"]:
        line = (
            f"| `{r['rule']}` | {r['scope']} | {r['jobs_per_session']} | {r['threads']} | "
            f"{r['wall_s_mean']:.0f} ({r['wall_s_max']:.0f}) | {r['cpu_s_mean']:.0f} | "
            f"{r['peak_gib_max']:.2f} |"
        )
        if gpu:
            g = model.get(r["rule"])
            line += f" {g.cpu_s:.0f} | {g.gpu_s:.1f} |" if g else f" {r['cpu_s_mean']:.0f} | |"
        lines.append(line)
    if gpu:
        lines += ["", gpu_session_hours(measured["rules"], measured["totals"], model)]
    return "\n".join(lines)


def machine() -> str:
    """CPU model, CPU count and memory of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB"


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


def _simulate(d: Path, args: argparse.Namespace) -> None:
    subprocess.run(
        [
            *(str(ROOT / ".venv" / "bin" / "echoprep"), "simulate", str(d / "bids")),
            *("--preset", args.preset, "--runs", str(args.runs), "--seed", str(args.seed)),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=1, help="runs to simulate and process (1-12)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--preset", default="laion", help="simulator preset (tiny: a quick check of this script)"
    )
    ap.add_argument("--dir", type=Path, default=None, help="working folder (default: a temp)")
    ap.add_argument("--keep", action="store_true", help="keep the working folder")
    ap.add_argument("--json", type=Path, default=None, help="write the table here")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="go on in --dir after an interruption: keep the simulation, finished jobs and "
        "their records (a job that ran again counts once, its last run)",
    )
    ap.add_argument(
        "--remeasure",
        nargs="*",
        default=None,
        metavar="RULE",
        help="in the --dir of a finished run: run these rules' jobs of the simulated runs again "
        "(forced, nothing else), one at a time under the meter, and print the table anew from "
        "the records (the last run of a job counts; no RULE: only the table). Run it from the "
        "checkout the run was made in (Snakemake's records of the jobs' logs are there)",
    )
    ap.add_argument(
        "--markdown",
        type=Path,
        default=None,
        metavar="JSON",
        help="print the README table of a --json table and stop",
    )
    ap.add_argument(
        "--gpu",
        action="store_true",
        help="with --markdown: add the GPU column (nordic.device and glm.device cuda, modelled "
        "by benchmarks/laion_dataset.py from the device runs; the session is not run again)",
    )
    args = ap.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.markdown.read_text()), gpu=args.gpu))
        return 0
    if not 1 <= args.runs <= SESSION_RUNS:
        ap.error(f"--runs must be 1..{SESSION_RUNS}; found {args.runs}")
    if args.remeasure is not None:
        if args.dir is None or not (args.dir / "records").is_dir():
            ap.error("--remeasure needs the --dir of a finished run (with its records folder)")
        return remeasure(args.dir, args)
    d = args.dir or Path(tempfile.mkdtemp(prefix="echoprep-laion-"))
    resume = args.resume and (d / "bids").exists()
    if (d / "bids").exists() and not resume:
        ap.error(f"{d} already holds a bids folder; give an empty or new --dir, or --resume")
    d.mkdir(parents=True, exist_ok=True)
    records = d / "records"
    records.mkdir(exist_ok=resume)
    if resume:
        shutil.rmtree(d / "venv")
    snakemake = _metered_python(d / "venv")
    env = _bench_env(d)
    log = d / "snakemake.log"
    print(f"machine: {machine()}; folder {d}", flush=True)

    t0 = time.time()
    if resume:
        print("resuming: simulation and finished jobs kept", flush=True)
    else:
        _simulate(d, args)
        print(f"simulated {args.runs} {args.preset} run(s) in {time.time() - t0:.0f} s", flush=True)

    planned, _ = _summary(d, env)
    per_run = _per_run_rules(planned)
    print("per-run rules:", ", ".join(per_run), flush=True)
    targets = sorted(
        p
        for p, rule in planned.items()
        if rule in per_run and int(RUN_RE.findall(Path(p).name)[0]) <= args.runs
    )
    again = ["--rerun-triggers", "mtime"] if resume else []
    _snakemake(snakemake, d, args.cores, again, env, log, targets)
    extend_raw(d / "bids", args.runs, args.seed, args.preset)
    n_linked = extend_derivatives(d, args.runs)
    print(
        f"session made {SESSION_RUNS} runs: {n_linked} per-run outputs hard-linked from the "
        f"{args.runs} simulated run(s)",
        flush=True,
    )
    _snakemake(snakemake, d, args.cores, ["--rerun-triggers", "mtime"], env, log, [])
    tabulate(d, args, env, per_run, t0)
    if not args.keep and args.dir is None:
        shutil.rmtree(d, ignore_errors=True)
    return 0


def _bench_env(d: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["ECHOPREP_BENCH_RECORDS"] = str(d / "records")
    env["ECHOPREP_BENCH_PY"] = str(ROOT / ".venv" / "bin" / "python")
    return env


def remeasure(d: Path, args: argparse.Namespace) -> int:
    """Run ``args.remeasure`` rules' jobs of the simulated runs (or the session's, for session
    rules) again under the meter, forced and alone, then :func:`tabulate` from the records.

    Their outputs are written again in place (the same content: the runs linked from them keep
    theirs); no other job runs (``--allowed-rules``), whatever Snakemake's view of the rest.
    """
    t0 = time.time()
    shutil.rmtree(d / "venv", ignore_errors=True)
    snakemake = _metered_python(d / "venv")
    env = _bench_env(d)
    print(f"machine: {machine()}; folder {d}; re-measuring {', '.join(args.remeasure)}")
    planned, _ = _summary(d, env)
    per_run = _per_run_rules(planned)
    unknown = sorted(set(args.remeasure) - set(planned.values()))
    if unknown:
        raise SystemExit(f"--remeasure: no job of {unknown} in this run's plan")
    targets = sorted(
        p
        for p, rule in planned.items()
        if rule in args.remeasure
        and (rule not in per_run or int(RUN_RE.findall(Path(p).name)[0]) <= args.runs)
    )
    if targets:
        extra = ["--forcerun", *args.remeasure, "--allowed-rules", *args.remeasure]
        extra += ["--rerun-triggers", "mtime"]
        _snakemake(snakemake, d, args.cores, extra, env, d / "snakemake.log", targets)
    tabulate(d, args, env, per_run, t0)
    return 0


def tabulate(
    d: Path, args: argparse.Namespace, env: dict[str, str], per_run: list[str], t0: float
) -> None:
    """The table of the records in ``d`` (printed, and written to ``args.json``)."""
    records = d / "records"
    _, logs = _summary(d, env)
    jobs = collect(records, logs, set(per_run))
    failed = [j for j in jobs if j["exit"]]
    if failed:
        raise SystemExit(f"{len(failed)} jobs failed: {failed}")
    late = sorted({j["rule"] for j in jobs if j["per_run"] and (j["run"] or 0) > args.runs})
    if late:
        print(f"warning: per-run rules re-ran on the linked runs: {late}", flush=True)
    rows, totals = summarise(jobs, args.runs)
    geometry = _geometry(args.preset, args.runs)
    print()
    print_table(rows, totals, args.cores, geometry)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine(),
                    "date": time.strftime("%Y-%m-%d"),
                    "command": f"benchmarks/laion_session.py --runs {args.runs} "
                    f"--cores {args.cores}",
                    "geometry": geometry,
                    "rules": rows,
                    "totals": totals,
                    "jobs": jobs,
                },
                indent=1,
            )
            + "\n"
        )
        print(f"table written to {args.json}")
    print(f"bench wall {(time.time() - t0) / 60:.1f} min; peak RSS of this script ", end="")
    print(f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")
    print(
        f"session_2x3_cpu_hours={totals['session_2x3_cpu_hours']:.2f} "
        f"max_job_peak_gib={totals['max_job_peak_gib']:.2f} "
        f"max_run_rule_minutes={totals['max_run_rule_minutes']:.2f}"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_meter":
        raise SystemExit(meter(sys.argv[2:]))
    raise SystemExit(main())
