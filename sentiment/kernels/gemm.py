"""The products inside the kernels: CBLAS from the OpenBLAS NumPy uses, the
packed per-step GEMM of ``fused_lstm_gemm.c`` (compiled once, on first use),
NumPy's OpenBLAS thread count, and :func:`setup`, which finds and loads them.
Their state (``_CBLAS``, ``_PACKED_GEMM``, ``gemm_kernel``, ``_BLAS_THREADS``)
is this module's: other modules read it as ``gemm.<name>``."""
import ctypes
import ctypes.util
import glob
import hashlib
import os
import shutil
import subprocess
import threading

import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

import llvmlite.binding as llvm
import numba
import numpy as np
from numba.extending import overload
from pytensor import config
from sentiment.kernels import scheduling
from sentiment.kernels.basics import _jit
from sentiment.kernels.scheduling import _pool



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



# NumPy's OpenBLAS thread count (the kernels set it to 1 while their threads run).
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




_setup_lock = threading.Lock()
_ready = False


def setup():
    """Find the BLAS, compile and load the packed GEMM, register their symbols.

    Done once, on first use (``packed``, ``lstm_forward_arrays`` and
    ``lstm_backward_arrays`` call it), not on import: importing this module
    runs no compiler and changes nothing in other libraries. Sets
    ``gemm_kernel``, a description of the per-step GEMM chosen.
    """
    global _CBLAS, _PACKED_GEMM, gemm_kernel, _ready
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
        scheduling._BLAS_THREADS = _blas_thread_control() if _CBLAS else None
        _ready = True
