"""The model's other fused Ops: the embedding lookup (:class:`Embedding`,
its gradient adding rows in one compiled loop), the mean pooling
(:class:`MaskedMean`) and the products of the classifier and the convolution
(:class:`Dot`, the packed kernel's fixed order of sums)."""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from sentiment.kernels import handoff, scheduling
from sentiment.kernels.basics import _Terminal, _check_dtype, _check_float, _jit
from sentiment.kernels.scheduling import _blocks, _in_threads, _nan_passes, _pool
from sentiment.kernels.gemm import _packed_product, packed, setup


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
    # _masked_mean(*args), once the helpers are told (sentiment.kernels.handoff).
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
    # _masked_mean_grad(*args), once the helpers are told (sentiment.kernels.handoff).
    handoff.signal(flags, count, value)
    _masked_mean_grad(*args)


MIN_THREAD_FLOATS = 1 << 19  # floats (2 MB in float32) from which a pass over
# a (T, B, D) array is shared out to threads, by blocks of rows


def _by_rows(kernel, start, args, n_rows, n_floats):
    """``kernel(*args, lo, hi)`` over the rows ``0:n_rows``: in blocks, one a
    thread, when the pass reads or writes ``n_floats`` floats or more."""
    many = n_floats >= MIN_THREAD_FLOATS and scheduling._BLAS_THREADS is not None
    in_blocks(kernel, start, args, n_rows, scheduling.threads if many else 1)


def in_blocks(kernel, start, args, size, n):
    """``kernel(*args, lo, hi)`` over ``range(size)`` cut into at most ``n``
    blocks, one a thread (this one takes the first; ``start``: the kernel's
    start function), for kernels whose every element's arithmetic is the
    same in any block."""
    blocks = _blocks(size, max(1, min(n, scheduling.threads, size)))
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
