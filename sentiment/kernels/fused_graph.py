"""The project's graph rewrites and compile mode: the classifier's softmax
inlined, the prediction Ops that replace the LSTM where no gradient is taken,
and the optimizers' steps written over the values they replace.

:func:`compile_mode` is the mode every function of the model is compiled
with. Its rewrites carry only their own tag, so they apply to the graphs
compiled with it (the project's), never to other graphs of the same process;
they are registered on the first call, not on import.

Prediction (``f_pred_prob``: ``predict``, ``evaluate``, every validation)
uses only the LSTM's states ``h``, or only their mean. Three Ops compute what
:class:`~sentiment.kernels.fused_lstm.LSTMForward` (then ``MaskedMean``) computes,
with the same bits, but less:

- :class:`LSTMHidden`: ``h`` without the gates and cells that training keeps
  for the backward pass;
- :class:`LSTMMeanPool`: the tutorial's mean of ``h`` over the unmasked steps,
  without writing ``h`` either;
- :class:`LSTMEmbedded`: either of them with the input the embedding rows of
  the batch's words, whose projection ``Wemb W + b`` is kept between calls in
  a :class:`ProjectedRows` (a word's row is reused only while the bits of its
  embedding, ``W`` and ``b`` are those it was computed from).
"""
import threading

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.compile import optdb
from pytensor.compile.mode import get_mode
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op
from pytensor.graph.rewriting.basic import WalkingGraphRewriter, node_rewriter
from pytensor.tensor.rewriting.ofg import inline_ofg_node
from pytensor.tensor.shape import Reshape
from pytensor.tensor.special import Softmax

from sentiment.kernels import embedding_rows, fused_lstm as fl

REWRITE_TAG = "fused_lstm_inline_softmax"


# ---------------------------------------------------------------------------
# The classifier's softmax, inlined. PyTensor 3.0 keeps ``pt.special.softmax``
# as an ``OpFromGraph`` that the C backend runs by calling a compiled inner
# function from Python: ~0.7 ms a call, for a (16, 2) matrix (8 % of a T=100,
# B=16 prediction). Inlined, its graph (max, exp, sum, divide) becomes C
# element-wise ops; its gradient is still Softmax's own.
# ---------------------------------------------------------------------------
@node_rewriter([Softmax])
def inline_softmax(fgraph, node):
    return inline_ofg_node(node)


# ---------------------------------------------------------------------------
# The projected embedding rows. At T=100, B=16 the input projection x W is
# half of a prediction's arithmetic; evaluating 25,000 reviews projects each
# of the 10,000 words' vectors some 600 times with the same weights.
# ---------------------------------------------------------------------------
MAX_TABLE_BYTES = 256 << 20  # larger vocabularies project every token (no table)


@numba.njit(**fl._jit)
def _stale_rows(E, ids, seen, state, stale, fill):
    # E, seen: (n_words, D) as uint32 (bits); ids: (T, B); state: (n_words,)
    # uint8, 1 where the table's row was computed from seen's row. Lists the
    # words of ids whose row must be computed in stale (each once, in order
    # of first use), marks their first use in fill (T, B), copies their bits
    # to seen and marks them 0 (not valid until computed); returns their count.
    n = 0
    for t in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            v = ids[t, j]
            e, s = E[v], seen[v]
            if state[v] == 1:
                diff = np.uint32(0)
                for d in range(e.shape[0]):  # (no early exit: the loop vectorises)
                    diff |= e[d] ^ s[d]
                if diff == 0:
                    continue
            elif state[v] == 2:
                continue  # listed already
            state[v] = 2
            stale[n] = v
            fill[t, j] = 1
            n += 1
            for d in range(e.shape[0]):
                s[d] = e[d]
    for k in range(n):
        state[stale[k]] = 0
    return n


@numba.njit(**fl._jit)
def _project_rows(E, stale, W, b, table, rows, out, tmp):
    # table[stale] = E[stale] W + b, with the forward's kernel; rows, out, tmp:
    # work arrays.
    for k in range(stale.shape[0]):
        rows[k] = E[stale[k]]
    fl._nn_gemm(rows, W, out, True, tmp)
    for k in range(stale.shape[0]):
        row, src = table[stale[k]], out[k]
        for d in range(src.shape[0]):
            row[d] = src[d] + b[d]


