"""Cost of writing and reading one LAION-size BOLD series: the stages' writer against nibabel's.

A 90 x 110 x 72 x 163 float32 series (445 MiB; LAION-fMRI's run at 1.8 mm): an ellipsoid of
brain (mean 800, noise SD 25) in background noise (mean 20, SD 10), noise fresh in every volume,
as NORDIC, the resampling and tedana write it (noise is what gzip cannot shrink: real series
compress to about 0.9, as here). Printed per way of writing: CPU seconds (process time), wall
seconds, the compressed size as a share of the raw bytes, and the CPU seconds to read it back
(``get_fdata(dtype=float32)``); last line the ratio of the stages' writer to nibabel's zlib
level 1 (the writer before issue 27; target <= 0.35: a 445 MiB series costs 12 CPU-s with
zlib level 1).

    .venv/bin/python benchmarks/nifti_io.py [--volumes 163] [--dir /tmp]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from echoprep.io.images import GZIP_LEVEL, atomic_save

SHAPE = (90, 110, 72)
TARGET_RATIO = 0.35


def series(n_volumes: int, seed: int = 0) -> np.ndarray:
    """``(90, 110, 72, n_volumes)`` float32 brain-in-noise series (module doc)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    brain = ((x - 45) / 40) ** 2 + ((y - 55) / 50) ** 2 + ((z - 36) / 32) ** 2 < 1
    mean = np.where(brain, 800.0, 20.0).astype(np.float32)
    sd = np.where(brain, 25.0, 10.0).astype(np.float32)
    out = np.empty((*SHAPE, n_volumes), np.float32)
    for t in range(n_volumes):
        out[..., t] = np.abs(mean + sd * rng.standard_normal(SHAPE, np.float32))
    return out


def _timed(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=163)
    parser.add_argument("--dir", type=Path, default=None, help="scratch folder (default: temp)")
    args = parser.parse_args(argv)
    data = series(args.volumes)
    raw_bytes = data.nbytes + 352
    affine = np.diag([1.8, 1.8, 1.8, 1.0])
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        ways = {
            "nibabel zlib level 1 (.nii.gz)": lambda p: nib.save(nib.Nifti1Image(data, affine), p),
            f"echoprep ISA-L level {GZIP_LEVEL} (.nii.gz)": lambda p: atomic_save(
                nib.Nifti1Image(data, affine), p
            ),
            "uncompressed (.nii)": lambda p: atomic_save(nib.Nifti1Image(data, affine), p),
        }
        names = ["a_bold.nii.gz", "b_bold.nii.gz", "c_bold.nii"]
        cpu: dict[str, float] = {}
        print(f"series {data.shape}, {raw_bytes / 2**20:.0f} MiB")
        print(f"{'writer':34} {'write CPU-s':>11} {'wall-s':>7} {'size':>6} {'read CPU-s':>10}")
        for (label, write), name in zip(ways.items(), names, strict=True):
            path = folder / name
            c, w = _timed(lambda: write(path))  # noqa: B023
            size = path.stat().st_size / raw_bytes
            r, _ = _timed(lambda: nib.load(path).get_fdata(dtype=np.float32))  # noqa: B023
            back = np.asarray(nib.load(path).dataobj)
            if not np.array_equal(back, data):
                raise SystemExit(f"{label}: the image read back differs from the one written")
            cpu[label] = c
            print(f"{label:34} {c:11.2f} {w:7.2f} {size:6.3f} {r:10.2f}")
    labels = list(cpu)
    ratio = cpu[labels[1]] / cpu[labels[0]]
    status = "PASS" if ratio <= TARGET_RATIO else "MISS"
    print(f"write_cpu_ratio_isal_to_zlib={ratio:.3f} target<={TARGET_RATIO} {status}")
    return 0 if status == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
