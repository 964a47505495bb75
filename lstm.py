"""LSTM networks for sentiment analysis: the deeplearning.net tutorial in PyTensor.

A single-layer LSTM reads a review's word embeddings; its hidden states are
mean-pooled over the real (unmasked) time steps and a logistic-regression
(softmax) layer classifies the review. Training uses AdaDelta, RMSProp or SGD
with the tutorial's exact update rules, dropout on the pooled vector, and early
stopping on a validation split. ``python lstm.py`` does what the tutorial's
``__main__`` did; ``python lstm.py --help`` lists every option.

This file reads like the tutorial's, in its order: helpers, parameters, the
LSTM layer, the model, the optimizers, prediction, ``train_lstm``. What the
tutorial did not have (the model's variants, Adam, checkpoints, the command
line, ``predict``, ``evaluate`` and ``inspect``) lives in the package ``sentiment/``.

Axes: a minibatch ``x`` is ``(n_timesteps, n_samples)`` (time first), as the
tutorial's ``prepare_data`` returns it.
"""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: float32, CVM, OpenBLAS)

import dataclasses
import functools
import json
import os
import sys
from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt
import pytensor.tensor.random as ptr
from pytensor import config

import imdb
import imdb_preprocess
from sentiment.model import cli, variants
from sentiment.kernels import device, embedding_rows, fused_graph, fused_lstm
from sentiment.data import digests, embeddings
from sentiment.commands import evaluate as evaluation, inspection, predict as prediction
from sentiment.model.config import ADAMW_DECAY, Config, checkpoint_path
from sentiment.common.errors import DataError, report
from sentiment.common.files import read_npz
from sentiment.model.modelfile import (dictionary_digest, load_options, load_params, params_digest,
                                 save_model)
from sentiment.model.optimizers import (adagrad, adam, clip_norm, nesterov, weight_average,
                                  zeros_like_params)
from sentiment.model.summary import model_summary, print_summary
from sentiment.model.training import StopRequest, Trainer, read_checkpoint


# ---------------------------------------------------------------------------
# Helpers.
# ---------------------------------------------------------------------------
def numpy_floatX(data):
    """``data`` as an array of ``config.floatX``."""
    return np.asarray(data, dtype=config.floatX)


def get_minibatches_idx(n, minibatch_size, shuffle=False, rng=None):
    """Split ``range(n)`` into minibatches, shuffled with ``rng`` if asked.

    Returns a list of ``(index, array_of_example_indices)``; the last
    minibatch holds what is left. A list (not the tutorial's ``zip``) so that
    it can be iterated more than once.
    """
    idx_list = np.arange(n, dtype="int64")
    if shuffle:
        rng.shuffle(idx_list)
    minibatches = [idx_list[start:start + minibatch_size]
                   for start in range(0, n, minibatch_size)]
    return list(enumerate(minibatches))


RNG_STREAMS = ("init", "split", "test_subset", "shuffle", "dropout")


def make_rngs(seed):
    """Independent ``numpy.random.Generator`` streams derived from one seed
    (the tutorial's ``SEED``), keyed by :data:`RNG_STREAMS`: a change in the
    number of parameters drawn never changes the data split or the order."""
    children = np.random.SeedSequence(seed).spawn(len(RNG_STREAMS))
    return {name: np.random.default_rng(child)
            for name, child in zip(RNG_STREAMS, children)}


def zipp(params, tparams):
    """Copy NumPy ``params`` into the shared variables ``tparams``."""
    for kk, vv in params.items():
        tparams[kk].set_value(vv)


def unzip(zipped):
    """The current values of shared variables, as NumPy arrays (also those a
    JAX function left on its device)."""
    return OrderedDict((kk, np.asarray(vv.get_value())) for kk, vv in zipped.items())


def _p(pp, name):
    return "%s_%s" % (pp, name)


def init_tparams(params):
    """PyTensor shared variables holding a copy of each parameter."""
    return OrderedDict((k, pytensor.shared(v, name=k)) for k, v in params.items())


# ---------------------------------------------------------------------------
# Parameters.
# ---------------------------------------------------------------------------
def ortho_weight(ndim, rng):
    """A random ``(ndim, ndim)`` orthogonal matrix (left singular vectors)."""
    W = rng.standard_normal((ndim, ndim))
    u, s, v = np.linalg.svd(W)
    return u.astype(config.floatX)


def ortho_block(n_in, n_out, rng):
    """``ortho_weight(n_in)`` when square, else a random ``(n_in, n_out)``
    matrix with orthonormal rows or columns (``u @ vt`` of its SVD)."""
    if n_in == n_out:
        return ortho_weight(n_in, rng)
    u, s, vt = np.linalg.svd(rng.standard_normal((n_in, n_out)), full_matrices=False)
    return (u @ vt).astype(config.floatX)


def param_init_lstm(options, params, rng, prefix="lstm", n_in=None):
    """LSTM parameters: four orthogonal blocks each, gate order i, f, o, c.

    ``lstm_W`` is ``(n_in, 4 dim_proj)`` (``n_in``: the input size, default
    ``dim_proj``), ``lstm_U`` is ``(dim_proj, 4 dim_proj)``, ``lstm_b`` zeros
    but ``forget_bias`` for the forget gate (Jozefowicz et al., 2015, and
    Keras's ``unit_forget_bias`` use 1).
    """
    dim = options.dim_proj
    n_in = n_in or dim
    params[_p(prefix, "W")] = np.concatenate(
        [ortho_block(n_in, dim, rng) for _ in range(4)], axis=1)
    params[_p(prefix, "U")] = np.concatenate(
        [ortho_weight(dim, rng) for _ in range(4)], axis=1)
    params[_p(prefix, "b")] = np.zeros((4 * dim,), dtype=config.floatX)
    params[_p(prefix, "b")][dim:2 * dim] = options.forget_bias  # gate order i, f, o, c
    return params


