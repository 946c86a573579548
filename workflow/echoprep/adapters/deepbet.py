"""Adapter to deepbet (CNN brain extraction, weights inside the package) and torch's threads.

deepbet and torch are imported inside the functions (the rules that do not need them run in an
environment without them). deepbet's CPU inference is deterministic.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

import nibabel as nib
import numpy as np


@contextlib.contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    """Run the block with torch set to ``n_threads`` threads; the previous count is restored."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def brain_mask(data: np.ndarray, affine: np.ndarray, threshold: float, seed: int) -> np.ndarray:
    """deepbet brain mask of a bias-corrected T1w.

    Parameters
    ----------
    data, affine
        ``(x, y, z)`` T1w and its RAS affine (mm).
    threshold
        deepbet's probability threshold, in (0, 1).
    seed
        Seed of torch's generator.

    Returns
    -------
    numpy.ndarray
        ``(x, y, z)`` bool, on the input's grid.
    """
    import torch
    from deepbet import BrainExtraction

    torch.manual_seed(seed)
    img = nib.Nifti1Image(np.asarray(data, np.float32), affine)
    with warnings.catch_warnings(), torch.inference_mode():
        # deepbet loads TorchScript models; torch >= 2.10 flags torch.jit.load as deprecated
        warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=DeprecationWarning)
        _, mask_img, _ = BrainExtraction(no_gpu=True).run(img, threshold=threshold)
    mask = np.asarray(mask_img.dataobj) > 0
    if mask.shape != data.shape:  # deepbet returns the input's orientation; guard anyway
        raise RuntimeError(f"deepbet returned shape {mask.shape} for input {data.shape}")
    return mask


__all__ = ["brain_mask", "torch_threads"]
