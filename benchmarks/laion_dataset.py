"""CPU-hours of the whole LAION-fMRI dataset under a config: a job census times the session table.

``benchmarks/laion_session.py`` measures one 2x3 comparison session (every variant, the
held-out fits, the subject's anatomy and summaries). With the default config only each
subject's first session is such a session; the others fit ``glm.all_sessions_variants``
(nordic-optcom) and run only what that needs. This script counts what each kind of session
runs and prices it with the measured per-job CPU time:

1. ``echoprep simulate --preset tiny --sessions 2 --runs 12`` (the job structure does not
   depend on the image size), and a copy without ``ses-02``.
2. ``snakemake -n`` of each with the config (default: ``config/config.yaml``; ``--config
   KEY=VALUE ...`` adds to it); the difference of the two job tables is what one more
   (regular) session adds, the one-session table is the comparison session with the subject's
   rules.
3. Each job is priced with the mean CPU seconds of its rule in the session table
   (``--table``, default ``benchmarks/laion_session.json``); a per-run chain job (rules
   ``nordic`` and ``spatial_resample``) with the sum over its steps (``Plan.chain_steps``).
   Subject rules are priced as measured on one session: an underestimate for those that read
   every session of a subject (the cross-session noise ceiling, the subject report).

Printed: the census, the comparison session (which should reproduce the table's
``session_2x3_cpu_hours``: a check of the census), a regular session, and last one line::

    regular_session_cpu_hours=<x> comparison_session_cpu_hours=<y> dataset_cpu_hours=<z>

for ``--subjects`` x ``--sessions`` (LAION-fMRI: 5 x 165). Run::

    .venv/bin/python benchmarks/laion_dataset.py [--subjects 5] [--sessions 165]
        [--table benchmarks/laion_session.json] [--config KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
SNAKEMAKE = ROOT / ".venv" / "bin" / "snakemake"
TABLE_ROW = re.compile(r"^(\w+)\s+(\d+)\s*$")
#: Rules whose jobs run once per run and session (the rest: per session or per subject).
CHAINS = {"nordic": "nordic", "spatial_resample": "raw"}


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


def chain_steps(bids: Path, work: Path, config: list[str]) -> dict[str, tuple[str, ...]]:
    """The steps of each per-run chain rule under the config (``Plan.chain_steps``)."""
    sys.path.insert(0, str(ROOT / "workflow"))
    import yaml

    from echoprep.config import validate_config
    from echoprep.io.bids import discover
    from echoprep.plan import Plan, discovery_options

    given = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    for item in config:
        key, _, value = item.partition("=")
        given[key] = yaml.safe_load(value)
    given.update(bids_dir=str(bids), output_dir=str(work / "o"), work_dir=str(work / "w"))
    cfg = validate_config(given)
    dataset = discover(cfg["bids_dir"], **discovery_options(cfg), cache_dir=work / "idx")
    plan = Plan(cfg, dataset)
    sides = plan.chain_sides()
    return {rule: plan.chain_steps(side) for rule, side in CHAINS.items() if side in sides}


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument("--sessions", type=int, default=165, help="sessions per subject")
    ap.add_argument("--table", type=Path, default=ROOT / "benchmarks" / "laion_session.json")
    ap.add_argument("--config", nargs="*", default=[], help="KEY=VALUE added to the config")
    args = ap.parse_args(argv)
    table = json.loads(args.table.read_text())
    cpu = {r["rule"]: float(r["cpu_s_mean"]) for r in table["rules"]}
    # rules the session table has no job of (the config snapshot, dataset descriptions and
    # LAION-layout links are sub-second local jobs; a missing one fails loudly in price())
    for light in ("config_snapshot", "dataset_description"):
        cpu.setdefault(light, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        two = t / "two" / "bids"
        sim = [str(PYTHON), "-m", "echoprep", "simulate", "--preset", "tiny"]
        sim += ["--subjects", "1", "--sessions", "2", "--runs", "12", str(two)]
        subprocess.run(sim, cwd=ROOT, check=True, capture_output=True)
        one = t / "one" / "bids"
        shutil.copytree(two, one, ignore=lambda d, names: ["ses-02"] if "ses-02" in names else [])
        c2 = job_counts(two, t / "two", args.config)
        c1 = job_counts(one, t / "one", args.config)
        steps = chain_steps(one, t / "one", args.config)
    regular = c2 - c1
    first_s, first_rows = price(c1, cpu, steps)
    regular_s, regular_rows = price(regular, cpu, steps)
    for rule, parts in steps.items():
        print(f"chain {rule}: steps {' + '.join(parts)}")
    for title, rows in (("comparison session", first_rows), ("regular session", regular_rows)):
        print(f"\n{title}: rule, jobs, CPU s per job (session table), CPU h")
        for rule, n, c in rows:
            print(f"  {rule:22s} {n:4d} {c:9.1f} {n * c / 3600:7.3f}")
    first_h, regular_h = first_s / 3600, regular_s / 3600
    dataset_h = args.subjects * (first_h + (args.sessions - 1) * regular_h)
    table_h = table["totals"]["session_2x3_cpu_hours"]
    print(
        f"\ncomparison session (with the subject's rules) {first_h:.2f} CPU-h "
        f"(the session table says {table_h:.2f}; the census prices the table's rows)"
    )
    print(f"regular session {regular_h:.2f} CPU-h")
    print(
        f"dataset {args.subjects} subjects x {args.sessions} sessions: {dataset_h:,.0f} CPU-h "
        f"(if every session were a comparison session: "
        f"{args.subjects * args.sessions * first_h:,.0f})"
    )
    print(
        f"regular_session_cpu_hours={regular_h:.2f} comparison_session_cpu_hours={first_h:.2f} "
        f"dataset_cpu_hours={dataset_h:.0f}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