def init_params(options, rng):
    """All parameters as NumPy arrays, in the order they are drawn from ``rng``.

    ``Wemb`` ``(n_words, dim_emb)``; the LSTM's ``lstm_W``, ``lstm_U``,
    ``lstm_b``; the classifier ``U`` ``(dim_proj, ydim)`` and ``b``. The
    variants add theirs (see :mod:`sentiment.model.variants`): ``Wbigram`` (zeros),
    ``conv_W``/``conv_b``, one LSTM per layer and direction. With the
    tutorial's options the draws are the tutorial's.
    """
    params = OrderedDict()
    params["Wemb"] = (0.01 * rng.random((options.n_words, options.emb_dim))
                      ).astype(config.floatX)
    if options.bigram_buckets:  # zeros: draws nothing, so the other draws stay the same
        params["Wbigram"] = np.zeros((options.bigram_buckets, options.emb_dim), config.floatX)
    n_in = options.emb_dim
    if options.conv_filters:
        variants.param_init_conv(options, params, rng)
        n_in = options.conv_filters
    for layer in variants.lstm_prefixes(options):
        for prefix in layer:
            param_init_lstm(options, params, rng, prefix=prefix, n_in=n_in)
        n_in = options.dim_proj * len(layer)
    params["U"] = (0.01 * rng.standard_normal((variants.pooled_dim(options), options.ydim))
                   ).astype(config.floatX)
    params["b"] = np.zeros((options.ydim,), dtype=config.floatX)
    return params


# ---------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------
def lstm_layer(tparams, state_below, mask, dim_proj, prefix="lstm", impl="scan", gates=None):
    """The masked LSTM over a minibatch; returns all hidden states.

    ``impl="scan"`` is the tutorial's formulation, the reference: ``_step``
    is one time step, each of its lines one of the LSTM's equations.
    ``impl="fused"`` (what ``lstm.py`` trains with by default) computes the
    same function with the fused Ops of :mod:`sentiment.kernels.fused_lstm`, one pass
    over the sequence forward and one backward; the tests check its states
    and gradients against this ``scan`` and against NumPy.

    Parameters
    ----------
    state_below : tensor, ``(n_timesteps, n_samples, n_in)``
        The word embeddings.
    mask : tensor, ``(n_timesteps, n_samples)``
        1 for a real token, 0 for padding. On a padded step the cell and
        hidden states are carried over unchanged.
    gates : dict, optional
        ``impl="scan"`` only: receives the input projection ``xw`` (``x W +
        b``, ``(n_timesteps, n_samples, 4 dim_proj)``), the gates ``i``,
        ``f``, ``o``, the cell state ``c`` and the hidden state ``h`` of
        every step, each ``(n_timesteps, n_samples, dim_proj)`` (what
        ``lstm.py inspect`` draws).

    Returns
    -------
    tensor, ``(n_timesteps, n_samples, dim_proj)``
    """
    n_samples = state_below.shape[1]
    U = tparams[_p(prefix, "U")]

    def _slice(_x, n, dim):
        return _x[:, n * dim:(n + 1) * dim]

    # start-snippet-1
    def _step(m_, x_, h_, c_, U):
        # m_: (n_samples,), x_ = x_t W + b: (n_samples, 4 dim), h_, c_: (n_samples, dim)
        preact = pt.dot(h_, U) + x_                      # z_t = x_t W + h_{t-1} U + b
        i = pt.sigmoid(_slice(preact, 0, dim_proj))      # i_t = sigmoid(z_t[i])
        f = pt.sigmoid(_slice(preact, 1, dim_proj))      # f_t = sigmoid(z_t[f])
        o = pt.sigmoid(_slice(preact, 2, dim_proj))      # o_t = sigmoid(z_t[o])
        c = pt.tanh(_slice(preact, 3, dim_proj))         # C~_t = tanh(z_t[c])

        c = f * c_ + i * c                               # C_t = i_t C~_t + f_t C_{t-1}
        c = m_[:, None] * c + (1.0 - m_)[:, None] * c_   # padding: C_t = C_{t-1}

        h = o * pt.tanh(c)                               # h_t = o_t tanh(C_t)
        h = m_[:, None] * h + (1.0 - m_)[:, None] * h_   # padding: h_t = h_{t-1}
        return h, c, i, f, o
    # end-snippet-1

    W, b = tparams[_p(prefix, "W")], tparams[_p(prefix, "b")]
    if impl == "fused":  # the projection below is done inside, in step with the recurrence
        return fused_lstm.lstm(state_below, mask, W, U, b)
    # start-snippet-2
    # The input projection of all steps at once: x_t W + b (h_{t-1} U is added per step).
    state_below = pt.dot(state_below, W) + b
    zeros = pt.zeros((n_samples, dim_proj), dtype=config.floatX)
    h, c, i, f, o = pytensor.scan(_step,
                                  sequences=[mask, state_below],
                                  outputs_info=[zeros, zeros, None, None, None],
                                  non_sequences=[U],  # U, or U with DropConnect's mask
                                  name=_p(prefix, "layers"),
                                  return_updates=False)
    # end-snippet-2
    if gates is not None:
        gates.update(xw=state_below, i=i, f=f, o=o, c=c, h=h)
    return h


def mean_pool(h, mask, impl="scan"):
    """Mean of ``h (n_timesteps, n_samples, dim)`` over the unmasked steps.
    ``impl="fused"``: the same arithmetic in one Op (``fused_lstm.MaskedMean``)."""
    if impl == "fused":
        return fused_lstm.masked_mean(h, mask)
    return (h * mask[:, :, None]).sum(axis=0) / mask.sum(axis=0)[:, None]


