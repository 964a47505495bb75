"""Fused PyTensor Ops for the tutorial's model: the LSTM recurrence, the
embedding lookup's gradient and the optimizers' parameter step.

``lstm.lstm_layer`` writes the recurrence as a ``scan`` over time steps, the
tutorial's formulation and this project's reference (``--lstm-impl scan``).
``scan`` pays, at every step, for a generic loop, one small op per gate
non-linearity, and, in the gradient, a recomputation of ``h U + x`` (see the
docs/speed.md). Here the same function is two Ops, each one pass over the
whole sequence in a Numba kernel (``--lstm-impl fused``, the default):

- :class:`LSTMForward` ``(x, mask, W, U, b) -> (h, c, gates)``: the input
  projection ``x W + b`` a chunk of steps at a time, then per step one GEMM
  ``h_{t-1} U`` (the small kernel of ``fused_lstm_gemm.c``) and, for each
  review, one vectorised loop for the four gates and one for the states; it
  keeps the gate activations for the backward pass.
- :class:`LSTMBackward` ``(x, mask, W, U, h, c, gates, dh, dc) -> (dx, dW,
  dU, db)``: per step one vectorised loop per review for the gates'
  derivatives and one GEMM ``dz_t U^T`` (``U^T`` packed once); ``dx``,
  ``dW``, ``dU`` and ``db`` as large GEMMs over chunks of steps. An empty
  ``dc`` stands for zeros (the cost of the tutorial's model uses ``h`` only).

From 8 reviews per thread the batch's rows are shared out between threads;
a smaller batch runs the recurrence in this thread while a helper thread
computes the large GEMMs in step with it (see "Threads" below). Prediction
has its own Ops, which keep nothing for a gradient (``fused_graph``).

The gate non-linearities use a rational approximation of ``tanh`` (the one
Eigen uses for float32; ``sigmoid(x) = (1 + tanh(x / 2)) / 2``), at most
3.3e-7 from the exact value, which the compiler vectorises; float64 inputs use
the exact ``tanh``. Two smaller Ops remove the other slow steps of a training
update: :class:`Embedding` (whose gradient adds rows in a compiled loop rather
than with NumPy's ``add.at``) and :class:`FusedStep` (AdaDelta's or
RMSProp's parameter step in one vectorised pass); :class:`MaskedMean` does
the tutorial's mean pooling in one pass. The Ops' large arrays come from a
pool of buffers that stay mapped (see "Recycled arrays"), and the classifier's
softmax is inlined (see the end). ``tests/test_fused_lstm.py`` checks every
Op against the ``scan``/PyTensor reference and NumPy.

Axes: ``x`` is ``(n_timesteps, n_samples, n_in)``, ``mask`` is
``(n_timesteps, n_samples)``, ``W`` is ``(n_in, 4 dim)``, ``U`` is
``(dim, 4 dim)``, ``b`` is ``(4 dim,)``; inside, the projection ``xw`` is
``(n_timesteps, n_samples, 4 dim)``, gates in the tutorial's order i, f, o, c.
"""
import concurrent.futures
import ctypes
import ctypes.util
import glob
import hashlib
import math
import os
import shutil
import subprocess
import sys
import threading

import sentiment.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

import llvmlite.binding as llvm
import numba
import numpy as np
import pytensor.tensor as pt
from numba.extending import overload
from pytensor import config
from pytensor.gradient import DisconnectedType, grad_not_implemented, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from sentiment import handoff

# The one fast-math flag: "contract" (a * b + c may become one fused
# multiply-add, which every AVX2 CPU has, and LLVM forms the same ones for
# every x86-64 target). The others change results with the target: with
# "reassoc" and "nsz", the machine scheduler of znver3 or alderlake
# re-associated the backward's gate derivatives otherwise than that of haswell
# or znver4; with "arcp" and "afn", x / sqrt(y) became an estimate of
# 1 / sqrt(y) refined by a Newton step, whose instruction differs between
# Intel's AVX-512 targets (vrsqrt14ps) and the others (vrsqrtps). NaN and
# infinity keep their meaning: a NaN weight still reaches the cost.
_FASTMATH = {"contract"}
# error_model="numpy": a division never raises, which lets the loops vectorise.
_jit = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
# The optimizers' steps: IEEE arithmetic, each operation rounded as written.
_ieee_jit = dict(nogil=True, cache=True, error_model="numpy")


@numba.njit(**_jit)
def _tanh32(x):
    """tanh(x) as a [13/6] rational function, exact to 3.3e-7 (float32)."""
    # Clamp to [-9, 9] with comparisons, which let NaN through.
    x = np.float32(-9.0) if x < np.float32(-9.0) else x
    x = np.float32(9.0) if x > np.float32(9.0) else x
    x2 = x * x
    p = np.float32(-2.76076847742355e-16)
    p = p * x2 + np.float32(2.00018790482477e-13)
    p = p * x2 + np.float32(-8.60467152213735e-11)
    p = p * x2 + np.float32(5.12229709037114e-08)
    p = p * x2 + np.float32(1.48572235717979e-05)
    p = p * x2 + np.float32(6.37261928875436e-04)
    p = p * x2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * x2 + np.float32(1.18534705686654e-04)
    q = q * x2 + np.float32(2.26843463243900e-03)
    q = q * x2 + np.float32(4.89352518554385e-03)
    return x * p / q


def _tanh(x):
    """tanh in the kernels: the rational one for float32, the exact one otherwise."""
    return np.tanh(x)


@overload(_tanh, jit_options=_jit)
def _tanh_impl(x):
    if x == numba.types.float32:
        return lambda x: _tanh32(x)
    return lambda x: np.tanh(x)


# ---------------------------------------------------------------------------
# GEMM from inside the kernels: CBLAS from the OpenBLAS that NumPy itself uses
# (numba's own ``np.dot`` goes through SciPy's BLAS in an orientation that is
# ~1.7x slower at these shapes), else the system OpenBLAS, else ``np.dot``.
# ---------------------------------------------------------------------------
_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


def _numpy_openblas():
    """Paths of the ILP64 OpenBLAS bundled with NumPy's wheel (empty otherwise)."""
    numpy_libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    return sorted(glob.glob(os.path.join(numpy_libs, "*openblas64*.so*")))


def _find_cblas():
    """``{dtype: (address, int_bits)}`` of ``cblas_sgemm``/``cblas_dgemm``, or ``{}``."""
    candidates = [(path, ("scipy_cblas_%sgemm64_", "cblas_%sgemm64_"), 64)
                  for path in _numpy_openblas()]
    system = ctypes.util.find_library("openblas")
    if system:
        candidates.append((system, ("cblas_%sgemm",), 32))
    for path, names, bits in candidates:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            if hasattr(lib, name % "s") and hasattr(lib, name % "d"):
                return {dtype: (ctypes.cast(getattr(lib, name % letter), ctypes.c_void_p).value,
                                bits)
                        for dtype, letter in (("float32", "s"), ("float64", "d"))}
    return {}


def _cblas_gemm(dtype, address, bits):
    """The CBLAS ``?gemm`` at ``address`` as a function Numba can call (and cache)."""
    symbol = "fused_lstm_cblas_%s_int%d" % (dtype, bits)
    llvm.add_symbol(symbol, address)
    real, n = getattr(numba.types, dtype), getattr(numba.types, "int%d" % bits)
    i32, ptr = numba.types.int32, numba.types.intp
    return numba.types.ExternalFunction(symbol, numba.types.void(
        i32, i32, i32, n, n, n, real, ptr, n, ptr, n, real, ptr, n))


_CBLAS = None  # {dtype: the CBLAS ?gemm as a Numba function}: set by setup()


@numba.njit(**_jit)
def _gemm_dot(a, b, c, trans_b, beta):
    """``c = a @ (b.T if trans_b else b) + beta c`` with Numba's ``np.dot``."""
    if trans_b:
        c[:] = beta * c + np.dot(a, b.T)
    else:
        c[:] = beta * c + np.dot(a, b)


def _gemm(a, b, c, trans_b, beta):
    """``c = a @ (b.T if trans_b else b) + beta c``; all C-contiguous, one dtype."""
    c[:] = beta * c + np.dot(a, b.T if trans_b else b)


@overload(_gemm, jit_options=_jit)
def _gemm_impl(a, b, c, trans_b, beta):
    call = _CBLAS.get(str(a.dtype))
    if call is None:
        return lambda a, b, c, trans_b, beta: _gemm_dot(a, b, c, trans_b, beta)

    def gemm(a, b, c, trans_b, beta):
        call(_ROW_MAJOR, _NO_TRANS, _TRANS if trans_b else _NO_TRANS,
             a.shape[0], c.shape[1], a.shape[1], 1.0, a.ctypes.data, a.shape[1],
             b.ctypes.data, b.shape[1], beta, c.ctypes.data, c.shape[1])
    return gemm


