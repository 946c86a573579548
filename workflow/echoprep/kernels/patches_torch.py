"""The torch device of NORDIC's device path: opening it, naming it, batched SVDs, memory.

``nordic.device: cuda`` runs the whole NORDIC kernel on a GPU through torch
(:mod:`echoprep.kernels.nordic_torch`); ``"torch-cpu"`` runs the same code on torch's CPU
kernels, to check it on a machine without a GPU. This module holds what the device code
needs from torch itself:

- :func:`open_device`: the device, or :class:`DeviceUnavailableError` with the fix;
- :func:`right_singular` and :func:`singular_values`: batched singular values and right
  singular vectors in the input's precision (the device code passes float64/complex128, so
  no TF32 or reduced-precision mode applies). On a GPU they use cuSOLVER's batched
  ``gesvda`` (one call per batch: on an H200 a batch of 256 patches of 1728 x 163 complex
  values took 24 ms against 433 ms with torch's eigendecomposition of the Gram matrices,
  which cuSOLVER runs one matrix at a time at this size, docs/nordic.md, "GPU"). ``gesvda``
  fails on rank-deficient matrices (all-zero patches, fewer non-zero rows than columns,
  repeated columns: measured with torch 2.11 on an H200), so those go to the robust route:
  the Gram matrix (formed in the input's precision) and the Hermitian eigendecomposition;
  patches with enough non-zero rows go to ``gesvda`` and, should it still fail, their whole
  batch goes to the robust route. On torch's CPU kernels every patch takes the robust route
  (LAPACK's SVD with its left vectors is some 20 times slower there);
- :func:`default_batch_bytes`: the memory budget of one patch batch.

torch is imported by these functions, never by the workflow's other code: the device path
is optional (``nordic.device``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

#: Upper bound of the default batch budget on a GPU (bytes). A fixed cap keeps the batches,
#: and so the bits, the same from run to run on a GPU with more free memory than this.
GPU_BATCH_CAP = 16 * 2**30
#: Share of the free device memory the default batch budget may take.
GPU_BATCH_SHARE = 0.5
#: Default batch budget on torch's CPU kernels (bytes).
CPU_BATCH_BYTES = 1 * 2**30


class DeviceUnavailableError(ValueError):
    """The torch device asked for is not on this machine (or torch is missing): a value of
    ``nordic.device`` this machine cannot honour; the message says how to fix it."""


def open_device(device: str) -> Any:
    """The ``torch.device`` of ``device``, checked to exist, with its libraries initialised.

    Parameters
    ----------
    device
        A torch device string: ``"cuda"``, ``"cuda:1"``, or ``"cpu"`` (torch's CPU kernels).

    Returns
    -------
    torch.device

    Raises
    ------
    DeviceUnavailableError
        torch is not installed, or the device does not exist on this machine (the message
        says which and how to choose the CPU path instead).
    """
    torch, dev = torch_device(
        device,
        "nordic.device",
        "the NORDIC jobs on a GPU node (the rule asks for one: resources gpu=1)",
    )
    # torch initialises its linear-algebra libraries lazily: one small SVD here
    right_singular(torch.eye(3, 2, dtype=torch.float64, device=dev).unsqueeze(0))
    return dev


def torch_device(device: str, option: str, gpu_jobs: str) -> tuple[Any, Any]:
    """torch and the ``torch.device`` of ``device``, checked to exist.

    Parameters
    ----------
    device
        A torch device string: ``"cuda"``, ``"cuda:1"`` or ``"cpu"`` (torch's CPU kernels).
    option
        The config key that asked for it (``"nordic.device"``, ``"glm.device"``), for the
        messages.
    gpu_jobs
        Where to run instead, for the message when this machine has no GPU (``"the GLM jobs
        on a GPU node (the rules ask for one: resources gpu=1)"``).

    Raises
    ------
    DeviceUnavailableError
        torch is not installed, or the device is not on this machine (the message says which
        and how to choose the CPU path instead).
    """
    try:
        import torch
    except ImportError as err:  # pragma: no cover - torch is a pinned dependency
        raise DeviceUnavailableError(
            f"{option} is {device!r} but torch is not installed in this environment; "
            f"install torch with CUDA support or set {option}: cpu"
        ) from err
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceUnavailableError(
                f"{option} is {device!r} but torch {torch.__version__} sees no CUDA device on "
                f"this machine (CUDA_VISIBLE_DEVICES {_visible()}); run {gpu_jobs} or set "
                f"{option}: cpu"
            )
        if (dev.index or 0) >= torch.cuda.device_count():
            raise DeviceUnavailableError(
                f"{option} is {device!r} but only {torch.cuda.device_count()} CUDA device(s) "
                f"are visible; use {option}: cuda"
            )
    elif dev.type != "cpu":
        raise DeviceUnavailableError(f"{option}: unknown torch device {device!r}")
    return torch, dev


def describe(device: Any) -> str:
    """The device in words, for sidecars and logs (e.g. ``cuda (NVIDIA H200), torch
    2.11.0``)."""
    import torch

    name = device.type
    if device.type == "cuda":
        name += f" ({torch.cuda.get_device_name(device)})"
    return f"{name}, torch {torch.__version__}"


def right_singular(t: Any) -> tuple[Any, Any]:
    """Singular values and right singular vectors of each matrix of a tall ``(B, M, N)``
    stack (``M >= N``).

    Returns
    -------
    s
        ``(B, N)`` real, descending (by the Gram route: square roots of the Gram matrix's
        eigenvalues clipped at 0).
    vh
        ``(B, N, N)``: row ``j`` is ``v_j^H``; ``t``'s dtype.
    """
    return _by_route(t, _gesvda, _gram_eigh)


def singular_values(t: Any) -> Any:
    """``(B, N)`` singular values of each matrix of a tall ``(B, M, N)`` stack, descending,
    in ``t``'s real precision (routes as in :func:`right_singular`)."""
    return _by_route(t, _gesvda_values, _gram_values)[0]


def _by_route(t: Any, fast: Any, robust: Any) -> tuple[Any, ...]:
    """``fast(t)`` (``gesvda``) for the matrices with at least ``N`` non-zero rows on a GPU,
    ``robust(t)`` (Gram matrix) for the others and everywhere on the CPU; the results put
    back in batch order. ``fast`` failing on a batch sends the batch to ``robust``."""
    import torch

    if not _has_gesvda(t.device):
        return robust(t)
    rows = torch.count_nonzero(torch.any(t != 0, dim=-1), dim=-1)
    safe = rows >= t.shape[-1]
    if bool(safe.all()):
        return _fast_or_robust(t, fast, robust)
    if not bool(safe.any()):
        return robust(t)
    idx_fast, idx_robust = torch.nonzero(safe).squeeze(1), torch.nonzero(~safe).squeeze(1)
    parts = _fast_or_robust(t[idx_fast], fast, robust)
    others = robust(t[idx_robust])
    out = []
    for part, other in zip(parts, others, strict=True):
        whole = torch.empty((t.shape[0], *part.shape[1:]), dtype=part.dtype, device=t.device)
        whole[idx_fast] = part
        whole[idx_robust] = other
        out.append(whole)
    return tuple(out)


def _has_gesvda(device: Any) -> bool:
    """Whether cuSOLVER's ``gesvda`` is there (a CUDA device)."""
    return bool(device.type == "cuda")


def _fast_or_robust(t: Any, fast: Any, robust: Any) -> tuple[Any, ...]:
    import torch

    try:
        return fast(t)
    except torch.linalg.LinAlgError as err:
        log.warning("NORDIC: gesvda failed on a batch (%s); Gram matrices instead", err)
        return robust(t)


def _gesvda(t: Any) -> tuple[Any, Any]:
    import torch

    _, s, vh = torch.linalg.svd(t, full_matrices=False, driver="gesvda")
    return s, vh


def _gesvda_values(t: Any) -> tuple[Any]:
    import torch

    return (torch.linalg.svdvals(t, driver="gesvda"),)


def _gram_eigh(t: Any) -> tuple[Any, Any]:
    import torch

    gram = t.mH @ t
    with _one_thread(torch, t.device):
        w, v = torch.linalg.eigh(gram)  # ascending
    return torch.sqrt(torch.clamp(w.flip(-1), min=0)), v.flip(-1).mH


def _gram_values(t: Any) -> tuple[Any]:
    import torch

    gram = t.mH @ t
    with _one_thread(torch, t.device):
        w = torch.linalg.eigvalsh(gram)
    return (torch.sqrt(torch.clamp(w.flip(-1), min=0)),)


@contextmanager
def _one_thread(torch: Any, device: Any) -> Iterator[None]:
    """torch on one thread for its CPU kernels: its batched LAPACK eigendecompositions of
    small matrices run each matrix on all threads, which is slower than one (measured: 700
    complex 60 x 60 ``eigh`` in 36 s on 2 threads, 0.33 s on one)."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def default_batch_bytes(device: Any) -> int:
    """Memory budget of one patch batch on ``device`` (bytes).

    On a GPU: :data:`GPU_BATCH_SHARE` of the memory free now, at most
    :data:`GPU_BATCH_CAP`; on torch's CPU kernels :data:`CPU_BATCH_BYTES`.
    """
    import torch

    if device.type != "cuda":
        return CPU_BATCH_BYTES
    free, _ = torch.cuda.mem_get_info(device)
    return int(min(GPU_BATCH_CAP, GPU_BATCH_SHARE * free))


def _visible() -> str:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "unset" if value is None else f"is {value!r}"


__all__ = [
    "CPU_BATCH_BYTES",
    "GPU_BATCH_CAP",
    "GPU_BATCH_SHARE",
    "DeviceUnavailableError",
    "default_batch_bytes",
    "describe",
    "open_device",
    "right_singular",
    "singular_values",
    "torch_device",
]
