"""Independent, reproducible random streams keyed by (seed, subject, session, run, purpose).

Every random quantity of the simulator is drawn from a generator made here, so a subject's
files depend only on the dataset seed and the subject's own number: adding subjects, sessions or
runs never changes what was drawn for the others.
"""

from __future__ import annotations

import numpy as np

#: Purpose tags (the last key of every stream).
ANATOMY = 1
T1W = 2
DESIGN = 3
IMAGE = 4
RUN = 5
NOISE = 6
MOTION = 7
FIELDMAP = 8
PARTICIPANT = 9
BETAS = 10
SBREF = 11
ARTIFACT = 12
POSE = 13
TRIALS = 14
MP2RAGE = 15
T2W = 16


def rng(seed: int, *keys: int) -> np.random.Generator:
    """A generator for the stream ``(seed, *keys)``.

    Parameters
    ----------
    seed
        Dataset seed (non-negative integer).
    *keys
        Non-negative integers naming the stream, e.g. ``(subject, session, run, NOISE, echo)``.
    """
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    return np.random.Generator(
        np.random.PCG64(np.random.SeedSequence([int(seed), *map(int, keys)]))
    )