# ---------------------------------------------------------------------------
# The per-step GEMM with its matrix packed once per sequence (see
# fused_lstm_gemm.c): float32 on a CPU with AVX2 and FMA, about 1.7x faster
# than OpenBLAS at 16 x 128 x 512, which packs the matrix at every call.
# The C file is compiled once into PyTensor's compile directory (PyTensor's
# C backend needs a C compiler anyway); without a compiler, on another CPU,
# for float64, or with FUSED_LSTM_GEMM=blas, the kernels call the BLAS.
# ---------------------------------------------------------------------------
PANEL = 16  # columns per packed panel
_GEMM_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fused_lstm_gemm.c")
_GEMM_FLAGS = ["-O3", "-shared", "-fPIC"]
_GEMM_ARGS = (ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long,
              ctypes.c_void_p, ctypes.c_void_p, ctypes.c_long, ctypes.c_int)


def _gemm_dir():
    """Where the compiled kernel is kept: in PyTensor's compile directory."""
    return os.path.join(config.compiledir, "fused_lstm")


def _compiled_gemm():
    """``(path of the compiled fused_lstm_gemm.c, None)`` or ``(None, why not)``."""
    try:
        with open(_GEMM_SOURCE, "rb") as f:
            source = f.read()
    except OSError:
        return None, "%s not found" % _GEMM_SOURCE
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return None, "no C compiler"
    key = hashlib.sha256(source + " ".join([cc] + _GEMM_FLAGS).encode()).hexdigest()[:16]
    directory = _gemm_dir()
    path = os.path.join(directory, "gemm-%s.so" % key)
    if os.path.exists(path):
        return path, None
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        os.makedirs(directory, exist_ok=True)
        subprocess.run([cc] + _GEMM_FLAGS + [_GEMM_SOURCE, "-o", tmp], check=True,
                       capture_output=True, timeout=300)
        os.replace(tmp, path)  # atomic: another process never loads half a file
    except (OSError, subprocess.SubprocessError) as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        detail = (getattr(err, "stderr", None) or b"").decode(errors="replace").strip()
        detail = [line for line in detail.splitlines() if "error" in line] or [str(err)]
        return None, "could not compile %s: %s" % (_GEMM_SOURCE, detail[0])
    return path, None


def _load_packed_gemm():
    """``(address of fl_sgemm_packed or None, a description of the per-step GEMM)``."""
    if os.environ.get("FUSED_LSTM_GEMM", "packed") == "blas":
        return None, "BLAS (FUSED_LSTM_GEMM=blas)"
    path, why = _compiled_gemm()
    if path is None:
        return None, "BLAS (%s)" % why
    try:
        lib = ctypes.CDLL(path)
    except OSError as err:
        return None, "BLAS (could not load %s: %s)" % (path, err)
    if not lib.fl_cpu_ok():
        return None, "BLAS (the CPU has no AVX2 and FMA)"
    global _TN_GEMM, _NN_GEMM
    _TN_GEMM = ctypes.cast(lib.fl_sgemm_tn, ctypes.c_void_p).value
    _NN_GEMM = ctypes.cast(lib.fl_sgemm_nn, ctypes.c_void_p).value
    tiles = "AVX-512" if lib.fl_vector_bits() == 512 else "AVX2"
    return (ctypes.cast(lib.fl_sgemm_packed, ctypes.c_void_p).value,
            "%s: packed kernel, %s tiles" % (PACKED_KERNEL, tiles))


PACKED_KERNEL = "fused_lstm_gemm.c"  # how gemm_kernel starts when the C kernel is used
_PACKED_GEMM = None  # the address of fl_sgemm_packed, or None: set by setup()
_TN_GEMM = None  # the address of fl_sgemm_tn (loaded with fl_sgemm_packed)
_NN_GEMM = None  # the address of fl_sgemm_nn (likewise)
gemm_kernel = "not chosen yet (setup() chooses it on first use)"
# The kernels always link to this symbol (so Numba's cached machine code
# loads whatever was found); they call it only with a non-empty packed matrix,
# which exists only when the real kernel was loaded.
_no_kernel = ctypes.CFUNCTYPE(None, *_GEMM_ARGS)(lambda *args: None)
_TN_ARGS = (ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_long,
            ctypes.c_void_p, ctypes.c_long, ctypes.c_void_p, ctypes.c_long, ctypes.c_int,
            ctypes.c_void_p)
_no_tn_kernel = ctypes.CFUNCTYPE(None, *_TN_ARGS)(lambda *args: None)
_no_nn_kernel = _no_tn_kernel  # (the same arguments)
_i64 = numba.types.int64
_sgemm_packed = numba.types.ExternalFunction("fused_lstm_sgemm_packed", numba.types.void(
    _i64, _i64, _i64, numba.types.intp, _i64, numba.types.intp, numba.types.intp, _i64,
    numba.types.int32))


_sgemm_tn = numba.types.ExternalFunction("fused_lstm_sgemm_tn", numba.types.void(
    _i64, _i64, _i64, numba.types.intp, _i64, numba.types.intp, _i64, numba.types.intp, _i64,
    numba.types.int32, numba.types.intp))


_sgemm_nn = numba.types.ExternalFunction("fused_lstm_sgemm_nn", numba.types.void(
    _i64, _i64, _i64, numba.types.intp, _i64, numba.types.intp, _i64, numba.types.intp, _i64,
    numba.types.int32, numba.types.intp))


@numba.njit(**_jit)
def _nn_gemm(a, B, c, kernel, tmp):
    """``c = a B`` (all C-contiguous rows): with ``kernel`` (float32, the C
    kernel loaded) fl_sgemm_nn, reading ``B`` in place (``tmp``: ``16 K``
    floats when ``B``'s columns are not a multiple of 16); else the BLAS."""
    if kernel:
        _sgemm_nn(a.shape[0], c.shape[1], a.shape[1], a.ctypes.data, a.strides[0] // 4,
                  B.ctypes.data, B.strides[0] // 4, c.ctypes.data, c.strides[0] // 4, 0,
                  tmp.ctypes.data)
    else:
        _gemm(a, B, c, False, np.zeros(1, dtype=c.dtype)[0])


@numba.njit(**_jit)
def _tn_product(X, Y, C, tmp, go_on=False):
    """``C = X^T Y`` (float32, C-contiguous rows; ``tmp``: ``16 K`` floats), each
    element one chain of fused multiply-adds in the order of X's rows; with
    ``go_on``, the chains go on from the values in ``C`` (the same sums as one
    product over the rows of both calls)."""
    _sgemm_tn(C.shape[0], C.shape[1], X.shape[0], X.ctypes.data, X.strides[0] // 4,
              Y.ctypes.data, Y.strides[0] // 4, C.ctypes.data, C.strides[0] // 4,
              2 if go_on else 0, tmp.ctypes.data)


GRAD_BLOCK = 128  # rows of a chunk's gradient products done together (they stay in cache)


@numba.njit(**_jit)
def _grad_products(rows, dz, previous, off, Wtp, dx, dW, dU, tmp):
    # rows: (K, n_in), the inputs of dz's K rows; previous: (K - off, D), the
    # h_{t-1} of dz's rows off:K. dx = dz W^T (Wtp: W^T packed), dW = rows^T
    # dz, dU = previous^T dz[off:], a block of GRAD_BLOCK rows at a time
    # through all three, so that the block stays in cache: the chains of sums
    # go on from block to block, the same sums as whole products.
    n = dz.shape[0]
    for k0 in range(0, n, GRAD_BLOCK):
        k1 = min(n, k0 + GRAD_BLOCK)
        _packed_gemm(dz[k0:k1], Wtp, dx[k0:k1], 0)
        _tn_product(rows[k0:k1], dz[k0:k1], dW, tmp, k0 > 0)
        a = max(k0, off)
        if a < k1:
            _tn_product(previous[a - off:k1 - off], dz[a:k1], dU, tmp, a > off)


@numba.njit(**_jit)
def _packed_product(a, bp, c):
    """``c = a B`` with ``B`` packed in ``bp`` (float32; see fused_lstm_gemm.c)."""
    _packed_gemm(a, bp, c, 0)