def encode_reviews(tparams, options, x, mask, word_keep=None, taps=None, emb_noise=None):
    """The model up to the pooled vector, one per review: ``(n_samples, pooled_dim)``.

    The tutorial's path is ``Wemb[x]`` -> :func:`lstm_layer` -> :func:`mean_pool`.
    The variants (:mod:`sentiment.model.variants`) add hashed bigram embeddings, a
    convolution, stacked and bidirectional layers (the backward LSTM reads
    the time-flipped sequence; its states are flipped back and concatenated),
    other poolings and a bag of embeddings. ``word_keep`` (``(n_timesteps,
    n_samples)``, 0/1), when given, zeroes the dropped tokens' embeddings;
    ``emb_noise`` (``(n_timesteps, n_samples, emb_dim)``) is added to the
    embeddings first (adversarial training). A dict
    ``taps`` receives the ``states`` before pooling, the embeddings ``emb`` and,
    with ``lstm_impl="scan"``, ``gates``: per LSTM (by prefix) what
    :func:`lstm_layer` gives its ``gates`` (a backward LSTM's in the reversed
    time order it reads).
    """
    n_timesteps, n_samples = x.shape[0], x.shape[1]
    impl = options.lstm_impl
    lookup = fused_lstm.embedding if impl == "fused" else (
        lambda W, idx: W[idx])  # fused: the same lookup, with a faster gradient
    emb = lookup(tparams["Wemb"], x.flatten())
    if options.bigram_buckets:
        ids = variants.bigram_ids(x, mask, options.n_words, options.bigram_buckets)
        emb = emb + lookup(tparams["Wbigram"], ids.flatten())
    emb = h = emb.reshape([n_timesteps, n_samples, options.emb_dim])
    if emb_noise is not None:
        h = h + emb_noise
    if word_keep is not None:
        h = h * word_keep[:, :, None]
    bag = [variants.bag_of_embeddings(h, mask, word_keep)] if options.pool_embeddings else []
    if options.conv_filters:
        h, mask = variants.conv_pool(tparams, h, mask, options.conv_width, options.pool,
                                     dot=fused_lstm.dot if impl == "fused" else pt.dot)
    gates = taps.setdefault("gates", {}) if taps is not None else {}
    for layer in variants.lstm_prefixes(options):
        states = [lstm_layer(tparams, h, mask, options.dim_proj, prefix=layer[0], impl=impl,
                             gates=gates.setdefault(layer[0], {}))]
        if options.bidirectional:
            states.append(lstm_layer(tparams, h[::-1], mask[::-1], options.dim_proj,
                                     prefix=layer[1], impl=impl,
                                     gates=gates.setdefault(layer[1], {}))[::-1])
        h = pt.concatenate(states, axis=2) if len(states) > 1 else states[0]
    # Each direction of the last layer pooled on its own, then joined: the
    # values of pooling h (every unit's sum is its own), without copying
    # every state into h first.
    pooled = ([variants.joined([mean_pool(s, mask, impl) for s in states])]
              if options.pooling in ("mean", "meanmax") else [])
    pooled += variants.other_pooling(states, mask, options) + bag
    proj = variants.joined(pooled)
    if taps is not None:  # what sentiment.explain.scores splits a prediction over
        taps.update(states=h, emb=emb, proj=proj)
    return proj


def build_model(tparams, options, dropout_rng=None, taps=None):
    """The symbolic model.

    Parameters
    ----------
    tparams : OrderedDict of shared variables
    options : Config
    dropout_rng : numpy.random.Generator, optional
        State of the dropout stream; needed when ``options.use_dropout``.
    taps : dict, optional
        Receives the test-time path's tensors (:func:`encode_reviews`'s ``taps``).

    Returns
    -------
    dict
        ``x`` (int64, ``(n_timesteps, n_samples)``), ``mask``, ``y``;
        ``pred`` (test-time class probabilities, dropout scaled by 0.5);
        ``cost`` (training cost, with dropout noise); ``updates`` (the
        dropout RNG update, to pass to the function computing ``cost``);
        ``rng`` (the RNG shared variable, or None); ``noise`` (the random
        draws of ``cost``, in the order drawn: ``word_keep``, each
        ``u_keep_<prefix>``, ``keep``, ``adv_random``).
    """
    x = pt.matrix("x", dtype="int64")
    mask = pt.matrix("mask", dtype=config.floatX)
    y = pt.vector("y", dtype="int64")
    proj = encode_reviews(tparams, options, x, mask, taps=taps)

    # fused: the product with the kernel of the fused Ops (the same sums on every CPU)
    dot = fused_lstm.dot if options.lstm_impl == "fused" else pt.dot

    def classify(p):
        return pt.special.softmax(dot(p, tparams["U"]) + tparams["b"], axis=-1)

    updates, noise = OrderedDict(), OrderedDict()
    rng = next_rng = None
    if (options.use_dropout or options.word_dropout or options.u_dropout
            or options.adv_direction == "random"):
        rng = next_rng = ptr.shared_rng(dropout_rng, name="dropout_rng")
    next_rng, train_tparams, word_keep = input_noise(tparams, options, x, next_rng, noise)
    train_taps, train_proj = {}, proj
    if options.word_dropout or options.u_dropout or options.adv_eps:
        train_proj = encode_reviews(train_tparams, options, x, mask, word_keep, train_taps)
    off = 1e-6 if proj.dtype == "float16" else 1e-8
    if options.use_dropout:
        # Training: keep each unit with probability 0.5; test: scale by 0.5.
        next_rng, keep = next_rng.binomial(1, 0.5, size=train_proj.shape)
        noise["keep"] = keep

        def train_cost(p):
            return nll(classify(p * keep.astype(config.floatX)), y, off)
        pred = classify(proj * numpy_floatX(0.5))
    else:
        def train_cost(p):
            return nll(classify(p), y, off)
        pred = classify(proj)

    cost = train_cost(train_proj)
    if options.adv_eps:
        # Miyato et al. (2017): the same reviews again, each one's embeddings moved
        # by adv_eps (L2 over the review) along the gradient of the loss, held fixed.
        next_rng, r = variants.adversarial_move(cost, train_taps["emb"], mask, word_keep,
                                                options, next_rng, noise)
        cost = cost + train_cost(encode_reviews(train_tparams, options, x, mask, word_keep,
                                                emb_noise=r))
    if rng is not None:
        updates[rng] = next_rng
    if options.decay_c > 0.0:
        decay_c = pytensor.shared(numpy_floatX(options.decay_c), name="decay_c")
        cost = cost + decay_c * (tparams["U"] ** 2).sum()
    cost.name = "cost"
    pred.name = "pred"
    return dict(x=x, mask=mask, y=y, pred=pred, cost=cost, updates=updates,
                rng=rng, noise=noise)


