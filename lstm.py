"""LSTM networks for sentiment analysis: the deeplearning.net tutorial in PyTensor.

A single-layer LSTM reads a review's word embeddings; its hidden states are
mean-pooled over the real (unmasked) time steps and a logistic-regression
(softmax) layer classifies the review. Training uses AdaDelta, RMSProp or SGD
with the tutorial's exact update rules, dropout on the pooled vector, and early
stopping on a validation split. ``python lstm.py`` does what the tutorial's
``__main__`` did; ``python lstm.py --help`` lists every option.

Axes: a minibatch ``x`` is ``(n_timesteps, n_samples)`` (time first), as the
tutorial's ``prepare_data`` returns it.
"""
import argparse
import dataclasses
import hashlib
import json
import lzma
import os
import signal
import sys
import time
import zipfile
import zlib
from collections import OrderedDict
from ctypes.util import find_library


def _configure_pytensor():
    """Default PyTensor flags for this project, before PyTensor is imported.

    float32 (the tutorial's precision), the C backend (``mode=CVM``: see the
    README's "Compile mode" for the measurements behind this choice) and, for
    it, the system OpenBLAS when there is one: a pip-installed PyTensor does
    not find it by itself and falls back to a much slower GEMM. Flags the user
    set in ``PYTENSOR_FLAGS`` win.
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    given = {item.split("=")[0].strip() for item in flags.split(",") if "=" in item}
    defaults = {"floatX": "float32", "mode": "CVM"}
    if find_library("openblas"):
        defaults["blas__ldflags"] = "-lopenblas"
    extra = ["%s=%s" % kv for kv in defaults.items() if kv[0] not in given]
    if extra:
        os.environ["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags] + extra))


_configure_pytensor()

import numpy as np  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
import pytensor.tensor.random as ptr  # noqa: E402
from pytensor import config  # noqa: E402

import fused_lstm  # noqa: E402
import imdb  # noqa: E402
from imdb import DataError, atomic_write  # noqa: E402,F401 (atomic_write: part of the API)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATASET = os.path.join("data", "imdb.pkl")
OPTIMIZERS = ("adadelta", "rmsprop", "sgd")
LSTM_IMPLS = ("fused", "scan")


# ---------------------------------------------------------------------------
# Configuration: every default in one place.
# ---------------------------------------------------------------------------
@dataclasses.dataclass
class Config:
    """Options of one training run (the tutorial's ``train_lstm`` arguments).

    The defaults are what the tutorial's ``python lstm.py`` ran:
    ``train_lstm(max_epochs=100, test_size=500)`` with every other default.
    Names are the tutorial's (``validFreq``, ``dim_proj``, ...). The options
    are saved as JSON beside each model; unknown keys are rejected.
    """

    dim_proj: int = 128  # word embedding dimension and LSTM hidden units
    patience: int = 10  # validations without progress before early stop
    max_epochs: int = 100  # the tutorial's __main__ (train_lstm: 5000)
    dispFreq: int = 10  # print the cost every N updates
    decay_c: float = 0.0  # weight decay on the classifier weights U
    lrate: float = 0.0001  # learning rate (SGD only)
    n_words: int = 10000  # vocabulary size; rarer words map to 1 (unknown)
    optimizer: str = "adadelta"  # adadelta, rmsprop or sgd
    saveto: str = "lstm_model.npz"  # the best model is saved there
    validFreq: int = 370  # validate every N updates (-1: once per epoch)
    saveFreq: int = 1110  # save every N updates (-1: once per epoch)
    maxlen: int = 100  # training reviews of maxlen tokens or more are dropped
    batch_size: int = 16  # training minibatch size
    valid_batch_size: int = 64  # minibatch size for evaluation
    dataset: str = DEFAULT_DATASET  # the preprocessed corpus (imdb.pkl)
    use_dropout: bool = True  # dropout on the pooled hidden state
    reload_model: str = ""  # start from the parameters saved in this .npz
    test_size: int = 500  # keep this many random test reviews (<= 0: all)
    valid_portion: float = 0.05  # share of the training set held out
    sort_by_len: bool = True  # sort each split by length (less padding)
    seed: int = 123  # the tutorial's SEED; every random stream derives from it
    mode: str = "CVM"  # PyTensor compile mode (see README, "Compile mode")
    lstm_impl: str = "fused"  # "fused" (fused_lstm.py's Ops) or "scan" (the reference)
    ydim: int = 0  # number of classes; set from the data (max label + 1)

    @classmethod
    def from_dict(cls, values):
        """Build a Config from a dict, rejecting unknown keys and wrong types."""
        types = {f.name: type(f.default) for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ValueError("unknown option(s): %s" % ", ".join(map(repr, unknown)))
        for name, value in values.items():
            want = types[name]
            ok = (isinstance(value, want) and not (want is int and isinstance(value, bool))
                  or want is float and isinstance(value, int) and not isinstance(value, bool))
            if not ok:
                raise ValueError("option %s must be %s, not %r" % (name, want.__name__, value))
        try:
            return cls(**{k: float(v) if types[k] is float else v for k, v in values.items()})
        except OverflowError:
            raise ValueError("a float option is out of range") from None

    def validate(self):
        """Raise ValueError on an option no run could use."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError("optimizer must be one of %s, not %r"
                             % (", ".join(OPTIMIZERS), self.optimizer))
        if self.lstm_impl not in LSTM_IMPLS:
            raise ValueError("lstm_impl must be one of %s, not %r"
                             % (", ".join(LSTM_IMPLS), self.lstm_impl))
        for name in ("dim_proj", "batch_size", "valid_batch_size", "dispFreq"):
            if getattr(self, name) < 1:
                raise ValueError("%s must be at least 1" % name)
        if self.n_words < 2:
            raise ValueError("n_words must be at least 2 (0 = padding, 1 = unknown)")
        if not 0.0 <= self.valid_portion < 1.0:
            raise ValueError("valid_portion must be in [0, 1)")
        if self.validFreq == 0 or self.saveFreq == 0:
            raise ValueError("validFreq and saveFreq must be positive or -1")
        return self


