"""A torch device for the GLMsingle engine's heavy steps (``device``; docs/glm.md §14, "GPU").

:class:`GlmDevice` holds the torch device, moves arrays to and from it in double precision,
reads the data chunk by chunk onto it (polynomials removed there) and runs the small
factorisations that stay on the CPU in a thread pool. :class:`RunLayout` lays the
block-diagonal single-trial problems (one per run, ``n_r`` trials each) out as one padded
``(R, B, n_max)`` batch, so that one batched product solves every run at once.

The passes that use it: :mod:`echoprep.kernels.glm.device_passes` (type A, the noise PCs,
type B), :mod:`echoprep.kernels.glm.device_xval` (the GLMdenoise cross-validation) and
:mod:`echoprep.kernels.glm.device_typecd` (types C and D); their element-wise steps are
:mod:`echoprep.kernels.glm.device_ops`.

Precision: every product on the device is float64 (the data are read as float32, as by the
CPU engine, and converted on the device), so no TF32 or reduced-precision matrix mode applies,
whatever the process's torch settings. Determinism: the passes use dense products, gathers
and tree reductions only (no atomics-based scatter), and the small factorisations run on the
CPU (NumPy/LAPACK) in a fixed order, so a repeat on one device gives the same bits.

torch is imported when a :class:`GlmDevice` is made, never by the workflow's other code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from echoprep.kernels.glm.state import Setup
from echoprep.kernels.patches_torch import DeviceUnavailableError, torch_device

#: Bytes of the device temporaries of one voxel block in the type-B, cross-validation and
#: type-C/D passes (bounds the block size; results do not depend on it). The data chunk itself
#: (``chunklen x sum(T_r)`` float64) comes on top.
DEVICE_BLOCK_BYTES = 1 << 30

_T = TypeVar("_T")
_R = TypeVar("_R")


def open_device(device: str, n_threads: int | None = None) -> GlmDevice | None:
    """The :class:`GlmDevice` of the engine option ``device``, or None for ``"cpu"`` (NumPy).

    Parameters
    ----------
    device
        ``"cpu"``, ``"torch-cpu"`` (the torch code on torch's CPU kernels: the same code as on
        a GPU, for checking it without one), ``"cuda"`` or ``"cuda:N"``.
    n_threads
        Threads of the CPU thread pool for the small factorisations (None: the CPUs this
        process may run on).

    Raises
    ------
    DeviceUnavailableError
        torch is missing, or the CUDA device does not exist on this machine.
    """
    if device == "cpu":
        return None
    return GlmDevice("cpu" if device == "torch-cpu" else device, n_threads)


class GlmDevice:
    """A torch device in double precision, with a CPU thread pool for small factorisations.

    Parameters
    ----------
    device
        A torch device string: ``"cuda"``, ``"cuda:1"`` or ``"cpu"`` (torch's CPU kernels).
    n_threads
        Threads of :meth:`map` (None: the CPUs this process may run on).

    Raises
    ------
    DeviceUnavailableError
        torch is not installed, or the device is not on this machine (the message says which
        and how to use the CPU path instead).
    """

    def __init__(self, device: str, n_threads: int | None = None) -> None:
        torch, self.device = torch_device(
            device,
            "glm.device",
            "the GLM jobs on a GPU node (the rules ask for one: resources gpu=1)",
        )
        self.torch: Any = torch
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)  # :meth:`peak_bytes` of this fit
        self.f64 = torch.float64
        self.n_threads = n_threads
        if n_threads is None:
            try:
                n_threads = len(os.sched_getaffinity(0))
            except AttributeError:  # pragma: no cover - not Linux
                n_threads = os.cpu_count() or 1
        self.workers = max(1, int(n_threads))
        self._resident: dict[int, tuple[Any, Any]] = {}

    def describe(self) -> str:
        """The device in words, for sidecars and logs (e.g. ``cuda (NVIDIA H200), torch
        2.11.0``; ``cpu, torch ...`` for torch's CPU kernels)."""
        name = self.device.type
        if self.device.type == "cuda":
            name += f" ({self.torch.cuda.get_device_name(self.device)})"
        return f"{name}, torch {self.torch.__version__}"

    @contextmanager
    def limits(self) -> Iterator[None]:
        """While open: torch's CPU kernels use ``n_threads`` threads (the CPU device with
        ``n_threads`` given; otherwise nothing changes). Restored on exit."""
        if self.device.type != "cpu" or self.n_threads is None:
            yield
            return
        before = self.torch.get_num_threads()
        self.torch.set_num_threads(int(self.n_threads))
        try:
            yield
        finally:
            self.torch.set_num_threads(before)

    # ---- transfers ------------------------------------------------------------------------

    def up(self, a: np.ndarray) -> Any:
        """``a`` on the device as float64 (the transfer in ``a``'s own dtype; never shares
        memory with ``a``)."""
        t = self.torch.from_numpy(np.ascontiguousarray(a))
        if self.device.type == "cpu":
            return t.to(self.f64, copy=True)
        return t.to(self.device).to(self.f64)

    def index(self, a: np.ndarray | Sequence[int]) -> Any:
        """Integer indices on the device (int64)."""
        return self.torch.as_tensor(np.asarray(a, dtype=np.int64), device=self.device)

    def down(self, t: Any, dtype: type | None = None) -> np.ndarray:
        """A device tensor as a NumPy array (``dtype``: converted on the device first)."""
        if dtype is not None:
            t = t.to(getattr(self.torch, np.dtype(dtype).name))
        return np.asarray(t.detach().cpu().numpy())

    def zeros(self, *shape: int) -> Any:
        """A float64 tensor of zeros on the device."""
        return self.torch.zeros(shape, dtype=self.f64, device=self.device)

    # ---- data -----------------------------------------------------------------------------

    def read_projected(self, setup: Setup, r: int, v0: int, v1: int) -> tuple[Any, Any]:
        """Voxels ``v0:v1`` of run ``r`` on the device with the polynomials removed.

        The chunk is read as float32 (as by the CPU engine), moved, converted to float64 and
        projected there: the voxel means are removed, then the higher polynomial degrees. When
        the chunk is all the data (one chunk: at most ``chunklen`` voxels), the projected runs
        stay on the device for the later passes until :meth:`release` (callers must not modify
        them).

        Returns
        -------
        y, mean
            ``(v1 - v0, T_r)`` and ``(v1 - v0,)`` float64 tensors (raw units).
        """
        whole = v0 == 0 and v1 == setup.vox.n_voxels
        if whole and r in self._resident:
            return self._resident[r]
        a = setup.vox.runs[r]
        if a.ndim == 2 and a.dtype == np.float32 and a.flags.c_contiguous and a.flags.writeable:
            rows = a[v0:v1]  # a view: no host copy
        else:
            rows = setup.vox.read(r, v0, v1)
        y = self.up(rows)
        mean = y.mean(dim=1)
        y -= mean[:, None]
        basis = setup.poly[r]
        if basis.shape[1] > 1:
            p = self.up(basis[:, 1:])
            y -= (y @ p) @ p.T
        if whole:
            self._resident[r] = (y, mean)
        return y, mean

    def release(self) -> None:
        """Drop the data kept on the device by :meth:`read_projected`."""
        self._resident.clear()

    # ---- CPU side -------------------------------------------------------------------------

    def map(self, fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``[fn(x) for x in items]``, in order, in the CPU thread pool with one BLAS thread
        each (NumPy's LAPACK releases the GIL).

        The factorisations are small (``n_r x n_r``): a multi-threaded BLAS under each pool
        thread oversubscribes the cores (on a 16-core node 2640 eigendecompositions of 88 x 88
        took 1.7 s one after another with 16 BLAS threads, 2.7 s in 16 pool threads). Without
        threadpoolctl, which limits the BLAS threads, the pool runs only where the environment
        sets one BLAS thread (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS`` or
        ``MKL_NUM_THREADS`` = 1); otherwise they run one after another."""
        if self.workers == 1 or len(items) < 2:
            return [fn(x) for x in items]
        try:
            from threadpoolctl import threadpool_limits

            limits: AbstractContextManager[Any] = threadpool_limits(limits=1, user_api="blas")
        except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
            names = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
            if not any(os.environ.get(n) == "1" for n in names):
                return [fn(x) for x in items]
            limits = nullcontext()
        with limits, ThreadPoolExecutor(max_workers=min(self.workers, len(items))) as pool:
            return list(pool.map(fn, items))

    def block_rows(self, bytes_per_row: int, minimum: int = 64) -> int:
        """Voxels per block so that ``bytes_per_row`` each stay within
        :data:`DEVICE_BLOCK_BYTES` (at least ``minimum``)."""
        return max(minimum, DEVICE_BLOCK_BYTES // max(int(bytes_per_row), 1))

    def peak_bytes(self) -> int | None:
        """Peak device memory allocated by torch since this object was made (bytes; CUDA
        only, None on the CPU)."""
        if self.device.type != "cuda":
            return None
        return int(self.torch.cuda.max_memory_allocated(self.device))


@dataclass(frozen=True)
class RunLayout:
    """The runs' trials as a padded batch: trial ``j`` of run ``r`` (chronological) is
    position ``j - start_r`` of batch entry ``r``; padding positions hold 0.

    Attributes
    ----------
    slices
        ``R`` slices of the chronological trial axis (``N`` trials), one per run.
    n_max
        The most trials of a run.
    """

    slices: tuple[slice, ...]
    n_max: int

    @classmethod
    def of(cls, slices: Sequence[slice]) -> RunLayout:
        """The layout of runs holding the trials ``slices`` (consecutive, in run order)."""
        n_max = max([int(s.stop - s.start) for s in slices] + [1])
        return cls(slices=tuple(slices), n_max=n_max)

    @property
    def n_runs(self) -> int:
        return len(self.slices)

    def pad(self, dev: GlmDevice, x: Any) -> Any:
        """``(..., B, N)`` -> ``(..., R, B, n_max)`` (run-wise copies: no scatter)."""
        out = dev.torch.zeros(
            (*x.shape[:-2], self.n_runs, x.shape[-2], self.n_max), dtype=x.dtype, device=x.device
        )
        for r, s in enumerate(self.slices):
            out[..., r, :, : s.stop - s.start] = x[..., s]
        return out

    def unpad(self, dev: GlmDevice, y: Any) -> Any:
        """``(..., R, B, n_max)`` -> ``(..., B, N)``."""
        parts = [y[..., r, :, : s.stop - s.start] for r, s in enumerate(self.slices)]
        return dev.torch.cat(parts, dim=-1)

    def stack(self, mats: Sequence[np.ndarray], cols: int | None = None) -> np.ndarray:
        """``R`` host matrices ``(n_r, c_r)`` -> ``(R, n_max, cols)`` float64, zero-padded
        (``cols`` None: ``n_max``)."""
        width = self.n_max if cols is None else cols
        out = np.zeros((len(mats), self.n_max, width))
        for r, m in enumerate(mats):
            out[r, : m.shape[0], : m.shape[1]] = m
        return out

    def stack_vectors(self, vecs: Sequence[np.ndarray]) -> np.ndarray:
        """``R`` host vectors ``(n_r,)`` -> ``(R, n_max)`` float64, zero-padded."""
        out = np.zeros((len(vecs), self.n_max))
        for r, v in enumerate(vecs):
            out[r, : v.size] = v
        return out


__all__ = [
    "DEVICE_BLOCK_BYTES",
    "DeviceUnavailableError",
    "GlmDevice",
    "RunLayout",
    "open_device",
]
