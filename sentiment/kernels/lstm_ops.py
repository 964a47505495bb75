"""The fused LSTM: its two Numba kernels (forward, backward), the functions
that run them over NumPy arrays in threads, and the Ops :class:`LSTMForward`
and :class:`LSTMBackward` (``lstm``: their graph), as ``--lstm-impl fused``
runs them."""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.gradient import DisconnectedType, grad_undefined
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from sentiment.kernels import gemm, handoff, scheduling
from sentiment.kernels.basics import _Terminal, _check_dtype, _check_float, _jit, _tanh
from sentiment.kernels.scheduling import (_OneBlasThread, _blocks, _chunks, _executor,
                                          _grad_parts, _in_threads, _nan_passes, _pool, _run_all,
                                          _schedule, _sum_rows)
from sentiment.kernels.gemm import (GRAD_BLOCK, _grad_products, _nn_gemm, _packed_product,
                                    _step_gemm, packed, setup)


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
    # _forward_rows(*args), once the helpers are told (sentiment.kernels.handoff).
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
    # _backward(*args), once the helpers are told (sentiment.kernels.handoff).
    handoff.signal(flags, count, value)
    _backward(*args)


ROW_SPLIT_ROWS = 8  # rows per thread from which the backward shares out the rows
LARGE_BATCH = 32  # rows from which the gradient is summed in LARGE_CHUNKS blocks of steps
FORWARD_CHUNK_ROWS = 256  # steps x rows per projection chunk (small batches)
BACKWARD_CHUNK_ROWS = 512  # steps x rows per gradient chunk (small batches)
LARGE_CHUNKS = 8  # gradient chunks of a batch of LARGE_BATCH rows or more (1, 2, 4, 8 threads)


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


def _row_threads(n_samples):
    return max(1, min(scheduling.threads, n_samples // ROW_SPLIT_ROWS))


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
    n = 1 if scheduling._BLAS_THREADS is None else max(1, min(scheduling.threads, n_samples // ROWS_PER_THREAD))
    blocks = _blocks(n_samples, n)
    chunk = max(1, CHUNK_ROWS // (blocks[0][1] - blocks[0][0]))
    if projected is None:
        projected = (np.empty((0, 0), np.int64), np.empty((0, 1), W.dtype), None)
    ids, table, fill = projected
    if fill is None:
        fill = np.empty((0, 0), np.uint8)
        if table.size:
            x = np.empty((0, 1, 1), W.dtype)  # (not read)
    kernel = gemm._PACKED_GEMM is not None and W.dtype == np.float32
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


def _check_shapes(x, mask, W, U, b):
    n_in, dim4 = x.shape[2], U.shape[1]
    if (W.shape != (n_in, dim4) or dim4 != 4 * U.shape[0] or b.shape != (dim4,)
            or mask.shape != x.shape[:2]):
        raise ValueError("fused LSTM: shapes x %s, mask %s, W %s, U %s, b %s do not fit"
                         % (x.shape, mask.shape, W.shape, U.shape, b.shape))




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