def packed(B):
    """``B`` (``K x N``) packed for the kernel: ``(ceil(N / 16), K, 16)``, panel
    ``p`` holding columns ``16 p`` to ``16 p + 15`` (zeros past ``N``); or an empty
    array when the kernels are to call the BLAS instead."""
    setup()
    if _PACKED_GEMM is None or B.dtype != np.float32:
        return np.empty((0, 1, PANEL), B.dtype)
    out = _pool.empty((-(-B.shape[1] // PANEL), B.shape[0], PANEL), B.dtype)
    if not B.flags.c_contiguous and B.T.flags.c_contiguous:
        _pack_transposed(B.T, out)  # (U^T, W^T: read along the rows of U, W; 2-4x faster)
    else:
        _pack(B, out)
    return out


@numba.njit(**_jit)
def _pack(B, out):
    n_rows, n_cols = B.shape
    zero = np.zeros(1, dtype=out.dtype)[0]
    for p in range(out.shape[0]):
        for k in range(n_rows):
            for j in range(PANEL):
                col = p * PANEL + j
                out[p, k, j] = B[k, col] if col < n_cols else zero


@numba.njit(**_jit)
def _pack_transposed(A, out):
    # out: A^T packed (A^T[k, col] = A[col, k]).
    n_cols, n_rows = A.shape
    for p in range(out.shape[0]):
        for j in range(PANEL):
            col = p * PANEL + j
            if col < n_cols:
                row = A[col]
                for k in range(n_rows):
                    out[p, k, j] = row[k]
            else:
                for k in range(n_rows):
                    out[p, k, j] = 0


def _packed_gemm(a, bp, c, beta):
    """``c = a B + beta c`` with ``B`` packed in ``bp`` (float32; beta 0 or 1)."""
    B = bp.transpose(1, 0, 2).reshape(bp.shape[1], -1)[:, :c.shape[1]]
    c[:] = beta * c + np.dot(a, B)


@overload(_packed_gemm, jit_options=_jit)
def _packed_gemm_impl(a, bp, c, beta):
    if a.dtype != numba.types.float32:
        return lambda a, bp, c, beta: None  # never called: nothing is packed but float32

    def gemm(a, bp, c, beta):
        _sgemm_packed(a.shape[0], c.shape[1], a.shape[1], a.ctypes.data, a.strides[0] // 4,
                      bp.ctypes.data, c.ctypes.data, c.strides[0] // 4, 0 if beta == 0 else 1)
    return gemm


@numba.njit(**_jit)
def _step_gemm(a, b, bp, c, trans_b, beta):
    """``c = a @ (b.T if trans_b else b) + beta c``, ``bp`` that matrix packed (or empty)."""
    if bp.shape[0] > 0:
        _packed_gemm(a, bp, c, beta)
    else:
        _gemm(a, b, c, trans_b, beta)


# ---------------------------------------------------------------------------
# The two kernels. Constants are made of the arrays' own type (``one``): a
# Python float would promote float32 arithmetic to float64.
# ---------------------------------------------------------------------------
@numba.njit(**_jit)
def _sigmoid(x, half):
    return half * _tanh(half * x) + half


@numba.njit(**_jit)
def _cell(m, x_tb, z_b, g_tb, cp, hp, c_tb, h_tb, dim, one, half):
    # One row of one step: the gates g_tb from the pre-activations z_b + x_tb
    # (i, f, o, c~), then the states c_tb, h_tb from cp, hp under the mask m.
    # Simple loops over contiguous rows, which the compiler vectorises; the
    # four gates in one loop, whose four independent chains of arithmetic
    # keep the vector units busy (1.7x faster than a loop per gate: the
    # same operations on each element, so the same bits).
    for d in range(dim):
        g_tb[d] = _sigmoid(z_b[d] + x_tb[d], half)
        g_tb[dim + d] = _sigmoid(z_b[dim + d] + x_tb[dim + d], half)
        g_tb[2 * dim + d] = _sigmoid(z_b[2 * dim + d] + x_tb[2 * dim + d], half)
        g_tb[3 * dim + d] = _tanh(z_b[3 * dim + d] + x_tb[3 * dim + d])
    for d in range(dim):
        c_new = (m * (g_tb[dim + d] * cp[d] + g_tb[d] * g_tb[3 * dim + d])
                 + (one - m) * cp[d])
        c_tb[d] = c_new
        h_tb[d] = m * (g_tb[2 * dim + d] * _tanh(c_new)) + (one - m) * hp[d]


@numba.njit(**_jit)
def _forward(xw, mask, U, Up, h, c, gates, t0, t1, lo, hi):
    # xw: (T, B, 4D); mask: (T, B); U: (D, 4D), Up: U packed or empty; h, c: (T, B, D) and
    # gates: (T, B, 4D) are written (i, f, o, c~ after their non-linearity),
    # for the steps t0:t1 (h[t0 - 1] and c[t0 - 1] already written) and the
    # batch's rows lo:hi (threads may share out the rows: each is independent).
    dim4 = xw.shape[2]
    dim, rows = dim4 // 4, hi - lo
    one = np.ones(1, dtype=xw.dtype)[0]
    zero, half = one - one, one / (one + one)
    zeros = np.zeros((rows, dim), dtype=xw.dtype)
    preact = np.zeros((rows, dim4), dtype=xw.dtype)  # h_{t-1} U
    for t in range(t0, t1):
        h_prev = zeros if t == 0 else h[t - 1, lo:hi]
        c_prev = zeros if t == 0 else c[t - 1, lo:hi]
        if t > 0:
            _step_gemm(h_prev, U, Up, preact, False, zero)
        for r in range(rows):
            b = lo + r
            _cell(mask[t, b], xw[t, b], preact[r], gates[t, b], c_prev[r], h_prev[r],
                  c[t, b], h[t, b], dim, one, half)


@numba.njit(**_jit)
def _forward_rows(x, ids, table, fill, mask, W, b, U, kernel, h_out, c_out, gates_out,
                  pooled, xw, lo, hi):
    # The forward of the batch's rows lo:hi over every step. x: (T, B, n_in),
    # or, when table is not empty, the projection of row b of step t is
    # table[ids[t, b]] (ids: (T, B); see ProjectedRows), x unused; but when
    # fill (T, B) is not empty, x is projected and the projection of row b
    # of step t is also written to table[ids[t, b]] where fill[t, b] is 1;
    # kernel: the products with the C kernel (else the BLAS); h_out, c_out: (T, B, D) and
    # gates_out: (T, B, 4D), each written if not empty (LSTMForward's
    # outputs); pooled: (B, D), written if not empty, the mean of h over the
    # unmasked steps (MaskedMean's arithmetic). The input projection runs
    # chunk steps at a time, just before the recurrence reads them, so it
    # stays in cache: xw, (chunk, hi - lo, 4D), holds a chunk. The same
    # arithmetic as _project, then _forward (and _masked_mean): the same bits.
    n_steps, dim4 = mask.shape[0], W.shape[1]
    dim, rows = dim4 // 4, hi - lo
    one = np.ones(1, dtype=x.dtype)[0]
    half = one / (one + one)
    chunk = xw.shape[0]
    tmp = np.empty(16 * max(W.shape[0], U.shape[0]), dtype=x.dtype)  # (a partial panel)
    gates = np.empty((rows, dim4), dtype=x.dtype)  # (when gates_out is not kept)
    preact = np.zeros((rows, dim4), dtype=x.dtype)
    h = np.zeros((2, rows, dim), dtype=x.dtype)  # h_{t-1} and h_t, by turns
    c = np.zeros((2, rows, dim), dtype=x.dtype)
    acc = np.zeros((rows, dim), dtype=np.float64)
    count = np.zeros(rows, dtype=np.float64)
    from_table = table.shape[0] > 0 and fill.shape[0] == 0
    keep_h, keep_c = h_out.shape[0] > 0, c_out.shape[0] > 0
    for t0 in range(0, n_steps, chunk):
        t1 = min(n_steps, t0 + chunk)
        for t in range(t0, t1):
            if from_table:
                break
            _nn_gemm(x[t, lo:hi], W, xw[t - t0], kernel, tmp)
            for r in range(rows):
                xw_tr = xw[t - t0, r]
                for k in range(dim4):
                    xw_tr[k] += b[k]
                if fill.shape[0] > 0 and fill[t, lo + r]:
                    row = table[ids[t, lo + r]]
                    for k in range(dim4):
                        row[k] = xw_tr[k]
        for t in range(t0, t1):
            # The states: in the outputs when they are kept (no copy), else
            # in h and c by turns (h[1], c[1] stay zeros when never written).
            prev, cur = (t + 1) % 2, t % 2
            h_prev = h_out[t - 1, lo:hi] if keep_h and t > 0 else h[prev]
            c_prev = c_out[t - 1, lo:hi] if keep_c and t > 0 else c[prev]
            h_cur = h_out[t, lo:hi] if keep_h else h[cur]
            c_cur = c_out[t, lo:hi] if keep_c else c[cur]
            if t > 0:
                _nn_gemm(h_prev, U, preact, kernel, tmp)
            for r in range(rows):
                m = mask[t, lo + r]
                g_r = gates_out[t, lo + r] if gates_out.shape[0] > 0 else gates[r]
                x_r = table[ids[t, lo + r]] if from_table else xw[t - t0, r]
                _cell(m, x_r, preact[r], g_r, c_prev[r], h_prev[r], c_cur[r], h_cur[r],
                      dim, one, half)
                if pooled.shape[0] > 0:
                    count[r] += m
                    h_r, acc_r = h_cur[r], acc[r]
                    for d in range(dim):
                        acc_r[d] += h_r[d] * m
    if pooled.shape[0] > 0:
        n = np.empty(1, dtype=pooled.dtype)
        for r in range(rows):
            n[0] = count[r]
            for d in range(dim):
                pooled[lo + r, d] = acc[r, d]  # cast first, then divide in pooled's type
                pooled[lo + r, d] = pooled[lo + r, d] / n[0]


@numba.njit(**_jit)
def _forward_rows_start(flags, count, value, *args):
    # _forward_rows(*args), once the helpers are told (sentiment.handoff).
    handoff.signal(flags, count, value)
    _forward_rows(*args)


@numba.njit(**_jit)
def _backward(mask, U, Utp, h, c, gates, dh_out, dc_out, dxw, dh_next, dc_next, t0, t1, lo, hi):
    # Utp: U^T packed, or empty.
    # dh_out, dc_out: (T, B, D), the cost's gradient with respect to each
    # step's h and c (dc_out empty: zeros, as when the cost does not use c);
    # dxw: (T, B, 4D) is written, the gradient of the
    # pre-activations (= of xw), for the steps t1 - 1 down to t0 and the
    # batch's rows lo:hi. dh_next, dc_next: (B, D), the gradient flowing from
    # step t1 into step t1 - 1 (zeros at the end of the sequence), updated in
    # place to what flows from step t0 into step t0 - 1.
    dim = h.shape[2]
    rows = hi - lo
    one = np.ones(1, dtype=h.dtype)[0]
    zeros = np.zeros((rows, dim), dtype=h.dtype)
    no_dc = dc_out.shape[0] == 0
    for t in range(t1 - 1, t0 - 1, -1):
        c_prev = zeros if t == 0 else c[t - 1, lo:hi]
        for r in range(rows):
            # One loop over the row's units: the compiler vectorises it (the
            # arrays are distinct rows), and each element's arithmetic is
            # that of the tutorial's graph, in its order.
            b = lo + r
            m = mask[t, b]
            g_tb, dz, cp, c_tb = gates[t, b], dxw[t, b], c_prev[r], c[t, b]
            dh, dc = dh_next[b], dc_next[b]  # become what flows into step t - 1
            dh_t = dh_out[t, b]
            dc_t = zeros[0] if no_dc else dc_out[t, b]
            for d in range(dim):
                dh_d = dh[d] + dh_t[d]  # this step's dh, dc
                dc_d = dc[d] + dc_t[d]
                # through h = o tanh(c): the o gate and dc
                th = _tanh(c_tb[d])
                o = g_tb[2 * dim + d]
                dh_raw = m * dh_d
                dz[2 * dim + d] = dh_raw * th * o * (one - o)
                dc_d += dh_raw * o * (one - th * th)
                # through c = f c_prev + i c~: i, f, c~
                i = g_tb[d]
                f = g_tb[dim + d]
                g = g_tb[3 * dim + d]
                dc_raw = m * dc_d
                dz[d] = dc_raw * g * i * (one - i)
                dz[dim + d] = dc_raw * cp[d] * f * (one - f)
                dz[3 * dim + d] = dc_raw * i * (one - g * g)
                dc[d] = (one - m) * dc_d + dc_raw * f  # dc_prev
                dh[d] = dh_d * (one - m)  # dh_prev, before the U^T term
        if t > 0:
            _step_gemm(dxw[t, lo:hi], U, Utp, dh_next[lo:hi], True, one)  # dh_next += dz_t U^T


@numba.njit(**_jit)
def _backward_start(flags, count, value, *args):
    # _backward(*args), once the helpers are told (sentiment.handoff).
    handoff.signal(flags, count, value)
    _backward(*args)


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
def _blas_thread_control():
    """``(get, set)`` of the thread count of NumPy's OpenBLAS, or None."""
    for path in _numpy_openblas():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix, suffix in (("scipy_", "64_"), ("", "64_"), ("", "")):
            get = getattr(lib, "%sopenblas_get_num_threads%s" % (prefix, suffix), None)
            set_ = getattr(lib, "%sopenblas_set_num_threads%s" % (prefix, suffix), None)
            if get is not None and set_ is not None:
                get.argtypes, get.restype = [], ctypes.c_int
                set_.argtypes, set_.restype = [ctypes.c_int], None
                return get, set_
    return None


_BLAS_THREADS = None  # (get, set) of NumPy's OpenBLAS thread count, or None: set by setup()
ROW_SPLIT_ROWS = 8  # rows per thread from which the backward shares out the rows
LARGE_BATCH = 32  # rows from which the gradient is summed in LARGE_CHUNKS blocks of steps
FORWARD_CHUNK_ROWS = 256  # steps x rows per projection chunk (small batches)
BACKWARD_CHUNK_ROWS = 512  # steps x rows per gradient chunk (small batches)
LARGE_CHUNKS = 8  # gradient chunks of a batch of LARGE_BATCH rows or more (1, 2, 4, 8 threads)


_setup_lock = threading.Lock()
_ready = False


def setup():
    """Find the BLAS, compile and load the packed GEMM, register their symbols.

    Done once, on first use (``packed``, ``lstm_forward_arrays`` and
    ``lstm_backward_arrays`` call it), not on import: importing this module
    runs no compiler and changes nothing in other libraries. Sets
    ``gemm_kernel``, a description of the per-step GEMM chosen.
    """
    global _CBLAS, _PACKED_GEMM, gemm_kernel, _BLAS_THREADS, _ready
    with _setup_lock:
        if _ready:
            return
        _CBLAS = {dtype: _cblas_gemm(dtype, *found) for dtype, found in _find_cblas().items()}
        _PACKED_GEMM, gemm_kernel = _load_packed_gemm()
        llvm.add_symbol("fused_lstm_sgemm_packed",
                        _PACKED_GEMM or ctypes.cast(_no_kernel, ctypes.c_void_p).value)
        llvm.add_symbol("fused_lstm_sgemm_tn", (_TN_GEMM if _PACKED_GEMM else None)
                        or ctypes.cast(_no_tn_kernel, ctypes.c_void_p).value)
        llvm.add_symbol("fused_lstm_sgemm_nn", (_NN_GEMM if _PACKED_GEMM else None)
                        or ctypes.cast(_no_nn_kernel, ctypes.c_void_p).value)
        _BLAS_THREADS = _blas_thread_control() if _CBLAS else None
        _ready = True


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


def _project(x, W, Wp, b, xw, t0, t1):
    """``xw[t0:t1] = x[t0:t1] W + b`` (``Wp``: W packed, or empty: the BLAS)."""
    out = xw[t0:t1].reshape(-1, xw.shape[2])
    rows = x[t0:t1].reshape(-1, x.shape[2])
    with _nan_passes():  # a NaN goes on to the cost ("bad cost detected"), silently
        if Wp.size:
            _packed_product(rows, Wp, out)
        else:
            np.dot(rows, W, out=out)
        out += b


def _input_grads(x, W, Wtp, h, dxw, dx, dW, dU, db, t0, t1):
    """For the steps t0:t1: ``dx = dxw W^T`` (written in place) and this
    chunk's ``dW = x^T dxw``, ``dU = h_{t-1}^T dxw`` (``h_{-1} = 0``) and
    ``db``, the sum of ``dxw`` over steps and rows. ``Wtp``: W^T packed (then
    every product is one chain of sums per element, in the order of the
    rows), or empty (the BLAS)."""
    dz = dxw[t0:t1].reshape(-1, dxw.shape[2])
    rows = x[t0:t1].reshape(-1, x.shape[2])
    s = max(t0, 1)
    previous = h[s - 1:t1 - 1].reshape(-1, h.shape[2])  # h_{t-1} of the steps s:t1
    with _nan_passes():
        if Wtp.size:
            tmp = np.empty(16 * GRAD_BLOCK if dz.shape[1] % 16 else 1, dz.dtype)
            _grad_products(rows, dz, previous, (s - t0) * x.shape[1], Wtp,
                           dx[t0:t1].reshape(-1, x.shape[2]), dW, dU, tmp)
        else:
            np.dot(dz, W.T, out=dx[t0:t1].reshape(-1, x.shape[2]))
            np.dot(rows.T, dz, out=dW)
            if s < t1:
                np.dot(previous.T, dxw[s:t1].reshape(-1, dxw.shape[2]), out=dU)
        if s >= t1:
            dU[...] = 0
        np.sum(dz, axis=0, out=db)  # row by row: the same order on every CPU


def _blocks(size, n):
    """``range(size)`` cut into ``n`` near-equal ``(lo, hi)`` blocks (no empty one)."""
    bounds = [size * k // n for k in range(n + 1)]
    return [(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:]) if lo < hi]


def _in_threads(fn, calls, start=None):
    """``fn(*args)`` for every ``args`` of ``calls``, each in its own thread:
    this one takes the first, helper threads the others (:mod:`sentiment.handoff`;
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


def _row_threads(n_samples):
    return max(1, min(threads, n_samples // ROW_SPLIT_ROWS))


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


def lstm_forward_arrays(x, mask, W, U, b):
    """``(h, c, gates)`` of the LSTM over ``x`` (NumPy arrays; see :class:`LSTMForward`)."""
    setup()
    n_steps, n_samples = x.shape[:2]
    dim4 = W.shape[1]
    gates = _pool.empty((n_steps, n_samples, dim4), x.dtype)
    h = _pool.empty((n_steps, n_samples, dim4 // 4), x.dtype)
    c = _pool.empty(h.shape, x.dtype)
    if _schedule(n_samples, ROWS_PER_THREAD) != "pipeline":
        _forward_in_rows(x, mask, W, U, b, h, c, gates, np.empty((0, 1), x.dtype))
        return h, c, gates
    # (Not the projection written into ``gates`` in place: with the two
    # aliased, the compiler's overlap check turns off the vector loops.)
    xw = _pool.empty((n_steps, n_samples, dim4), x.dtype)
    recurrence = (xw, mask, U, packed(U), h, c, gates)
    projection = (x, W, packed(W), b, xw)
    with _OneBlasThread():
        chunks = _chunks(n_steps, n_samples, FORWARD_CHUNK_ROWS)
        if chunks[0][1] - chunks[0][0] > 1:
            # The first chunk's projection is shared: this thread takes
            # its first half, so the recurrence starts sooner (T=100,
            # B=16: forward 5.62 against 6.00 ms, medians of 14 alternating).
            (t0, t1), mid = chunks[0], (chunks[0][0] + chunks[0][1]) // 2
            chunks = [(t0, mid), (mid, t1)] + chunks[1:]
            futures = [None] + [_executor(1).submit(_project, *projection, s0, s1)
                                for s0, s1 in chunks[1:]]
            _project(*projection, t0, mid)
        else:
            futures = [_executor(1).submit(_project, *projection, t0, t1)
                       for t0, t1 in chunks]
        for (t0, t1), future in zip(chunks, futures):
            if future is not None:
                future.result()
            _forward(*recurrence, t0, t1, 0, n_samples)
    return h, c, gates


ROWS_PER_THREAD = 8  # rows per thread from which the forward shares out the rows
CHUNK_ROWS = 128  # steps x rows of a thread's projection chunk in the forward


def lstm_predict_arrays(x, mask, W, U, b, keep_h=True, pool=False, projected=None):
    """``(h, pooled)``: the forward of :func:`lstm_forward_arrays` with nothing
    kept for a gradient; ``h`` (or an empty array, ``keep_h=False``) and the
    mean of ``h`` over the unmasked steps (or an empty array, ``pool=False``).

    ``projected``: ``(ids, table, fill)``, when ``x`` is the rows ``ids``
    (int64, ``(n_timesteps, n_samples)``) of an embedding matrix whose
    projection ``E W + b`` is ``table`` (for those rows; see
    :class:`ProjectedRows`): ``x`` is then not read, and may be None; or,
    with ``fill`` (uint8, shaped as ``ids``), ``x`` is projected and the
    projection of each token marked in ``fill`` is written to its row of
    ``table``.

    Each thread runs a block of the batch's rows over the whole sequence,
    projecting its inputs a chunk of steps at a time: no hand-off between
    threads but at the start and the end, and nothing of the size of the
    sequence is written but ``h``. The same bits as ``lstm_forward_arrays``
    (then ``MaskedMean``): every element is computed by the same arithmetic.
    """
    setup()
    n_steps, n_samples = mask.shape
    dtype, dim = W.dtype, U.shape[0]
    h = (_pool.empty((n_steps, n_samples, dim), dtype) if keep_h
         else np.empty((0, 1, 1), dtype))
    pooled = np.empty((n_samples, dim) if pool else (0, 1), dtype)
    none = np.empty((0, 1, 1), dtype)
    _forward_in_rows(x, mask, W, U, b, h, none, none, pooled, projected)
    return h, pooled


def _forward_in_rows(x, mask, W, U, b, h, c, gates, pooled, projected=None):
    """:func:`_forward_rows` over the batch's rows, in blocks of at least
    ROWS_PER_THREAD rows, one thread each (this thread takes the first)."""
    n_samples = mask.shape[1]
    n = 1 if _BLAS_THREADS is None else max(1, min(threads, n_samples // ROWS_PER_THREAD))
    blocks = _blocks(n_samples, n)
    chunk = max(1, CHUNK_ROWS // (blocks[0][1] - blocks[0][0]))
    if projected is None:
        projected = (np.empty((0, 0), np.int64), np.empty((0, 1), W.dtype), None)
    ids, table, fill = projected
    if fill is None:
        fill = np.empty((0, 0), np.uint8)
        if table.size:
            x = np.empty((0, 1, 1), W.dtype)  # (not read)
    kernel = _PACKED_GEMM is not None and W.dtype == np.float32
    args = (x, ids, table, fill, mask, W, b, U, kernel, h, c, gates, pooled)
    calls = [args + (_pool.empty((chunk, hi - lo, W.shape[1]), W.dtype), lo, hi)
             for lo, hi in blocks]
    if len(blocks) == 1:
        _forward_rows(*calls[0])
    else:
        with _OneBlasThread():
            _in_threads(_forward_rows, calls, _forward_rows_start)


def lstm_backward_arrays(x, mask, W, U, h, c, gates, dh, dc):
    """``(dx, dW, dU, db)`` given the cost's gradient ``dh``, ``dc`` with respect
    to every step's ``h`` and ``c`` (NumPy arrays; see :class:`LSTMBackward`;
    an empty ``dc``, ``(0, 0, 0)``, stands for zeros)."""
    setup()
    n_steps, n_samples, dim = h.shape
    dxw = _pool.empty(gates.shape, gates.dtype)
    dx = _pool.empty(x.shape, x.dtype)
    dh_next = np.zeros((n_samples, dim), dtype=h.dtype)
    dc_next = np.zeros_like(dh_next)
    recurrence = (mask, U, packed(U.T), h, c, gates, dh, dc, dxw, dh_next, dc_next)
    grads = (x, W, packed(W.T), h, dxw, dx)
    # The weight gradients are summed chunk by chunk of steps, each chunk into
    # its own buffers, then the chunks in their order: the chunks depend on the
    # shapes alone, so the sums do not depend on the schedule or the threads.
    chunks = (_chunks(n_steps, n_samples, BACKWARD_CHUNK_ROWS)
              if n_samples < LARGE_BATCH else _blocks(n_steps, LARGE_CHUNKS))
    flat, parts = _grad_parts(W, U, len(chunks))
    jobs = [grads + part + steps for part, steps in zip(parts, chunks)]
    schedule = _schedule(n_samples, ROW_SPLIT_ROWS)
    if schedule == "serial":
        _backward(*recurrence, 0, n_steps, 0, n_samples)
        for job in jobs:
            _input_grads(*job)
    elif schedule == "rows":
        n = _row_threads(n_samples)
        with _OneBlasThread():
            _in_threads(_backward, [recurrence + (0, n_steps) + rows
                                    for rows in _blocks(n_samples, n)], _backward_start)
            _in_threads(_run_all, [(_input_grads, jobs[lo:hi]) for lo, hi in
                                   _blocks(len(jobs), n)])
    else:
        with _OneBlasThread():
            futures = []
            for job in reversed(jobs):  # the recurrence runs from the last step back
                _backward(*recurrence, job[-2], job[-1], 0, n_samples)
                futures.append(_executor(1).submit(_input_grads, *job))
            # The recurrence is done: this thread takes, from the first, the
            # chunks the helper has not started.
            for job, future in zip(jobs, reversed(futures)):
                if not future.cancel():
                    break
                _input_grads(*job)
            for future in futures:
                if not future.cancelled():
                    future.result()
    _sum_rows(flat)  # summed in the chunks' order, into the first chunk's buffers
    dW, dU, db = parts[0]
    return dx, dW, dU, db


_FLOATS = ("float32", "float64")


def _check_dtype(dtype):
    if str(dtype) not in _FLOATS:
        raise TypeError("fused LSTM: float32 or float64 only, not %s" % dtype)


def _check_float(name, var, dtype, ndim):
    if var.ndim != ndim:
        raise TypeError("fused LSTM: %s must have %d dimensions, not %d" % (name, ndim, var.ndim))
    if var.dtype != dtype:
        raise TypeError("fused LSTM: %s has dtype %s, expected %s" % (name, var.dtype, dtype))


def _check_shapes(x, mask, W, U, b):
    n_in, dim4 = x.shape[2], U.shape[1]
    if (W.shape != (n_in, dim4) or dim4 != 4 * U.shape[0] or b.shape != (dim4,)
            or mask.shape != x.shape[:2]):
        raise ValueError("fused LSTM: shapes x %s, mask %s, W %s, U %s, b %s do not fit"
                         % (x.shape, mask.shape, W.shape, U.shape, b.shape))


class _Terminal(Op):
    """An Op with no gradient of its own: a gradient, or an optimizer's step."""

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]


class LSTMForward(Op):
    """``(x, mask, W, U, b) -> (h, c, gates)``, the whole masked sequence at once.

    ``x``: ``(n_timesteps, n_samples, n_in)``, the layer's input; ``W``:
    ``(n_in, 4 dim)``, ``U``: ``(dim, 4 dim)``, ``b``: ``(4 dim,)``. ``h`` and
    ``c``: ``(n_timesteps, n_samples, dim)``, every step's hidden and cell
    state from zero initial states; ``gates``: ``(n_timesteps, n_samples,
    4 dim)``, the activations i, f, o, c~ (kept for the gradient).
    """

    __props__ = ()

    def make_node(self, x, mask, W, U, b):
        x = pt.as_tensor_variable(x)
        _check_dtype(x.dtype)
        mask = pt.cast(pt.as_tensor_variable(mask), x.dtype)
        W, U, b = (pt.as_tensor_variable(v) for v in (W, U, b))
        for name, var, ndim in (("x", x, 3), ("mask", mask, 2), ("W", W, 2), ("U", U, 2),
                                ("b", b, 1)):
            _check_float(name, var, x.dtype, ndim)
        h = pt.tensor3(dtype=x.dtype)
        return Apply(self, [x, mask, W, U, b], [h, h.type(), h.type()])

    def perform(self, node, inputs, output_storage):
        x, mask, W, U, b = (np.ascontiguousarray(a) for a in inputs)
        _check_shapes(x, mask, W, U, b)
        for storage, value in zip(output_storage, lstm_forward_arrays(x, mask, W, U, b)):
            storage[0] = value

    def infer_shape(self, fgraph, node, shapes):
        x_shape, _, _, u_shape, b_shape = shapes
        h_shape = (x_shape[0], x_shape[1], u_shape[0])
        return [h_shape, h_shape, (x_shape[0], x_shape[1], b_shape[0])]

    def pullback(self, inputs, outputs, output_grads):
        x, mask, W, U, b = inputs
        h, c, gates = outputs
        dh, dc, dgates = output_grads
        if not isinstance(dgates.type, DisconnectedType):
            raise NotImplementedError("fused LSTM: the gate activations are not differentiable")
        dh = pt.zeros_like(h) if isinstance(dh.type, DisconnectedType) else dh
        if isinstance(dc.type, DisconnectedType):  # (the model's cost: from h alone)
            dc = pt.zeros((0, 0, 0), dtype=c.dtype)  # zeros, not written out (13 MB at T=400)
        dx, dW, dU, db = LSTMBackward()(x, mask, W, U, h, c, gates, dh, dc)
        # The mask is data (1 = real token, 0 = padding), not a parameter.
        return [dx, grad_undefined(self, 1, mask, "the mask is not differentiable"), dW, dU, db]


class LSTMBackward(_Terminal):
    """``(x, mask, W, U, h, c, gates, dh, dc) -> (dx, dW, dU, db)``: the
    gradient of :class:`LSTMForward` given the cost's gradient ``dh``, ``dc``
    with respect to its ``h`` and ``c`` outputs (``dc`` empty, ``(0, 0, 0)``:
    zeros, what :meth:`LSTMForward.pullback` passes when the cost uses only ``h``)."""

    __props__ = ()

    def make_node(self, x, mask, W, U, h, c, gates, dh, dc):
        inputs = [pt.as_tensor_variable(v) for v in (x, mask, W, U, h, c, gates, dh, dc)]
        dtype = inputs[0].dtype
        for name, var, ndim in zip(("x", "mask", "W", "U", "h", "c", "gates", "dh", "dc"),
                                   inputs, (3, 2, 2, 2, 3, 3, 3, 3, 3)):
            _check_float(name, var, dtype, ndim)
        b = pt.vector(dtype=dtype)
        return Apply(self, inputs, [inputs[0].type(), inputs[2].type(), inputs[3].type(),
                                    b.type()])

    def perform(self, node, inputs, output_storage):
        arrays = [np.ascontiguousarray(a) for a in inputs]
        h, dh, dc = arrays[4], arrays[7], arrays[8]
        if dh.shape != h.shape or dc.shape not in (h.shape, (0, 0, 0)):
            raise ValueError("fused LSTM gradient: dh %s and dc %s do not fit h %s"
                             % (dh.shape, dc.shape, h.shape))
        for storage, value in zip(output_storage, lstm_backward_arrays(*arrays)):
            storage[0] = value

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0], shapes[2], shapes[3], (shapes[2][1],)]



