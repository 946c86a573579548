"""CPU seconds of the GLM engine alone at the size of one LAION ``glm`` job, for the GPU model
of ``benchmarks/laion_dataset.py`` (its ``KERNEL_CPU``).

The session of ``benchmarks/laion_session.json``: 12 runs x 163 volumes at TR 1.9 s, 88 image
trials a run (352 conditions x 3 repeats = 1,056 trials; onsets at least 1 volume apart on
average, as LAION-fMRI's fast design), VOXELS voxels (the simulator's brain voxels in the LAION
slab: 253,680). Two fits, each timed with ``time.process_time``: the full
FITHRF_GLMDENOISE_RR fit (``glm`` and each held-out half fit) and the type-B-only fit
(``glm_reference``). Prints one JSON line. Run (about 5 min on 2 cores)::

    .venv/bin/python benchmarks/glm_job_kernel.py [--voxels 253680] [--threads 1]

One BLAS thread measures the kernel's own work; on a shared 2-core machine two threads
busy-wait and inflate CPU seconds (docs/performance.md, "The whole dataset").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import glm as bench

from echoprep.kernels.glm import fit_glmsingle
from echoprep.simulate.glm_session import make_session


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--voxels", type=int, default=253_680)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    runs, volumes, conditions, repeats, tr = 12, 163, 352, 3, 1.9
    bench._init_device("cpu", "tail")
    with bench._blas_threads(args.threads):
        session = make_session(
            (args.voxels,), [volumes] * runs, conditions, repeats, tr=tr, seed=0, min_spacing=1
        )
    out: dict[str, object] = {
        "voxels": args.voxels,
        "runs": runs,
        "volumes": volumes,
        "trials": conditions * repeats,
        "tr": tr,
        "threads": args.threads,
    }
    for name, extra in (("full", {}), ("typeb", {"wantglmdenoise": 0, "wantfracridge": 0})):
        opts = {**bench._engine_defaults(), "chunklen": 50000, **extra}
        with bench._blas_threads(args.threads):
            t0, c0 = time.perf_counter(), time.process_time()
            fit_glmsingle(
                session.design,
                session.data,
                session.stimdur,
                session.tr,
                **opts,
                n_threads=args.threads,
                device="cpu",
            )
            out[name] = {"wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
