"""How the fused Ops use the cores and memory: the schedules of the LSTM's
threads (see the comment below), the thread pools, and the pool of recycled
buffers the Ops' large arrays come from."""
import concurrent.futures
import math
import os
import sys
import threading


import numba
import numpy as np

from sentiment.kernels import handoff
from sentiment.kernels.basics import _jit


# ---------------------------------------------------------------------------
# Threads. The products over all steps (the input projection x W + b before
# the recurrence; dx, dW, dU and db after it) are large GEMMs; the recurrence
# is a chain of small ones. Two schedules use the cores:
#
# - a small batch (fewer than ROW_SPLIT_ROWS rows per thread) runs the
#   recurrence in this thread over every row, while a helper thread computes
#   the large products chunk by chunk of steps: the projection of the steps
#   ahead, the gradients of the steps behind. At such batches a row block's
#   per-step GEMM costs about as much as the whole batch's (OpenBLAS repacks
#   U at every call), so splitting the rows gains nothing;
# - a larger batch shares out its rows: each thread runs the recurrence of
#   a row block (rows are independent through the whole sequence); before
#   and after it, each thread computes the large products of a block of steps.
#
# The BLAS's own threads are never used inside the Ops: OpenBLAS's idle
# threads spin for a while after each call, taking a core from the kernels.
#
# Each chunk's gradients go to the chunk's own buffers, summed in a fixed
# order at the end: the result never depends on which thread ran what.
# While the threads run, NumPy's OpenBLAS is set to one thread (its count is
# process-wide: even ``openblas_set_num_threads_local`` sets it for every
# thread), and restored after, so NumPy's other products keep their threads.
# ---------------------------------------------------------------------------
_BLAS_THREADS = None  # (get, set) of NumPy's OpenBLAS thread count, or None: set by gemm.setup()
MIN_STEP_BLOCK = 1 << 17  # values per thread from which a pass over an array is shared out


def _default_threads():
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return int(os.environ.get("FUSED_LSTM_THREADS", cores))


threads = _default_threads()  # at most this many threads per kernel call
_pools = {}


def _executor(n):
    """A pool of exactly ``n`` threads (one pool per size, made once)."""
    if n not in _pools:
        _pools[n] = concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="fused_lstm")
    return _pools[n]


class _OneBlasThread:
    """NumPy's OpenBLAS on one thread inside the block, its count restored after."""

    def __enter__(self):
        get_threads, set_threads = _BLAS_THREADS
        self.count = get_threads()
        set_threads(1)

    def __exit__(self, *exc):
        _BLAS_THREADS[1](self.count)


def _schedule(n_samples, rows_per_thread):
    """``"serial"``, ``"pipeline"`` (small batch) or ``"rows"`` (row blocks in threads)."""
    if threads <= 1 or _BLAS_THREADS is None:
        return "serial"
    return "rows" if n_samples >= 2 * rows_per_thread else "pipeline"