def input_noise(tparams, options, x, rng, noise):
    """Training's draws before the LSTM, added to ``noise``: word dropout's keep
    (each token's embedding zeroed with probability ``word_dropout``; at test
    time every token is read, unscaled), then DropConnect's masks on ``U``.
    Returns ``(rng, tparams, word_keep)``: the next RNG, the parameters training
    reads (``U`` dropped) and the float keep (or None)."""
    word_keep = None
    if options.word_dropout:
        rng, keep_words = rng.binomial(1, 1.0 - options.word_dropout, size=x.shape)
        noise["word_keep"] = keep_words
        word_keep = keep_words.astype(config.floatX)
    if options.u_dropout:
        rng, tparams = variants.drop_connect(tparams, options, rng, noise)
    return rng, tparams, word_keep


def nll(probs, y, off=1e-8):
    """The mean negative log-likelihood of the labels ``y`` under ``probs``."""
    return -pt.log(probs[pt.arange(y.shape[0]), y] + off).mean()


# ---------------------------------------------------------------------------
# Optimizers: the tutorial's rules, split into f_grad_shared and f_update.
# ---------------------------------------------------------------------------
def sgd(lr, tparams, grads, inputs, cost, updates=(), mode=None, fused=False):
    """Stochastic gradient descent: ``p <- p - lr * g``.

    Parameters
    ----------
    lr : scalar tensor
        The learning rate, an input of ``f_update``.
    tparams : OrderedDict of shared variables
    grads : list of tensors
        Gradients of ``cost`` with respect to ``tparams.values()``.
    inputs : list of tensors
        ``[x, mask, y]``.
    cost : tensor
    updates : sequence of pairs
        Extra updates for ``f_grad_shared`` (the dropout RNG).
    mode : str or Mode, optional
        PyTensor compile mode.
    fused : bool
        AdaDelta and RMSProp: compute the rule written below in one fused
        pass per parameter (``fused_lstm.FusedStep``; what ``--lstm-impl
        fused``, the default, runs). SGD's step is one operation already.

    Returns
    -------
    f_grad_shared : function
        ``f_grad_shared(x, mask, y) -> cost``; stores the gradients.
    f_update : function
        ``f_update(lr)``; applies the stored gradients.
    state : list of shared variables
        The optimizer's own state (stored gradients, accumulators).
    """
    gshared = zeros_like_params(tparams, "grad")
    gsup = [(gs, g) for gs, g in zip(gshared, grads)]
    f_grad_shared = pytensor.function(inputs, cost, updates=list(updates) + gsup,
                                      name="sgd_f_grad_shared", mode=mode)
    pup = [(p, p - lr * g) for p, g in zip(tparams.values(), gshared)]
    f_update = pytensor.function([lr], [], updates=pup, name="sgd_f_update",
                                 mode=mode)
    return f_grad_shared, f_update, gshared


def running_average(avg, g, square=False, fused=False):
    """The tutorial's running average ``0.95 * avg + 0.05 * g`` (``g ** 2``
    with ``square``); ``fused`` (float32): the same bits, in threads
    (:class:`sentiment.kernels.fused_lstm.RunningAverage`)."""
    if fused and avg.dtype == "float32":
        return fused_lstm.RunningAverage(square)(avg, g)
    return 0.95 * avg + 0.05 * (g ** 2 if square else g)


def adadelta(lr, tparams, grads, inputs, cost, updates=(), mode=None, fused=False,
             step=1.0, by_rows=None):
    """AdaDelta [ADADELTA]_ with the tutorial's constants (rho 0.95, eps 1e-6).

    ``lr`` is accepted and ignored, as in the tutorial. ``step`` scales the
    parameter step (not the running average of the steps), as the learning
    rate of ``torch.optim.Adadelta``; the tutorial's rule is ``step=1``
    (``--adaptive-lrate``). ``by_rows`` (default: ``fused``): the embedding's
    rule row by row, the same bits (:mod:`sentiment.kernels.embedding_rows`).
    Parameters and returns as :func:`sgd`.

    References
    ----------
    .. [ADADELTA] Matthew D. Zeiler, *ADADELTA: An Adaptive Learning Rate
       Method*, arXiv:1212.5701, 2012.
    """
    zipped_grads = zeros_like_params(tparams, "grad")
    running_up2 = zeros_like_params(tparams, "rup2")
    running_grads2 = zeros_like_params(tparams, "rgrad2")
    # Wemb's state row by row, where only the rows of a batch's words change;
    # the rule's bits (sentiment.kernels.embedding_rows).
    rows = embedding_rows.Embeddings(list(tparams.values()), grads, zipped_grads, running_up2,
                                     running_grads2, step,
                                     on=fused if by_rows is None else by_rows)

    zgup = [(zg, g) for zg, g in zip(zipped_grads, grads)]
    rg2up = [(rg2, running_average(rg2, g, square=True, fused=fused))
             for rg2, g in zip(running_grads2, grads)]
    f_grad_shared = pytensor.function(inputs, cost,
                                      updates=rows.grad_updates(list(updates) + zgup + rg2up),
                                      name="adadelta_f_grad_shared", mode=mode)

    if fused:  # the same rule, dx, E[dx^2] and p in one pass per parameter
        fused_step = fused_lstm.FusedStep("adadelta", step)
        news = [fused_step(p, zg, ru2, rg2) for p, zg, ru2, rg2
                in zip(tparams.values(), zipped_grads, running_up2, running_grads2)]
        ru2up = [(ru2, new[1]) for ru2, new in zip(running_up2, news)]
        param_up = [(p, new[0]) for p, new in zip(tparams.values(), news)]
    else:
        updir = [-pt.sqrt(ru2 + 1e-6) / pt.sqrt(rg2 + 1e-6) * zg
                 for zg, ru2, rg2 in zip(zipped_grads, running_up2, running_grads2)]
        ru2up = [(ru2, 0.95 * ru2 + 0.05 * (ud ** 2))
                 for ru2, ud in zip(running_up2, updir)]
        param_up = [(p, p + step * ud) for p, ud in zip(tparams.values(), updir)]
    f_update = pytensor.function([lr], [], updates=rows.step_updates(ru2up + param_up),
                                 on_unused_input="ignore",
                                 name="adadelta_f_update", mode=mode)
    return f_grad_shared, f_update, zipped_grads + running_up2 + running_grads2


