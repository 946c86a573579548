"""NORDIC kernel: wall time and peak memory on synthetic complex series.

Cases (float32 magnitude and phase; a rank-6 complex series with a smooth phase plus complex
Gaussian noise, SNR about 20 in the bright part):

- ``a``: 96 x 96 x 40 x 153 (target 35 s, 6 GiB on 2 cores)
- ``b``: 90 x 110 x 72 x 163, the LAION-fMRI geometry (target 60 s, 6 GiB)
- ``s``: 40 x 44 x 30 x 60, a smoke test of the script (seconds)
- ``z``: ``s`` with all-zero parts (the first three slices, which zero the noise map there,
  and a 13 x 13 x 12 box, which zeroes whole patches of the main pass but no noise-map
  patch): rank-deficient patches, which cuSOLVER's ``gesvda`` refuses and the device path
  sends to its Gram route

Each case runs in a fresh subprocess; peak memory is that process's ``ru_maxrss`` (so it
includes the input arrays, as in the NORDIC stage, which holds magnitude and phase). Run::

    .venv/bin/python benchmarks/nordic.py [--cases a b s] [--threads N] [--chunk P]
        [--device cpu|cuda|torch-cpu ...] [--json FILE]

With several ``--device`` values each case runs once per device and the outputs of every
device after the first are compared with the first's (largest magnitude difference relative
to the series' 99.9th percentile, share of voxels whose removed-component count differs,
and whether a second run on that device repeats the first bitwise), and its wall time is
compared with the first's: ``speedup`` = first device's wall / this wall, against the
target of :data:`TARGET_SPEEDUP` (issue 43: the whole-device path at least 5 times faster
than the CPU path with all the node's cores). Parity passes when the removed-component
counts are identical in every voxel and the magnitude is within :data:`PARITY_MAGNITUDE` of
the series' 99.9th percentile.

On a torch device the child process first imports torch and runs the kernel once on a tiny
series (``setup_s``: CUDA context, cuFFT/cuBLAS/cuSOLVER handles), then times the kernel
(``wall_s``) with the device's peak memory (``device_peak_bytes``,
``torch.cuda.max_memory_allocated``) and the kernel's own seconds per step (``steps``, from
its log). ``wall_s`` is the figure compared; a workflow job pays ``setup_s`` once per
process (one run's echoes share a process).

The kernel is called with the config schema's defaults (read from the schema file with
PyYAML only, so the script runs where NumPy, SciPy, PyYAML and torch are all there is:
nothing else is imported, not nibabel, not snakemake).

The machine may be shared: the load average before each case is printed with it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))

CASES: dict[str, dict] = {
    "a": {"shape": (96, 96, 40, 153), "target_s": 35.0, "target_gib": 6.0},
    "b": {"shape": (90, 110, 72, 163), "target_s": 60.0, "target_gib": 6.0},
    "s": {"shape": (40, 44, 30, 60), "target_s": 5.0, "target_gib": 1.0},
    "z": {"shape": (40, 44, 30, 60), "target_s": 5.0, "target_gib": 1.0, "zeros": True},
}
#: Wall time of the first device / wall time of a torch device that issue 43 asks for.
TARGET_SPEEDUP = 5.0
#: Largest magnitude difference to the first device, relative to its 99.9th percentile.
PARITY_MAGNITUDE = 1e-4


def synthetic(shape: tuple[int, int, int, int], seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank complex series plus noise as float32 magnitude and phase (radians).

    Generated volume by volume, so generation needs little beyond the two outputs.
    """
    nx, ny, nz, nt = shape
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, nx), np.linspace(-1, 1, ny), np.linspace(-1, 1, nz), indexing="ij"
    )
    head = np.exp(-(x**2 + y**2 + z**2) * 2.5)
    maps = np.stack(
        [head, head * x, head * y, head * z, head * x * y, head * np.cos(3 * z)]
    ).astype(np.float32)
    t = np.linspace(0, 1, nt)
    courses = np.stack(
        [np.ones(nt)]
        + [0.02 * np.sin(2 * np.pi * f * t + p) for f, p in ((3, 0), (5, 1), (7, 2), (2, 3))]
        + [0.01 * t]
    ).astype(np.float32)
    phase0 = (0.8 * x + 0.5 * y - 0.3 * z).astype(np.float32)
    mag = np.empty(shape, np.float32)
    pha = np.empty(shape, np.float32)
    sigma = np.float32(0.05)
    for k in range(nt):
        s = np.tensordot(courses[:, k], maps, axes=1)
        c = s * np.exp(1j * (phase0 + 0.1 * t[k])).astype(np.complex64)
        c.real += sigma * rng.standard_normal(shape[:3], dtype=np.float32)
        c.imag += sigma * rng.standard_normal(shape[:3], dtype=np.float32)
        mag[..., k] = np.abs(c)
        pha[..., k] = np.angle(c)
    return mag, pha