def _chunks(n_steps, n_samples, rows):
    """The steps in near-equal chunks of about ``rows`` steps x reviews each."""
    size = max(1, rows // max(n_samples, 1))
    return _blocks(n_steps, max(1, -(-n_steps // size)))


def _nan_passes():
    return np.errstate(invalid="ignore", over="ignore")


def _blocks(size, n):
    """``range(size)`` cut into ``n`` near-equal ``(lo, hi)`` blocks (no empty one)."""
    bounds = [size * k // n for k in range(n + 1)]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if lo < hi]


def _in_threads(fn, calls, start=None):
    """``fn(*args)`` for every ``args`` of ``calls``, each in its own thread:
    this one takes the first, helper threads the others (:mod:`sentiment.kernels.handoff`;
    ``start``: fn's start function), or pool threads when they are busy."""
    if handoff.run(fn, calls, start):
        return
    futures = [_executor(len(calls) - 1).submit(fn, *args) for args in calls[1:]]
    try:
        fn(*calls[0])
    finally:
        for future in futures:
            future.result()


def _run_all(fn, calls):
    """``fn(*args)`` for every ``args`` of ``calls``, in order."""
    for args in calls:
        fn(*args)


def _grad_parts(W, U, n):
    """``(flat, parts)``: ``n`` chunks' own ``(dW, dU, db)`` buffers, views of the
    rows of one pooled array ``flat``."""
    sizes = np.cumsum([0, W.size, U.size, W.shape[1]])
    flat = _pool.empty((n, sizes[-1]), W.dtype)
    return flat, [tuple(row[lo:hi].reshape(shape) for lo, hi, shape
                        in zip(sizes[:-1], sizes[1:], (W.shape, U.shape, W.shape[1:])))
                  for row in flat]


@numba.njit(**_jit)
def _sum_rows(flat):
    # flat[0] = ((flat[0] + flat[1]) + flat[2]) + ...: the chunks' sums in order,
    # element-wise (no reduction loop the fast-math flags could reorder).
    total = flat[0]
    for i in range(1, flat.shape[0]):
        row = flat[i]
        for k in range(total.shape[0]):
            total[k] += row[k]


# ---------------------------------------------------------------------------
# Recycled arrays. A fresh large array costs the kernel a page fault on every
# 4 KiB page it first touches: on this VM, 40 % of a T=100, B=16 forward
# (11.7 ms against 6.2 ms with buffers already mapped). The Ops' large outputs
# and work arrays come from this pool instead, as views of buffers that stay
# mapped. A buffer is handed out again only when nothing but the pool refers to
# it (no array, view or user holds it), so no value still in use is overwritten.
# ---------------------------------------------------------------------------
MIN_POOLED_BYTES = 1 << 17  # smaller arrays come from malloc's heap, already mapped
MAX_POOLED = 256  # buffers kept; beyond, free ones are let go (memory held stays bounded)
MAX_POOLED_BYTES = 2 << 30  # and bytes kept, likewise


def _refcount(buf):
    return sys.getrefcount(buf)


class _Pool:
    """Byte buffers lent out as arrays, and taken back once unreferenced."""

    def __init__(self):
        self.buffers = []
        self.lock = threading.Lock()
        probe = [np.empty(1, np.uint8)]
        for buf in probe:  # counted as empty() and _grow() count: the pool's own references
            self.free_refs = _refcount(buf)

    def empty(self, shape, dtype):
        """An uninitialised C-contiguous array, like ``np.empty(shape, dtype)``."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes < MIN_POOLED_BYTES:
            return np.empty(shape, dtype)
        with self.lock:
            buf = self._smallest_free(nbytes)
            if buf is None:
                buf = self._grow(nbytes)
            return buf[:nbytes].view(dtype).reshape(shape)

    def _smallest_free(self, nbytes):
        """The smallest unreferenced buffer of at least ``nbytes``, or None (its
        own frame: no reference left behind to the buffers it looked at)."""
        best = None
        for buf in self.buffers:
            if (buf.nbytes >= nbytes and (best is None or buf.nbytes < best.nbytes)
                    and _refcount(buf) <= self.free_refs):
                best = buf
        return best

    def _grow(self, nbytes):
        """A new buffer of at least ``nbytes``; free ones let go beyond the limits."""
        free = [buf for buf in self.buffers if _refcount(buf) <= self.free_refs]
        if free:  # replace the largest free buffer (too small) by a larger one
            largest = max(free, key=len)
            free = [buf for buf in free if buf is not largest]
            self.buffers = [buf for buf in self.buffers if buf is not largest]
        # 1/8 more, for the next, slightly longer batch of a bucketed run.
        buf = np.empty(nbytes + nbytes // 8, np.uint8)
        self.buffers.append(buf)
        excess = len(self.buffers) - MAX_POOLED
        over = sum(old.nbytes for old in self.buffers) - MAX_POOLED_BYTES
        drop = set()
        for old in sorted(free, key=len, reverse=True):
            if excess <= 0 and over <= 0:
                break
            drop.add(id(old))
            excess, over = excess - 1, over - old.nbytes
        if drop:
            self.buffers = [old for old in self.buffers if id(old) not in drop]
        return buf

    def copy(self, a):
        """A C-contiguous copy of ``a``."""
        out = self.empty(a.shape, a.dtype)
        np.copyto(out, a)
        return out

    def zeros(self, shape, dtype):
        """Like ``np.zeros``; a large array is filled in threads, by blocks."""
        out = self.empty(shape, dtype)
        flat = out.reshape(-1)
        n = max(1, min(threads, flat.size // MIN_STEP_BLOCK))
        if n == 1:
            flat.fill(0)
        else:
            _in_threads(_fill_zero, [(flat[lo:hi],) for lo, hi in _blocks(flat.size, n)])
        return out


@numba.njit(nogil=True, cache=True)
def _fill_zero(a):
    a[:] = 0


_pool = _Pool()
