"""AdaDelta for the embedding matrix, row by row: only the rows of the words a
batch uses are computed, with the same bits as the tutorial's dense rule.

A word that a batch does not use has a zero gradient row. The tutorial's
AdaDelta (:func:`lstm.adadelta`) still spends a full pass over every row of
``Wemb`` and of its three state arrays on each update (some 20 MB of memory
traffic for the default 10,000 words), where for such a row it only does
this:

- the stored gradient ``zipped_grads`` row stays zero;
- ``running_grads2 <- 0.95 * running_grads2 + 0.05 * 0``;
- the step ``-sqrt(running_up2 + eps) / sqrt(running_grads2 + eps) * 0`` is
  ``-0``, so the parameter keeps its bits;
- ``running_up2 <- 0.95 * running_up2 + 0.05 * 0``.

So the two running averages only decay. Here each row of them remembers how
many decays it has had: those it misses are applied, one after another as
the dense rule would (each rounded as it rounds), when a batch next uses the
word, or when anyone reads or sets the state (``get_value``, ``set_value``:
:class:`RowState`). The parameter, the stored gradient and, once brought up
to date, the state have the same bits as the dense rule's, as long as the
state is finite (a state of infinity would make the dense step's ``inf * 0``
a NaN in rows that no batch used; training has diverged long before).

The bookkeeping: two int64 vectors of ``n_words + 1``: ``seen[r]`` the
number of steps row ``r`` has had, ``seen[n_words]`` the number of steps
taken; one for ``running_grads2`` (its steps are taken by ``f_grad_shared``),
one for ``running_up2`` (taken by ``f_update``). The rows that
``f_grad_shared`` wrote are those with ``seen[r] == seen[n_words]``: the next
one zeroes their gradient rows and ``f_update`` steps them. Large batches
share the rows out to threads by blocks (each row's arithmetic is the same
in any block).
"""
import numba
import numpy as np
import pytensor
import pytensor.tensor as pt
from llvmlite import ir
from numba.extending import intrinsic
from pytensor.graph.basic import Apply
from pytensor.tensor.sharedvar import TensorSharedVariable

from sentiment.kernels import fused_lstm as fl, handoff

RHO, REST, EPS = 0.95, 0.05, 1e-6  # the tutorial's constants (see fused_lstm.FusedStep)


# ---------------------------------------------------------------------------
# The kernels: the used rows' average and step by fused_lstm's dense kernels,
# and the decays as those kernels compute them for a zero gradient.
# ---------------------------------------------------------------------------
@numba.njit(**fl._ieee_jit)
def _average_decays(avg, times):
    # running_grads2's row with a zero gradient, `times` times: the arithmetic
    # of fused_lstm._running_average with g = 0 (0.05 * 0 ** 2 is 0).
    zero = np.float32(0.0)
    for _ in range(times):
        for d in range(avg.shape[0]):
            avg[d] = np.float32(0.95 * avg[d]) + zero


@numba.njit(**fl._ieee_jit)
def _step_decays(ru2, rho, rest, times):
    # running_up2's row when the step is -0, `times` times: the arithmetic of
    # fused_lstm._adadelta_step's ru2 * rho + rest * (ud * ud) with ud = -0.
    ud = -np.float32(0.0)
    for _ in range(times):
        for d in range(ru2.shape[0]):
            ru2[d] = rho * ru2[d] + rest * (ud * ud)


@intrinsic
def _prefetch(typingctx, address):
    # LLVM's prefetch of the cache line at `address` (an integer), for writing.
    def codegen(context, builder, signature, args):
        i8p, i32 = ir.IntType(8).as_pointer(), ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [i8p], ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]))
        builder.call(fn, [builder.inttoptr(args[0], i8p), i32(1), i32(3), i32(1)])
        return context.get_dummy_value()
    return numba.types.void(numba.types.intp), codegen


@numba.njit(**fl._ieee_jit)
def _fetch(a, r):
    # Row r of the matrix a towards the cache (the rows a batch uses are
    # scattered: each would otherwise wait for memory in turn).
    start = a.ctypes.data + r * a.strides[0]
    for offset in range(0, a.shape[1] * a.itemsize, 64):
        _prefetch(start + offset)


AHEAD = 8  # rows fetched this far ahead