class ProjectedRows:
    """``E W + b`` for the rows of an embedding matrix ``E`` that batches use,
    computed when first needed and kept while valid.

    A row is computed by the same kernel, in the same order of sums, as the
    projection of a batch (:func:`sentiment.kernels.fused_lstm._forward_rows`), so a
    prediction gives the same bits with or without it. It is used again only
    if ``W`` and ``b`` are, bit for bit, those it was computed with (else the
    table starts over), and so is the word's row of ``E``: a training update,
    ``set_value`` or an in-place change is noticed, never served stale.
    Available for float32 with the C kernel (a BLAS may sum in another
    order for another number of rows), up to MAX_TABLE_BYTES.
    """

    def __init__(self):
        self.lock = threading.Lock()
        self.W = self.b = None

    @staticmethod
    def applies(E, W):
        fl.setup()
        return (fl._PACKED_GEMM is not None and E.dtype == W.dtype == np.float32
                and E.shape[0] * W.shape[1] * 4 <= MAX_TABLE_BYTES)

    def _start(self, E, W, b):
        """No row valid: for new weights (the arrays are kept if their shapes fit:
        20 MB of fresh pages would cost more than the projection)."""
        if not self._fits(E, W, b):
            self.W, self.b = np.empty_like(W), np.empty_like(b)
            self.seen = np.empty(E.shape, np.uint32)  # the bits each row was computed from
            self.state = np.empty(E.shape[0], np.uint8)
            self.table = np.empty((E.shape[0], W.shape[1]), W.dtype)
        self.W[...], self.b[...] = W, b
        self.state[...] = 0

    def _fits(self, E, W, b):
        return (self.W is not None and self.seen.shape == E.shape and self.W.shape == W.shape
                and self.b.shape == b.shape)

    def _same(self, E, W, b):
        return (self._fits(E, W, b)
                and np.array_equal(self.W.view(np.uint32), W.view(np.uint32))
                and np.array_equal(self.b.view(np.uint32), b.view(np.uint32)))

    def update(self, E, ids, W, b):
        """``(table, fill, stale)`` for a batch of rows ``ids`` of ``E``
        (``(T, B)``, checked in range); call under :attr:`lock`.

        The first batch of new weights is only projected (``(None, None,
        None)``: a single prediction with new weights, as the first of a
        validation, pays nothing for the table). Then a few rows to compute
        (at most a quarter of the tokens) are computed here: ``fill`` and
        ``stale`` are None and the table holds every row of ``ids``. More, and
        the batch had better be projected token by token: ``fill`` marks the
        token of each row to write to the table as the batch is projected,
        ``stale`` lists those rows; call :meth:`computed` with it once they
        are written.
        """
        if not self._same(E, W, b):
            self._start(E, W, b)
            return None, None, None
        stale = np.empty(ids.size, np.int64)
        fill = np.zeros(ids.shape, np.uint8)
        n = _stale_rows(E.view(np.uint32), ids, self.seen, self.state, stale, fill)
        stale = stale[:n]
        if 4 * n > ids.size:
            return self.table, fill, stale
        if n:
            blocks = fl._blocks(n, max(1, min(fl.threads, n // fl.CHUNK_ROWS)))
            with fl._nan_passes():
                fl._in_threads(self._project, [(E, stale[lo:hi], b) for lo, hi in blocks])
            self.computed(stale)
        return self.table, None, None

    def _project(self, E, stale, b):
        rows = fl._pool.empty((len(stale), E.shape[1]), E.dtype)
        out = fl._pool.empty((len(stale), self.table.shape[1]), self.table.dtype)
        tmp = np.empty(16 * E.shape[1], E.dtype)
        _project_rows(E, stale, self.W, b, self.table, rows, out, tmp)

    def computed(self, stale):
        """The table's rows ``stale`` are written: valid from now on."""
        self.state[stale] = 1


# ---------------------------------------------------------------------------
# The prediction Ops.
# ---------------------------------------------------------------------------
def _forward_io(x, mask, W, U, b, pool):
    """LSTMForward's checked inputs, and the output: ``h`` or its mean."""
    node = fl.LSTMForward().make_node(x, mask, W, U, b)
    out = pt.matrix(dtype=node.inputs[0].dtype) if pool else node.outputs[0].type()
    return node.inputs, out


def _forward_shape(shapes, pool):
    x_shape, _, _, u_shape, _ = shapes[-5:]
    return [(x_shape[1], u_shape[0]) if pool else (x_shape[0], x_shape[1], u_shape[0])]


class LSTMHidden(Op):
    """``(x, mask, W, U, b) -> h``: :class:`~sentiment.kernels.fused_lstm.LSTMForward`'s
    ``h`` alone, nothing kept for a gradient (the same bits)."""

    __props__ = ()
    pool = False

    def make_node(self, x, mask, W, U, b):
        inputs, out = _forward_io(x, mask, W, U, b, self.pool)
        return Apply(self, inputs, [out])

    def perform(self, node, inputs, output_storage):
        x, mask, W, U, b = (np.ascontiguousarray(a) for a in inputs)
        fl._check_shapes(x, mask, W, U, b)
        h, pooled = fl.lstm_predict_arrays(x, mask, W, U, b, keep_h=not self.pool,
                                           pool=self.pool)
        output_storage[0][0] = pooled if self.pool else h

    def infer_shape(self, fgraph, node, shapes):
        return _forward_shape(shapes, self.pool)


class LSTMMeanPool(LSTMHidden):
    """``(x, mask, W, U, b) -> MaskedMean(LSTMForward(x, mask, W, U, b)[0], mask)``
    in one pass, the states never written (the same bits)."""

    pool = True


class LSTMEmbedded(Op):
    """``(E, ids, shape, mask, W, U, b) -> h`` (or, ``pool=True``, the mean of
    ``h`` over the unmasked steps): :class:`LSTMHidden` (:class:`LSTMMeanPool`)
    of ``x = E[ids.ravel()].reshape(shape)``, ``ids`` a matrix of word indices,
    with the rows' projections kept in a :class:`ProjectedRows` when ``x`` is
    ``E[ids]`` (the same bits)."""

    __props__ = ("pool",)

    def __init__(self, pool=False):
        self.pool = bool(pool)
        self.rows = ProjectedRows()

    def __getstate__(self):
        return {"pool": self.pool}

    def __setstate__(self, state):
        self.__init__(state["pool"])

    def make_node(self, E, ids, shape, mask, W, U, b):
        E, ids, shape = (pt.as_tensor_variable(v) for v in (E, ids, shape))
        inputs, out = _forward_io(pt.tensor3(dtype=E.dtype), mask, W, U, b, self.pool)
        return Apply(self, [E, ids, shape] + inputs[1:], [out])

    def perform(self, node, inputs, output_storage):
        E, ids, shape, mask, W, U, b = (np.ascontiguousarray(a) for a in inputs)
        fl._check_index(ids.ravel(), E.shape[0])
        kept = dict(keep_h=not self.pool, pool=self.pool)
        if tuple(shape) != ids.shape + E.shape[1:] or not ProjectedRows.applies(E, W):
            x = np.take(E, ids.ravel(), axis=0).reshape(shape)
            fl._check_shapes(x, mask, W, U, b)
            h, pooled = fl.lstm_predict_arrays(x, mask, W, U, b, **kept)
        else:
            fl._check_shapes(np.empty(tuple(shape), E.dtype)[:0], mask[:0], W, U, b)
            with self.rows.lock:
                table, fill, stale = self.rows.update(E, ids, W, b)
                x = None if table is not None and fill is None else np.take(
                    E, ids, axis=0, out=fl._pool.empty(ids.shape + E.shape[1:], E.dtype))
                h, pooled = fl.lstm_predict_arrays(
                    x, mask, W, U, b, projected=None if table is None else (ids, table, fill),
                    **kept)
                if stale is not None:
                    self.rows.computed(stale)
        output_storage[0][0] = pooled if self.pool else h

    def infer_shape(self, fgraph, node, shapes):
        mask_shape, u_shape = shapes[3], shapes[5]
        return [(mask_shape[1], u_shape[0]) if self.pool
                else (mask_shape[0], mask_shape[1], u_shape[0])]


# ---------------------------------------------------------------------------
# The rewrites that put them in place.
# ---------------------------------------------------------------------------
def _unused(fgraph, variables):
    return all(not fgraph.clients[v] for v in variables)


@node_rewriter([fl.LSTMForward])
def predict_forward(fgraph, node):
    """LSTMForward whose ``c`` and ``gates`` nothing uses -> LSTMHidden."""
    if _unused(fgraph, node.outputs[1:]) and fgraph.clients[node.outputs[0]]:
        return {node.outputs[0]: LSTMHidden()(*node.inputs)}
    return None


@node_rewriter([fl.MaskedMean])
def predict_mean_pool(fgraph, node):
    """MaskedMean of LSTMHidden's ``h`` (used by nothing else), same mask -> LSTMMeanPool."""
    h, mask = node.inputs
    forward = h.owner
    if (forward is None or type(forward.op) is not LSTMHidden
            or forward.inputs[1] is not mask or len(fgraph.clients[h]) != 1):
        return None
    return [LSTMMeanPool()(*forward.inputs)]


@node_rewriter([LSTMHidden, LSTMMeanPool])
def predict_embedded(fgraph, node):
    """LSTMHidden / LSTMMeanPool of ``Wemb[ids]`` reshaped -> LSTMEmbedded."""
    x = node.inputs[0]
    if x.owner is None or not isinstance(x.owner.op, Reshape):
        return None
    rows, shape = x.owner.inputs
    if rows.owner is None or not isinstance(rows.owner.op, fl.Embedding):
        return None
    E, flat = rows.owner.inputs
    if flat.owner is None or not isinstance(flat.owner.op, Reshape) \
            or flat.owner.inputs[0].ndim != 2:
        return None
    ids = flat.owner.inputs[0]  # flat = ids.ravel(): a reshape of a matrix to a vector
    return [LSTMEmbedded(node.op.pool)(E, ids, shape, *node.inputs[1:])]


# ---------------------------------------------------------------------------
# The optimizers' steps in place. An update such as AdaDelta's ``(p, step(p,
# ...))`` otherwise writes the new ``p`` and the rule's new state to fresh
# arrays: for Wemb, three arrays of 5 MB a step, which with the old ones no
# longer fit the CPU's cache together. Written over the old values instead
# (PyTensor's destroy handler allows it only where nothing else reads them),
# with the same bits.
# ---------------------------------------------------------------------------
@node_rewriter([fl.FusedStep, fl.RunningAverage, embedding_rows.GradRows,
                embedding_rows.StepRows], inplace=True)
def steps_in_place(fgraph, node):
    """FusedStep / RunningAverage / GradRows / StepRows -> the same Op writing
    over the arrays it replaces."""
    if node.op.inplace or not hasattr(fgraph, "destroy_handler"):
        return None
    return node.op.in_place().make_node(*node.inputs).outputs


_REWRITES = {"inline_softmax": inline_softmax, "predict_forward": predict_forward,
             "predict_mean_pool": predict_mean_pool, "predict_embedded": predict_embedded}
INPLACE_POSITION = 50.3  # after the destroy handler is attached (49.5), with PyTensor's own
_lock = threading.Lock()


def compile_mode(mode):
    """PyTensor's compile mode ``mode`` (a name such as ``"CVM"``, or a Mode)
    with the project's rewrites; they are registered, under their own tag
    only, on the first call."""
    specialize = optdb["specialize"]
    with _lock:
        for name, rewrite in _REWRITES.items():
            if name + "_" + REWRITE_TAG not in specialize.__db__:
                specialize.register(name + "_" + REWRITE_TAG, rewrite, REWRITE_TAG)
        name = "steps_in_place_" + REWRITE_TAG
        if name not in optdb.__db__:
            optdb.register(name, WalkingGraphRewriter(
                steps_in_place, failure_callback=WalkingGraphRewriter.warn_inplace),
                REWRITE_TAG, "inplace", position=INPLACE_POSITION)
    return get_mode(mode).including(REWRITE_TAG)
