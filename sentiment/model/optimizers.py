"""Optimizers and training aids beyond the tutorial's three rules: Adam (and
AdamW's decay), SGD with Nesterov momentum, Adagrad, gradient clipping, a
moving average of the weights.

Each optimizer has the signature and returns of the tutorial's (``lstm.sgd``):
``(lr, tparams, grads, inputs, cost, updates, mode) -> (f_grad_shared,
f_update, state)``. ``tests/test_lstm.py`` checks every rule against NumPy.
"""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor import config

from sentiment.kernels import fused_lstm


def _floatX(value):
    return np.asarray(value, dtype=config.floatX)


def zeros_like_params(tparams, suffix):
    """A shared variable of zeros shaped like each parameter, named ``<name>_<suffix>``
    (the tutorial's ``zipped_grads``, ``running_grads2``, ...)."""
    return [pytensor.shared(p.get_value() * _floatX(0.0), name="%s_%s" % (k, suffix))
            for k, p in tparams.items()]


def grad_function(rule, tparams, grads, inputs, cost, updates, mode):
    """``(f_grad_shared, zipped_grads)``: ``f_grad_shared(*inputs) -> cost``
    stores ``grads`` in ``zipped_grads`` (the tutorial's split of a step)."""
    zipped_grads = zeros_like_params(tparams, "grad")
    f_grad_shared = pytensor.function(
        inputs, cost, updates=list(updates) + list(zip(zipped_grads, grads)),
        name="%s_f_grad_shared" % rule, mode=mode)
    return f_grad_shared, zipped_grads


def adam(lr, tparams, grads, inputs, cost, updates=(), mode=None,
         beta1=0.9, beta2=0.999, epsilon=1e-8, weight_decay=0.0):
    """Adam [Adam2015]_, Algorithm 1 of the paper (the constants are its defaults).

    With step count ``t``, gradient ``g`` and learning rate ``lr``::

        t <- t + 1
        m <- beta1 m + (1 - beta1) g
        v <- beta2 v + (1 - beta2) g^2
        p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + epsilon)

    ``lr`` is ``--lrate`` (the paper's and Keras's default is 0.001; Keras
    puts its epsilon, 1e-7, outside the bias correction of ``v``).
    With ``weight_decay`` ``wd`` > 0, each weight matrix (not the biases)
    also decays, decoupled from the gradient (AdamW [AdamW2019]_, as
    ``torch.optim.AdamW``): ``p <- p - lr * wd * p`` before the step above.
    Parameters and returns as :func:`lstm.sgd`.

    References
    ----------
    .. [Adam2015] Diederik P. Kingma and Jimmy Ba, *Adam: A Method for
       Stochastic Optimization*, ICLR 2015, arXiv:1412.6980.
    .. [AdamW2019] Ilya Loshchilov and Frank Hutter, *Decoupled Weight Decay
       Regularization*, ICLR 2019, arXiv:1711.05101.
    """
    f_grad_shared, zipped_grads = grad_function("adam", tparams, grads, inputs, cost,
                                                updates, mode)
    m = zeros_like_params(tparams, "adam_m")
    v = zeros_like_params(tparams, "adam_v")
    t = pytensor.shared(_floatX(0.0), name="adam_t")
    t_new = t + 1.0
    beta1, beta2, epsilon = (pt.constant(_floatX(c)) for c in (beta1, beta2, epsilon))
    fix1 = 1.0 - beta1 ** t_new
    fix2 = 1.0 - beta2 ** t_new
    decay = lr * _floatX(weight_decay)
    new = []
    for p, g, m_, v_ in zip(tparams.values(), zipped_grads, m, v):
        # m, v and p in one fused pass (fused_lstm.FusedStep); decay: matrices only.
        p_new, m_t, v_t = fused_lstm.adam_step(
            p, g, m_, v_, lr, fix1, fix2, decay if p.ndim >= 2 else pt.zeros_like(decay),
            beta1, beta2, epsilon)
        new += [(m_, m_t), (v_, v_t), (p, p_new)]
    f_update = pytensor.function([lr], [], updates=new + [(t, t_new)],
                                 name="adam_f_update", mode=mode)
    return f_grad_shared, f_update, zipped_grads + m + v + [t]