lstm_forward = LSTMForward()


def lstm(x, mask, W, U, b):
    """Every hidden state ``(n_timesteps, n_samples, dim)`` of the masked LSTM.

    The same function as the tutorial's ``scan`` in :func:`lstm.lstm_layer`:
    the input projection ``x W + b`` of ``x`` (``(n_timesteps, n_samples,
    n_in)``), then the recurrence with the weights ``U`` (``(dim, 4 dim)``)
    under the ``mask``.
    """
    h, _, _ = lstm_forward(x, mask, W, U, b)
    return h


# ---------------------------------------------------------------------------
# The optimizers' parameter step, fused: one vectorised pass over each
# parameter instead of PyTensor's element-at-a-time loop (for Wemb's 1.28 M
# values, ~0.8 ms instead of ~7 ms). The rules are the tutorial's, as written
# in lstm.adadelta and lstm.rmsprop, and Adam's, as in lstm.adam.
# ---------------------------------------------------------------------------
# Each kernel writes its new values over the arrays they replace (p and the
# rule's state): the Op runs it on its inputs in place, or on copies.
@numba.njit(**_ieee_jit)
def _adadelta_step(p, zg, ru2, rg2, rho, rest, eps, scale):
    # Flat, contiguous arrays of one dtype; rho, rest (the tutorial's 0.05, not
    # 1 - 0.95 rounded), eps, scale (the learning rate; the tutorial's 1, which
    # leaves every bit as it was) of that dtype. p and ru2 are overwritten.
    for k in range(p.shape[0]):
        ud = -np.sqrt(ru2[k] + eps) / np.sqrt(rg2[k] + eps) * zg[k]
        ru2[k] = rho * ru2[k] + rest * (ud * ud)
        p[k] = p[k] + scale * ud


