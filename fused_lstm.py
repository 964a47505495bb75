"""Fused PyTensor Ops for the tutorial's model: the LSTM recurrence, the
embedding lookup's gradient and the optimizers' parameter step.

``lstm.lstm_layer`` writes the recurrence as a ``scan`` over time steps, the
tutorial's formulation and this project's reference (``--lstm-impl scan``).
``scan`` pays, at every step, for a generic loop, one small op per gate
non-linearity, and, in the gradient, a recomputation of ``h U + x`` (see the
README's "Speed"). Here the same function is two Ops, each one pass over the
whole sequence in a Numba kernel (``--lstm-impl fused``, the default):

- :class:`LSTMForward` ``(xw, mask, U) -> (h, c, gates)``: per step one GEMM
  ``h_{t-1} U`` and short vectorised loops for the gates and states; it keeps
  the gate activations for the backward pass.
- :class:`LSTMBackward` ``(mask, U, h, c, gates, dh, dc) -> (dxw, dU)``: per
  step one GEMM ``dz_t U^T``; ``dU`` is one large GEMM over all steps after
  the loop.

The gate non-linearities use a rational approximation of ``tanh`` (the one
Eigen uses for float32; ``sigmoid(x) = (1 + tanh(x / 2)) / 2``), at most
3.3e-7 from the exact value, which the compiler vectorises; float64 inputs use
the exact ``tanh``. Two smaller Ops remove the other slow steps of a training
update: :class:`Embedding` (whose gradient adds rows in a compiled loop rather
than with NumPy's ``add.at``) and :class:`FusedStep` (AdaDelta's or
RMSProp's parameter step in one vectorised pass). ``tests/test_fused_lstm.py``
checks every Op against the ``scan``/PyTensor reference and NumPy.

Axes: ``xw`` is ``(n_timesteps, n_samples, 4 dim)`` (the input projection
``x W + b``, gates in the tutorial's order i, f, o, c), ``mask`` is
``(n_timesteps, n_samples)``, ``U`` is ``(dim, 4 dim)``.
"""
import concurrent.futures
import ctypes
import ctypes.util
import glob
import os

import llvmlite.binding as llvm
import numba
import numpy as np
import pytensor.tensor as pt
from numba.extending import overload
from pytensor.gradient import DisconnectedType, grad_not_implemented, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

# Fast-math flags that keep NaN and infinity semantics (no "nnan"/"ninf"):
# a NaN in the parameters still reaches the cost, so training still stops on
# "bad cost detected".
_FASTMATH = {"contract", "arcp", "afn", "reassoc", "nsz"}
# error_model="numpy": a division never raises, which lets the loops vectorise.
_jit = dict(nogil=True, cache=True, fastmath=_FASTMATH, error_model="numpy")


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


_CBLAS = {dtype: _cblas_gemm(dtype, *found) for dtype, found in _find_cblas().items()}


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
# The two kernels. Constants are made of the arrays' own type (``one``): a
# Python float would promote float32 arithmetic to float64.
# ---------------------------------------------------------------------------
@numba.njit(**_jit)
def _sigmoid(x, half):
    return half * _tanh(half * x) + half


@numba.njit(**_jit)
def _forward(xw, mask, U, h, c, gates, lo, hi):
    # xw: (T, B, 4D); mask: (T, B); U: (D, 4D); h, c: (T, B, D) and
    # gates: (T, B, 4D) are written (i, f, o, c~ after their non-linearity),
    # for the batch's rows lo:hi (threads share out the rows: each is independent).
    n_steps, dim4 = xw.shape[0], xw.shape[2]
    dim, rows = dim4 // 4, hi - lo
    one = np.ones(1, dtype=xw.dtype)[0]
    zero, half = one - one, one / (one + one)
    zeros = np.zeros((rows, dim), dtype=xw.dtype)
    preact = np.zeros((rows, dim4), dtype=xw.dtype)  # h_{t-1} U
    for t in range(n_steps):
        h_prev = zeros if t == 0 else h[t - 1, lo:hi]
        c_prev = zeros if t == 0 else c[t - 1, lo:hi]
        if t > 0:
            _gemm(h_prev, U, preact, False, zero)
        for r in range(rows):
            # Simple loops over contiguous rows, which the compiler vectorises.
            b = lo + r
            m = mask[t, b]
            x_tb, z_b, g_tb = xw[t, b], preact[r], gates[t, b]
            for k in range(3 * dim):  # i, f, o
                g_tb[k] = _sigmoid(z_b[k] + x_tb[k], half)
            for k in range(3 * dim, dim4):  # c~
                g_tb[k] = _tanh(z_b[k] + x_tb[k])
            cp, hp, c_tb, h_tb = c_prev[r], h_prev[r], c[t, b], h[t, b]
            for d in range(dim):
                c_new = (m * (g_tb[dim + d] * cp[d] + g_tb[d] * g_tb[3 * dim + d])
                         + (one - m) * cp[d])
                c_tb[d] = c_new
                h_tb[d] = m * (g_tb[2 * dim + d] * _tanh(c_new)) + (one - m) * hp[d]