def nesterov(lr, tparams, grads, inputs, cost, updates=(), mode=None, momentum=0.9):
    """SGD with Nesterov momentum [Sutskever2013]_, in the form of
    ``torch.optim.SGD(momentum=0.9, nesterov=True)``: with velocity ``v``
    (zero at first) and learning rate ``lr``::

        v <- momentum v + g
        p <- p - lr * (g + momentum v)

    Parameters and returns as :func:`lstm.sgd`.

    References
    ----------
    .. [Sutskever2013] Ilya Sutskever, James Martens, George Dahl and Geoffrey
       Hinton, *On the importance of initialization and momentum in deep
       learning*, ICML 2013.
    """
    f_grad_shared, zipped_grads = grad_function("nesterov", tparams, grads, inputs, cost,
                                                updates, mode)
    velocity = zeros_like_params(tparams, "velocity")
    mu = pt.constant(_floatX(momentum))
    new = []
    for p, g, v in zip(tparams.values(), zipped_grads, velocity):
        v_t = mu * v + g
        new += [(v, v_t), (p, p - lr * (g + mu * v_t))]
    f_update = pytensor.function([lr], [], updates=new, name="nesterov_f_update", mode=mode)
    return f_grad_shared, f_update, zipped_grads + velocity


def adagrad(lr, tparams, grads, inputs, cost, updates=(), mode=None, epsilon=1e-10):
    """Adagrad [Duchi2011]_, as ``torch.optim.Adagrad`` (no decay, the sum of
    squares starting at 0)::

        G <- G + g^2
        p <- p - lr * g / (sqrt(G) + epsilon)

    Parameters and returns as :func:`lstm.sgd`.

    References
    ----------
    .. [Duchi2011] John Duchi, Elad Hazan and Yoram Singer, *Adaptive
       Subgradient Methods for Online Learning and Stochastic Optimization*,
       JMLR 12, 2011.
    """
    f_grad_shared, zipped_grads = grad_function("adagrad", tparams, grads, inputs, cost,
                                                updates, mode)
    sum_sq = zeros_like_params(tparams, "adagrad_sum")
    eps = pt.constant(_floatX(epsilon))
    new = []
    for p, g, acc in zip(tparams.values(), zipped_grads, sum_sq):
        acc_t = acc + g * g
        new += [(acc, acc_t), (p, p - lr * g / (pt.sqrt(acc_t) + eps))]
    f_update = pytensor.function([lr], [], updates=new, name="adagrad_f_update", mode=mode)
    return f_grad_shared, f_update, zipped_grads + sum_sq


def clip_norm(grads, clip_c):
    """``grads`` scaled by ``min(1, clip_c / ||grads||)``, the norm taken over
    all of them together (as ``torch.nn.utils.clip_grad_norm_``) [Pascanu2013]_;
    unchanged when ``clip_c`` is 0.

    References
    ----------
    .. [Pascanu2013] Razvan Pascanu, Tomas Mikolov and Yoshua Bengio, *On the
       difficulty of training recurrent neural networks*, ICML 2013.
    """
    if not clip_c:
        return grads
    norm = pt.sqrt(sum(pt.sqr(g).sum() for g in grads))
    scale = pt.minimum(_floatX(1.0), _floatX(clip_c) / (norm + _floatX(1e-6)))
    return [g * scale for g in grads]


def weight_average(tparams, decay, mode=None):
    """An exponential moving average of the parameters [Polyak1992]_.

    After the ``t``-th call of ``f_ema()`` (``t`` from 1), for every
    parameter ``p`` and its average ``a`` (which starts at ``p``'s initial
    value)::

        d = min(decay, (1 + t) / (10 + t))
        a <- d a + (1 - d) p

    the warm-up of ``d`` is TensorFlow's ``ExponentialMovingAverage(decay,
    num_updates)``, so early averages are not dominated by the random
    initial weights. Returns ``(f_ema, averages)``: ``averages`` maps each
    parameter's name to its average's shared variable, plus ``"ema_t"``,
    the step count; ``(None, {})`` when ``decay`` is 0.

    References
    ----------
    .. [Polyak1992] Boris T. Polyak and Anatoli B. Juditsky, *Acceleration of
       Stochastic Approximation by Averaging*, SIAM Journal on Control and
       Optimization 30(4), 1992.
    """
    if not decay:
        return None, OrderedDict()
    averages = OrderedDict((k, pytensor.shared(p.get_value().copy(), name="%s_ema" % k))
                           for k, p in tparams.items())
    t = pytensor.shared(_floatX(0.0), name="ema_t")
    t_new = t + 1.0
    d = pt.minimum(_floatX(decay), (1.0 + t_new) / (10.0 + t_new))
    updates = [(a, d * a + (1.0 - d) * tparams[k]) for k, a in averages.items()]
    f_ema = pytensor.function([], [], updates=updates + [(t, t_new)],
                              name="f_ema", mode=mode)
    averages["ema_t"] = t
    return f_ema, averages