@numba.njit(**_ieee_jit)
def _rmsprop_step(p, zg, rg, rg2, ud, momentum, step, eps):
    # p and ud are overwritten.
    for k in range(p.shape[0]):
        new = momentum * ud[k] - step * zg[k] / np.sqrt(rg2[k] - rg[k] * rg[k] + eps)
        ud[k] = new
        p[k] = p[k] + new


@numba.njit(**_ieee_jit)
def _adam_step(p, g, m, v, lr, fix1, fix2, decay, beta1, beta2, eps):
    # fix1, fix2: the bias corrections 1 - beta^t; decay: lr * weight_decay (or 0).
    # p, m and v are overwritten.
    one = beta1 / beta1
    for k in range(p.shape[0]):
        m_t = beta1 * m[k] + (one - beta1) * g[k]
        v_t = beta2 * v[k] + (one - beta2) * (g[k] * g[k])
        m[k] = m_t
        v[k] = v_t
        p[k] = p[k] - decay * p[k] - lr * (m_t / fix1) / (np.sqrt(v_t / fix2) + eps)


MIN_STEP_BLOCK = 1 << 17  # values per thread from which a step is shared out


class FusedStep(_Terminal):
    """One optimizer's parameter step as one Op: ``rule`` is ``"adadelta"``
    (inputs ``p, g, E[dx^2], E[g^2]``; outputs the new ``p, E[dx^2]``),
    ``"rmsprop"`` (inputs ``p, g, E[g], E[g^2], d``; outputs the new ``p, d``)
    or ``"adam"`` (inputs ``p, g, m, v`` and the scalars ``lr, 1 - beta1^t,
    1 - beta2^t, lr * weight_decay, beta1, beta2, epsilon``; outputs the new
    ``p, m, v``). See
    :func:`lstm.adadelta`, :func:`lstm.rmsprop` and :func:`lstm.adam` for the
    rules. ``step`` is AdaDelta's learning rate (a factor on its step, the
    tutorial's 1.0) or RMSProp's step (the tutorial's 1e-4); Adam takes its
    learning rate as an input. ``inplace``: the outputs are written over the
    inputs they replace (``fused_graph`` puts this in where the inputs are the
    shared variables being updated, and nothing else reads them); the same
    bits."""

    __props__ = ("rule", "step", "inplace")
    _arity = {"adadelta": 4, "rmsprop": 5, "adam": 4}  # arrays, then scalars
    _scalars = {"adadelta": 0, "rmsprop": 0, "adam": 7}
    _replaced = {"adadelta": (0, 2), "rmsprop": (0, 4), "adam": (0, 2, 3)}  # the outputs

    _steps = {"adadelta": 1.0, "rmsprop": 1e-4, "adam": None}  # the tutorial's

    def __init__(self, rule, step=None, inplace=False):
        if rule not in self._arity:
            raise ValueError("FusedStep: unknown rule %r" % rule)
        self.rule = rule
        self.step = self._steps[rule] if step is None else float(step)
        self.inplace = bool(inplace)
        if self.inplace:
            self.destroy_map = {out: [k] for out, k in enumerate(self._replaced[rule])}

    def in_place(self):
        return FusedStep(self.rule, self.step, inplace=True)

    def make_node(self, *inputs):
        inputs = [pt.as_tensor_variable(v) for v in inputs]
        n_arrays = self._arity[self.rule]
        if len(inputs) != n_arrays + self._scalars[self.rule]:
            raise TypeError("FusedStep(%s) takes %d inputs"
                            % (self.rule, n_arrays + self._scalars[self.rule]))
        _check_dtype(inputs[0].dtype)
        for k, var in enumerate(inputs):
            _check_float("input %d" % k, var, inputs[0].dtype,
                         inputs[0].ndim if k < n_arrays else 0)
        return Apply(self, inputs, [inputs[0].type() for _ in self._replaced[self.rule]])

    def perform(self, node, inputs, output_storage):
        n_arrays = self._arity[self.rule]
        arrays = [np.ascontiguousarray(a) for a in inputs[:n_arrays]]
        shape = arrays[0].shape
        if any(a.shape != shape for a in arrays):
            raise ValueError("FusedStep(%s): shapes %s differ"
                             % (self.rule, [a.shape for a in arrays]))
        for k in self._replaced[self.rule]:  # the arrays the kernel overwrites
            if not (self.inplace and arrays[k] is inputs[k] and arrays[k].flags.writeable):
                arrays[k] = _pool.copy(arrays[k])
        real = arrays[0].dtype.type
        flat = [a.reshape(-1) for a in arrays]
        if self.rule == "adadelta":
            kernel = _adadelta_step
            constants = (real(0.95), real(0.05), real(1e-6), real(self.step))
        elif self.rule == "rmsprop":
            kernel, constants = _rmsprop_step, (real(0.9), real(self.step), real(1e-4))
        else:  # lr, fix1, fix2, decay, beta1, beta2, epsilon
            kernel = _adam_step
            constants = tuple(real(a) for a in inputs[n_arrays:])
        # Element by element: blocks in threads give the same values.
        n = max(1, min(threads, flat[0].size // MIN_STEP_BLOCK))
        if n == 1:
            kernel(*flat, *constants)
        else:
            _in_threads(kernel, [[a[lo:hi] for a in flat] + list(constants)
                                 for lo, hi in _blocks(flat[0].size, n)])
        for storage, k in zip(output_storage, self._replaced[self.rule]):
            storage[0] = arrays[k]

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]] * len(self._replaced[self.rule])