def kernel_defaults() -> dict:
    """The ``nordic:`` options of the config schema with their defaults (but ``enabled``)."""
    import yaml

    schema = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"
    props = yaml.safe_load(schema.read_text())["properties"]["nordic"]["properties"]
    return {k: v["default"] for k, v in props.items() if k != "enabled"}


def run_case(
    name: str, threads: int | None, chunk: int, device: str, save: str | None = None
) -> dict:
    """Run one case in this process; return its figures (``save``: an ``.npz`` of the
    outputs, for comparing devices)."""
    from echoprep.kernels.nordic import nordic

    shape = CASES[name]["shape"]
    options = {**kernel_defaults(), "chunk_patches": chunk, "device": device}
    setup = 0.0
    cuda = device.startswith("cuda")
    if device != "cpu":  # torch, the device's context and libraries: once per process
        t0 = time.perf_counter()
        tiny = synthetic((16, 16, 12, 24), seed=1)
        nordic(*tiny, n_threads=threads, **options)
        setup = time.perf_counter() - t0
    mag, pha = synthetic(shape)
    if CASES[name].get("zeros"):
        mag[:, :, :3] = 0
        mag[:13, :13, 10:22] = 0
    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    steps = _StepLog()
    if cuda:
        import torch

        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        device_base = torch.cuda.memory_allocated()
    t0, c0 = time.perf_counter(), time.process_time()
    res = nordic(mag, pha, n_threads=threads, **options)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    device_peak = torch.cuda.max_memory_allocated() - device_base if cuda else None
    steps.close()
    if save:
        np.savez(save, magnitude=res.magnitude, removed=res.removed, gfactor=res.gfactor)
    return {
        "case": name,
        "shape": shape,
        "device": device,
        "algebra": res.algebra,
        "wall_s": wall,
        "cpu_s": cpu,
        "setup_s": setup,
        "steps": steps.text,
        "peak_bytes": peak,
        "device_peak_bytes": device_peak,
        "inputs_peak_bytes": rss_inputs,
        "kernel": res.kernel,
        "threshold": res.threshold,
        "removed_median": float(np.median(res.removed)),
    }