def rmsprop(lr, tparams, grads, inputs, cost, updates=(), mode=None, fused=False,
            step=1e-4):
    """RMSProp [Hint2014]_ in the tutorial's form (Graves' variant [Graves2013]_,
    with momentum 0.9 and a fixed ``step``, the tutorial's 1e-4 unless
    ``--adaptive-lrate`` sets it; ``lr`` is ignored, as in the tutorial).
    Parameters and returns as :func:`sgd`.

    References
    ----------
    .. [Hint2014] Geoff Hinton, *Neural Networks for Machine Learning*,
       lecture 6a, 2012.
    .. [Graves2013] Alex Graves, *Generating Sequences With Recurrent Neural
       Networks*, arXiv:1308.0850, 2013, eq. 38-41.
    """
    zipped_grads = zeros_like_params(tparams, "grad")
    running_grads = zeros_like_params(tparams, "rgrad")
    running_grads2 = zeros_like_params(tparams, "rgrad2")

    zgup = [(zg, g) for zg, g in zip(zipped_grads, grads)]
    rgup = [(rg, running_average(rg, g, fused=fused))
            for rg, g in zip(running_grads, grads)]
    rg2up = [(rg2, running_average(rg2, g, square=True, fused=fused))
             for rg2, g in zip(running_grads2, grads)]
    f_grad_shared = pytensor.function(inputs, cost,
                                      updates=list(updates) + zgup + rgup + rg2up,
                                      name="rmsprop_f_grad_shared", mode=mode)

    updir = zeros_like_params(tparams, "updir")
    if fused:  # the same rule, d and p in one pass per parameter
        fused_step = fused_lstm.FusedStep("rmsprop", step)
        news = [fused_step(p, zg, rg, rg2, ud) for p, zg, rg, rg2, ud
                in zip(tparams.values(), zipped_grads, running_grads, running_grads2, updir)]
        updir_new = [(ud, new[1]) for ud, new in zip(updir, news)]
        param_up = [(p, new[0]) for p, new in zip(tparams.values(), news)]
    else:
        updir_new = [(ud, 0.9 * ud - step * zg / pt.sqrt(rg2 - rg ** 2 + 1e-4))
                     for ud, zg, rg, rg2 in zip(updir, zipped_grads, running_grads,
                                                running_grads2)]
        param_up = [(p, p + udn[1]) for p, udn in zip(tparams.values(), updir_new)]
    f_update = pytensor.function([lr], [], updates=updir_new + param_up,
                                 on_unused_input="ignore",
                                 name="rmsprop_f_update", mode=mode)
    return (f_grad_shared, f_update,
            zipped_grads + running_grads + running_grads2 + updir)


def optimizer_rule(options):
    """The update rule ``options.optimizer`` names, with its settings bound:
    a function with :func:`sgd`'s parameters and returns."""
    fused = options.lstm_impl == "fused"
    if options.optimizer == "adadelta":  # (by_rows: CPU Ops, with no JAX function)
        return functools.partial(adadelta, fused=fused, step=options.optimizer_lrate(),
                                 by_rows=fused and options.device != "gpu")
    if options.optimizer == "rmsprop":
        return functools.partial(rmsprop, fused=fused, step=options.optimizer_lrate())
    if options.optimizer in ("adam", "adamw"):
        decay = options.weight_decay or (ADAMW_DECAY if options.optimizer == "adamw" else 0.0)
        return functools.partial(adam, weight_decay=decay)
    return {"sgd": sgd, "nesterov": nesterov, "adagrad": adagrad}[options.optimizer]