def _model_base(saveto):
    """``lstm_model.npz`` -> ``lstm_model``: the stem of the files beside a model."""
    return saveto[:-4] if saveto.endswith(".npz") else saveto


def model_paths(saveto):
    """The files written beside a model: ``(options_json, log_jsonl)``."""
    base = _model_base(saveto)
    return base + ".json", base + ".log.jsonl"


# ---------------------------------------------------------------------------
# Randomness: one seed, independent named streams, nothing global.
# ---------------------------------------------------------------------------
RNG_STREAMS = ("init", "split", "test_subset", "shuffle", "dropout")


def make_rngs(seed):
    """Independent ``numpy.random.Generator`` streams derived from one seed.

    Returns a dict keyed by :data:`RNG_STREAMS`, so that, for example, a change
    in the number of parameters drawn at initialisation never changes the
    data split or the minibatch order.
    """
    children = np.random.SeedSequence(seed).spawn(len(RNG_STREAMS))
    return {name: np.random.default_rng(child)
            for name, child in zip(RNG_STREAMS, children)}


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


# ---------------------------------------------------------------------------
# Parameters.
# ---------------------------------------------------------------------------
def numpy_floatX(data):
    """``data`` as an array of ``config.floatX``."""
    return np.asarray(data, dtype=config.floatX)


def _p(pp, name):
    return "%s_%s" % (pp, name)


def ortho_weight(ndim, rng):
    """A random ``(ndim, ndim)`` orthogonal matrix (left singular vectors)."""
    W = rng.standard_normal((ndim, ndim))
    u, s, v = np.linalg.svd(W)
    return u.astype(config.floatX)


def param_init_lstm(options, params, rng, prefix="lstm"):
    """LSTM parameters: four orthogonal blocks each, gate order i, f, o, c."""
    dim = options.dim_proj
    params[_p(prefix, "W")] = np.concatenate(
        [ortho_weight(dim, rng) for _ in range(4)], axis=1)
    params[_p(prefix, "U")] = np.concatenate(
        [ortho_weight(dim, rng) for _ in range(4)], axis=1)
    params[_p(prefix, "b")] = np.zeros((4 * dim,), dtype=config.floatX)
    return params


def init_params(options, rng):
    """All parameters as NumPy arrays: ``Wemb``, ``lstm_*``, ``U``, ``b``."""
    params = OrderedDict()
    params["Wemb"] = (0.01 * rng.random((options.n_words, options.dim_proj))
                      ).astype(config.floatX)
    param_init_lstm(options, params, rng, prefix="lstm")
    params["U"] = (0.01 * rng.standard_normal((options.dim_proj, options.ydim))
                   ).astype(config.floatX)
    params["b"] = np.zeros((options.ydim,), dtype=config.floatX)
    return params


def load_params(path, params):
    """Replace ``params`` values by the arrays saved in the model ``path``.

    Every parameter must be in the file, as real numbers of the same shape;
    raises :class:`imdb.DataError` (one line naming the file) otherwise. The
    file is read without unpickling anything.
    """
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with archive:
            saved = {k: archive[k] for k in archive.files if k in params}
    except FileNotFoundError:
        raise DataError("%s: no such model file" % path) from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error,
            lzma.LZMAError, RuntimeError, NotImplementedError, MemoryError,
            OverflowError) as exc:
        raise DataError("%s: not a readable .npz model (%s)"
                        % (path, " ".join(str(exc).split()) or type(exc).__name__)) from None
    for name, value in params.items():
        if name not in saved:
            raise DataError("%s: parameter %s is not in the archive" % (path, name))
        array = saved[name]
        if not isinstance(array, np.ndarray):  # a member that is not .npy data
            raise DataError("%s: parameter %s is not a .npy array" % (path, name))
        if array.dtype.kind not in "biuf":
            raise DataError("%s: parameter %s has dtype %s, expected real numbers"
                            % (path, name, array.dtype))
        if array.shape != value.shape:
            raise DataError("%s: parameter %s has shape %s, the model needs %s"
                            % (path, name, array.shape, value.shape))
        params[name] = array.astype(config.floatX)
    return params


def init_tparams(params):
    """PyTensor shared variables holding a copy of each parameter."""
    return OrderedDict((k, pytensor.shared(v, name=k)) for k, v in params.items())


def zipp(params, tparams):
    """Copy NumPy ``params`` into the shared variables ``tparams``."""
    for kk, vv in params.items():
        tparams[kk].set_value(vv)


def unzip(zipped):
    """The current values of shared variables, as NumPy arrays."""
    return OrderedDict((kk, vv.get_value()) for kk, vv in zipped.items())