class _StepLog(logging.Handler):
    """Keeps the device kernel's log line with its seconds per step."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.text = ""
        self.logger = logging.getLogger("echoprep.kernels.nordic_torch")
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "seconds per step" in message:
            self.text = message

    def close(self) -> None:
        self.logger.removeHandler(self)
        super().close()


def compare(first: str, other: str) -> dict:
    """How far the outputs saved in ``other`` are from those in ``first`` (``.npz``)."""
    a, b = np.load(first), np.load(other)
    scale = float(np.percentile(a["magnitude"], 99.9))
    diff = np.abs(a["magnitude"] - b["magnitude"])
    return {
        "magnitude_max_rel": float(diff.max() / scale),
        "magnitude_p999_rel": float(np.percentile(diff, 99.9) / scale),
        "gfactor_max_rel": float(
            np.abs(a["gfactor"] - b["gfactor"]).max() / np.abs(a["gfactor"]).max()
        ),
        "removed_voxels_differing": float(np.mean(np.abs(a["removed"] - b["removed"]) > 1e-4)),
        "removed_max_abs": float(np.abs(a["removed"] - b["removed"]).max()),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["a", "b"], choices=list(CASES))
    ap.add_argument("--threads", type=int, default=None, help="n_threads (default: all CPUs)")
    ap.add_argument("--chunk", type=int, default=256, help="chunk_patches")
    ap.add_argument(
        "--device", nargs="+", default=["cpu"], help="nordic.device values (cpu, cuda, torch-cpu)"
    )
    ap.add_argument("--json", help="write every case's figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--save", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        r = run_case(args.child, args.threads, args.chunk, args.device[0], args.save)
        print(json.dumps(r))
        return 0
    print(f"CPUs available: {len(os.sched_getaffinity(0))}, threads: {args.threads or 'all'}")
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.cases:
            saved: list[str] = []
            for device in args.device:
                repeats = 2 if saved else 1  # a device compared with the first runs twice
                for k in range(repeats):
                    save = str(Path(tmp) / f"{name}-{device}-{k}.npz")
                    load = os.getloadavg()[0]
                    cmd = [sys.executable, __file__, "--child", name, "--chunk", str(args.chunk)]
                    cmd += ["--device", device, "--save", save]
                    if args.threads:
                        cmd += ["--threads", str(args.threads)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode:
                        sys.stderr.write(proc.stderr)
                        raise SystemExit(f"case {name} on {device} failed (above)")
                    r = json.loads(proc.stdout.strip().splitlines()[-1])
                    r["load_before"] = load
                    if saved:
                        versus = compare(saved[0], save)
                        versus["parity"] = bool(
                            versus["removed_max_abs"] == 0
                            and versus["magnitude_max_rel"] <= PARITY_MAGNITUDE
                        )
                        versus["speedup"] = records[-len(saved)]["wall_s"] / r["wall_s"]
                        versus["target_speedup"] = TARGET_SPEEDUP
                        r["versus_" + args.device[0]] = versus
                    if k == 1:
                        r["repeats_bitwise"] = all(
                            np.array_equal(np.load(save)[key], np.load(saved[-1])[key])
                            for key in ("magnitude", "removed", "gfactor")
                        )
                    saved.append(save)
                    records.append(r)
                    _print(r)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1) + "\n")
    return 0


def _print(r: dict) -> None:
    gib = 2**30
    c = CASES[r["case"]]
    shape = "x".join(str(s) for s in r["shape"])
    peak = r["peak_bytes"] / gib
    line = (
        f"nordic  {shape} complex  {r['algebra']}   wall {r['wall_s']:.2f} s "
        f"(target {c['target_s']:.0f} s, ratio {r['wall_s'] / c['target_s']:.2f})   CPU "
        f"{r['cpu_s']:.1f} s   peak {peak:.2f} GiB (target {c['target_gib']:.0f} GiB, ratio "
        f"{peak / c['target_gib']:.2f}; inputs alone {r['inputs_peak_bytes'] / gib:.2f} GiB)"
        f"   kernel {tuple(r['kernel'])}   load before {r['load_before']:.2f}"
    )
    if r["device"] != "cpu":
        line += f"\n    device setup (once per process) {r['setup_s']:.2f} s"
        if r["device_peak_bytes"] is not None:
            line += f", device peak {r['device_peak_bytes'] / gib:.2f} GiB"
        line += f"\n    {r['steps']}"
    for key, value in r.items():
        if key.startswith("versus_"):
            line += "\n    " + key + ": " + ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
            line += (
                f"\n    speedup {value['speedup']:.2f} (target {TARGET_SPEEDUP:g}, ratio to "
                f"target {value['speedup'] / TARGET_SPEEDUP:.2f}), parity "
                f"{'passes' if value['parity'] else 'FAILS'}"
            )
    if "repeats_bitwise" in r:
        line += f"\n    second run repeats the first bitwise: {r['repeats_bitwise']}"
    print(line, flush=True)


def _fmt(v: float | bool) -> str:
    return str(v) if isinstance(v, bool) else f"{v:.3g}"


if __name__ == "__main__":
    raise SystemExit(main())