def compile_model(options, params, dropout_rng=None):
    """Shared variables and compiled functions for ``params``.

    Returns a dict with ``tparams``, ``f_pred_prob(x, mask)``,
    ``f_grad_shared(x, mask, y)``, ``f_update(lr)``, ``f_ema()`` (or None),
    ``f_pred_error(splits)`` (:func:`evaluate`), ``get_params()`` /
    ``set_params(params)`` (:func:`unzip` / :func:`zipp`), ``optimizer_state``
    and ``rng``: what :class:`sentiment.model.training.Trainer` runs. With
    ``options.device == "gpu"`` the functions are compiled by PyTensor's JAX
    backend and take and return NumPy arrays (:mod:`sentiment.kernels.device`).
    """
    mode = device.compile_mode(options)
    tparams = init_tparams(params)
    model = build_model(tparams, options, dropout_rng)
    noise = device.HostNoise(model, options)  # gpu: the dropout draws become inputs
    inputs = [model["x"], model["mask"], model["y"]] + noise.inputs
    f_pred_prob = pytensor.function(inputs[:2], model["pred"], name="f_pred_prob", mode=mode)
    if options.device == "gpu":
        f_pred_prob = device.host_function(f_pred_prob)
    trainable = variants.trainable_params(tparams, options)
    grads = clip_norm(pytensor.grad(model["cost"], wrt=list(trainable.values())),
                      options.clip_c)
    lr = pt.scalar(name="lr", dtype=config.floatX)
    optimizer = optimizer_rule(options)
    f_grad_shared, f_update, state = optimizer(
        lr, trainable, grads, inputs, model["cost"], updates=model["updates"].items(),
        mode=mode)
    f_ema, averages = weight_average(tparams, options.ema, mode)
    return dict(tparams=tparams, f_pred_prob=f_pred_prob,
                f_grad_shared=noise.wrap(f_grad_shared), f_update=f_update, f_ema=f_ema,
                f_pred_error=functools.partial(evaluate_splits, f_pred_prob, options),
                get_params=functools.partial(unzip, tparams),
                set_params=functools.partial(zipp, tparams=tparams),
                ema=averages, optimizer_state=state + list(averages.values()),
                rng=model["rng"])


# ---------------------------------------------------------------------------
# Prediction and errors.
# ---------------------------------------------------------------------------
def pred_probs(f_pred_prob, prepare_data, data, iterator, verbose=False):
    """Class probabilities ``(n_samples, ydim)`` of every example of ``data``."""
    probs = None
    n_done = 0
    labels = np.asarray(data[1])
    for _, index in iterator:
        x, mask, _ = prepare_data([data[0][t] for t in index], labels[index], maxlen=None)
        batch = f_pred_prob(x, mask)
        if probs is None:
            probs = np.zeros((len(data[0]), batch.shape[1]), dtype=config.floatX)
        probs[index, :] = batch
        n_done += len(index)
        if verbose:
            print("%d/%d samples classified" % (n_done, len(data[0])))
    return probs


def pred_error(f_pred_prob, prepare_data, data, iterator):
    """Share of misclassified examples of ``data`` (``1 - accuracy``)."""
    if len(data[0]) == 0:
        return float("nan")
    preds = pred_probs(f_pred_prob, prepare_data, data, iterator).argmax(axis=1)
    return float(1.0 - np.mean(preds == np.asarray(data[1])))


def evaluate_splits(f_pred_prob, options, splits):
    """Error of each split in ``splits`` (a dict name -> (x, y)), in minibatches
    of ``options.valid_batch_size`` made as in training."""
    prepare_data = variants.batcher(options)
    return {name: pred_error(f_pred_prob, prepare_data, data,
                             get_minibatches_idx(len(data[0]), options.valid_batch_size))
            for name, data in splits.items()}


# ---------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------
def load_splits(options, rngs, source=None, out=None):
    """Train, valid and test splits as the tutorial loads them.

    A missing ``imdb.pkl`` is built first (``imdb_preprocess.ensure_dataset``),
    from ``source`` if given; another missing dataset is an error.
    """
    path = options.dataset
    if os.path.basename(path) == "imdb.pkl":  # the tutorial's corpus: build it if missing
        imdb_preprocess.ensure_dataset(path, source=source)
    elif not os.path.exists(path):
        raise DataError("%s: no such dataset file (make one with imdb_preprocess.py)" % path)
    print("Loading data", file=out or sys.stdout)
    train, valid, test = imdb.load_data(
        path=path, n_words=options.n_words, valid_portion=options.valid_portion,
        maxlen=options.maxlen or None, sort_by_len=options.sort_by_len,
        seed=rngs["split"], valid_block=options.valid_block)
    if options.test_size > 0:
        # The test set is sorted by length: keep a random selection.
        idx = rngs["test_subset"].permutation(len(test[0]))[:options.test_size]
        test = ([test[0][n] for n in idx], [test[1][n] for n in idx])
    if not valid[0]:
        raise DataError("%s: the validation split is empty (valid_portion=%g of %d reviews)"
                        % (path, options.valid_portion, len(train[0])))
    return train, valid, test


def check_files(options, resume=None):
    """Fail at once, before the slow work, on a model or vectors file that is
    missing or unreadable (each error names the file given), or on ``--device
    gpu`` without JAX."""
    if options.reload_model and not resume:
        read_npz(options.reload_model, "model", keys=())  # readable: its index, no array
    if options.embeddings and not resume and not os.path.isfile(options.embeddings):
        raise DataError("%s: no such embeddings file" % options.embeddings)
    if options.device == "gpu":
        device.require_jax()  # else one line naming the install command


def model_params(options, data, rngs, resume, out):
    """The options completed from the data (``ydim``, ``dict_sha256``,
    ``dataset_sha256``) and the parameters training starts from: drawn, then
    pre-trained vectors and a reloaded model applied (not when resuming: the
    checkpoint has them)."""
    words = imdb.load_dict_beside(options.dataset,
                                  required=bool(options.embeddings) and not resume)
    options = dataclasses.replace(options, ydim=int(max(data[0][1])) + 1,
                                  dict_sha256=dictionary_digest(words, options.n_words)
                                  if words is not None else "",
                                  dataset_sha256=digests.file_sha256(options.dataset))
    print("model options", json.dumps(dataclasses.asdict(options), sort_keys=True), file=out)
    if options.pad_to and options.maxlen:
        print("note: --maxlen %d drops the training reviews of %d tokens or more before "
              "--pad-to %d applies (--maxlen 0 keeps them)"
              % (options.maxlen, options.maxlen, options.pad_to), file=out)
    print("Building model", file=out)
    params = init_params(options, rngs["init"])
    if options.embeddings and not resume:
        ids, vectors, info = embeddings.load_vectors(options.embeddings, words,
                                                     options.n_words, options.emb_dim)
        params["Wemb"] = embeddings.apply_vectors(params["Wemb"], ids, vectors)
        print(embeddings.describe(info, options.embeddings), file=out)
    if options.reload_model and not resume:
        load_params(options.reload_model, params)
    print(model_summary(options, params), file=out)
    return options, params


