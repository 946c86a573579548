"""The batched patch algebra of :mod:`echoprep.kernels.patches` on a torch device (GPU).

The NORDIC patch passes (:mod:`echoprep.kernels.nordic_patches`) spend about three quarters
of their CPU time in two steps per batch of Casorati matrices: the singular values (Gram
matrix and Hermitian eigendecomposition on the CPU), and the low-rank reconstruction.
:class:`TorchAlgebra` does these on a torch device; gathering the patches and averaging the
reconstructions stay on the CPU, in the same order as the NumPy path, so only the per-patch
algebra differs.

Precision: the batch is moved to the device once and converted to double precision there;
the thin SVD (cuSOLVER's batched ``gesvda`` on a GPU) and the reconstruction
``U_k S_k V_k^H`` are formed in float64/complex128, so no TF32 or reduced-precision matrix
mode applies, whatever the process's torch settings. The NumPy path forms the Gram matrix in
single precision, so the two agree to single-precision rounding, not bitwise (tolerances in
docs/nordic.md, "GPU"). On one device model and torch build the results repeat bitwise.

torch is imported when a :class:`TorchAlgebra` is made, never by the workflow's other code:
the GPU path is optional (``nordic.device``).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class DeviceUnavailableError(ValueError):
    """The torch device asked for is not on this machine (or torch is missing): a value of
    ``nordic.device`` this machine cannot honour; the message says how to fix it."""


class TorchAlgebra:
    """Squared singular values and hard-threshold reconstructions of patch stacks on a torch
    device; the same contract as :func:`echoprep.kernels.patches.squared_singular_values`
    and :func:`echoprep.kernels.patches.hard_threshold`.

    Parameters
    ----------
    device
        A torch device string: ``"cuda"``, ``"cuda:1"``, or ``"cpu"`` (torch's CPU kernels:
        the same code as on a GPU, for checking it on a machine without one).

    Raises
    ------
    DeviceUnavailableError
        torch is not installed, or the device does not exist on this machine (the message
        says which and how to choose the CPU path instead).
    """

    def __init__(self, device: str) -> None:
        try:
            import torch
        except ImportError as err:  # pragma: no cover - torch is a pinned dependency
            raise DeviceUnavailableError(
                f"nordic.device is {device!r} but torch is not installed in this environment; "
                "install torch with CUDA support or set nordic.device: cpu"
            ) from err
        self.torch: Any = torch
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if not torch.cuda.is_available():
                raise DeviceUnavailableError(
                    f"nordic.device is {device!r} but torch {torch.__version__} sees no CUDA "
                    f"device on this machine (CUDA_VISIBLE_DEVICES {_visible()}); run the NORDIC "
                    "jobs on a GPU node (the rule asks for one: resources gpu=1) or set "
                    "nordic.device: cpu"
                )
            index = self.device.index or 0
            if index >= torch.cuda.device_count():
                raise DeviceUnavailableError(
                    f"nordic.device is {device!r} but only {torch.cuda.device_count()} CUDA "
                    "device(s) are visible; use nordic.device: cuda"
                )
        # torch initialises its linear-algebra libraries lazily and not thread-safely (two
        # worker threads reaching the first SVD together fail with "lazy wrapper should be
        # called at most once"): one small SVD here, in the calling thread
        self._svd(self._upload(np.eye(3, 2)))

    def describe(self) -> str:
        """The device in words, for sidecars and logs (e.g. ``cuda (NVIDIA H200), torch
        2.11.0``)."""
        torch = self.torch
        name = self.device.type
        if self.device.type == "cuda":
            name += f" ({torch.cuda.get_device_name(self.device)})"
        return f"{name}, torch {torch.__version__}"

    def _upload(self, a: np.ndarray) -> Any:
        """``a`` on the device in double precision (the transfer in ``a``'s own dtype)."""
        torch = self.torch
        t = torch.from_numpy(np.ascontiguousarray(a)).to(self.device)
        return t.to(torch.complex128 if t.is_complex() else torch.float64)

    def _svd(self, t: Any) -> tuple[Any, Any, Any]:
        """Thin SVD ``U, S, V^H`` of each matrix of a tall ``(B, M, N)`` stack (``M >= N``).

        On a GPU, cuSOLVER's batched ``gesvda`` (one call for the whole batch: about 20
        times faster than a per-matrix eigendecomposition at NORDIC's patch size, measured
        in docs/nordic.md, "GPU"); on torch's CPU kernels, LAPACK's."""
        driver = "gesvda" if self.device.type == "cuda" else None
        return self.torch.linalg.svd(t, full_matrices=False, driver=driver)

    def squared_singular_values(self, a: np.ndarray) -> np.ndarray:
        """``(B, min(M, N))`` float64 squared singular values of each ``(M, N)`` matrix of
        the ``(B, M, N)`` stack ``a``, descending, clipped at 0."""
        torch = self.torch
        with torch.no_grad():
            t = self._upload(a)
            _, s, _ = self._svd(t if t.shape[-2] >= t.shape[-1] else t.mH)
            out = (s * s).cpu().numpy()
        return np.asarray(out, np.float64)

    def hard_threshold(self, a: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
        """Keep the singular components of each matrix of ``a`` (``(B, M, N)``) with singular
        value ``>= threshold``; ``a`` is **overwritten** with the reconstructions (its own
        dtype). Returns ``a`` and the ``(B,)`` int number of removed components."""
        torch = self.torch
        _, m, n = a.shape
        with torch.no_grad():
            t = self._upload(a)
            tall = m >= n
            u, s, vh = self._svd(t if tall else t.mH)
            keep = s >= threshold
            kept = (s * keep).to(u.dtype).unsqueeze(-2)
            # t = U S V^H (tall) or t^H = U S V^H (wide): the kept part of t
            recon = (u * kept) @ vh if tall else (vh.mH * kept) @ u.mH
            a[...] = recon.to(_torch_dtype(torch, a.dtype)).cpu().numpy()
            n_keep = keep.sum(dim=-1).cpu().numpy()
        return a, min(m, n) - n_keep.astype(np.int64)


def _torch_dtype(torch: Any, dtype: np.dtype) -> Any:
    return {
        np.dtype(np.float32): torch.float32,
        np.dtype(np.float64): torch.float64,
        np.dtype(np.complex64): torch.complex64,
        np.dtype(np.complex128): torch.complex128,
    }[np.dtype(dtype)]


def _visible() -> str:
    import os

    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    return "unset" if value is None else f"is {value!r}"


__all__ = ["DeviceUnavailableError", "TorchAlgebra"]