@numba.njit(nogil=True, cache=True, error_model="numpy")  # no fast-math: PyTensor's bits
def _running_average(avg, g, square):
    # avg becomes the tutorial's 0.95 * avg + 0.05 * g (or g ** 2), float32, as
    # PyTensor's C code computes it: each product in double (the constants are
    # doubles), rounded to float32, then their float32 sum.
    for k in range(avg.shape[0]):
        v = g[k] * g[k] if square else g[k]
        avg[k] = np.float32(0.95 * avg[k]) + np.float32(0.05 * v)


class RunningAverage(_Terminal):
    """``(avg, g) -> 0.95 * avg + 0.05 * g`` (``square=True``: ``g ** 2``),
    float32, the running averages that the tutorial's AdaDelta and RMSProp keep
    in ``f_grad_shared``: the same bits as PyTensor's element-wise C code (a
    test checks), in threads over blocks (for Wemb's 1.28 M values, 0.44 ms in
    PyTensor's loop). ``inplace``: written over ``avg`` (see :class:`FusedStep`)."""

    __props__ = ("square", "inplace")

    def __init__(self, square=False, inplace=False):
        self.square = bool(square)
        self.inplace = bool(inplace)
        if self.inplace:
            self.destroy_map = {0: [0]}

    def in_place(self):
        return RunningAverage(self.square, inplace=True)

    def make_node(self, avg, g):
        avg, g = pt.as_tensor_variable(avg), pt.as_tensor_variable(g)
        if avg.dtype != "float32":  # (float64: the C code's sums are contracted otherwise)
            raise TypeError("running average: float32 only, not %s" % avg.dtype)
        _check_float("g", g, avg.dtype, avg.ndim)
        return Apply(self, [avg, g], [avg.type()])

    def perform(self, node, inputs, output_storage):
        avg, g = (np.ascontiguousarray(a) for a in inputs)
        if avg.shape != g.shape:
            raise ValueError("running average: shapes %s and %s differ" % (avg.shape, g.shape))
        if not (self.inplace and avg is inputs[0] and avg.flags.writeable):
            avg = _pool.copy(avg)
        flat = [a.reshape(-1) for a in (avg, g)]
        n = max(1, min(threads, flat[0].size // MIN_STEP_BLOCK))
        if n == 1:
            _running_average(*flat, self.square)
        else:
            _in_threads(_running_average, [[a[lo:hi] for a in flat] + [self.square]
                                           for lo, hi in _blocks(flat[0].size, n)])
        output_storage[0][0] = avg

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]


adadelta_step = FusedStep("adadelta")
rmsprop_step = FusedStep("rmsprop")
adam_step = FusedStep("adam")


# ---------------------------------------------------------------------------
# The embedding lookup, with a gradient that adds rows in one compiled loop
# (PyTensor's AdvancedIncSubtensor1 uses NumPy's add.at here: ~40 ms for a
# T=400, B=64 batch, against ~2 ms).
# ---------------------------------------------------------------------------
@numba.njit(**_jit)
def _add_rows(out, idx, rows):
    for k in range(idx.shape[0]):
        out_row, row = out[idx[k]], rows[k]
        for d in range(row.shape[0]):
            out_row[d] += row[d]


def _check_index(idx, n_rows):
    if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
        raise IndexError("embedding: word index out of range [0, %d): %d..%d"
                         % (n_rows, idx.min(), idx.max()))


class Embedding(Op):
    """``(W, idx) -> W[idx]``: rows of the embedding matrix ``W`` for the
    int64 word indices ``idx`` (a vector). Its gradient is :class:`EmbeddingGrad`."""

    __props__ = ()

    def make_node(self, W, idx):
        W, idx = pt.as_tensor_variable(W), pt.as_tensor_variable(idx)
        _check_dtype(W.dtype)
        if W.ndim != 2 or idx.ndim != 1 or not idx.dtype.startswith("int"):
            raise TypeError("embedding: W must be a matrix and idx a vector of integers")
        return Apply(self, [W, idx], [pt.matrix(dtype=W.dtype, shape=(None, W.type.shape[1]))])

    def perform(self, node, inputs, output_storage):
        W, idx = inputs
        _check_index(idx, W.shape[0])
        out = _pool.empty((idx.shape[0], W.shape[1]), W.dtype)
        output_storage[0][0] = np.take(W, idx, axis=0, out=out, mode="clip")  # checked above

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[1][0], shapes[0][1])]

    def pullback(self, inputs, outputs, output_grads):
        W, idx = inputs
        return [EmbeddingGrad()(W, idx, output_grads[0]),
                grad_undefined(self, 1, idx, "word indices are not differentiable")]


