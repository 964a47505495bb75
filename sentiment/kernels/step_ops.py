"""The optimizers' parameter steps, fused: :class:`FusedStep` (AdaDelta,
RMSProp, Adam) and :class:`RunningAverage`, each one vectorised pass per
parameter, with the rules' own rounding."""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

import numba
import numpy as np
import pytensor.tensor as pt
from pytensor.graph.basic import Apply
from sentiment.kernels import scheduling
from sentiment.kernels.basics import _Terminal, _check_dtype, _check_float, _ieee_jit
from sentiment.kernels.scheduling import _blocks, _in_threads, _pool



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
        n = max(1, min(scheduling.threads, flat[0].size // scheduling.MIN_STEP_BLOCK))
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
        n = max(1, min(scheduling.threads, flat[0].size // scheduling.MIN_STEP_BLOCK))
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