@numba.njit(**fl._ieee_jit)
def _grad_rows(zg, rg2, seen, idx, g, rows, lo, hi):
    # zg, rg2: (n_words, D); seen: (n_words + 1,); idx: (N,) word indices (in
    # range); g: (N, D) the gradient of the rows W[idx]; rows: (n_words,) work
    # space. For the rows lo:hi (the caller then counts the step in
    # seen[n_words]): zg becomes the dense gradient (rows added in the order
    # of idx, as fused_lstm.EmbeddingGrad adds them), rg2's used rows their
    # average, after the decays they missed.
    done = seen[zg.shape[0]]
    for r in range(lo, hi):  # the rows the last step wrote (or all, after a catch-up)
        if seen[r] == done:
            row = zg[r]
            for d in range(row.shape[0]):
                row[d] = 0
    n = idx.shape[0]
    for k in range(n):
        if k + AHEAD < n and lo <= idx[k + AHEAD] < hi:
            _fetch(zg, idx[k + AHEAD])
        r = idx[k]
        if lo <= r < hi:
            seen[r] = -1 - seen[r] if seen[r] >= 0 else seen[r]  # used: -1 - its count
            row, add = zg[r], g[k]
            for d in range(row.shape[0]):
                row[d] += add[d]
    _average_rows(zg, rg2, seen, rows, done, lo, hi)


@numba.njit(**fl._ieee_jit)
def _average_rows(zg, rg2, seen, rows, done, lo, hi):
    # rg2's rows that _grad_rows marked used, in order: their missed decays,
    # then this step's average.
    n = lo
    for r in range(lo, hi):
        if seen[r] < 0:
            rows[n] = r
            n += 1
    for k in range(lo, n):
        if k + AHEAD < n:
            _fetch(zg, rows[k + AHEAD])
            _fetch(rg2, rows[k + AHEAD])
        r = rows[k]
        _average_decays(rg2[r], done - (-1 - seen[r]))
        fl._running_average(rg2[r], zg[r], True)
        seen[r] = done + 1


@numba.njit(**fl._ieee_jit)
def _step_rows(p, zg, ru2, rg2, seen_up, seen_grad, rows, rho, rest, eps, scale, lo, hi):
    # For the rows lo:hi (the caller then counts the step in seen_up[n_words]):
    # the step of every row that f_grad_shared wrote; the others' ru2 owe a
    # decay. rows: (n_words,) work space.
    done, wrote = seen_up[p.shape[0]], seen_grad[p.shape[0]]
    n = lo
    for r in range(lo, hi):
        if seen_grad[r] == wrote:
            rows[n] = r
            n += 1
    for k in range(lo, n):
        if k + AHEAD < n:
            for a in (p, zg, ru2, rg2):
                _fetch(a, rows[k + AHEAD])
        r = rows[k]
        _step_decays(ru2[r], rho, rest, done - seen_up[r])
        fl._adadelta_step(p[r], zg[r], ru2[r], rg2[r], rho, rest, eps, scale)
        seen_up[r] = done + 1


@numba.njit(**fl._ieee_jit)
def _catch_up(rg2, seen_grad, ru2, seen_up, rho, rest):
    # Every row brought up to date (seen[r] = seen[n_words]).
    n_words = rg2.shape[0]
    for r in range(n_words):
        _average_decays(rg2[r], seen_grad[n_words] - seen_grad[r])
        seen_grad[r] = seen_grad[n_words]
        _step_decays(ru2[r], rho, rest, seen_up[n_words] - seen_up[r])
        seen_up[r] = seen_up[n_words]


@numba.njit(**fl._ieee_jit)
def _grad_rows_start(flags, count, value, *args):
    # _grad_rows(*args), once the helpers are told (sentiment.kernels.handoff).
    handoff.signal(flags, count, value)
    _grad_rows(*args)


@numba.njit(**fl._ieee_jit)
def _step_rows_start(flags, count, value, *args):
    # _step_rows(*args), once the helpers are told (sentiment.kernels.handoff).
    handoff.signal(flags, count, value)
    _step_rows(*args)


MIN_THREAD_ROWS = 512  # rows used per thread from which the rows are shared out