class EmbeddingGrad(_Terminal):
    """``(W, idx, g) -> dW``: zeros shaped like ``W`` with each row ``g[k]``
    added to row ``idx[k]`` (repeated words add up)."""

    __props__ = ()

    def make_node(self, W, idx, g):
        W, idx, g = (pt.as_tensor_variable(v) for v in (W, idx, g))
        _check_float("g", g, W.dtype, 2)
        return Apply(self, [W, idx, g], [W.type()])

    def perform(self, node, inputs, output_storage):
        W, idx, g = inputs
        _check_index(idx, W.shape[0])
        if g.shape != (idx.shape[0], W.shape[1]):
            raise ValueError("embedding gradient: g has shape %s, expected %s"
                             % (g.shape, (idx.shape[0], W.shape[1])))
        out = _pool.zeros(W.shape, W.dtype)
        _add_rows(out, np.ascontiguousarray(idx, dtype="int64"), np.ascontiguousarray(g))
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]


embedding = Embedding()


# ---------------------------------------------------------------------------
# The tutorial's mean pooling, ``(h * mask[:, :, None]).sum(axis=0) /
# mask.sum(axis=0)[:, None]``, as one pass: PyTensor's graph writes h * mask,
# then its gradient mask * g / n, as two (T, B, dim) arrays (at T=400, B=64,
# ~10 ms each, most of it page faults). The same arithmetic: sums in float64,
# as PyTensor's Sum does, then cast; the gradient as (g / n) * mask.
# ---------------------------------------------------------------------------
@numba.njit(**_jit)
def _masked_mean(h, mask, out, lo, hi):
    # h: (T, B, D), mask: (T, B) -> out[lo:hi]: (hi - lo, D), for the rows
    # lo:hi. Step by step, reading h in its order; each (b, d) is summed over
    # the steps in their order.
    n_steps, dim = h.shape[0], h.shape[2]
    acc = np.zeros((hi - lo, dim), dtype=np.float64)
    count = np.zeros(hi - lo, dtype=np.float64)
    for t in range(n_steps):
        for b in range(lo, hi):
            m = mask[t, b]
            count[b - lo] += m
            h_tb, acc_b = h[t, b], acc[b - lo]
            for d in range(dim):
                acc_b[d] += h_tb[d] * m
    n = np.empty(1, dtype=out.dtype)  # the count, in out's type
    for b in range(lo, hi):
        n[0] = count[b - lo]
        for d in range(dim):
            out[b, d] = acc[b - lo, d]  # cast first, then divide in out's type
            out[b, d] = out[b, d] / n[0]


