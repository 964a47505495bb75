"""JAX implementations of the project's Ops, for PyTensor's JAX backend (``--device gpu``).

:mod:`sentiment.kernels.fused_lstm`'s Ops run Numba and C kernels, which JAX cannot
trace. :func:`register` gives each of them a JAX function through PyTensor's
``jax_funcify`` dispatch, so that the graphs the C backend runs compile
unchanged with ``mode="JAX"``:

- :class:`~sentiment.kernels.fused_lstm.LSTMForward`: the input projection ``x W + b``
  of every step at once, then ``jax.lax.scan`` over the steps (exact
  ``sigmoid`` and ``tanh``: the tutorial's function, as ``--lstm-impl scan``);
- :class:`~sentiment.kernels.fused_lstm.LSTMBackward`: the same recurrence backwards
  (the rule of ``fused_lstm._backward``), then ``dx``, ``dW``, ``dU``, ``db``
  as products over all steps;
- ``Embedding`` / ``EmbeddingGrad``, ``MaskedMean`` / ``MaskedMeanGrad``,
  ``Dot`` and the optimizers' ``FusedStep`` (AdaDelta, RMSProp, Adam): the
  same arithmetic in ``jax.numpy``.

Nothing happens at import: JAX is an optional dependency, imported by
:func:`register`, which the JAX compile mode calls (``sentiment.kernels.device``).
"""
import threading

_lock = threading.Lock()
_registered = False


def _sigmoid(jnp, z):
    return 1 / (1 + jnp.exp(-z))


def lstm_forward(x, mask, W, U, b):
    """``(h, c, gates)`` of the masked LSTM, in JAX (see ``fused_lstm.LSTMForward``)."""
    import jax
    import jax.numpy as jnp
    dim = U.shape[0]
    xw = jnp.matmul(x, W) + b

    def step(carry, inputs):
        h_prev, c_prev = carry
        xw_t, m = inputs
        z = jnp.matmul(h_prev, U) + xw_t
        gates = jnp.concatenate([_sigmoid(jnp, z[:, :3 * dim]), jnp.tanh(z[:, 3 * dim:])],
                                axis=1)
        i, f, o, g = (gates[:, k * dim:(k + 1) * dim] for k in range(4))
        m = m[:, None]
        c = m * (f * c_prev + i * g) + (1 - m) * c_prev
        h = m * (o * jnp.tanh(c)) + (1 - m) * h_prev
        return (h, c), (h, c, gates)

    zeros = jnp.zeros((x.shape[1], dim), dtype=x.dtype)
    _, (h, c, gates) = jax.lax.scan(step, (zeros, zeros), (xw, mask))
    return h, c, gates


def lstm_backward(x, mask, W, U, h, c, gates, dh_out, dc_out):
    """``(dx, dW, dU, db)``: the gradient of :func:`lstm_forward` given the
    cost's gradient ``dh_out``, ``dc_out`` with respect to every step's ``h``
    and ``c`` (the rule of ``fused_lstm._backward``; an empty ``dc_out``: zeros)."""
    import jax
    import jax.numpy as jnp
    dim = U.shape[0]
    if dc_out.shape[0] == 0:  # (LSTMBackward's empty dc: zeros)
        dc_out = jnp.zeros_like(c)
    dh_out, dc_out = dh_out.astype(x.dtype), dc_out.astype(x.dtype)
    c_prev = jnp.concatenate([jnp.zeros_like(c[:1]), c[:-1]])
    h_prev = jnp.concatenate([jnp.zeros_like(h[:1]), h[:-1]])

    def step(carry, inputs):
        dh_next, dc_next = carry
        dh_t, dc_t, m, c_t, cp, g_t = inputs
        m = m[:, None]
        i, f, o, g = (g_t[:, k * dim:(k + 1) * dim] for k in range(4))
        dh, dc = dh_next + dh_t, dc_next + dc_t
        th = jnp.tanh(c_t)
        dh_raw = m * dh
        dz_o = dh_raw * th * o * (1 - o)
        dc = dc + dh_raw * o * (1 - th * th)
        dc_raw = m * dc
        dz = jnp.concatenate([dc_raw * g * i * (1 - i), dc_raw * cp * f * (1 - f), dz_o,
                              dc_raw * i * (1 - g * g)], axis=1)
        dh_prev = (1 - m) * dh + jnp.matmul(dz, U.T)
        return (dh_prev, (1 - m) * dc + dc_raw * f), dz

    zeros = jnp.zeros((x.shape[1], dim), dtype=x.dtype)
    _, dxw = jax.lax.scan(step, (zeros, zeros), (dh_out, dc_out, mask, c, c_prev, gates),
                          reverse=True)
    flat = dxw.reshape((-1, dxw.shape[2]))
    dx = jnp.matmul(dxw, W.T)
    dW = jnp.matmul(x.reshape((-1, x.shape[2])).T, flat)
    dU = jnp.matmul(h_prev.reshape((-1, dim)).T, flat)
    return dx, dW, dU, flat.sum(axis=0)