def train_lstm(options, source=None, out=None, callback=None, resume=None):
    """Train the model as the tutorial's ``train_lstm`` did.

    Parameters
    ----------
    options : Config
        When ``resume`` is given, the checkpoint's options are used, but for
        ``device`` (where the run goes on), taken from ``options`` if given.
    source : str, optional
        Raw corpus (aclImdb folder or archive) to build a missing dataset from.
    out : file, optional
        Where the tutorial's progress lines go (default: standard output).
    callback : callable, optional
        Called with each validation's record (the JSON log's line, a dict).
    resume : str, optional
        A checkpoint (``<model>.ckpt.npz``) to continue from, exactly.

    Returns
    -------
    dict
        ``train_err``, ``valid_err``, ``test_err`` of the best model,
        ``epochs``, ``updates``, ``seconds``, ``history_errs``, ``status``
        (``"ok"``, ``"interrupted"`` or ``"bad_cost"``), ``best_update`` (when
        the best model was taken; 0: before any validation), ``n_train`` and
        ``init_sha256`` and ``params_sha256`` (digests of the parameters training
        started from and ended with: :func:`sentiment.model.modelfile.params_digest`).
    """
    out = out or sys.stdout
    if resume:
        device_now = options.device if options is not None else None
        checkpoint, state, options = read_checkpoint(resume)
        options = dataclasses.replace(options, device=device_now or options.device)
    options.validate()
    check_files(options, resume)
    rngs = make_rngs(options.seed)
    data = load_splits(options, rngs, source, out)
    options, params = model_params(options, data, rngs, resume, out)
    init_sha256 = params_digest(params)
    model = compile_model(options, params, rngs["dropout"])
    trainer = Trainer(options, data, rngs, model, out, callback)
    if resume:
        trainer.restore(resume, checkpoint, state)
        print("Resuming from %s at update %d (epoch %d)" % (resume, trainer.uidx,
                                                             trainer.eidx), file=out)

    print("Optimization", file=out)
    for name, split in zip(("train", "valid", "test"), data):
        print("%d %s examples" % (len(split[0]), name), file=out)
    with StopRequest() as stop:
        status = trainer.run(stop)
    sizes = dict(n_train=len(data[0][0]), init_sha256=init_sha256)
    if status == "bad_cost" and trainer.best_p is None:
        return dict(status=status, train_err=1.0, valid_err=1.0, test_err=1.0,
                    epochs=trainer.eidx + 1, updates=trainer.uidx,
                    seconds=trainer.elapsed, history_errs=trainer.history_errs,
                    best_update=0, **sizes)
    if options.saveto and status == "interrupted":
        save_model(options.saveto, trainer.best_params(), trainer.history_errs, options)
        trainer.save_checkpoint(checkpoint_path(options.saveto))
        print("Best model so far saved to %s; continue with --resume %s"
              % (options.saveto, checkpoint_path(options.saveto)), file=out)
    errs = final_errors(trainer, model, data, out)
    sizes.update(n_valid=len(data[1][0]), n_test=len(data[2][0]))
    return dict(status="ok" if status in ("ok", "early_stop") else status,
                train_err=errs["train"], valid_err=errs["valid"], test_err=errs["test"],
                epochs=trainer.eidx + 1, updates=trainer.uidx, seconds=trainer.elapsed,
                history_errs=trainer.history_errs, best_update=trainer.best_update,
                params_sha256=errs["params_sha256"], **sizes)


def final_errors(trainer, model, data, out):
    """The best parameters' errors on the three splits, printed and saved with
    the model, as at the end of the tutorial's ``train_lstm``."""
    options = trainer.options
    best_p = trainer.best_params()
    zipp(best_p, model["tparams"])
    errs = model["f_pred_error"](dict(zip(("train", "valid", "test"), data)))
    print("Train ", errs["train"], "Valid ", errs["valid"], "Test ", errs["test"], file=out)
    if options.saveto:
        save_model(options.saveto, best_p, trainer.history_errs, options,
                   train_err=errs["train"], valid_err=errs["valid"], test_err=errs["test"])
    epochs = trainer.eidx + 1
    print("The code run for %d epochs, with %f sec/epochs"
          % (epochs, trainer.elapsed / max(epochs, 1)), file=out)
    errs["params_sha256"] = params_digest(best_p)
    print("Parameter digest (SHA-256) %s" % errs["params_sha256"], file=out)
    print("Training took %.1fs" % trainer.elapsed, file=sys.stderr)
    return errs


# ---------------------------------------------------------------------------
# A saved model: prediction on raw text (lstm.py predict), evaluation
# (lstm.py evaluate) and its gates on a review (lstm.py inspect), in
# sentiment.commands.predict, sentiment.commands.evaluate and sentiment.commands.inspection.
# ---------------------------------------------------------------------------
def saved_model(model, options=None):
    """A saved model's options (from the JSON beside ``model`` unless given) and
    parameters, which must fit them (else a one-line :class:`DataError`)."""
    options = options or load_options(model)
    if not options.ydim:
        raise DataError("%s: its options have no ydim (not saved by training)" % model)
    options = dataclasses.replace(options, lstm_impl="fused")
    return options, load_params(model, init_params(options, make_rngs(0)["init"]))