@numba.njit(**_jit)
def _masked_mean_start(flags, count, value, *args):
    # _masked_mean(*args), once the helpers are told (sentiment.handoff).
    handoff.signal(flags, count, value)
    _masked_mean(*args)


@numba.njit(**_jit)
def _masked_mean_grad(g, mask, dh, lo, hi):
    # g: (B, D), mask: (T, B) -> dh: (T, B, D) = (g / n)[None] * mask[:, :, None],
    # for the rows lo:hi, written step by step, in dh's order.
    n_steps, dim = dh.shape[0], dh.shape[2]
    q = np.empty((hi - lo, dim), dtype=g.dtype)
    n = np.empty(1, dtype=g.dtype)
    for b in range(lo, hi):
        count = 0.0
        for t in range(n_steps):
            count += mask[t, b]
        n[0] = count
        for d in range(dim):
            q[b - lo, d] = g[b, d] / n[0]
    for t in range(n_steps):
        for b in range(lo, hi):
            m = mask[t, b]
            dh_tb, q_b = dh[t, b], q[b - lo]
            for d in range(dim):
                dh_tb[d] = q_b[d] * m


@numba.njit(**_jit)
def _masked_mean_grad_start(flags, count, value, *args):
    # _masked_mean_grad(*args), once the helpers are told (sentiment.handoff).
    handoff.signal(flags, count, value)
    _masked_mean_grad(*args)


MIN_THREAD_FLOATS = 1 << 19  # floats (2 MB in float32) from which a pass over
# a (T, B, D) array is shared out to threads, by blocks of rows


def _by_rows(kernel, start, args, n_rows, n_floats):
    """``kernel(*args, lo, hi)`` over the rows ``0:n_rows``: in blocks, one a
    thread, when the pass reads or writes ``n_floats`` floats or more."""
    many = n_floats >= MIN_THREAD_FLOATS and _BLAS_THREADS is not None
    in_blocks(kernel, start, args, n_rows, threads if many else 1)


def in_blocks(kernel, start, args, size, n):
    """``kernel(*args, lo, hi)`` over ``range(size)`` cut into at most ``n``
    blocks, one a thread (this one takes the first; ``start``: the kernel's
    start function), for kernels whose every element's arithmetic is the
    same in any block."""
    blocks = _blocks(size, max(1, min(n, threads, size)))
    if len(blocks) <= 1:
        kernel(*args, 0, size)
    else:
        _in_threads(kernel, [args + block for block in blocks], start)


class MaskedMean(Op):
    """``(h, mask) -> (h * mask[:, :, None]).sum(0) / mask.sum(0)[:, None]``:
    the mean of ``h`` ``(n_timesteps, n_samples, dim)`` over the unmasked steps."""

    __props__ = ()

    def make_node(self, h, mask):
        h = pt.as_tensor_variable(h)
        _check_dtype(h.dtype)
        mask = pt.cast(pt.as_tensor_variable(mask), h.dtype)
        _check_float("h", h, h.dtype, 3)
        _check_float("mask", mask, h.dtype, 2)
        return Apply(self, [h, mask], [pt.matrix(dtype=h.dtype)])

    def perform(self, node, inputs, output_storage):
        h, mask = (np.ascontiguousarray(a) for a in inputs)
        if mask.shape != h.shape[:2]:
            raise ValueError("masked mean: h %s and mask %s do not fit" % (h.shape, mask.shape))
        out = np.empty((h.shape[1], h.shape[2]), dtype=h.dtype)
        setup()
        _by_rows(_masked_mean, _masked_mean_start, (h, mask, out), h.shape[1], h.size)
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][1], shapes[0][2])]

    def pullback(self, inputs, outputs, output_grads):
        h, mask = inputs
        return [MaskedMeanGrad()(output_grads[0], mask, h),
                grad_undefined(self, 1, mask, "the mask is not differentiable")]


class MaskedMeanGrad(_Terminal):
    """``(g, mask, h) -> dh``: :class:`MaskedMean`'s gradient (``h`` for its shape only)."""

    __props__ = ()

    def make_node(self, g, mask, h):
        g, mask, h = (pt.as_tensor_variable(v) for v in (g, mask, h))
        _check_float("g", g, h.dtype, 2)
        return Apply(self, [g, mask, h], [h.type()])

    def perform(self, node, inputs, output_storage):
        g, mask, h = inputs
        if mask.shape != h.shape[:2] or g.shape != (h.shape[1], h.shape[2]):
            raise ValueError("masked mean gradient: g %s, mask %s and h %s do not fit"
                             % (g.shape, mask.shape, h.shape))
        dh = _pool.empty(h.shape, h.dtype)
        setup()
        _by_rows(_masked_mean_grad, _masked_mean_grad_start,
                 (np.ascontiguousarray(g), np.ascontiguousarray(mask), dh), h.shape[1], h.size)
        output_storage[0][0] = dh

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[2]]


masked_mean = MaskedMean()


# ---------------------------------------------------------------------------
# The other products of the model (the classifier's x U and its gradients, the
# convolution's), with the packed kernel too: one order of sums per element
# on every CPU, where PyTensor's Dot would call the BLAS.
# ---------------------------------------------------------------------------
class Dot(Op):
    """``(a, b) -> a @ b`` for two matrices: with the packed kernel (float32, a
    CPU with AVX2 and FMA) each element is one chain of fused multiply-adds in
    the order of ``k``, the same bits on every CPU; otherwise NumPy's ``dot``.
    Its gradient is made of the same Op."""

    __props__ = ()

    def make_node(self, a, b):
        a, b = pt.as_tensor_variable(a), pt.as_tensor_variable(b)
        _check_dtype(a.dtype)
        _check_float("a", a, a.dtype, 2)
        _check_float("b", b, a.dtype, 2)
        return Apply(self, [a, b], [pt.matrix(dtype=a.dtype)])

    def perform(self, node, inputs, output_storage):
        a, b = inputs
        if a.shape[1] != b.shape[0]:
            raise ValueError("dot: shapes %s and %s do not fit" % (a.shape, b.shape))
        setup()
        c = np.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        bp = packed(b)
        with _nan_passes():
            if bp.size and a.shape[1]:
                _packed_product(np.ascontiguousarray(a), bp, c)
            else:
                np.dot(a, b, out=c)
        output_storage[0][0] = c

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[0][0], shapes[1][1])]

    def pullback(self, inputs, outputs, output_grads):
        a, b = inputs
        g = output_grads[0]
        return [dot(g, b.T), dot(a.T, g)]


_dot = Dot()


def dot(a, b):
    """``a @ b`` with :class:`Dot`, for ``a`` of 2 or 3 dimensions (the
    leading two of 3 flattened) and a matrix ``b``."""
    if a.ndim == 2:
        return _dot(a, b)
    flat = _dot(a.reshape((-1, a.shape[-1])), b)
    return flat.reshape((a.shape[0], a.shape[1], b.shape[1]))
