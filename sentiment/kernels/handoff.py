"""Thread hand-offs that start within microseconds: helper threads that spin a
while (without the GIL) before they sleep, and are told to start from inside
compiled code.

A kernel call shared out to threads (``fused_lstm._in_threads``) used to hand
its other shares to a ``ThreadPoolExecutor``, whose sleeping thread took a
median 30-140 us to start on a 2-core KVM guest (far more when the host was
busy), at each of the five hand-offs of a T=100, B=16 update. A helper that
spins instead sees the work at once, but then waits for the GIL, which the
calling thread holds until it enters its own share: another wake-up of the
same cost. So here the calling thread tells the helpers to start from inside
a ``nogil`` Numba function (a kernel's *start* function, below), which then
runs the caller's own share: by then the GIL is free, and the helpers take
it at once, in turn, to call their share. Each helper signals the end with
an atomic store; the caller spins for it, then sleeps. After ``SPIN_NS``
with no work a helper sleeps on a condition variable.

A kernel's start function is written out beside it (Numba caches only
functions written out, not ones made by a factory)::

    @numba.njit(nogil=True, cache=True)
    def _kernel_start(flags, count, value, *args):
        handoff.signal(flags, count, value)
        _kernel(*args)

Every share runs the same kernel on the same arguments as before, so the
bits are those of any other schedule. :func:`run` falls back to the pool
of threads when the pool is busy (another thread's call, or a call from a
helper), and a forked child starts its own helpers.
"""
import os
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

SPIN_NS = 2_000_000  # a helper spins this long for the next work, and a caller
# for the helpers to finish, then sleeps
SLOT = 16  # int32 per flag: one cache line each


# ---------------------------------------------------------------------------
# Atomic loads and stores of int32 flags, and x86's pause, for Numba.
# ---------------------------------------------------------------------------
@intrinsic
def _load(typingctx, address):
    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        return builder.load_atomic(ptr, "acquire", 4)
    return types.int32(types.intp), codegen


@intrinsic
def _store(typingctx, address, value):
    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        builder.store_atomic(args[1], ptr, "release", 4)
        return context.get_dummy_value()
    return types.void(types.intp, types.int32), codegen


@intrinsic
def _pause(typingctx):
    def codegen(context, builder, signature, args):
        name = "llvm.x86.sse2.pause"
        fn = builder.module.globals.get(name) or ir.Function(
            builder.module, ir.FunctionType(ir.VoidType(), []), name)
        builder.call(fn, [])
        return context.get_dummy_value()
    return types.void(), codegen


_clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.voidptr))
_CLOCK_MONOTONIC = 1  # (Linux)


@numba.njit(nogil=True, cache=True)
def _now_ns(ts):
    _clock_gettime(_CLOCK_MONOTONIC, ts.ctypes.data)
    return ts[0] * 1_000_000_000 + ts[1]


@numba.njit(nogil=True, cache=True)
def _spin(flags, first, count, value, equal, max_ns):
    # Spins until each of the flags first, first + SLOT, ... (count of them)
    # equals value (equal) or differs from it (not equal), at most max_ns:
    # whether they all did.
    ts = np.empty(2, np.int64)
    start = _now_ns(ts)
    k = 0
    while k < count:
        if (_load(flags.ctypes.data + 4 * (first + k * SLOT)) == value) == equal:
            k += 1
            continue
        for _ in range(32):
            _pause()
        if _now_ns(ts) - start > max_ns:
            return False
    return True


@numba.njit(nogil=True, cache=True)
def signal(flags, count, value):
    """Flags ``0, SLOT, ...`` (``count`` of them) set to ``value``: the helpers go."""
    for k in range(count):
        _store(flags.ctypes.data + 4 * k * SLOT, value)


@numba.njit(nogil=True, cache=True)
def _set(flags, index, value):
    _store(flags.ctypes.data + 4 * index, value)


# ---------------------------------------------------------------------------
# The helpers.
# ---------------------------------------------------------------------------
class Helpers:
    """``n`` helper threads; :meth:`run` shares a call out to them."""

    def __init__(self, n):
        self.go = np.zeros(n * SLOT, np.int32)  # helper k's flag at k * SLOT
        self.done = np.zeros(n * SLOT, np.int32)
        self.jobs = [None] * n
        self.errors = [None] * n
        self.sleeping = [False] * n
        self.count = 0
        self.lock = threading.Lock()  # one call at a time
        self.cv = threading.Condition()
        for k in range(n):
            threading.Thread(target=self._work, args=(k,), daemon=True,
                             name="fused_lstm-helper-%d" % k).start()

    def _work(self, k):
        seen = 0
        while True:
            if not _spin(self.go, k * SLOT, 1, np.int32(seen), False, SPIN_NS):
                with self.cv:
                    self.sleeping[k] = True
                    while int(self.go[k * SLOT]) == seen:
                        self.cv.wait()
                    self.sleeping[k] = False
            seen = int(self.go[k * SLOT])
            fn, args = self.jobs[k]
            try:
                fn(*args)
                self.errors[k] = None
            except BaseException as err:  # re-raised in the calling thread
                self.errors[k] = err
            _set(self.done, k * SLOT, np.int32(seen))
            with self.cv:
                self.cv.notify_all()

    def run(self, fn, calls, start=None):
        """``fn(*args)`` for every ``args`` of ``calls`` (at most ``n + 1``):
        this thread takes the first, the helpers the others. ``start``: fn's
        start function, or None (the helpers are told from Python)."""
        count = len(calls) - 1
        self.count = (self.count + 1) & 0x3FFFFFFF
        value = np.int32(self.count)
        for k in range(count):
            self.jobs[k] = (fn, calls[k + 1])
        with self.cv:  # a sleeping helper is told here; a spinning one by the flag
            for k in range(count):
                if self.sleeping[k]:
                    self.go[k * SLOT] = value
            self.cv.notify_all()
        try:
            if start is not None:
                start(self.go, count, value, *calls[0])
            else:
                signal(self.go, count, value)
                fn(*calls[0])
        except BaseException:
            signal(self.go, count, value)  # (a start function that failed before it told them)
            raise
        finally:
            self._wait(count, value)
        for k in range(count):
            if self.errors[k] is not None:
                err, self.errors[k] = self.errors[k], None
                raise err

    def _wait(self, count, value):
        if _spin(self.done, 0, count, value, True, SPIN_NS):
            return
        with self.cv:
            while not all(int(self.done[k * SLOT]) == value for k in range(count)):
                self.cv.notify_all()  # (a helper that fell asleep as it was told)
                self.cv.wait(0.001)


_helpers = {}  # number of helpers: Helpers
_lock = threading.Lock()
_at_fork = []


def _after_fork():
    _helpers.clear()  # the parent's threads do not exist in the child


def run(fn, calls, start=None):
    """:meth:`Helpers.run` with ``len(calls) - 1`` helpers (started on first
    use); False, and nothing run, when they are busy: another thread is using
    them, or this is one of them."""
    if threading.current_thread().name.startswith("fused_lstm-helper"):
        return False
    if not _at_fork:
        os.register_at_fork(after_in_child=_after_fork)
        _at_fork.append(True)
    n = len(calls) - 1
    with _lock:
        if n not in _helpers:
            _helpers[n] = Helpers(n)
        pool = _helpers[n]
    if not pool.lock.acquire(blocking=False):
        return False
    try:
        pool.run(fn, calls, start)
    finally:
        pool.lock.release()
    return True