@numba.njit(**_jit)
def _backward(mask, U, h, c, gates, dh_out, dc_out, dxw, lo, hi):
    # dh_out, dc_out: (T, B, D), the cost's gradient with respect to each
    # step's h and c; dxw: (T, B, 4D) is written, the gradient of the
    # pre-activations (= of xw), for the batch's rows lo:hi.
    n_steps, dim = h.shape[0], h.shape[2]
    rows = hi - lo
    one = np.ones(1, dtype=h.dtype)[0]
    dh_next = np.zeros((rows, dim), dtype=h.dtype)  # from step t + 1
    dc_next = np.zeros((rows, dim), dtype=h.dtype)
    zeros = np.zeros((rows, dim), dtype=h.dtype)
    for t in range(n_steps - 1, -1, -1):
        c_prev = zeros if t == 0 else c[t - 1, lo:hi]
        for r in range(rows):
            # Short loops over few rows each, so that the compiler can prove
            # them independent and vectorise them.
            b = lo + r
            m = mask[t, b]
            g_tb, dz, cp, c_tb = gates[t, b], dxw[t, b], c_prev[r], c[t, b]
            dh, dc = dh_next[r], dc_next[r]  # become this step's dh, dc
            dh += dh_out[t, b]
            dc += dc_out[t, b]
            for d in range(dim):  # through h = o tanh(c): the o gate and dc
                th = _tanh(c_tb[d])
                o = g_tb[2 * dim + d]
                dh_raw = m * dh[d]
                dz[2 * dim + d] = dh_raw * th * o * (one - o)
                dc[d] += dh_raw * o * (one - th * th)
            for d in range(dim):  # through c = f c_prev + i c~: i, f, c~
                i = g_tb[d]
                f = g_tb[dim + d]
                g = g_tb[3 * dim + d]
                dc_raw = m * dc[d]
                dz[d] = dc_raw * g * i * (one - i)
                dz[dim + d] = dc_raw * cp[d] * f * (one - f)
                dz[3 * dim + d] = dc_raw * i * (one - g * g)
                dc[d] = (one - m) * dc[d] + dc_raw * f  # dc_prev
            dh *= one - m  # dh_prev, before the U^T term
        if t > 0:
            _gemm(dxw[t, lo:hi], U, dh_next, True, one)  # dh_next += dz_t U^T


# ---------------------------------------------------------------------------
# Threads: the batch's rows are independent through the whole sequence, so
# the kernels (which release the GIL) run on row blocks in parallel, each
# thread with a one-thread BLAS (OpenBLAS's thread-local setting).
# ---------------------------------------------------------------------------
def _local_blas_threads():
    """OpenBLAS's ``openblas_set_num_threads_local`` for the kernels' BLAS, or None."""
    for path in _numpy_openblas():
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


_SET_LOCAL_BLAS_THREADS = _local_blas_threads() if _CBLAS else None
MIN_ROWS_PER_THREAD = 8


def _default_threads():
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return int(os.environ.get("FUSED_LSTM_THREADS", cores))


threads = _default_threads()  # at most this many threads per kernel call
_pool, _pool_size = None, 0