def masked_mean(h, mask):
    """``(h * mask[:, :, None]).sum(0) / mask.sum(0)[:, None]``."""
    return (h * mask[:, :, None]).sum(axis=0) / mask.sum(axis=0)[:, None]


def masked_mean_grad(g, mask, h):
    """:func:`masked_mean`'s gradient with respect to ``h``."""
    return (g / mask.sum(axis=0)[:, None])[None] * mask[:, :, None]


def fused_step(rule, step=None):
    """The JAX function of ``fused_lstm.FusedStep(rule, step)``: the same rule,
    the same constants (in the parameters' dtype) and the same outputs. ``step``:
    AdaDelta's factor on its step (the tutorial's 1) or RMSProp's step (1e-4)."""
    import jax.numpy as jnp

    def adadelta(p, zg, ru2, rg2):
        rho, rest, eps, scale = (jnp.asarray(v, p.dtype) for v in (
            0.95, 0.05, 1e-6, 1.0 if step is None else step))
        ud = -jnp.sqrt(ru2 + eps) / jnp.sqrt(rg2 + eps) * zg
        return p + scale * ud, rho * ru2 + rest * (ud * ud)

    def rmsprop(p, zg, rg, rg2, ud):
        momentum, size, eps = (jnp.asarray(v, p.dtype) for v in (
            0.9, 1e-4 if step is None else step, 1e-4))
        new = momentum * ud - size * zg / jnp.sqrt(rg2 - rg * rg + eps)
        return p + new, new

    def adam(p, g, m, v, lr, fix1, fix2, decay, beta1, beta2, eps):
        lr, fix1, fix2, decay, beta1, beta2, eps = (
            jnp.asarray(s, p.dtype) for s in (lr, fix1, fix2, decay, beta1, beta2, eps))
        m_t = beta1 * m + (1 - beta1) * g
        v_t = beta2 * v + (1 - beta2) * (g * g)
        return p - decay * p - lr * (m_t / fix1) / (jnp.sqrt(v_t / fix2) + eps), m_t, v_t

    return {"adadelta": adadelta, "rmsprop": rmsprop, "adam": adam}[rule]


def lstm_predict(pool):
    """:class:`~sentiment.kernels.fused_graph.LSTMHidden` (``pool``: ``LSTMMeanPool``)."""
    def predict(x, mask, W, U, b):
        h = lstm_forward(x, mask, W, U, b)[0]
        return masked_mean(h, mask) if pool else h
    return predict


def lstm_embedded(pool):
    """:class:`~sentiment.kernels.fused_graph.LSTMEmbedded`: the rows, then :func:`lstm_predict`."""
    import jax.numpy as jnp

    def embedded(E, ids, shape, mask, W, U, b):
        x = jnp.take(E, ids.reshape(-1), axis=0).reshape((ids.shape[0], ids.shape[1], -1))
        return lstm_predict(pool)(x, mask, W, U, b)
    return embedded


def running_average(square):
    """:class:`~sentiment.kernels.fused_lstm.RunningAverage`."""
    return lambda avg, g: 0.95 * avg + 0.05 * (g * g if square else g)


def _registrations():
    """``[(Op class, factory)]``: ``factory(op)`` returns the Op's JAX function."""
    import jax.numpy as jnp
    from sentiment.kernels import fused_graph as fg, fused_lstm as fl
    return [
        (fl.LSTMForward, lambda op: lstm_forward),
        (fg.LSTMHidden, lambda op: lstm_predict(False)),
        (fg.LSTMMeanPool, lambda op: lstm_predict(True)),
        (fg.LSTMEmbedded, lambda op: lstm_embedded(op.pool)),
        (fl.RunningAverage, lambda op: running_average(op.square)),
        (fl.LSTMBackward, lambda op: lstm_backward),
        (fl.Embedding, lambda op: lambda W, idx: jnp.take(W, idx, axis=0)),
        (fl.EmbeddingGrad, lambda op: lambda W, idx, g: jnp.zeros_like(W).at[idx].add(g)),
        (fl.MaskedMean, lambda op: masked_mean),
        (fl.MaskedMeanGrad, lambda op: masked_mean_grad),
        (fl.Dot, lambda op: jnp.matmul),
        (fl.FusedStep, lambda op: fused_step(op.rule, getattr(op, "step", None))),
    ]


def register():
    """Register the JAX functions of the project's Ops with PyTensor's
    ``jax_funcify`` (once; later calls do nothing). Imports JAX."""
    global _registered
    with _lock:
        if _registered:
            return
        from pytensor.link.jax.dispatch import jax_funcify
        for op_class, factory in _registrations():
            jax_funcify.register(op_class)(
                lambda op, node=None, _factory=factory, **kwargs: _factory(op))
        _registered = True