def _in_blocks(kernel, start, args, n_words, n_used):
    """``kernel(*args, lo, hi)`` over the rows ``0:n_words`` in blocks, one a
    thread, when ``n_used`` rows are worth it; ``start``: the kernel's start
    function."""
    fl.in_blocks(kernel, start, args, n_words, n_used // MIN_THREAD_ROWS)


# ---------------------------------------------------------------------------
# The Ops: f_grad_shared's (the stored gradient and its running average) and
# f_update's (the step and its running average). Each writes over its state
# in place (fused_graph puts that in, as for FusedStep) or over copies.
# ---------------------------------------------------------------------------
class _RowsOp(fl._Terminal):
    __props__ = ("inplace",)
    _replaced = ()  # the inputs that the outputs replace

    def __init__(self, inplace=False):
        self.inplace = bool(inplace)
        if self.inplace:
            self.destroy_map = {out: [k] for out, k in enumerate(self._replaced)}

    def in_place(self):
        return type(self)(inplace=True)

    def _writable(self, inputs):
        arrays = list(inputs)
        for k in self._replaced:
            if not (self.inplace and arrays[k].flags.c_contiguous
                    and arrays[k].flags.writeable):
                arrays[k] = np.array(arrays[k], order="C")
        return arrays

    def _outputs(self, arrays, output_storage):
        for storage, k in zip(output_storage, self._replaced):
            storage[0] = arrays[k]

    def infer_shape(self, fgraph, node, shapes):
        return [shapes[k] for k in self._replaced]


def _check_rows(name, state, seen, others):
    if state.dtype != "float32" or state.ndim != 2 or seen.dtype != "int64" or seen.ndim != 1:
        raise TypeError("%s: a float32 matrix and int64 step counts, not %s, %s"
                        % (name, state.type, seen.type))
    for var in others:
        fl._check_float(var.name or "input", var, "float32", 2)


class GradRows(_RowsOp):
    """``(zg, rg2, seen, idx, g) -> (zg, rg2, seen)``: the stored gradient
    ``zg`` becomes ``EmbeddingGrad(W, idx, g)`` and ``rg2`` its running average of
    squares, in the rows of ``idx`` only (see the module's docstring)."""

    _replaced = (0, 1, 2)

    def make_node(self, zg, rg2, seen, idx, g):
        zg, rg2, seen, idx, g = (pt.as_tensor_variable(v) for v in (zg, rg2, seen, idx, g))
        _check_rows("GradRows", zg, seen, [rg2, g])
        if idx.ndim != 1 or not idx.dtype.startswith("int"):
            raise TypeError("GradRows: idx must be a vector of integers")
        return Apply(self, [zg, rg2, seen, idx, g], [zg.type(), rg2.type(), seen.type()])

    def perform(self, node, inputs, output_storage):
        arrays = self._writable(inputs)
        zg, rg2, seen, idx, g = arrays
        fl._check_index(idx, zg.shape[0])
        if g.shape != (idx.shape[0], zg.shape[1]) or rg2.shape != zg.shape:
            raise ValueError("GradRows: g %s, rg2 %s for %d words of a %s matrix"
                             % (g.shape, rg2.shape, idx.shape[0], zg.shape))
        args = (zg, rg2, seen, np.ascontiguousarray(idx, dtype="int64"),
                np.ascontiguousarray(g), np.empty(zg.shape[0], "int64"))
        _in_blocks(_grad_rows, _grad_rows_start, args, zg.shape[0], idx.shape[0])
        seen[zg.shape[0]] += 1
        self._outputs(arrays, output_storage)


class StepRows(_RowsOp):
    """``(p, zg, ru2, rg2, seen_up, seen_grad) -> (p, ru2, seen_up)``:
    :class:`~sentiment.kernels.fused_lstm.FusedStep` ("adadelta", with its ``step``)
    in the rows that the last :class:`GradRows` wrote."""

    __props__ = ("step", "inplace")
    _replaced = (0, 2, 4)

    def __init__(self, step=1.0, inplace=False):
        self.step = float(step)
        super().__init__(inplace)

    def in_place(self):
        return StepRows(self.step, inplace=True)

    def make_node(self, p, zg, ru2, rg2, seen_up, seen_grad):
        inputs = [pt.as_tensor_variable(v) for v in (p, zg, ru2, rg2, seen_up, seen_grad)]
        _check_rows("StepRows", inputs[0], inputs[4], inputs[1:4])
        return Apply(self, inputs, [inputs[k].type() for k in self._replaced])

    def perform(self, node, inputs, output_storage):
        arrays = self._writable(inputs)
        p, zg, ru2, rg2, seen_up, seen_grad = arrays
        if not p.shape == zg.shape == ru2.shape == rg2.shape:
            raise ValueError("StepRows: shapes %s differ"
                             % [a.shape for a in (p, zg, ru2, rg2)])
        real = np.float32
        args = (p, zg, ru2, rg2, seen_up, seen_grad, np.empty(p.shape[0], "int64"),
                real(RHO), real(REST), real(EPS), real(self.step))
        _in_blocks(_step_rows, _step_rows_start, args, p.shape[0],
                   np.count_nonzero(seen_grad[:-1] == seen_grad[-1]))
        seen_up[p.shape[0]] += 1
        self._outputs(arrays, output_storage)


# ---------------------------------------------------------------------------
# The state, as shared variables that bring every row up to date when read
# or set from outside the compiled functions.
# ---------------------------------------------------------------------------
class RowState(TensorSharedVariable):
    """A shared variable of :class:`AdaDeltaRows`' state: ``get_value`` and
    ``set_value`` first bring every row up to date (:meth:`AdaDeltaRows.catch_up`)."""

    rows = None  # the AdaDeltaRows it belongs to

    def get_value(self, borrow=False, return_internal_type=False):
        self.rows.catch_up()
        return super().get_value(borrow, return_internal_type)

    def set_value(self, new_value, borrow=False):
        self.rows.catch_up()
        super().set_value(new_value, borrow)


class AdaDeltaRows:
    """The state of AdaDelta for an embedding matrix, row by row.

    ``zipped_grads``, ``running_up2``, ``running_grads2``: :class:`RowState`
    copies of the given shared variables (same names and values);
    :meth:`grad_updates` and :meth:`step_updates` replace the tutorial's
    updates of them.
    """

    def __init__(self, zipped_grad, running_up2, running_grad2):
        self.zipped_grads, self.running_up2, self.running_grads2 = (
            self._row_state(v) for v in (zipped_grad, running_up2, running_grad2))
        n_words = zipped_grad.get_value(borrow=True).shape[0]
        name = zipped_grad.name or "rows"
        self.seen_grad = pytensor.shared(np.zeros(n_words + 1, "int64"),
                                         name=name + "_seen_grad")
        self.seen_up = pytensor.shared(np.zeros(n_words + 1, "int64"),
                                       name=name + "_seen_up")

    def _row_state(self, shared):
        value = shared.get_value()
        state = RowState(type=pt.TensorType(value.dtype, shape=(None, None)),
                         value=value, strict=False, name=shared.name)
        state.rows = self
        return state

    def state(self):
        return [self.zipped_grads, self.running_up2, self.running_grads2]

    def grad_updates(self, idx, g):
        """``f_grad_shared``'s updates: the stored gradient and ``running_grads2``."""
        zg, rg2, seen = GradRows()(self.zipped_grads, self.running_grads2, self.seen_grad,
                                   idx, g)
        return [(self.zipped_grads, zg), (self.running_grads2, rg2), (self.seen_grad, seen)]

    def step_updates(self, param, step):
        """``f_update``'s updates: ``param`` and ``running_up2``."""
        p, ru2, seen = StepRows(step)(param, self.zipped_grads, self.running_up2,
                                      self.running_grads2, self.seen_up, self.seen_grad)
        return [(param, p), (self.running_up2, ru2), (self.seen_up, seen)]

    def catch_up(self):
        """Every row of the running averages brought up to date, in place."""
        def value(shared):  # (TensorSharedVariable's: no catch-up of its own)
            return TensorSharedVariable.get_value(shared, borrow=True)
        rg2, ru2 = value(self.running_grads2), value(self.running_up2)
        real = rg2.dtype.type
        _catch_up(rg2, value(self.seen_grad), ru2, value(self.seen_up), real(RHO), real(REST))


def _embedding_grad(param, grad):
    """``(idx, g)`` if ``grad`` is ``param``'s float32
    :class:`~sentiment.kernels.fused_lstm.EmbeddingGrad`, else None."""
    node = grad.owner
    if (node is None or not isinstance(node.op, fl.EmbeddingGrad)
            or node.inputs[0] is not param or param.dtype != "float32"):
        return None
    return node.inputs[1], node.inputs[2]


class Embeddings:
    """The parameters among ``params`` whose gradient (in ``grads``) is an
    embedding's, with their AdaDelta state row by row (:class:`AdaDeltaRows`);
    none unless ``on``.

    The constructor puts that state in place of theirs in ``zipped_grads``,
    ``running_up2`` and ``running_grads2`` (lists, as
    :func:`sentiment.model.optimizers.zeros_like_params` makes them), with the same
    names and values; :meth:`grad_updates` and :meth:`step_updates` replace
    the tutorial's updates of it and of the parameter.
    """

    def __init__(self, params, grads, zipped_grads, running_up2, running_grads2, step,
                 on=True):
        self.step = step
        self.rows = []  # (AdaDeltaRows, param, (idx, g))
        lists = (zipped_grads, running_up2, running_grads2)
        for k, (param, grad) in enumerate(zip(params, grads)):
            found = _embedding_grad(param, grad) if on else None
            if found is not None:
                rows = AdaDeltaRows(*(state[k] for state in lists))
                for state, shared in zip(lists, rows.state()):
                    state[k] = shared
                self.rows.append((rows, param, found))

    def _others(self, updates):
        owned = [v for rows, param, _ in self.rows for v in rows.state() + [param]]
        return [(v, u) for v, u in updates if not any(v is w for w in owned)]

    def grad_updates(self, updates):
        """``f_grad_shared``'s ``updates``, with those of the stored gradients
        and ``running_grads2`` of the embeddings replaced."""
        return self._others(updates) + [pair for rows, _, (idx, g) in self.rows
                                        for pair in rows.grad_updates(idx, g)]

    def step_updates(self, updates):
        """``f_update``'s ``updates``, with those of the embeddings and their
        ``running_up2`` replaced."""
        return self._others(updates) + [pair for rows, param, _ in self.rows
                                        for pair in rows.step_updates(param, self.step)]