def load_model(model, options=None):
    """A saved model (:func:`saved_model`): ``(options, f_pred_prob, classify)``.
    ``f_pred_prob(x, mask)`` is the compiled model; ``classify(seqs,
    batch_size=None)`` gives the class probabilities ``(len(seqs), ydim)`` of
    word-id sequences, in minibatches made as in training, of ``batch_size``
    reviews (default: the model's ``valid_batch_size``; any size gives the
    same bits, each review's arithmetic being its own)."""
    options, params = saved_model(model, options)
    built = build_model(init_tparams(params), options, np.random.default_rng(0))
    f_pred_prob = pytensor.function([built["x"], built["mask"]], built["pred"], name="f_pred_prob",
                                    mode=fused_graph.compile_mode(options.mode))
    prepare_data = variants.batcher(options)

    def classify(seqs, batch_size=None):
        return pred_probs(f_pred_prob, prepare_data, (seqs, [0] * len(seqs)),
                          get_minibatches_idx(len(seqs), batch_size or options.valid_batch_size))
    return options, f_pred_prob, classify


def load_states(model, options):
    """A saved model's ``(options, params, states)``: ``states(x, mask)`` gives the
    hidden states before pooling and the embeddings (``encode_reviews``'s taps)."""
    options, params = saved_model(model, options)
    x, mask, taps = pt.matrix("x", dtype="int64"), pt.matrix("mask", dtype=config.floatX), {}
    encode_reviews(init_tparams(params), options, x, mask, taps=taps)
    return options, params, pytensor.function([x, mask], [taps["states"], taps["emb"]],
                                              mode=fused_graph.compile_mode(options.mode),
                                              on_unused_input="ignore", name="f_states")


def load_gates(model, options=None):
    """A saved model compiled with ``--lstm-impl scan``, ``_step`` as written:
    ``(options, params, f_gates)``. ``f_gates(x, mask)`` gives, in the order
    the model computes them, ``(name, array)`` pairs: the embeddings ``emb``;
    for each LSTM (by prefix, a backward one flipped back into the review's
    order) ``<prefix>.xw`` and its gates ``<prefix>.i``, ``.f``, ``.o``,
    ``.c``, ``.h`` (:func:`lstm_layer`'s ``gates``); the pooled vector
    ``proj`` and the test-time class probabilities ``pred`` (``lstm.py inspect``)."""
    options, params = saved_model(model, options)
    options = dataclasses.replace(options, lstm_impl="scan")
    taps = {}
    built = build_model(init_tparams(params), options, np.random.default_rng(0), taps)
    names, outputs = ["emb"], [taps["emb"]]
    for layer in variants.lstm_prefixes(options):
        for direction, prefix in enumerate(layer):
            for key in ("xw", "i", "f", "o", "c", "h"):
                names.append("%s.%s" % (prefix, key))
                outputs.append(taps["gates"][prefix][key][::-1] if direction
                               else taps["gates"][prefix][key])
    f = pytensor.function([built["x"], built["mask"]], outputs + [taps["proj"], built["pred"]],
                          name="f_gates",
                          mode=fused_graph.compile_mode(options.mode), on_unused_input="ignore")

    def f_gates(x_value, mask_value):
        return list(zip(names + ["proj", "pred"], f(x_value, mask_value)))
    return options, params, f_gates


def predict(texts, model="lstm_model.npz", dictionary=None):
    """Classify raw texts with a saved model: one dict per text (``label``,
    ``name``, ``probability``, ``probs``; see :class:`sentiment.commands.predict.Predictor`,
    which keeps the model loaded for many calls)."""
    return prediction.Predictor(model, load_model, dictionary).predict(list(texts))


def explain(texts, model="lstm_model.npz", dictionary=None, label=None):
    """Which words moved each prediction, and by how much: one dict per text
    (:meth:`sentiment.explain.scores.Explainer.explain`)."""
    return prediction.Predictor(model, load_model, dictionary).explainer(
        model, load_states).explain(list(texts), label)


def inspector(model="lstm_model.npz", dictionary=None):
    """A saved model opened on reviews: every gate and state, the tensors' shapes,
    the words that moved a prediction, and their figure
    (:class:`sentiment.commands.inspection.Inspector`, ``lstm.py inspect``)."""
    return inspection.Inspector(model, load_model, load_states, load_gates, dictionary)


def evaluate_model(model, dataset=None, split="test", batch_size=None):
    """Accuracy, confusion matrix and accuracy by review length of a saved model
    (or of a list of models, an ensemble): :func:`sentiment.commands.evaluate.evaluate_model`."""
    return evaluation.evaluate_model(model, load_model, dataset, split, batch_size)


def main(argv=None):
    """``python lstm.py [predict|evaluate|inspect] ...``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["predict"]:
        return prediction.main(argv[1:], load_model, load_states)
    if argv[:1] == ["evaluate"]:
        return evaluation.main(argv[1:], load_model, load_states)
    if argv[:1] == ["inspect"]:
        return inspection.main(argv[1:], load_model, load_states, load_gates)
    try:
        parser, args = cli.parse_options(argv)
    except DataError as exc:
        return report("lstm.py", exc)
    values = vars(args)
    debug, source, resume, summary = (values.pop(k) for k in ("debug", "source", "resume",
                                                              "summary"))
    for key in ("preset", "config"):
        values.pop(key)
    try:
        options = Config.from_dict(values).validate()
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if summary:  # the parameters as training would draw them
            print_summary(options, lambda o: init_params(o, make_rngs(o.seed)["init"]))
            return 0
        result = train_lstm(options, source=source, resume=resume)
    except DataError as exc:
        if debug:
            raise
        return report("lstm.py", exc)
    return {"ok": 0, "interrupted": 130}.get(result["status"], 1)


if __name__ == "__main__":
    sys.exit(main())
