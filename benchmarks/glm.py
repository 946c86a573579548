"""GLMsingle engine (FITHRF_GLMDENOISE_RR, all defaults): wall time and peak memory, on the
CPU (NumPy) and on a torch device (``glm.device``; docs/glm.md §14, "GPU").

Cases (synthetic sessions from :mod:`echoprep.simulate.glm_session`, seeded; float32 data):

- ``a``: 40 x 40 x 30 = 48 000 voxels, 6 runs x 250 volumes, TR 1.9 s, 100 conditions x 3 =
  300 trials, stimdur 3 s (the case upstream GLMsingle was measured on: 386 s, 3.98 GiB).
  Target 30 s and 1.5 GiB with one BLAS thread.
- ``b``: a LAION-fMRI-scale session: 150 000 brain voxels given as V x T (what a stage passes
  after masking), 12 runs x 304 volumes, TR 1.0 s (upsampled grid), 350 conditions x 3 =
  1050 trials, stimdur 3 s. Target 20 min and 16 GiB.

Each case and device runs in a fresh subprocess. The data are generated first; then the peak-RSS
counter is reset (``/proc/self/clear_refs``, where allowed) and the fit runs, so the peak
printed is the fit's, including the data it holds (as in the stage); ``ru_maxrss`` of the whole
process (generation included) is printed too. ``--quick`` runs the same geometry with a quarter
of the voxels and targets scaled by a quarter (cost and memory are linear in voxels);
``--voxels N`` any number of voxels (a smoke test). Run::

    .venv/bin/python benchmarks/glm.py [--cases a b] [--quick] [--threads 1] [--chunklen N]
        [--device cpu cuda] [--json FILE]

``--device cpu cuda`` (``torch-cpu``: the torch code on torch's CPU kernels) fits each case on
each device and compares the device's outputs with the CPU's: agreement of the HRF index, the
ridge fraction and ``pcnum`` (% of voxels), and the correlation of the type-D betas (pooled,
and the median and smallest per voxel). A device run is repeated in its process to show that it
repeats itself bitwise; it prints the device's peak memory (``torch.cuda.max_memory_allocated``)
and the ratio of the CPU's wall time to the device's against the target 10. Imports
(scikit-learn's mixture model, torch) and the device's initialisation (CUDA context, cuBLAS)
come before the fit's clock starts (printed apart, ``init``). The CPU run gets ``--threads``
BLAS threads; a device run, whose BLAS does only the small factorisations, gets one BLAS thread
in each of ``--threads`` pool workers.

Imports: NumPy, SciPy, PyYAML, torch (device runs) and echoprep's GLM kernels only (no
nibabel, scikit-learn, threadpoolctl or jsonschema), so a bare machine with those packages runs
it: ``PYTHONPATH=workflow python3 benchmarks/glm.py ...``. The default thresholds (``brainR2``,
``pcR2cutoff``) are the tail threshold, a mixture fit that needs scikit-learn; without it both
are fixed at the value the tail threshold gives for the case (``--thresholds fixed``, said in
the output), which changes nothing in the cost.

The machine may be shared: the load average before each case is printed with it, and the fit's
CPU time (user + system of the process), which contention inflates less than the wall time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow"))

CASES: dict[str, dict[str, Any]] = {
    "a": {
        "shape": (40, 40, 30),
        "runs": [250] * 6,
        "conditions": 100,
        "repeats": 3,
        "tr": 1.9,
        "target_s": 30.0,
        "target_gib": 1.5,
        "fixed_r2": {"quick": 0.1770, "full": 0.1554},
    },
    "b": {
        "shape": (150_000,),
        "runs": [304] * 12,
        "conditions": 350,
        "repeats": 3,
        "tr": 1.0,
        "target_s": 1200.0,
        "target_gib": 16.0,
        "fixed_r2": {"quick": 0.0779, "full": 0.0860},
    },
}
#: ``fixed_r2``: the tail threshold (%) of the ON-OFF R² of the quick and the full case (seed
#: 0, measured with scikit-learn), used for brainR2 and pcR2cutoff without it.
QUICK_FRACTION = 0.25
#: CPU wall / device wall wanted (issue 43).
DEVICE_TARGET = 10.0
GIB = 2**30


def _vm_hwm() -> int | None:
    """Peak resident set (bytes) from /proc/self/status, or None."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _shape(name: str, quick: bool, voxels: int | None) -> tuple[int, ...]:
    shape = CASES[name]["shape"]
    if voxels is not None:
        return (int(voxels),)
    if not quick:
        return shape
    if len(shape) == 1:
        return (int(shape[0] * QUICK_FRACTION),)
    return (shape[0] // 4, *shape[1:])


def _engine_defaults() -> dict[str, Any]:
    """The engine options at the config schema's defaults (read with PyYAML: the same values
    as ``echoprep.options.section_defaults("glm")``, without jsonschema)."""
    import yaml

    from echoprep.kernels.glm import REQUIRED_OPTIONS

    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    glm = schema["properties"]["glm"]["properties"]
    return {k: glm[k]["default"] for k in REQUIRED_OPTIONS}


def _make_session(*args: Any, **kwargs: Any) -> Any:
    """:func:`echoprep.simulate.glm_session.make_session`, loaded from its file: the package
    ``echoprep.simulate`` imports the dataset simulator (nibabel) when imported."""
    path = ROOT / "workflow" / "echoprep" / "simulate" / "glm_session.py"
    spec = importlib.util.spec_from_file_location("_bench_glm_session", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.make_session(*args, **kwargs)


def _blas_threads(n: int) -> Any:
    """threadpoolctl's BLAS limit where it is installed (the children's environment variables
    set the thread count anyway)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _init_device(device: str, thresholds: str) -> tuple[Any, float]:
    """The imports and the device's initialisation, outside the fit's clock (s): scikit-learn's
    mixture model (the tail threshold; both devices), torch, the CUDA context and cuBLAS."""
    t0 = time.perf_counter()
    if thresholds == "tail":
        import sklearn.mixture  # noqa: F401
    if device == "cpu":
        return None, time.perf_counter() - t0
    import torch

    if device.startswith("cuda"):
        a = torch.ones((2, 64, 64), dtype=torch.float64, device=device)
        (a @ a).sum().item()
        torch.cuda.reset_peak_memory_stats(device)
    return torch, time.perf_counter() - t0


def run_case(args: argparse.Namespace, save: str | None) -> dict[str, Any]:
    """Generate and fit one case on one device in this process; return its figures (and save
    the outputs compared between devices to ``save``)."""
    from echoprep.kernels.glm import fit_glmsingle

    name, device = args.child, args.device[0]
    c = CASES[name]
    torch, init_s = _init_device(device, args.thresholds)
    shape = _shape(name, args.quick, args.voxels)
    t0 = time.perf_counter()
    with _blas_threads(args.threads):
        s = _make_session(shape, c["runs"], c["conditions"], c["repeats"], tr=c["tr"], seed=0)
    gen_s = time.perf_counter() - t0
    design, data, stimdur, tr = s.design, s.data, s.stimdur, s.tr
    del s
    data_bytes = sum(d.nbytes for d in data)
    options = {**_engine_defaults(), "chunklen": args.chunklen}
    if args.thresholds == "fixed":
        fixed = c["fixed_r2"]["full" if shape == c["shape"] else "quick"]
        options.update(brainR2=fixed, pcR2cutoff=fixed)

    def fit() -> tuple[dict[str, Any], float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        out = fit_glmsingle(
            design, data, stimdur, tr, **options, n_threads=args.threads, device=device
        )
        return out, time.perf_counter() - t0, time.process_time() - c0

    reset = _reset_hwm()
    out, wall, cpu = fit()
    peak = _vm_hwm() if reset else None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dev_peak = None
    if torch is not None and device.startswith("cuda"):
        dev_peak = int(torch.cuda.max_memory_allocated(device))
    d = out["typed"]
    result: dict[str, Any] = {
        "case": name,
        "device": device,
        "device_name": out["params"]["device"],
        "shape": shape,
        "n_voxels": int(np.prod(shape)),
        "runs": len(c["runs"]),
        "volumes": c["runs"][0],
        "trials": int(d["betasmd"].shape[-1]),
        "tr": c["tr"],
        "thresholds": args.thresholds,
        "brainR2": out["params"]["brainR2"],
        "wall_s": wall,
        "cpu_s": cpu,
        "init_s": init_s,
        "generate_s": gen_s,
        "peak_bytes": peak if peak is not None else maxrss,
        "peak_is_fit_only": peak is not None,
        "maxrss_bytes": maxrss,
        "device_peak_bytes": dev_peak,
        "data_bytes": data_bytes,
        "pcnum": int(d["pcnum"]),
        "frac_median": float(np.median(d["FRACvalue"])),
        "r2_median": float(np.nanmedian(d["R2"])),
    }
    if device != "cpu":
        again, wall2, cpu2 = fit()
        result.update(repeat_wall_s=wall2, repeat_cpu_s=cpu2, bitwise=_same_bits(out, again))
        del again
    if save:
        np.savez(
            save,
            hrfindex=d["HRFindex"].reshape(-1),
            frac=d["FRACvalue"].reshape(-1),
            pcnum=np.asarray(d["pcnum"]),
            betas=d["betasmd"].reshape(-1, d["betasmd"].shape[-1]),
            r2=d["R2"].reshape(-1),
        )
    return result


def _same_bits(a: Any, b: Any) -> bool:
    """Whether two engine results hold the same arrays, bit for bit (NaN equal to NaN)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_bits(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same_bits(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, np.ndarray):
        return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    return bool(a == b) or (a != a and b != b)


def parity(cpu_file: str, dev_file: str, block: int = 20_000) -> dict[str, Any]:
    """Agreement of a device run's outputs with the CPU run's (files of :func:`run_case`)."""
    a, b = np.load(cpu_file), np.load(dev_file)
    ba, bb = a["betas"], b["betas"]
    ok = np.isfinite(ba).all(axis=1) & np.isfinite(bb).all(axis=1)
    rows = np.flatnonzero(ok)
    per_voxel = []
    sums = np.zeros(5)  # pooled correlation from sums (x, y, xx, yy, xy)
    for k in range(0, rows.size, block):
        x = ba[rows[k : k + block]].astype(np.float64)
        y = bb[rows[k : k + block]].astype(np.float64)
        sums += [x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()]
        xc = x - x.mean(axis=1, keepdims=True)
        yc = y - y.mean(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = (xc * yc).sum(axis=1) / np.sqrt((xc * xc).sum(axis=1) * (yc * yc).sum(axis=1))
        per_voxel.append(r[np.isfinite(r)])
    n = rows.size * ba.shape[1]
    sx, sy, sxx, syy, sxy = sums
    pooled = (sxy - sx * sy / n) / np.sqrt((sxx - sx * sx / n) * (syy - sy * sy / n))
    r_vox = np.concatenate(per_voxel) if per_voxel else np.zeros(0)
    fin = np.isfinite(a["r2"]) & np.isfinite(b["r2"])
    return {
        "hrfindex_agree_pct": 100.0 * float(np.mean(a["hrfindex"] == b["hrfindex"])),
        "frac_agree_pct": 100.0 * float(np.mean(a["frac"] == b["frac"])),
        "pcnum_agree_pct": 100.0 * float(a["pcnum"] == b["pcnum"]),
        "pcnum": [int(a["pcnum"]), int(b["pcnum"])],
        "betas_r": float(pooled),
        "betas_r_voxel_median": float(np.median(r_vox)) if r_vox.size else float("nan"),
        "betas_r_voxel_min": float(r_vox.min()) if r_vox.size else float("nan"),
        "r2_max_abs_diff": float(np.abs(a["r2"][fin] - b["r2"][fin]).max()) if fin.any() else 0,
    }


def _child(args: argparse.Namespace, name: str, device: str, save: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--threads", str(args.threads)]
    cmd += ["--chunklen", str(args.chunklen), "--device", device, "--save", save]
    cmd += ["--thresholds", args.thresholds] + (["--quick"] if args.quick else [])
    cmd += ["--voxels", str(args.voxels)] if args.voxels is not None else []
    # the CPU path: --threads BLAS threads; a device run's BLAS does only small factorisations,
    # in a pool of --threads workers with one BLAS thread each (threadpoolctl, where installed,
    # sets the engine's n_threads around the rest)
    nt = str(args.threads) if device == "cpu" else "1"
    env = dict(os.environ, OPENBLAS_NUM_THREADS=nt, OMP_NUM_THREADS=nt, MKL_NUM_THREADS=nt)
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"glm benchmark: case {name} on {device} failed ({done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _report(r: dict[str, Any], quick: bool, load: float) -> str:
    c = CASES[r["case"]]
    scale = QUICK_FRACTION if quick else 1.0
    target_s, target_gib = c["target_s"] * scale, c["target_gib"] * scale
    peak = r["peak_bytes"] / GIB
    what = "fit" if r["peak_is_fit_only"] else "process"
    line = (
        f"glmsingle {r['case']} [{r['device_name']}]: {r['n_voxels']} voxels, {r['runs']} runs x "
        f"{r['volumes']} vols, {r['trials']} trials, TR {r['tr']} s   wall {r['wall_s']:.2f} s "
        f"(target {target_s:.0f} s, ratio {r['wall_s'] / target_s:.3f}; CPU {r['cpu_s']:.1f} s)"
        f"   peak host {peak:.2f} GiB ({what}; target {_fmt(target_gib)} GiB; data "
        f"{r['data_bytes'] / GIB:.2f} GiB, process incl. generation "
        f"{r['maxrss_bytes'] / GIB:.2f} GiB)"
    )
    if r["device_peak_bytes"] is not None:
        line += f"   peak device {r['device_peak_bytes'] / GIB:.2f} GiB"
    line += f"   init {r['init_s']:.2f} s"
    if "bitwise" in r:
        line += (
            f", repeat wall {r['repeat_wall_s']:.2f} s (CPU "
            f"{r['repeat_cpu_s']:.1f} s), repeat bitwise identical: {r['bitwise']}"
        )
    return line + (
        f"   pcnum {r['pcnum']}, median frac {r['frac_median']:.2f}, median R2 "
        f"{r['r2_median']:.1f} %   thresholds {r['thresholds']} (brainR2 {r['brainR2']:.4g})"
        f"   generation {r['generate_s']:.0f} s   load before {load:.2f}"
    )


def _parity_line(name: str, device: str, p: dict[str, Any]) -> str:
    return (
        f"glmsingle {name} {device} vs cpu: HRF index {p['hrfindex_agree_pct']:.3f} %, FRAC "
        f"{p['frac_agree_pct']:.3f} %, pcnum {p['pcnum'][0]}/{p['pcnum'][1]} "
        f"({p['pcnum_agree_pct']:.0f} %), betas r {p['betas_r']:.7f} (per voxel median "
        f"{p['betas_r_voxel_median']:.7f}, min {p['betas_r_voxel_min']:.6f}), R2 max diff "
        f"{p['r2_max_abs_diff']:.2g} %   CPU wall / {device} wall {p['speedup']:.1f} (warm "
        f"repeat {p['speedup_warm']:.1f}; target {DEVICE_TARGET:.0f}, ratio "
        f"{p['speedup'] / DEVICE_TARGET:.2f})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--quick", action="store_true", help="a quarter of the voxels, targets / 4")
    ap.add_argument("--voxels", type=int, default=None, help="this many voxels (V x T data)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1)")
    ap.add_argument(
        "--chunklen", type=int, default=None, help="voxels per chunk (default: glm.chunklen)"
    )
    ap.add_argument(
        "--device",
        nargs="+",
        default=["cpu"],
        choices=["cpu", "cuda", "torch-cpu"],
        help="devices to fit on (cpu first: the others are compared with it)",
    )
    ap.add_argument(
        "--thresholds",
        choices=["auto", "tail", "fixed"],
        default="auto",
        help="brainR2/pcR2cutoff: tail threshold (needs scikit-learn), fixed (the case's tail "
        "threshold), auto (tail where scikit-learn is installed)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.chunklen is None:
        args.chunklen = int(_engine_defaults()["chunklen"])
    if args.thresholds == "auto":
        try:
            has_sklearn = importlib.util.find_spec("sklearn") is not None
        except ImportError:
            has_sklearn = False
        args.thresholds = "tail" if has_sklearn else "fixed"
    if args.child:
        print(json.dumps(run_case(args, args.save)))
        return 0
    print(
        f"CPUs available: {len(os.sched_getaffinity(0))}, BLAS threads: {args.threads}, "
        f"chunklen {args.chunklen}{', quick' if args.quick else ''}, devices "
        f"{' '.join(args.device)}, thresholds {args.thresholds}"
    )
    report: dict[str, Any] = {"argv": sys.argv[1:], "cases": []}
    with tempfile.TemporaryDirectory(prefix="glm-bench-") as tmp:
        for name in args.cases:
            runs: dict[str, dict[str, Any]] = {}
            for device in args.device:
                load = os.getloadavg()[0]
                save = str(Path(tmp) / f"{name}-{device}.npz")
                runs[device] = r = _child(args, name, device, save)
                r["load_before"] = load
                print(_report(r, args.quick, load), flush=True)
            entry: dict[str, Any] = {"case": name, "runs": runs}
            if "cpu" in runs:
                for device in (d for d in args.device if d != "cpu"):
                    p = parity(
                        str(Path(tmp) / f"{name}-cpu.npz"), str(Path(tmp) / f"{name}-{device}.npz")
                    )
                    p["speedup"] = runs["cpu"]["wall_s"] / runs[device]["wall_s"]
                    p["speedup_warm"] = runs["cpu"]["wall_s"] / runs[device]["repeat_wall_s"]
                    entry[f"parity_{device}"] = p
                    print(_parity_line(name, device, p), flush=True)
            report["cases"].append(entry)
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


if __name__ == "__main__":
    raise SystemExit(main())