# ---------------------------------------------------------------------------
# The model.
# ---------------------------------------------------------------------------
def lstm_layer(tparams, state_below, mask, dim_proj, prefix="lstm", impl="scan"):
    """The masked LSTM over a minibatch; returns all hidden states.

    ``impl="scan"`` is the tutorial's formulation, the reference;
    ``impl="fused"`` computes the same function with the fused Ops of
    :mod:`fused_lstm` (one pass over the sequence forward, one backward).

    Parameters
    ----------
    state_below : tensor, ``(n_timesteps, n_samples, dim_proj)``
        The word embeddings.
    mask : tensor, ``(n_timesteps, n_samples)``
        1 for a real token, 0 for padding. On a padded step the cell and
        hidden states are carried over unchanged.

    Returns
    -------
    tensor, ``(n_timesteps, n_samples, dim_proj)``
    """
    n_samples = state_below.shape[1]
    U = tparams[_p(prefix, "U")]

    def _slice(_x, n, dim):
        return _x[:, n * dim:(n + 1) * dim]

    def _step(m_, x_, h_, c_):
        # m_: (n_samples,), x_: (n_samples, 4 dim), h_, c_: (n_samples, dim)
        preact = pt.dot(h_, U) + x_
        i = pt.sigmoid(_slice(preact, 0, dim_proj))
        f = pt.sigmoid(_slice(preact, 1, dim_proj))
        o = pt.sigmoid(_slice(preact, 2, dim_proj))
        c = pt.tanh(_slice(preact, 3, dim_proj))

        c = f * c_ + i * c
        c = m_[:, None] * c + (1.0 - m_)[:, None] * c_

        h = o * pt.tanh(c)
        h = m_[:, None] * h + (1.0 - m_)[:, None] * h_
        return h, c

    # The input projection of all steps at once: z = x W + b (+ h U per step).
    state_below = (pt.dot(state_below, tparams[_p(prefix, "W")])
                   + tparams[_p(prefix, "b")])
    if impl == "fused":
        return fused_lstm.lstm(state_below, mask, U)
    zeros = pt.zeros((n_samples, dim_proj), dtype=config.floatX)
    h, c = pytensor.scan(_step,
                         sequences=[mask, state_below],
                         outputs_info=[zeros, zeros],
                         name=_p(prefix, "layers"),
                         return_updates=False)
    return h


def mean_pool(h, mask):
    """Mean of ``h (n_timesteps, n_samples, dim)`` over the unmasked steps."""
    return (h * mask[:, :, None]).sum(axis=0) / mask.sum(axis=0)[:, None]


def build_model(tparams, options, dropout_rng=None):
    """The symbolic model.

    Parameters
    ----------
    tparams : OrderedDict of shared variables
    options : Config
    dropout_rng : numpy.random.Generator, optional
        State of the dropout stream; needed when ``options.use_dropout``.

    Returns
    -------
    dict
        ``x`` (int64, ``(n_timesteps, n_samples)``), ``mask``, ``y``;
        ``pred`` (test-time class probabilities, dropout scaled by 0.5);
        ``cost`` (training cost, with dropout noise); ``updates`` (the
        dropout RNG update, to pass to the function computing ``cost``);
        ``rng`` (the RNG shared variable, or None).
    """
    x = pt.matrix("x", dtype="int64")
    mask = pt.matrix("mask", dtype=config.floatX)
    y = pt.vector("y", dtype="int64")

    n_timesteps = x.shape[0]
    n_samples = x.shape[1]

    if options.lstm_impl == "fused":  # the same lookup, with a faster gradient
        emb = fused_lstm.embedding(tparams["Wemb"], x.flatten())
    else:
        emb = tparams["Wemb"][x.flatten()]
    emb = emb.reshape([n_timesteps, n_samples, options.dim_proj])
    proj = mean_pool(lstm_layer(tparams, emb, mask, options.dim_proj,
                                impl=options.lstm_impl), mask)

    def classify(p):
        return pt.special.softmax(pt.dot(p, tparams["U"]) + tparams["b"], axis=-1)

    updates = OrderedDict()
    rng = None
    if options.use_dropout:
        # Training: keep each unit with probability 0.5; test: scale by 0.5.
        rng = ptr.shared_rng(dropout_rng, name="dropout_rng")
        next_rng, keep = rng.binomial(1, 0.5, size=proj.shape)
        updates[rng] = next_rng
        train_pred = classify(proj * keep.astype(config.floatX))
        pred = classify(proj * numpy_floatX(0.5))
    else:
        train_pred = pred = classify(proj)

    off = 1e-6 if train_pred.dtype == "float16" else 1e-8
    cost = -pt.log(train_pred[pt.arange(n_samples), y] + off).mean()
    if options.decay_c > 0.0:
        decay_c = pytensor.shared(numpy_floatX(options.decay_c), name="decay_c")
        cost = cost + decay_c * (tparams["U"] ** 2).sum()
    cost.name = "cost"
    pred.name = "pred"
    return dict(x=x, mask=mask, y=y, pred=pred, cost=cost, updates=updates,
                rng=rng)


# ---------------------------------------------------------------------------
# Optimizers: the tutorial's rules, split into f_grad_shared and f_update.
# ---------------------------------------------------------------------------
def _zeros_like_params(tparams, suffix):
    return [pytensor.shared(p.get_value() * numpy_floatX(0.0), name="%s_%s" % (k, suffix))
            for k, p in tparams.items()]