def _run_rows(kernel, args, n_samples):
    """``kernel(*args, lo, hi)`` over the batch's rows, in row blocks run by threads."""
    global _pool, _pool_size
    n = min(threads, n_samples // MIN_ROWS_PER_THREAD)
    if n <= 1 or _SET_LOCAL_BLAS_THREADS is None:
        kernel(*args, 0, n_samples)
        return
    if _pool_size < n:
        _pool = concurrent.futures.ThreadPoolExecutor(n, thread_name_prefix="fused_lstm")
        _pool_size = n

    def block(lo, hi):
        _SET_LOCAL_BLAS_THREADS(1)
        kernel(*args, lo, hi)

    bounds = [n_samples * k // n for k in range(n + 1)]
    for future in [_pool.submit(block, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]:
        future.result()


_FLOATS = ("float32", "float64")


def _check_dtype(dtype):
    if str(dtype) not in _FLOATS:
        raise TypeError("fused LSTM: float32 or float64 only, not %s" % dtype)


def _check_float(name, var, dtype, ndim):
    if var.ndim != ndim:
        raise TypeError("fused LSTM: %s must have %d dimensions, not %d" % (name, ndim, var.ndim))
    if var.dtype != dtype:
        raise TypeError("fused LSTM: %s has dtype %s, expected %s" % (name, var.dtype, dtype))


class LSTMForward(Op):
    """``(xw, mask, U) -> (h, c, gates)``, the whole masked sequence at once.

    ``h`` and ``c``: ``(n_timesteps, n_samples, dim)``, every step's hidden
    and cell state from zero initial states; ``gates``: ``(n_timesteps,
    n_samples, 4 dim)``, the activations i, f, o, c~ (kept for the gradient).
    """

    __props__ = ()

    def make_node(self, xw, mask, U):
        xw = pt.as_tensor_variable(xw)
        _check_dtype(xw.dtype)
        mask = pt.cast(pt.as_tensor_variable(mask), xw.dtype)
        U = pt.as_tensor_variable(U)
        _check_float("xw", xw, xw.dtype, 3)
        _check_float("mask", mask, xw.dtype, 2)
        _check_float("U", U, xw.dtype, 2)
        return Apply(self, [xw, mask, U], [xw.type(), xw.type(), xw.type()])

    def perform(self, node, inputs, output_storage):
        xw, mask, U = (np.ascontiguousarray(a) for a in inputs)
        n_steps, n_samples, dim4 = xw.shape
        if dim4 != U.shape[1] or U.shape[1] != 4 * U.shape[0] or mask.shape != xw.shape[:2]:
            raise ValueError("fused LSTM: shapes xw %s, mask %s, U %s do not fit"
                             % (xw.shape, mask.shape, U.shape))
        h = np.empty((n_steps, n_samples, U.shape[0]), dtype=xw.dtype)
        c = np.empty_like(h)
        gates = np.empty_like(xw)
        _run_rows(_forward, (xw, mask, U, h, c, gates), n_samples)
        for storage, value in zip(output_storage, (h, c, gates)):
            storage[0] = value

    def infer_shape(self, fgraph, node, shapes):
        xw_shape, _, u_shape = shapes
        h_shape = (xw_shape[0], xw_shape[1], u_shape[0])
        return [h_shape, h_shape, xw_shape]

    def pullback(self, inputs, outputs, output_grads):
        xw, mask, U = inputs
        h, c, gates = outputs
        dh, dc, dgates = output_grads
        if not isinstance(dgates.type, DisconnectedType):
            raise NotImplementedError("fused LSTM: the gate activations are not differentiable")
        dh = pt.zeros_like(h) if isinstance(dh.type, DisconnectedType) else dh
        dc = pt.zeros_like(c) if isinstance(dc.type, DisconnectedType) else dc
        dxw, dU = LSTMBackward()(mask, U, h, c, gates, dh, dc)
        # The mask is data (1 = real token, 0 = padding), not a parameter.
        return [dxw, grad_undefined(self, 1, mask, "the mask is not differentiable"), dU]


class LSTMBackward(Op):
    """``(mask, U, h, c, gates, dh, dc) -> (dxw, dU)``: the gradient of
    :class:`LSTMForward` given the cost's gradient ``dh``, ``dc`` with respect
    to its ``h`` and ``c`` outputs."""

    __props__ = ()

    def make_node(self, mask, U, h, c, gates, dh, dc):
        inputs = [pt.as_tensor_variable(v) for v in (mask, U, h, c, gates, dh, dc)]
        dtype = inputs[2].dtype
        for name, var, ndim in zip(("mask", "U", "h", "c", "gates", "dh", "dc"),
                                   inputs, (2, 2, 3, 3, 3, 3, 3)):
            _check_float(name, var, dtype, ndim)
        return Apply(self, inputs, [inputs[4].type(), inputs[1].type()])

    def perform(self, node, inputs, output_storage):
        mask, U, h, c, gates, dh, dc = (np.ascontiguousarray(a) for a in inputs)
        n_steps, n_samples, dim = h.shape
        dxw = np.empty_like(gates)
        _run_rows(_backward, (mask, U, h, c, gates, dh, dc, dxw), n_samples)
        # dU = sum_t h_{t-1}^T dz_t, one GEMM over all steps (h_{-1} = 0).
        dU = np.dot(h[:-1].reshape(-1, dim).T, dxw[1:].reshape(-1, 4 * dim))
        output_storage[0][0] = dxw
        output_storage[1][0] = dU.astype(h.dtype, copy=False)

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[4], shapes[1]]

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]


lstm_forward = LSTMForward()


def lstm(xw, mask, U):
    """Every hidden state ``(n_timesteps, n_samples, dim)`` of the masked LSTM.

    The same function as the tutorial's ``scan`` in :func:`lstm.lstm_layer`,
    from the input projection ``xw = x W + b`` (``(n_timesteps, n_samples,
    4 dim)``), the ``mask`` and the recurrent weights ``U`` (``(dim, 4 dim)``).
    """
    h, _, _ = lstm_forward(xw, mask, U)
    return h


# ---------------------------------------------------------------------------
# The optimizers' parameter step, fused: one vectorised pass over each
# parameter instead of PyTensor's element-at-a-time loop (for Wemb's 1.28 M
# values, ~0.8 ms instead of ~7 ms). The rules are the tutorial's, as written
# in lstm.adadelta and lstm.rmsprop.
# ---------------------------------------------------------------------------
@numba.njit(**_jit)
def _adadelta_step(p, zg, ru2, rg2, p_out, ru2_out, rho, eps):
    # Flat, contiguous arrays of one dtype; rho, eps of that dtype.
    one = rho / rho
    for k in range(p.shape[0]):
        ud = -np.sqrt(ru2[k] + eps) / np.sqrt(rg2[k] + eps) * zg[k]
        ru2_out[k] = rho * ru2[k] + (one - rho) * (ud * ud)
        p_out[k] = p[k] + ud


@numba.njit(**_jit)
def _rmsprop_step(p, zg, rg, rg2, ud, p_out, ud_out, momentum, step, eps):
    for k in range(p.shape[0]):
        new = momentum * ud[k] - step * zg[k] / np.sqrt(rg2[k] - rg[k] * rg[k] + eps)
        ud_out[k] = new
        p_out[k] = p[k] + new


class FusedStep(Op):
    """One optimizer's parameter step as one Op: ``rule`` is ``"adadelta"``
    (inputs ``p, g, E[dx^2], E[g^2]``; outputs the new ``p, E[dx^2]``) or
    ``"rmsprop"`` (inputs ``p, g, E[g], E[g^2], d``; outputs the new ``p, d``).
    See :func:`lstm.adadelta` and :func:`lstm.rmsprop` for the rules."""

    __props__ = ("rule",)
    _arity = {"adadelta": 4, "rmsprop": 5}

    def __init__(self, rule):
        if rule not in self._arity:
            raise ValueError("FusedStep: unknown rule %r" % rule)
        self.rule = rule

    def make_node(self, *inputs):
        inputs = [pt.as_tensor_variable(v) for v in inputs]
        if len(inputs) != self._arity[self.rule]:
            raise TypeError("FusedStep(%s) takes %d inputs" % (self.rule, self._arity[self.rule]))
        _check_dtype(inputs[0].dtype)
        for k, var in enumerate(inputs):
            _check_float("input %d" % k, var, inputs[0].dtype, inputs[0].ndim)
        return Apply(self, inputs, [inputs[0].type(), inputs[0].type()])

    def perform(self, node, inputs, output_storage):
        arrays = [np.ascontiguousarray(a) for a in inputs]
        shape = arrays[0].shape
        if any(a.shape != shape for a in arrays):
            raise ValueError("FusedStep(%s): shapes %s differ"
                             % (self.rule, [a.shape for a in arrays]))
        real = arrays[0].dtype.type
        outs = [np.empty_like(arrays[0]), np.empty_like(arrays[0])]
        flat = [a.reshape(-1) for a in arrays + outs]
        if self.rule == "adadelta":
            _adadelta_step(*flat, real(0.95), real(1e-6))
        else:
            _rmsprop_step(*flat, real(0.9), real(1e-4), real(1e-4))
        for storage, value in zip(output_storage, outs):
            storage[0] = value

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0], shapes[0]]

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]


adadelta_step = FusedStep("adadelta")
rmsprop_step = FusedStep("rmsprop")


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
        output_storage[0][0] = W.take(idx, axis=0)

    def infer_shape(self, fgraph, node, shapes):
        return [(shapes[1][0], shapes[0][1])]

    def pullback(self, inputs, outputs, output_grads):
        W, idx = inputs
        return [EmbeddingGrad()(W, idx, output_grads[0]),
                grad_undefined(self, 1, idx, "word indices are not differentiable")]


class EmbeddingGrad(Op):
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
        out = np.zeros_like(W)
        _add_rows(out, np.ascontiguousarray(idx, dtype="int64"), np.ascontiguousarray(g))
        output_storage[0][0] = out

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[0]]

    def pullback(self, inputs, outputs, output_grads):
        return [grad_not_implemented(self, k, v) for k, v in enumerate(inputs)]


embedding = Embedding()