def sgd(lr, tparams, grads, inputs, cost, updates=(), mode=None):
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
    mode : str, optional
        PyTensor compile mode.

    Returns
    -------
    f_grad_shared : function
        ``f_grad_shared(x, mask, y) -> cost``; stores the gradients.
    f_update : function
        ``f_update(lr)``; applies the stored gradients.
    state : list of shared variables
        The optimizer's own state (stored gradients, accumulators).
    """
    gshared = _zeros_like_params(tparams, "grad")
    gsup = [(gs, g) for gs, g in zip(gshared, grads)]
    f_grad_shared = pytensor.function(inputs, cost, updates=list(updates) + gsup,
                                      name="sgd_f_grad_shared", mode=mode)
    pup = [(p, p - lr * g) for p, g in zip(tparams.values(), gshared)]
    f_update = pytensor.function([lr], [], updates=pup, name="sgd_f_update",
                                 mode=mode)
    return f_grad_shared, f_update, gshared


def adadelta(lr, tparams, grads, inputs, cost, updates=(), mode=None):
    """AdaDelta [ADADELTA]_ with the tutorial's constants (rho 0.95, eps 1e-6).

    With running averages ``E[g^2]`` and ``E[dx^2]``::

        E[g^2] <- 0.95 E[g^2] + 0.05 g^2
        dx      = -sqrt(E[dx^2] + 1e-6) / sqrt(E[g^2] + 1e-6) * g
        E[dx^2] <- 0.95 E[dx^2] + 0.05 dx^2
        p      <- p + dx

    ``lr`` is accepted and ignored, as in the tutorial. Parameters and
    returns as :func:`sgd`.

    References
    ----------
    .. [ADADELTA] Matthew D. Zeiler, *ADADELTA: An Adaptive Learning Rate
       Method*, arXiv:1212.5701, 2012.
    """
    zipped_grads = _zeros_like_params(tparams, "grad")
    running_up2 = _zeros_like_params(tparams, "rup2")
    running_grads2 = _zeros_like_params(tparams, "rgrad2")

    zgup = [(zg, g) for zg, g in zip(zipped_grads, grads)]
    rg2up = [(rg2, 0.95 * rg2 + 0.05 * (g ** 2))
             for rg2, g in zip(running_grads2, grads)]
    f_grad_shared = pytensor.function(inputs, cost,
                                      updates=list(updates) + zgup + rg2up,
                                      name="adadelta_f_grad_shared", mode=mode)

    # dx, E[dx^2] and p in one fused pass per parameter (fused_lstm.FusedStep).
    steps = [fused_lstm.adadelta_step(p, zg, ru2, rg2) for p, zg, ru2, rg2
             in zip(tparams.values(), zipped_grads, running_up2, running_grads2)]
    ru2up = [(ru2, step[1]) for ru2, step in zip(running_up2, steps)]
    param_up = [(p, step[0]) for p, step in zip(tparams.values(), steps)]
    f_update = pytensor.function([lr], [], updates=ru2up + param_up,
                                 on_unused_input="ignore",
                                 name="adadelta_f_update", mode=mode)
    return f_grad_shared, f_update, zipped_grads + running_up2 + running_grads2


def rmsprop(lr, tparams, grads, inputs, cost, updates=(), mode=None):
    """RMSProp [Hint2014]_ in the tutorial's form (Graves' variant, momentum).

    With running averages ``E[g]``, ``E[g^2]`` and a step ``d``::

        E[g]   <- 0.95 E[g] + 0.05 g
        E[g^2] <- 0.95 E[g^2] + 0.05 g^2
        d      <- 0.9 d - 1e-4 g / sqrt(E[g^2] - E[g]^2 + 1e-4)
        p      <- p + d

    The step size 1e-4 is fixed; ``lr`` is ignored, as in the tutorial.
    Parameters and returns as :func:`sgd`.

    References
    ----------
    .. [Hint2014] Geoff Hinton, *Neural Networks for Machine Learning*,
       lecture 6a, 2012.
    .. [Graves2013] Alex Graves, *Generating Sequences With Recurrent Neural
       Networks*, arXiv:1308.0850, 2013, eq. 38-41.
    """
    zipped_grads = _zeros_like_params(tparams, "grad")
    running_grads = _zeros_like_params(tparams, "rgrad")
    running_grads2 = _zeros_like_params(tparams, "rgrad2")

    zgup = [(zg, g) for zg, g in zip(zipped_grads, grads)]
    rgup = [(rg, 0.95 * rg + 0.05 * g) for rg, g in zip(running_grads, grads)]
    rg2up = [(rg2, 0.95 * rg2 + 0.05 * (g ** 2))
             for rg2, g in zip(running_grads2, grads)]
    f_grad_shared = pytensor.function(inputs, cost,
                                      updates=list(updates) + zgup + rgup + rg2up,
                                      name="rmsprop_f_grad_shared", mode=mode)

    updir = _zeros_like_params(tparams, "updir")
    # d and p in one fused pass per parameter (fused_lstm.FusedStep).
    steps = [fused_lstm.rmsprop_step(p, zg, rg, rg2, ud) for p, zg, rg, rg2, ud
             in zip(tparams.values(), zipped_grads, running_grads, running_grads2, updir)]
    updir_new = [(ud, step[1]) for ud, step in zip(updir, steps)]
    param_up = [(p, step[0]) for p, step in zip(tparams.values(), steps)]
    f_update = pytensor.function([lr], [], updates=updir_new + param_up,
                                 on_unused_input="ignore",
                                 name="rmsprop_f_update", mode=mode)
    return (f_grad_shared, f_update,
            zipped_grads + running_grads + running_grads2 + updir)


def compile_model(options, params, dropout_rng=None):
    """Shared variables and compiled functions for ``params``.

    Returns a dict with ``tparams``, ``f_pred_prob(x, mask)``,
    ``f_grad_shared(x, mask, y)``, ``f_update(lr)``, ``optimizer_state``.
    """
    tparams = init_tparams(params)
    model = build_model(tparams, options, dropout_rng)
    inputs = [model["x"], model["mask"], model["y"]]
    f_pred_prob = pytensor.function(inputs[:2], model["pred"],
                                    name="f_pred_prob", mode=options.mode)
    grads = pytensor.grad(model["cost"], wrt=list(tparams.values()))
    lr = pt.scalar(name="lr", dtype=config.floatX)
    optimizer = {"adadelta": adadelta, "rmsprop": rmsprop, "sgd": sgd}[options.optimizer]
    f_grad_shared, f_update, state = optimizer(
        lr, tparams, grads, inputs, model["cost"], updates=model["updates"].items(),
        mode=options.mode)
    return dict(tparams=tparams, f_pred_prob=f_pred_prob,
                f_grad_shared=f_grad_shared, f_update=f_update,
                optimizer_state=state, rng=model["rng"])


# ---------------------------------------------------------------------------
# Evaluation.
# ---------------------------------------------------------------------------
def pred_probs(f_pred_prob, prepare_data, data, iterator, verbose=False):
    """Class probabilities ``(n_samples, ydim)`` of every example of ``data``."""
    probs = None
    n_done = 0
    for _, index in iterator:
        x, mask, _ = prepare_data([data[0][t] for t in index],
                                  np.asarray(data[1])[index], maxlen=None)
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


def evaluate(f_pred_prob, splits, batch_size):
    """Error of each split in ``splits`` (a dict name -> (x, y))."""
    return {name: pred_error(f_pred_prob, imdb.prepare_data, data,
                             get_minibatches_idx(len(data[0]), batch_size))
            for name, data in splits.items()}


# ---------------------------------------------------------------------------
# Saving: atomic writes, npz without pickles, options as JSON.
# ---------------------------------------------------------------------------
def savez(fileobj, arrays):
    """``numpy.savez`` with fixed zip timestamps: same arrays, same bytes."""
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value),
                                          allow_pickle=False)


def save_model(path, params, history_errs, options, **extra):
    """Write the model ``path`` (.npz) and its options JSON, atomically.

    The npz holds the tutorial's keys: each parameter, ``history_errs``
    (``[[valid_err, test_err], ...]``) and any ``extra`` arrays
    (``train_err``, ``valid_err``, ``test_err`` at the end of training).
    """
    arrays = dict(params)
    arrays["history_errs"] = np.asarray(history_errs, dtype="float64").reshape(-1, 2)
    arrays.update({k: np.asarray(v) for k, v in extra.items()})
    atomic_write(path, lambda f: savez(f, arrays))
    text = json.dumps(dataclasses.asdict(options), indent=2, sort_keys=True) + "\n"
    atomic_write(model_paths(path)[0], lambda f: f.write(text.encode("utf-8")))


def load_options(path):
    """The Config saved as JSON beside the model ``path`` (or the JSON itself)."""
    json_path = path if path.endswith(".json") else model_paths(path)[0]
    try:
        with open(json_path, encoding="utf-8") as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        return Config.from_dict(values)
    except FileNotFoundError:
        raise DataError("%s: no such options file" % json_path) from None
    except (OSError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        raise DataError("%s: bad options file (%s)"
                        % (json_path, " ".join(str(exc).split()) or type(exc).__name__)
                        ) from None


# ---------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------
def load_splits(options, rngs, source=None, out=None):
    """Train, valid and test splits as the tutorial loads them.

    A missing ``imdb.pkl`` is built first (see :func:`imdb.ensure_dataset`),
    from ``source`` if given; another missing dataset is an error.
    """
    path = options.dataset
    if os.path.basename(path) == "imdb.pkl":  # the tutorial's corpus: build it if missing
        imdb.ensure_dataset(path, source=source)
    elif not os.path.exists(path):
        raise DataError("%s: no such dataset file (make one with imdb_preprocess.py)" % path)
    print("Loading data", file=out or sys.stdout)
    train, valid, test = imdb.load_data(
        path=path, n_words=options.n_words, valid_portion=options.valid_portion,
        maxlen=options.maxlen or None, sort_by_len=options.sort_by_len,
        seed=rngs["split"])
    if options.test_size > 0:
        # The test set is sorted by length: keep a random selection.
        idx = rngs["test_subset"].permutation(len(test[0]))[:options.test_size]
        test = ([test[0][n] for n in idx], [test[1][n] for n in idx])
    if not valid[0]:
        raise DataError("%s: the validation split is empty (valid_portion=%g of %d reviews)"
                        % (path, options.valid_portion, len(train[0])))
    return train, valid, test


class JsonLog:
    """One JSON object a line, flushed at once (``<model>.log.jsonl``).

    ``keep`` lines of an existing log are kept (a resumed run); the rest is
    rewritten.
    """

    def __init__(self, path, keep=0):
        self.file = None
        if path:
            try:
                lines = []
                if keep and os.path.exists(path):
                    with open(path, encoding="utf-8") as f:
                        lines = f.readlines()[:keep]
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
                self.file = open(path, "w", encoding="utf-8")
                self.file.writelines(lines)
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError("%s: cannot write the log (%s)" % (path, exc)) from None

    def write(self, record):
        if self.file:
            self.file.write(json.dumps(record, sort_keys=True) + "\n")
            self.file.flush()

    def close(self):
        if self.file:
            self.file.close()


class StopRequest:
    """Turn the first Ctrl-C (SIGINT) into a flag read between two updates.

    The update in flight completes, so the state saved afterwards is
    consistent; a second Ctrl-C interrupts at once.
    """

    def __init__(self):
        self.requested = False

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGINT, self._handler)
        except ValueError:  # not the main thread: leave signals alone
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


CHECKPOINT_VERSION = 1


class Trainer:
    """The tutorial's training loop, as a state that can be checkpointed.

    The state is everything a run needs to continue exactly: parameters,
    optimizer accumulators, the shuffling and dropout RNG states, the
    epoch's minibatch order and position, counters, ``history_errs`` and the
    best parameters so far.
    """

    def __init__(self, options, data, rngs, model, out, callback=None):
        self.options = options
        self.train_set, self.valid_set, self.test_set = data
        self.shuffle_rng = rngs["shuffle"]
        self.model = model
        self.out = out
        self.callback = callback
        self.eidx = 0  # the current epoch
        self.uidx = 0  # the number of updates done
        self.order = None  # this epoch's shuffled example order
        self.pos = 0  # minibatches of this epoch already done
        self.n_samples = 0  # examples seen this epoch
        self.history_errs = []
        self.best_p = None
        self.best_update = 0  # the update at which best_p was taken
        self.bad_counter = 0
        self.elapsed = 0.0  # training seconds before this process
        self.log_lines = 0
        n = len(self.train_set[0])
        n_batches = (n + options.batch_size - 1) // options.batch_size
        self.validFreq = n_batches if options.validFreq == -1 else options.validFreq
        self.saveFreq = n_batches if options.saveFreq == -1 else options.saveFreq

    # -- the loop -----------------------------------------------------------
    def run(self, stop):
        """Train until early stop, ``max_epochs``, a bad cost or ``stop``."""
        o = self.options
        self.start_time = time.time() - self.elapsed
        self.log = JsonLog(model_paths(o.saveto)[1] if o.saveto else None, self.log_lines)
        try:
            while self.eidx < o.max_epochs:
                if self.order is None:  # a new shuffled order of the training set
                    self.order = np.concatenate([b for _, b in get_minibatches_idx(
                        len(self.train_set[0]), o.batch_size, shuffle=True,
                        rng=self.shuffle_rng)])
                batches = np.array_split(self.order, range(o.batch_size, len(self.order),
                                                           o.batch_size))
                while self.pos < len(batches):
                    if stop.requested:
                        print("Training interupted", file=self.out)
                        return "interrupted"
                    status = self.train_step(batches[self.pos])
                    if status != "ok":
                        return status
                print("Seen %d samples" % self.n_samples, file=self.out)
                self.eidx, self.order, self.pos, self.n_samples = self.eidx + 1, None, 0, 0
            self.eidx -= 1  # the last epoch run, as the tutorial counts
            return "ok"
        finally:
            self.elapsed = time.time() - self.start_time
            self.log.close()

    def train_step(self, train_index):
        """One update on the examples ``train_index``, then display/save/validate."""
        o = self.options
        y = [self.train_set[1][t] for t in train_index]
        x = [self.train_set[0][t] for t in train_index]
        # x: (n_timesteps, n_samples) -- prepare_data swaps the axes.
        x, mask, y = imdb.prepare_data(x, y)
        cost = self.model["f_grad_shared"](x, mask, y)
        self.model["f_update"](numpy_floatX(o.lrate))
        self.uidx += 1
        self.pos += 1
        self.n_samples += x.shape[1]

        if not np.isfinite(cost):
            print("bad cost detected: ", cost, file=self.out)
            return "bad_cost"
        if self.uidx % o.dispFreq == 0:
            print("Epoch ", self.eidx, "Update ", self.uidx, "Cost ", cost, file=self.out)
        if o.saveto and self.uidx % self.saveFreq == 0:
            print("Saving...", end=" ", file=self.out)
            save_model(o.saveto, self.best_params(), self.history_errs, o)
            print("Done", file=self.out)
        status = "ok"
        if self.uidx % self.validFreq == 0:
            status = self.validate(cost)
        if o.saveto and self.uidx % self.saveFreq == 0:
            self.save_checkpoint(checkpoint_path(o.saveto))
        return status

    def validate(self, cost):
        """Errors on the three splits, best-model bookkeeping, early stop."""
        o = self.options
        errs = evaluate(self.model["f_pred_prob"], {
            "train": self.train_set, "valid": self.valid_set, "test": self.test_set},
            o.valid_batch_size)
        self.history_errs.append([errs["valid"], errs["test"]])
        valid_errs = np.array(self.history_errs)[:, 0]
        is_best = self.best_p is None or errs["valid"] <= valid_errs.min()
        if is_best:
            self.best_p = unzip(self.model["tparams"])
            self.best_update = self.uidx
            self.bad_counter = 0
        print("Train ", errs["train"], "Valid ", errs["valid"], "Test ", errs["test"],
              file=self.out)
        record = dict(epoch=self.eidx, update=self.uidx, cost=float(cost),
                      train_err=errs["train"], valid_err=errs["valid"],
                      test_err=errs["test"], best=bool(is_best),
                      seconds=round(time.time() - self.start_time, 3))
        self.log.write(record)
        self.log_lines += 1
        if self.callback:
            self.callback(record)
        if (len(self.history_errs) > o.patience and
                errs["valid"] >= valid_errs[:-o.patience].min()):
            self.bad_counter += 1
            if self.bad_counter > o.patience:
                print("Early Stop!", file=self.out)
                return "early_stop"
        return "ok"

    def best_params(self):
        """The best parameters so far, or the current ones before any validation."""
        return self.best_p if self.best_p is not None else unzip(self.model["tparams"])

    # -- checkpoints ----------------------------------------------------------
    def save_checkpoint(self, path):
        """Write the whole training state to ``path`` (npz, atomically)."""
        state = dict(version=CHECKPOINT_VERSION, options=dataclasses.asdict(self.options),
                     eidx=self.eidx, uidx=self.uidx, pos=self.pos,
                     n_samples=self.n_samples, bad_counter=self.bad_counter,
                     best_update=self.best_update,
                     elapsed=time.time() - self.start_time, log_lines=self.log_lines,
                     has_best=self.best_p is not None,
                     shuffle_rng=self.shuffle_rng.bit_generator.state,
                     dropout_rng=(self.model["rng"].get_value().bit_generator.state
                                  if self.model["rng"] is not None else None))
        arrays = {"state_json": np.array(json.dumps(state, sort_keys=True)),
                  "history_errs": np.asarray(self.history_errs,
                                             dtype="float64").reshape(-1, 2),
                  "order": (self.order if self.order is not None
                            else np.zeros(0, dtype="int64"))}
        arrays.update(("param/" + k, v) for k, v in unzip(self.model["tparams"]).items())
        if self.best_p is not None:
            arrays.update(("best/" + k, v) for k, v in self.best_p.items())
        arrays.update(("opt/" + s.name, s.get_value()) for s in self.model["optimizer_state"])
        atomic_write(path, lambda f: savez(f, arrays))

    def restore(self, path, arrays, state):
        """Set this trainer (and its model) to a checkpoint's state."""
        tparams, model = self.model["tparams"], self.model
        try:
            for k, shared in tparams.items():
                shared.set_value(_checked(path, arrays, "param/" + k, shared.get_value()))
            for shared in model["optimizer_state"]:
                shared.set_value(_checked(path, arrays, "opt/" + shared.name,
                                          shared.get_value()))
            if state["has_best"]:
                self.best_p = OrderedDict(
                    (k, _checked(path, arrays, "best/" + k, v.get_value()))
                    for k, v in tparams.items())
            self.shuffle_rng.bit_generator.state = state["shuffle_rng"]
            if model["rng"] is not None:
                generator = model["rng"].get_value()
                generator.bit_generator.state = state["dropout_rng"]
                model["rng"].set_value(generator)
            self.history_errs = [list(map(float, r)) for r in arrays["history_errs"]]
            order = arrays["order"]
            self.order = order.astype("int64") if order.size else None
            for key in ("eidx", "uidx", "pos", "n_samples", "bad_counter", "elapsed",
                        "log_lines", "best_update"):
                setattr(self, key, state[key])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError("%s: not a usable checkpoint (%s)" % (path, exc)) from None


def _checked(path, arrays, key, like):
    """``arrays[key]``, which must have the shape and dtype of ``like``."""
    if key not in arrays:
        raise DataError("%s: %s is not in the checkpoint" % (path, key))
    value = arrays[key]
    if value.shape != like.shape or value.dtype != like.dtype:
        raise DataError("%s: %s is %s %s, the run needs %s %s"
                        % (path, key, value.dtype, value.shape, like.dtype, like.shape))
    return value


def checkpoint_path(saveto):
    """The checkpoint written beside the model ``saveto``."""
    return _model_base(saveto) + ".ckpt.npz"


def read_checkpoint(path):
    """The arrays and the decoded state of a checkpoint file."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: archive[k] for k in archive.files}
        state = json.loads(str(arrays["state_json"]))
        if not isinstance(state, dict) or state.get("version") != CHECKPOINT_VERSION:
            raise ValueError("unknown checkpoint version")
        options = Config.from_dict(state["options"]).validate()
    except FileNotFoundError:
        raise DataError("%s: no such checkpoint" % path) from None
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
            zlib.error, lzma.LZMAError, RuntimeError, NotImplementedError, MemoryError,
            OverflowError, RecursionError, AttributeError) as exc:
        raise DataError("%s: not a readable checkpoint (%s)"
                        % (path, " ".join(str(exc).split()) or type(exc).__name__)) from None
    return arrays, state, options


def train_lstm(options, source=None, out=None, callback=None, resume=None):
    """Train the model as the tutorial's ``train_lstm`` did.

    Parameters
    ----------
    options : Config
        Ignored when ``resume`` is given: the checkpoint's options are used.
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
        ``init_sha256`` (a digest of the parameters training started from).
    """
    out = out or sys.stdout
    if resume:
        checkpoint, state, options = read_checkpoint(resume)
    options.validate()
    rngs = make_rngs(options.seed)
    data = load_splits(options, rngs, source, out)
    options = dataclasses.replace(options, ydim=int(max(data[0][1])) + 1)
    print("model options", json.dumps(dataclasses.asdict(options), sort_keys=True),
          file=out)

    print("Building model", file=out)
    params = init_params(options, rngs["init"])
    if options.reload_model and not resume:
        load_params(options.reload_model, params)
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

    if status == "bad_cost" and trainer.best_p is None:
        return dict(status=status, train_err=1.0, valid_err=1.0, test_err=1.0,
                    epochs=trainer.eidx + 1, updates=trainer.uidx,
                    seconds=trainer.elapsed, history_errs=trainer.history_errs,
                    best_update=0, n_train=len(data[0][0]), init_sha256=init_sha256)
    if options.saveto and status == "interrupted":
        save_model(options.saveto, trainer.best_params(), trainer.history_errs, options)
        trainer.save_checkpoint(checkpoint_path(options.saveto))
        print("Best model so far saved to %s; continue with --resume %s"
              % (options.saveto, checkpoint_path(options.saveto)), file=out)
    best_p = trainer.best_params()
    zipp(best_p, model["tparams"])
    errs = evaluate(model["f_pred_prob"], dict(zip(("train", "valid", "test"), data)),
                    options.valid_batch_size)
    print("Train ", errs["train"], "Valid ", errs["valid"], "Test ", errs["test"], file=out)
    if options.saveto:
        save_model(options.saveto, best_p, trainer.history_errs, options,
                   train_err=errs["train"], valid_err=errs["valid"], test_err=errs["test"])
    epochs = trainer.eidx + 1
    print("The code run for %d epochs, with %f sec/epochs"
          % (epochs, trainer.elapsed / max(epochs, 1)), file=out)
    print("Training took %.1fs" % trainer.elapsed, file=sys.stderr)
    return dict(status="ok" if status in ("ok", "early_stop") else status,
                train_err=errs["train"], valid_err=errs["valid"], test_err=errs["test"],
                epochs=epochs, updates=trainer.uidx, seconds=trainer.elapsed,
                history_errs=trainer.history_errs, best_update=trainer.best_update,
                n_train=len(data[0][0]), init_sha256=init_sha256)


def params_digest(params):
    """SHA-256 of the parameters' names, shapes and bytes."""
    h = hashlib.sha256()
    for name, value in params.items():
        h.update(("%s%s%s" % (name, value.shape, value.dtype)).encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------
def add_training_args(parser, exclude=(), title="training options"):
    """Add a flag for each training option (a :class:`Config` field) to ``parser``.

    ``exclude`` names Config fields (``"optimizer"``, ``"seed"``, ...) to leave
    out, for a script that sets them itself. Returns the argument group.
    """
    d = Config()
    group = parser.add_argument_group(title)

    def a(flag, **kw):
        dest = kw.get("dest", flag[2:].replace("-", "_"))
        if dest not in exclude:
            group.add_argument(flag, **kw)

    a("--dim-proj", type=int, default=d.dim_proj,
      help="word embedding size and number of LSTM hidden units")
    a("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
      help="update rule (the tutorial's: adadelta and rmsprop ignore --lrate)")
    a("--lrate", type=float, default=d.lrate, help="learning rate for sgd")
    a("--max-epochs", type=int, default=d.max_epochs,
      help="maximum number of passes over the training set")
    a("--patience", type=int, default=d.patience,
      help="early stop after this many validations without progress")
    a("--maxlen", type=int, default=d.maxlen,
      help="drop training reviews of this many tokens or more (0: keep all)")
    a("--batch-size", type=int, default=d.batch_size, help="training minibatch size")
    a("--valid-batch-size", type=int, default=d.valid_batch_size,
      help="minibatch size when computing errors")
    a("--valid-freq", dest="validFreq", type=int, default=d.validFreq,
      help="compute train/valid/test errors every N updates (-1: every epoch)")
    a("--save-freq", dest="saveFreq", type=int, default=d.saveFreq,
      help="save the best model every N updates (-1: every epoch)")
    a("--disp-freq", dest="dispFreq", type=int, default=d.dispFreq,
      help="print the training cost every N updates")
    a("--decay-c", type=float, default=d.decay_c,
      help="weight decay (L2) on the classifier weights U")
    a("--no-dropout", dest="use_dropout", action="store_false",
      help="train without dropout on the pooled hidden state")
    a("--n-words", type=int, default=d.n_words,
      help="vocabulary size: word ids >= N become 1 (unknown)")
    a("--valid-portion", type=float, default=d.valid_portion,
      help="share of the training set held out for validation")
    a("--no-sort-by-len", dest="sort_by_len", action="store_false",
      help="do not sort the splits by review length")
    a("--test-size", type=int, default=d.test_size,
      help="evaluate on this many random test reviews (0 or less: all)")
    a("--saveto", default=d.saveto,
      help="model file (.npz); its options go to .json and its log to .log.jsonl "
           "beside it ('' saves nothing)")
    a("--reload-model", default=d.reload_model, metavar="PATH",
      help="start from the parameters saved in this .npz model")
    a("--dataset", default=d.dataset, metavar="PATH",
      help="preprocessed corpus (imdb.pkl); built from --source if missing")
    a("--source", default=None, metavar="PATH",
      help="raw aclImdb folder or .tar.gz to build a missing --dataset from "
           "(default: $IMDB_SOURCE, then data/aclImdb_v1.tar.gz, then download)")
    a("--seed", type=int, default=d.seed,
      help="seed of every random stream (init, split, test subset, shuffle, dropout)")
    a("--mode", default=d.mode,
      help="PyTensor compile mode: CVM (C backend, default), NUMBA, FAST_COMPILE, ...")
    a("--lstm-impl", dest="lstm_impl", default=d.lstm_impl, choices=LSTM_IMPLS,
      help="the LSTM recurrence: fused (fused_lstm.py's Ops, fast) or scan (the "
           "tutorial's formulation, the reference); the same function")
    return group


def build_parser():
    """The command line of ``lstm.py``."""
    p = argparse.ArgumentParser(
        description="Train the deeplearning.net tutorial's LSTM sentiment "
                    "classifier on IMDB (or a corpus made by imdb_preprocess.py). "
                    "With no option it runs the tutorial: train_lstm(max_epochs=100, "
                    "test_size=500).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_training_args(p)
    a = p.add_argument
    a("--resume", default=None, metavar="CHECKPOINT",
      help="continue a run exactly from its checkpoint (<model>.ckpt.npz, written every "
           "--save-freq updates and on Ctrl-C); the checkpoint's options are used and "
           "the other options are ignored")
    a("--debug", action="store_true", help="show tracebacks on errors")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    values = vars(args)
    debug = values.pop("debug")
    source = values.pop("source")
    resume = values.pop("resume")
    try:
        options = Config.from_dict(values).validate()
    except ValueError as exc:
        build_parser().error(str(exc))
    try:
        result = train_lstm(options, source=source, resume=resume)
    except DataError as exc:
        if debug:
            raise
        print("lstm.py: error: %s" % str(exc).splitlines()[0], file=sys.stderr)
        return 2
    return {"ok": 0, "interrupted": 130}.get(result["status"], 1)


if __name__ == "__main__":
    sys.exit(main())
