"""LSTM networks for sentiment analysis: the deeplearning.net tutorial in PyTensor.

A single-layer LSTM reads a review's word embeddings; its hidden states are
mean-pooled over the real (unmasked) time steps and a logistic-regression
(softmax) layer classifies the review. Training uses AdaDelta, RMSProp or SGD
with the tutorial's exact update rules, dropout on the pooled vector, and early
stopping on a validation split. ``python lstm.py`` does what the tutorial's
``__main__`` did; ``python lstm.py --help`` lists every option.

Variants of the same model are options (stacked and bidirectional layers, a
convolution and max-pooling before the LSTM, last/max pooling, a separate
embedding size, Keras-style padding, Adam, pre-trained embeddings, presets);
``python lstm.py predict`` classifies raw text with a saved model and
``python lstm.py evaluate`` reports its accuracy in detail.

Axes: a minibatch ``x`` is ``(n_timesteps, n_samples)`` (time first), as the
tutorial's ``prepare_data`` returns it.
"""
import argparse
import dataclasses
import functools
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
    set in ``PYTENSOR_FLAGS`` win. When PyTensor was imported first (which
    read its flags already), the same defaults are set on ``pytensor.config``:
    otherwise the model would silently run in float64, about 4x slower.
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    given = {item.split("=")[0].strip() for item in flags.split(",") if "=" in item}
    defaults = {"floatX": "float32", "mode": "CVM"}
    if find_library("openblas"):
        defaults["blas__ldflags"] = "-lopenblas"
    chosen = {k: v for k, v in defaults.items() if k not in given}
    if "pytensor" in sys.modules:
        for name, value in chosen.items():
            setattr(sys.modules["pytensor"].config, name, value)
    elif chosen:
        os.environ["PYTENSOR_FLAGS"] = ",".join(
            filter(None, [flags] + ["%s=%s" % kv for kv in chosen.items()]))


_configure_pytensor()

import numpy as np  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402
import pytensor.tensor.random as ptr  # noqa: E402
from pytensor import config  # noqa: E402

import embeddings  # noqa: E402
import fused_lstm  # noqa: E402
import imdb  # noqa: E402
from imdb import DataError, atomic_write  # noqa: E402,F401 (atomic_write: part of the API)

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATASET = os.path.join("data", "imdb.pkl")
TUTORIAL_OPTIMIZERS = ("adadelta", "rmsprop", "sgd")
OPTIMIZERS = TUTORIAL_OPTIMIZERS + ("adam",)
LSTM_IMPLS = ("fused", "scan")
POOLINGS = ("mean", "last", "max", "meanmax")
SIDES = ("pre", "post")


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
    lrate: float = 0.0001  # learning rate (SGD and Adam; AdaDelta and RMSProp ignore it)
    n_words: int = 10000  # vocabulary size; rarer words map to 1 (unknown)
    optimizer: str = "adadelta"  # adadelta, rmsprop, sgd or adam
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
    valid_block: int = 0  # > 0: hold out random runs of N consecutive reviews (see README)
    sort_by_len: bool = True  # sort each split by length (less padding)
    seed: int = 123  # the tutorial's SEED; every random stream derives from it
    mode: str = "CVM"  # PyTensor compile mode (see README, "Compile mode")
    lstm_impl: str = "fused"  # "fused" (fused_lstm.py's Ops) or "scan" (the reference)
    # -- variants (the defaults are the tutorial's model) --------------------
    dim_emb: int = 0  # word embedding size (0: dim_proj, as the tutorial)
    bigram_buckets: int = 0  # > 0: add a hashed embedding of each (previous, current) word pair
    layers: int = 1  # stacked LSTM layers
    bidirectional: bool = False  # each layer also reads the review backwards
    conv_filters: int = 0  # > 0: a convolution over time (ReLU) before the LSTM
    conv_width: int = 3  # the convolution's width in tokens ("same" padding)
    pool: int = 2  # max-pooling over time after the convolution (size = stride)
    pooling: str = "mean"  # hidden states -> one vector: mean, last or max (masked)
    pool_embeddings: bool = False  # also pool the (word + bigram) embeddings: a bag-of-n-grams path
    pad_to: int = 0  # > 0: pad/truncate every review to this many tokens (Keras)
    padding: str = "pre"  # with pad_to: pad before (pre) or after (post) the words
    truncating: str = "pre"  # with pad_to: cut the beginning (pre) or the end (post)
    embeddings: str = ""  # pre-trained vectors (.vec / GloVe text, gzip too) for Wemb
    freeze_embeddings: bool = False  # do not train Wemb
    bucket: int = 0  # > 0: minibatches of similar length, from pools of bucket batches
    forget_bias: float = 0.0  # initial forget-gate bias (tutorial 0; Keras 1)
    lrate_decay: float = 1.0  # the learning rate of epoch e (from 0) is lrate * lrate_decay**e
    clip_c: float = 0.0  # > 0: rescale the gradients so their global L2 norm is at most this
    word_dropout: float = 0.0  # training: zero each token's embedding with this probability
    ema: float = 0.0  # > 0: validate and save a moving average of the weights (e.g. 0.999)
    weight_decay: float = 0.0  # adam: decoupled weight decay of the weight matrices (AdamW)
    monitor: str = "train,test"  # splits evaluated with valid at each validation ("": none)
    ydim: int = 0  # number of classes; set from the data (max label + 1)
    dict_sha256: str = ""  # set from the data: digest of the dictionary's first n_words

    @property
    def emb_dim(self):
        """The word embedding size (``dim_emb``, or ``dim_proj`` when 0)."""
        return self.dim_emb or self.dim_proj

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

    def monitored(self):
        """The splits evaluated besides valid at each validation (``monitor``)."""
        return [name for name in self.monitor.replace(" ", "").split(",") if name]

    def validate(self):
        """Raise ValueError on an option no run could use."""
        if self.optimizer not in OPTIMIZERS:
            raise ValueError("optimizer must be one of %s, not %r"
                             % (", ".join(OPTIMIZERS), self.optimizer))
        if self.lstm_impl not in LSTM_IMPLS:
            raise ValueError("lstm_impl must be one of %s, not %r"
                             % (", ".join(LSTM_IMPLS), self.lstm_impl))
        for name in ("dim_proj", "batch_size", "valid_batch_size", "dispFreq", "layers",
                     "conv_width", "pool"):
            if getattr(self, name) < 1:
                raise ValueError("%s must be at least 1" % name)
        for name in ("dim_emb", "conv_filters", "pad_to", "bucket", "valid_block",
                     "bigram_buckets"):
            if getattr(self, name) < 0:
                raise ValueError("%s must be 0 or more" % name)
        for name, allowed in (("pooling", POOLINGS), ("padding", SIDES),
                              ("truncating", SIDES)):
            if getattr(self, name) not in allowed:
                raise ValueError("%s must be one of %s, not %r"
                                 % (name, ", ".join(allowed), getattr(self, name)))
        if self.freeze_embeddings and not self.embeddings and not self.reload_model:
            raise ValueError("freeze_embeddings needs embeddings (or reload_model): "
                             "frozen random vectors would never learn")
        if not 0.0 < self.lrate_decay <= 1.0:
            raise ValueError("lrate_decay must be in (0, 1]")
        if self.clip_c < 0:
            raise ValueError("clip_c must be 0 (no clipping) or more")
        if not 0.0 <= self.word_dropout < 1.0:
            raise ValueError("word_dropout must be in [0, 1)")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be 0 (none) or more")
        if self.weight_decay and self.optimizer != "adam":
            raise ValueError("weight_decay is Adam's decoupled decay (AdamW): "
                             "use it with optimizer adam")
        if not 0.0 <= self.ema < 1.0:
            raise ValueError("ema must be in [0, 1) (0: no averaging)")
        bad = sorted(set(self.monitored()) - {"train", "test"})
        if bad:
            raise ValueError("monitor takes train and/or test (comma-separated), not %s"
                             % ", ".join(map(repr, bad)))
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


def lstm_prefixes(options):
    """The parameter prefix of each LSTM, by layer: ``[["lstm"], ["lstm2"], ...]``,
    with ``"lstm_rev"`` (``"lstm2_rev"``, ...) beside each when bidirectional.
    Layer 1 keeps the tutorial's names (``lstm_W``, ``lstm_U``, ``lstm_b``)."""
    names = []
    for layer in range(1, options.layers + 1):
        base = "lstm" if layer == 1 else "lstm%d" % layer
        names.append([base, base + "_rev"] if options.bidirectional else [base])
    return names


def pooled_dim(options):
    """Width of the pooled vector: ``dim_proj`` per direction, twice with
    ``meanmax`` pooling (mean and max concatenated), plus ``emb_dim`` with
    ``pool_embeddings``."""
    return (options.dim_proj * (2 if options.bidirectional else 1)
            * (2 if options.pooling == "meanmax" else 1)
            + (options.emb_dim if options.pool_embeddings else 0))


def init_params(options, rng):
    """All parameters as NumPy arrays, in the order they are drawn from ``rng``.

    ``Wemb`` ``(n_words, dim_emb)``; with bigrams ``Wbigram``
    ``(bigram_buckets, dim_emb)``, zeros; with a convolution ``conv_W``
    ``(conv_width, dim_emb, conv_filters)`` and ``conv_b``; each LSTM's
    ``*_W``, ``*_U``, ``*_b`` (:func:`lstm_prefixes`); the classifier ``U``
    ``(pooled_dim(options), ydim)`` and ``b``. With the tutorial's options
    the draws are the tutorial's.
    """
    params = OrderedDict()
    params["Wemb"] = (0.01 * rng.random((options.n_words, options.emb_dim))
                      ).astype(config.floatX)
    if options.bigram_buckets:  # zeros: draws nothing, so the other draws stay the same
        params["Wbigram"] = np.zeros((options.bigram_buckets, options.emb_dim), config.floatX)
    n_in = options.emb_dim
    if options.conv_filters:
        # Glorot uniform, as Keras's Conv1D.
        fan = options.conv_width * (options.emb_dim + options.conv_filters)
        bound = np.sqrt(6.0 / fan)
        params["conv_W"] = rng.uniform(-bound, bound, (
            options.conv_width, options.emb_dim, options.conv_filters)).astype(config.floatX)
        params["conv_b"] = np.zeros((options.conv_filters,), dtype=config.floatX)
        n_in = options.conv_filters
    directions = 2 if options.bidirectional else 1
    for layer in lstm_prefixes(options):
        for prefix in layer:
            param_init_lstm(options, params, rng, prefix=prefix, n_in=n_in)
        n_in = options.dim_proj * directions
    params["U"] = (0.01 * rng.standard_normal((pooled_dim(options), options.ydim))
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

    W, b = tparams[_p(prefix, "W")], tparams[_p(prefix, "b")]
    if impl == "fused":  # the projection below is done inside, in step with the recurrence
        return fused_lstm.lstm(state_below, mask, W, U, b)
    # The input projection of all steps at once: z = x W + b (+ h U per step).
    state_below = pt.dot(state_below, W) + b
    zeros = pt.zeros((n_samples, dim_proj), dtype=config.floatX)
    h, c = pytensor.scan(_step,
                         sequences=[mask, state_below],
                         outputs_info=[zeros, zeros],
                         name=_p(prefix, "layers"),
                         return_updates=False)
    return h


def conv_pool(tparams, x, mask, width, pool):
    """Convolution over time (ReLU, "same" padding), then max-pooling over time.

    Parameters
    ----------
    x : tensor, ``(n_timesteps, n_samples, dim_emb)``
    mask : tensor, ``(n_timesteps, n_samples)``
    width, pool : int
        Filter width and pooling size (= stride) in time steps.

    Returns
    -------
    h : tensor, ``(ceil(n_timesteps / pool), n_samples, conv_filters)``
    mask : tensor, ``(ceil(n_timesteps / pool), n_samples)``
        A pooled step is real if any of its steps was.

    Padding never counts: its inputs are zeroed before the convolution (so
    the words at a review's edges see zeros, as with "same" padding of the
    review alone) and its outputs before the pooling. The ReLU outputs are
    >= 0, so a window's max over its real steps is its max. The last window
    may be short (Keras's ``MaxPooling1D`` would drop it).
    """
    n_steps, n_samples = x.shape[0], x.shape[1]
    W, b = tparams["conv_W"], tparams["conv_b"]  # W: (width, dim_emb, filters)
    x = x * mask[:, :, None]
    left = (width - 1) // 2
    zeros = pt.zeros((width - 1, n_samples, x.shape[2]), dtype=x.dtype)
    padded = pt.concatenate([zeros[:left], x, zeros[left:]], axis=0)
    h = sum(pt.dot(padded[k:k + n_steps], W[k]) for k in range(width)) + b
    h = pt.maximum(h, 0.0) * mask[:, :, None]
    if pool == 1:
        return h, mask
    # Pad the time axis to a multiple of `pool`, then max over each window.
    n_out = (n_steps + pool - 1) // pool
    extra = n_out * pool - n_steps
    h = pt.concatenate([h, pt.zeros((extra, n_samples, h.shape[2]), dtype=h.dtype)])
    mask = pt.concatenate([mask, pt.zeros((extra, n_samples), dtype=mask.dtype)])
    h = h.reshape((n_out, pool, n_samples, h.shape[2])).max(axis=1)
    mask = mask.reshape((n_out, pool, n_samples)).max(axis=1)
    return h, mask


def mean_pool(h, mask, impl="scan"):
    """Mean of ``h (n_timesteps, n_samples, dim)`` over the unmasked steps.
    ``impl="fused"``: the same arithmetic in one Op (``fused_lstm.MaskedMean``)."""
    if impl == "fused":
        return fused_lstm.masked_mean(h, mask)
    return (h * mask[:, :, None]).sum(axis=0) / mask.sum(axis=0)[:, None]


def max_pool(h, mask):
    """Maximum of ``h`` over the unmasked steps, per unit."""
    floor = np.asarray(-np.inf, dtype=config.floatX)
    return pt.where(mask[:, :, None] > 0, h, floor).max(axis=0)


def last_pool(h, mask, bidirectional=False):
    """The state after the last real token: ``h[-1]``, as a padded step
    carries the state over unchanged. The backward half of a bidirectional
    layer ends at the first token: ``h[0]`` (after flipping back)."""
    if not bidirectional:
        return h[-1]
    half = h.shape[2] // 2
    return pt.concatenate([h[-1, :, :half], h[0, :, half:]], axis=1)


def bigram_ids(x, mask, n_words, buckets):
    """The hashed bucket of each (previous word, word) pair, ``(n_timesteps, n_samples)``.

    The previous word of a review's first token (or of any token after a
    padded step) is 0, so padding never leaks into a review. The pair
    ``prev * n_words + word`` is spread by Knuth's multiplicative hash
    (``* 2654435761 mod 2**32``) and taken modulo ``buckets``; pairs that
    fall in one bucket share its vector (the "hashing trick" of fastText,
    Joulin et al. 2017).
    """
    # x, mask: (n_timesteps, n_samples); prev[t] = x[t-1] where step t-1 is real, else 0.
    prev = pt.concatenate([pt.zeros_like(x[:1]), pt.switch(mask[:-1] > 0, x[:-1], 0)])
    pair = prev * n_words + x
    return ((pair * 2654435761) % (2 ** 32)) % buckets


def encode_reviews(tparams, options, x, mask, word_keep=None):
    """The model up to the pooled vector, one per review.

    ``x`` (``(n_timesteps, n_samples)`` word ids) -> embeddings (plus the
    hashed bigram embeddings, with ``bigram_buckets``) -> optional
    convolution and pooling -> ``options.layers`` LSTMs (each bidirectional
    if asked: the backward LSTM reads the time-flipped sequence and its
    states are flipped back and concatenated) -> mean/last/max/meanmax pooling.
    With ``pool_embeddings`` the mean of the embeddings over the real (and
    kept) tokens is concatenated after it: a bag-of-words (and, with bigrams,
    of bigrams) path beside the LSTM, as fastText's (Joulin et al. 2017).
    ``word_keep`` (``(n_timesteps, n_samples)``, 0/1), when given, zeroes the
    embeddings of the dropped tokens (word dropout, training only).
    Returns ``(n_samples, pooled_dim(options))``.
    """
    n_timesteps, n_samples = x.shape[0], x.shape[1]
    lookup = fused_lstm.embedding if options.lstm_impl == "fused" else (
        lambda W, idx: W[idx])  # fused: the same lookup, with a faster gradient
    emb = lookup(tparams["Wemb"], x.flatten())
    if options.bigram_buckets:
        ids = bigram_ids(x, mask, options.n_words, options.bigram_buckets)
        emb = emb + lookup(tparams["Wbigram"], ids.flatten())
    h = emb.reshape([n_timesteps, n_samples, options.emb_dim])
    if word_keep is not None:
        h = h * word_keep[:, :, None]
    bag = []
    if options.pool_embeddings:
        # The mean over the tokens read: real (mask) and, in training, kept, so that
        # training and test see means of the same scale; a review whose tokens were
        # all dropped pools to zeros.
        read = mask if word_keep is None else mask * word_keep
        bag = [(h * read[:, :, None]).sum(axis=0) / pt.maximum(read.sum(axis=0), 1)[:, None]]
    if options.conv_filters:
        h, mask = conv_pool(tparams, h, mask, options.conv_width, options.pool)
    for layer in lstm_prefixes(options):
        states = [lstm_layer(tparams, h, mask, options.dim_proj, prefix=layer[0],
                             impl=options.lstm_impl)]
        if options.bidirectional:
            states.append(lstm_layer(tparams, h[::-1], mask[::-1], options.dim_proj,
                                     prefix=layer[1], impl=options.lstm_impl)[::-1])
        h = pt.concatenate(states, axis=2) if len(states) > 1 else states[0]
    if options.pooling == "last":
        pooled = [last_pool(h, mask, options.bidirectional)]
    elif options.pooling == "meanmax":
        pooled = [mean_pool(h, mask, options.lstm_impl), max_pool(h, mask)]
    elif options.pooling == "mean":
        pooled = [mean_pool(h, mask, options.lstm_impl)]
    else:
        pooled = [max_pool(h, mask)]
    pooled += bag
    return pt.concatenate(pooled, axis=1) if len(pooled) > 1 else pooled[0]


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
    n_samples = x.shape[1]
    proj = encode_reviews(tparams, options, x, mask)

    def classify(p):
        return pt.special.softmax(pt.dot(p, tparams["U"]) + tparams["b"], axis=-1)

    updates = OrderedDict()
    rng = next_rng = None
    if options.use_dropout or options.word_dropout:
        rng = next_rng = ptr.shared_rng(dropout_rng, name="dropout_rng")
    train_proj = proj
    if options.word_dropout:
        # Training: each token's embedding is zeroed with probability word_dropout
        # (drawn first); test: every token is read, unscaled.
        next_rng, word_keep = next_rng.binomial(1, 1.0 - options.word_dropout,
                                                size=x.shape)
        train_proj = encode_reviews(tparams, options, x, mask,
                                    word_keep.astype(config.floatX))
    if options.use_dropout:
        # Training: keep each unit with probability 0.5; test: scale by 0.5.
        next_rng, keep = next_rng.binomial(1, 0.5, size=train_proj.shape)
        train_pred = classify(train_proj * keep.astype(config.floatX))
        pred = classify(proj * numpy_floatX(0.5))
    else:
        train_pred, pred = classify(train_proj), classify(proj)
    if rng is not None:
        updates[rng] = next_rng

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
    Parameters and returns as :func:`sgd`.

    References
    ----------
    .. [Adam2015] Diederik P. Kingma and Jimmy Ba, *Adam: A Method for
       Stochastic Optimization*, ICLR 2015, arXiv:1412.6980.
    .. [AdamW2019] Ilya Loshchilov and Frank Hutter, *Decoupled Weight Decay
       Regularization*, ICLR 2019, arXiv:1711.05101.
    """
    zipped_grads = _zeros_like_params(tparams, "grad")
    m = _zeros_like_params(tparams, "adam_m")
    v = _zeros_like_params(tparams, "adam_v")
    t = pytensor.shared(numpy_floatX(0.0), name="adam_t")
    zgup = [(zg, g) for zg, g in zip(zipped_grads, grads)]
    f_grad_shared = pytensor.function(inputs, cost, updates=list(updates) + zgup,
                                      name="adam_f_grad_shared", mode=mode)
    t_new = t + 1.0
    beta1, beta2, epsilon = (pt.constant(numpy_floatX(c)) for c in (beta1, beta2, epsilon))
    fix1 = 1.0 - beta1 ** t_new
    fix2 = 1.0 - beta2 ** t_new
    decay = lr * numpy_floatX(weight_decay)
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
    scale = pt.minimum(numpy_floatX(1.0), numpy_floatX(clip_c) / (norm + numpy_floatX(1e-6)))
    return [g * scale for g in grads]


def trainable_params(tparams, options):
    """The parameters training changes (of a dict of shared variables or arrays):
    all but a frozen ``Wemb``."""
    return OrderedDict((k, v) for k, v in tparams.items()
                       if not (k == "Wemb" and options.freeze_embeddings))


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
    trainable = trainable_params(tparams, options)
    grads = clip_norm(pytensor.grad(model["cost"], wrt=list(trainable.values())),
                      options.clip_c)
    lr = pt.scalar(name="lr", dtype=config.floatX)
    optimizer = {"adadelta": adadelta, "rmsprop": rmsprop, "sgd": sgd,
                 "adam": functools.partial(adam, weight_decay=options.weight_decay)
                 }[options.optimizer]
    f_grad_shared, f_update, state = optimizer(
        lr, trainable, grads, inputs, model["cost"], updates=model["updates"].items(),
        mode=options.mode)
    f_ema, averages = weight_average(tparams, options.ema, options.mode)
    return dict(tparams=tparams, f_pred_prob=f_pred_prob,
                f_grad_shared=f_grad_shared, f_update=f_update, f_ema=f_ema,
                ema=averages, optimizer_state=state + list(averages.values()),
                rng=model["rng"])


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
    t = pytensor.shared(numpy_floatX(0.0), name="ema_t")
    t_new = t + 1.0
    d = pt.minimum(numpy_floatX(decay), (1.0 + t_new) / (10.0 + t_new))
    updates = [(a, d * a + (1.0 - d) * tparams[k]) for k, a in averages.items()]
    f_ema = pytensor.function([], [], updates=updates + [(t, t_new)],
                              name="f_ema", mode=mode)
    averages["ema_t"] = t
    return f_ema, averages


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


def batcher(options):
    """The minibatch builder for ``options``: ``f(seqs, labels, maxlen=None)
    -> (x, mask, labels)``, ``x`` time first.

    :func:`imdb.prepare_data` (the tutorial's: padded to the longest review
    of the minibatch), or with ``pad_to`` :func:`imdb.prepare_padded`
    (Keras's ``pad_sequences``: truncated and padded to ``pad_to``).
    """
    if not options.pad_to:
        return imdb.prepare_data
    align = options.pool if options.conv_filters else 1

    def prepare(seqs, labels, maxlen=None):
        return imdb.prepare_padded(seqs, labels, options.pad_to, options.padding,
                                   options.truncating, align=align)
    return prepare


def evaluate(f_pred_prob, splits, batch_size, prepare_data=imdb.prepare_data):
    """Error of each split in ``splits`` (a dict name -> (x, y))."""
    return {name: pred_error(f_pred_prob, prepare_data, data,
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
        seed=rngs["split"], valid_block=options.valid_block)
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
        self.prepare_data = batcher(options)
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
                    if o.bucket:
                        self.order = bucket_order(self.order, self.train_set[0],
                                                  o.batch_size, o.bucket, self.shuffle_rng)
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
        x, mask, y = self.prepare_data(x, y)
        cost = self.model["f_grad_shared"](x, mask, y)
        self.model["f_update"](numpy_floatX(o.lrate * o.lrate_decay ** self.eidx))
        if self.model.get("f_ema") is not None:
            self.model["f_ema"]()
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
        splits = {"train": self.train_set, "valid": self.valid_set, "test": self.test_set}
        done = ["valid"] + o.monitored()  # the others are NaN here, null in the log
        averaged = bool(self.model.get("ema"))
        if averaged:  # evaluate the average of the weights
            current = unzip(self.model["tparams"])
            zipp(self.model_params(), self.model["tparams"])
        errs = evaluate(self.model["f_pred_prob"], {name: splits[name] for name in done},
                        o.valid_batch_size, self.prepare_data)
        if averaged:
            zipp(current, self.model["tparams"])
        errs = {name: errs.get(name, float("nan")) for name in splits}
        self.history_errs.append([errs["valid"], errs["test"]])
        valid_errs = np.array(self.history_errs)[:, 0]
        is_best = self.best_p is None or errs["valid"] <= valid_errs.min()
        if is_best:
            self.best_p = self.model_params()
            self.best_update = self.uidx
            self.bad_counter = 0
        print("Train ", errs["train"], "Valid ", errs["valid"], "Test ", errs["test"],
              file=self.out)
        record = dict(epoch=self.eidx, update=self.uidx, cost=float(cost),
                      **{name + "_err": errs[name] if name in done else None
                         for name in splits}, best=bool(is_best),
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

    def model_params(self):
        """The parameters the model is now: the weights, or with ``--ema`` their average."""
        averages = self.model.get("ema")
        if not averages:
            return unzip(self.model["tparams"])
        return OrderedDict((k, averages[k].get_value()) for k in self.model["tparams"])

    def best_params(self):
        """The best parameters so far, or the current ones before any validation."""
        return self.best_p if self.best_p is not None else self.model_params()

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


def bucket_order(order, seqs, batch_size, pool, rng):
    """``order`` rearranged so that each minibatch holds reviews of similar length.

    The shuffled ``order`` is cut into pools of ``pool * batch_size`` reviews;
    each pool is sorted by length (stable) and cut into minibatches; the full
    minibatches are shuffled with ``rng`` and the last, partial one (if any)
    stays last. Every review is still seen once per epoch; a minibatch is
    padded to its longest review, so similar lengths mean less padding to
    compute.
    """
    lengths = np.array([len(seqs[i]) for i in order])
    size = pool * batch_size
    sorted_order = np.concatenate([
        order[start:start + size][np.argsort(lengths[start:start + size], kind="stable")]
        for start in range(0, len(order), size)])
    n_full = len(order) // batch_size
    full = sorted_order[:n_full * batch_size].reshape(n_full, batch_size)
    return np.concatenate([full[rng.permutation(n_full)].ravel(),
                           sorted_order[n_full * batch_size:]])


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
    words = read_dictionary(options, required=bool(options.embeddings) and not resume)
    options = dataclasses.replace(options, ydim=int(max(data[0][1])) + 1,
                                  dict_sha256=dictionary_digest(words, options.n_words)
                                  if words is not None else "")
    print("model options", json.dumps(dataclasses.asdict(options), sort_keys=True),
          file=out)
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
                    options.valid_batch_size, batcher(options))
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
                n_train=len(data[0][0]), n_valid=len(data[1][0]), n_test=len(data[2][0]),
                init_sha256=init_sha256)


def read_dictionary(options, required=False):
    """The word dictionary beside ``options.dataset``, or None if there is none
    (an error when ``required``)."""
    path = imdb.dict_path_for(options.dataset)
    if not required and not os.path.exists(path):
        return None
    return imdb.load_dict(path)


def dictionary_digest(words, n_words):
    """SHA-256 of the dictionary's words with ids below ``n_words``: the part a
    model depends on (saved as ``dict_sha256``; :class:`Predictor` checks it)."""
    pairs = sorted((i, w) for w, i in words.items() if i < n_words)
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode("utf-8")).hexdigest()


def layer_table(options):
    """The model's layers: ``(name, kind, output_shape, parameter_names)``.

    Shapes are time first: ``T`` time steps (``pad_to`` when set), ``N``
    reviews.
    """
    T = str(options.pad_to) if options.pad_to else "T"
    dirs = 2 if options.bidirectional else 1
    rows = [("embedding", "Embedding", (T, "N", options.emb_dim), ["Wemb"])]
    if options.bigram_buckets:
        rows.append(("bigrams", "+ hashed bigram embedding", (T, "N", options.emb_dim),
                     ["Wbigram"]))
    if options.word_dropout:
        rows.append(("word_dropout", "Word dropout %g" % options.word_dropout,
                     (T, "N", options.emb_dim), []))
    if options.conv_filters:
        rows.append(("conv", "Conv1D w=%d, relu" % options.conv_width,
                     (T, "N", options.conv_filters), ["conv_W", "conv_b"]))
        if options.pool > 1:
            T = (str(-(-int(T) // options.pool)) if T.isdigit()
                 else "ceil(T/%d)" % options.pool)
            rows.append(("pool", "MaxPool1D %d" % options.pool,
                         (T, "N", options.conv_filters), []))
    for layer in lstm_prefixes(options):
        for prefix in layer:
            kind = "LSTM, backward" if prefix.endswith("_rev") else "LSTM"
            rows.append((prefix, kind, (T, "N", options.dim_proj),
                         [_p(prefix, k) for k in "WUb"]))
        if dirs == 2:
            rows.append(("concat", "Concatenate", (T, "N", dirs * options.dim_proj), []))
    pooling = "Mean+max" if options.pooling == "meanmax" else options.pooling.capitalize()
    if options.pool_embeddings:
        rows.append(("pooling", "%s over real steps" % pooling,
                     ("N", pooled_dim(options) - options.emb_dim), []))
        rows.append(("bag", "+ mean of the embeddings", ("N", pooled_dim(options)), []))
    else:
        rows.append(("pooling", "%s over real steps" % pooling, ("N", pooled_dim(options)), []))
    if options.use_dropout:
        rows.append(("dropout", "Dropout 0.5", ("N", pooled_dim(options)), []))
    rows.append(("classifier", "Dense, softmax", ("N", options.ydim), ["U", "b"]))
    return rows


def model_summary(options, params):
    """A Keras-like ``model.summary()``: each layer, its output shape and
    parameter count, then the totals (of the arrays in ``params``)."""
    rows = layer_table(options)
    named = [name for row in rows for name in row[3]]
    assert sorted(named) == sorted(params), "layer_table misses parameters"
    frozen = set(params) - set(trainable_params(params, options))
    lines = ["%-14s %-26s %-22s %12s" % ("Layer", "Type", "Output shape", "Param #")]
    lines.append("=" * len(lines[0]))
    for name, kind, shape, names in rows:
        count = sum(params[k].size for k in names)
        lines.append("%-14s %-26s %-22s %12s" % (
            name, kind, "(%s)" % ", ".join(map(str, shape)), "{:,}".format(count)))
    lines.append("=" * len(lines[0]))
    total = sum(v.size for v in params.values())
    fixed = sum(params[k].size for k in frozen)
    lines += ["Total params: {:,}".format(total),
              "Trainable params: {:,}".format(total - fixed),
              "Non-trainable params: {:,}".format(fixed)]
    return "\n".join(lines)


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
      help="number of LSTM hidden units (and the word embedding size, unless --dim-emb)")
    a("--optimizer", choices=OPTIMIZERS, default=d.optimizer,
      help="update rule (the tutorial's three, and adam; adadelta and rmsprop ignore "
           "--lrate)")
    a("--lrate", type=float, default=d.lrate,
      help="learning rate for sgd and adam (adam's usual value: 0.001)")
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
    a("--valid-block", type=int, default=d.valid_block, metavar="N",
      help="> 0: the validation split is random runs of N consecutive reviews (file "
           "order) instead of random reviews; aclImdb's reviews of one movie are "
           "consecutive, so the held-out movies are mostly unseen, as in the test set")
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
    a("--dim-emb", type=int, default=d.dim_emb,
      help="word embedding size (0: --dim-proj, as the tutorial)")
    a("--bigram-buckets", type=int, default=d.bigram_buckets,
      help="> 0: add to each word's vector a learned vector of its (previous word, word) "
           "pair, hashed into this many buckets (0: none, as the tutorial)")
    a("--pool-embeddings", action="store_true",
      help="also feed the classifier the mean of the (word + bigram) embeddings over the "
           "review's tokens, beside the pooled LSTM states (a bag-of-n-grams path)")
    a("--layers", type=int, default=d.layers, help="number of stacked LSTM layers")
    a("--bidirectional", action="store_true",
      help="each LSTM layer also reads the review backwards (outputs concatenated)")
    a("--conv-filters", type=int, default=d.conv_filters,
      help="> 0: a convolution over time with this many filters (ReLU) before the LSTM")
    a("--conv-width", type=int, default=d.conv_width,
      help="the convolution's width in tokens ('same' padding)")
    a("--pool", type=int, default=d.pool,
      help="max-pooling over time after the convolution: window = stride = P steps")
    a("--pooling", choices=POOLINGS, default=d.pooling,
      help="hidden states -> one vector per review: mean (the tutorial), last (the "
           "state after the last real token), max, or meanmax (mean and max "
           "concatenated), over real tokens only")
    a("--pad-to", type=int, default=d.pad_to,
      help="> 0: pad/truncate every review to N tokens (Keras's pad_sequences) "
           "instead of dropping long reviews; use with --maxlen 0")
    a("--padding", choices=SIDES, default=d.padding,
      help="with --pad-to: pad before (pre) or after (post) the words")
    a("--truncating", choices=SIDES, default=d.truncating,
      help="with --pad-to: cut a long review's beginning (pre) or end (post)")
    a("--embeddings", default=d.embeddings, metavar="FILE",
      help="initialise Wemb from pre-trained vectors: word2vec/fastText .vec or GloVe "
           "text format, gzip too; coverage is reported")
    a("--freeze-embeddings", action="store_true",
      help="do not train Wemb (with --embeddings or --reload-model)")
    a("--forget-bias", type=float, default=d.forget_bias,
      help="initial bias of the LSTM forget gates (the tutorial: 0; Keras: 1)")
    a("--lrate-decay", type=float, default=d.lrate_decay,
      help="multiply the learning rate (sgd, adam) by this after each epoch (1: constant, "
           "as the tutorial)")
    a("--clip-c", type=float, default=d.clip_c,
      help="> 0: rescale the gradients when their global L2 norm exceeds this "
           "(0: no clipping, as the tutorial)")
    a("--ema", type=float, default=d.ema,
      help="> 0: keep an exponential moving average of the weights with this decay "
           "(e.g. 0.999) and validate, keep and save it instead of the raw weights "
           "(0: none, as the tutorial)")
    a("--weight-decay", type=float, default=d.weight_decay,
      help="Adam only: decoupled weight decay of the weight matrices, "
           "p -= lrate * weight_decay * p at each update (AdamW; 0: none)")
    a("--word-dropout", type=float, default=d.word_dropout,
      help="training only: zero each token's embedding with this probability (word "
           "dropout; the tutorial: 0)")
    a("--monitor", default=d.monitor,
      help="splits whose errors are computed, besides valid, at each validation "
           "(comma-separated: train,test; '' for none, faster); the final errors of "
           "the best model are always computed")
    a("--bucket", type=int, default=d.bucket, metavar="POOL",
      help="> 0: minibatches of reviews of similar length (each epoch's shuffled order "
           "is cut into pools of POOL minibatches, each sorted by length), so less "
           "padding is computed")
    return group


PRESET_DIR = os.path.join(HERE, "presets")


def preset_names():
    """The presets shipped in ``presets/`` (``tutorial``, ``keras-imdb``, ...)."""
    return sorted(f[:-5] for f in os.listdir(PRESET_DIR) if f.endswith(".json"))


def read_config_file(path):
    """The options in a JSON config file (a preset): a dict of Config fields.

    A ``"description"`` string is allowed and dropped; any other unknown key,
    or a value of the wrong type, is an error naming the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            values = json.load(f)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        values.pop("description", None)
        Config.from_dict(values).validate()
    except FileNotFoundError:
        raise DataError("%s: no such config file" % path) from None
    except (OSError, ValueError, TypeError, RecursionError) as exc:
        raise DataError("%s: bad config file (%s)"
                        % (path, " ".join(str(exc).split()) or type(exc).__name__)) from None
    return values


def add_config_args(parser):
    """``--preset NAME`` and ``--config FILE`` (read by :func:`parse_with_config`)."""
    parser.add_argument(
        "--preset", default=None, metavar="NAME",
        help="start from a named set of options, presets/NAME.json (%s); flags given "
             "on the command line win" % ", ".join(preset_names()))
    parser.add_argument(
        "--config", default=None, metavar="FILE",
        help="start from the options in this JSON file (e.g. a copy of a preset); "
             "applied after --preset, before the command-line flags")


def parse_with_config(parser, argv=None):
    """Parse ``argv`` with the options of ``--preset`` and ``--config`` as defaults:
    defaults < preset < config file < flags. Raises DataError on a bad file."""
    first, _ = parser.parse_known_args(argv)
    defaults = {}
    if first.preset:
        if first.preset not in preset_names():
            parser.error("unknown preset %r (choose from %s)"
                         % (first.preset, ", ".join(preset_names())))
        defaults.update(read_config_file(os.path.join(PRESET_DIR, first.preset + ".json")))
    if first.config:
        defaults.update(read_config_file(first.config))
    parser.set_defaults(**defaults)
    return parser.parse_args(argv)


def build_parser():
    """The command line of ``lstm.py`` (``lstm.py predict`` has its own)."""
    p = argparse.ArgumentParser(
        description="Train the deeplearning.net tutorial's LSTM sentiment "
                    "classifier on IMDB (or a corpus made by imdb_preprocess.py). "
                    "With no option it runs the tutorial: train_lstm(max_epochs=100, "
                    "test_size=500). Also: 'lstm.py predict' classifies raw text with "
                    "a saved model; 'lstm.py evaluate' gives its accuracy, confusion "
                    "matrix and accuracy by review length (each has --help).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    add_config_args(p)
    add_training_args(p)
    a("--resume", default=None, metavar="CHECKPOINT",
      help="continue a run exactly from its checkpoint (<model>.ckpt.npz, written every "
           "--save-freq updates and on Ctrl-C); the checkpoint's options are used and "
           "the other options are ignored")
    a("--summary", action="store_true",
      help="print the model's layers, output shapes and parameter counts, then exit")
    a("--debug", action="store_true", help="show tracebacks on errors")
    return p


def parse_options(argv=None):
    """Parse ``lstm.py``'s command line: defaults < ``--preset`` < ``--config``
    < flags. Returns ``(parser, args)``; raises DataError on a bad config file."""
    parser = build_parser()
    return parser, parse_with_config(parser, argv)


def print_summary(options, out=None):
    """``--summary``: the model's table, without training (ydim from the
    dataset when it is there, else 2)."""
    ydim = options.ydim
    if not ydim:
        if os.path.exists(options.dataset):
            train, _ = imdb.load_dataset_file(options.dataset)
            ydim = int(max(train[1])) + 1
        else:
            ydim = 2
            print("(%s not found: 2 classes assumed)" % options.dataset, file=out)
    options = dataclasses.replace(options, ydim=ydim)
    params = init_params(options, make_rngs(options.seed)["init"])
    print(model_summary(options, params), file=out)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["predict"]:
        return predict_main(argv[1:])
    if argv[:1] == ["evaluate"]:
        return evaluate_main(argv[1:])
    try:
        parser, args = parse_options(argv)
    except DataError as exc:
        print("lstm.py: error: %s" % str(exc).splitlines()[0], file=sys.stderr)
        return 2
    values = vars(args)
    debug = values.pop("debug")
    source = values.pop("source")
    resume = values.pop("resume")
    summary = values.pop("summary")
    for key in ("preset", "config"):
        values.pop(key)
    try:
        options = Config.from_dict(values).validate()
    except ValueError as exc:
        parser.error(str(exc))
    try:
        if summary:
            print_summary(options)
            return 0
        result = train_lstm(options, source=source, resume=resume)
    except DataError as exc:
        if debug:
            raise
        print("lstm.py: error: %s" % str(exc).splitlines()[0], file=sys.stderr)
        return 2
    return {"ok": 0, "interrupted": 130}.get(result["status"], 1)


# ---------------------------------------------------------------------------
# Prediction on raw text.
# ---------------------------------------------------------------------------
class Predictor:
    """A saved model, ready to classify raw text.

    Parameters
    ----------
    model : str
        The ``.npz`` model; its options are read from the JSON beside it.
    dictionary : str, optional
        The word dictionary (default: the one beside the options' dataset).
        It must be the one the model was trained with (checked against the
        options' ``dict_sha256``).

    Texts are tokenized by :func:`imdb_preprocess.tokenize`, the tokenizer
    that made the dataset, and cut/padded as in training (``pad_to``).
    """

    def __init__(self, model="lstm_model.npz", dictionary=None):
        import imdb_preprocess  # the shared tokenizer (loads sacremoses)
        self.preprocess = imdb_preprocess
        options = load_options(model)
        dictionary = dictionary or imdb.dict_path_for(options.dataset)
        self.words = imdb.load_dict(dictionary)
        digest = dictionary_digest(self.words, options.n_words)
        if not options.dict_sha256:
            raise DataError("%s: the model was trained without a dictionary digest "
                            "(no dictionary beside its dataset): cannot check %s"
                            % (model_paths(model)[0], dictionary))
        if digest != options.dict_sha256:
            raise DataError("%s: not the dictionary %s was trained with (its first %d "
                            "words differ)" % (dictionary, model, options.n_words))
        self.options, self.f_pred_prob = load_model(model, options)
        self.prepare_data = batcher(options)
        self.label_names = _label_names(options)

    def encode(self, text):
        """Word ids of ``text`` (ids >= n_words and unknown words become 1)."""
        tokens = self.preprocess.tokenize(text)
        return imdb._remove_unk(self.preprocess.encode([tokens], self.words),
                                self.options.n_words)[0]

    def predict_proba(self, texts):
        """Class probabilities, ``(len(texts), ydim)``."""
        seqs = [self.encode(t) for t in texts]
        for n, seq in enumerate(seqs):
            if not seq:
                raise ValueError("text %d has no words" % (n + 1))
        order = sorted(range(len(seqs)), key=lambda n: len(seqs[n]))  # less padding
        batches = get_minibatches_idx(len(seqs), self.options.valid_batch_size)
        sorted_seqs = [seqs[n] for n in order]
        probs = pred_probs(self.f_pred_prob, self.prepare_data,
                           (sorted_seqs, [0] * len(seqs)), batches)
        out = np.empty_like(probs)
        out[order] = probs
        return out

    def predict(self, texts):
        """One dict per text: ``label`` (int), ``name``, ``probability`` (of that
        label) and ``probs`` (every class)."""
        probs = self.predict_proba(texts)
        return [dict(label=int(p.argmax()), name=self.label_names[int(p.argmax())],
                     probability=float(p.max()), probs=[float(v) for v in p])
                for p in probs]


def load_model(model, options=None):
    """A saved model's options and its compiled ``f_pred_prob(x, mask)``.

    The options come from the JSON beside ``model`` unless given; the arrays
    must fit them (else a one-line :class:`imdb.DataError`).
    """
    options = options or load_options(model)
    if not options.ydim:
        raise DataError("%s: the options have no ydim (not saved by training)"
                        % model_paths(model)[0])
    options = dataclasses.replace(options, lstm_impl="fused")
    params = load_params(model, init_params(options, make_rngs(0)["init"]))
    built = build_model(init_tparams(params), options, np.random.default_rng(0))
    f_pred_prob = pytensor.function([built["x"], built["mask"]], built["pred"],
                                    name="f_pred_prob", mode=options.mode)
    return options, f_pred_prob


LENGTH_BUCKETS = (0, 100, 200, 300, 500, 1000)


def evaluate_model(model, dataset=None, split="test"):
    """Accuracy, confusion matrix and accuracy by review length of a saved model.

    Every review of ``split`` (``"test"`` or ``"train"``) of ``dataset``
    (default: the model's) is classified, as the model was trained
    (``n_words``, ``pad_to``). ``model`` may also be a list of saved models:
    their class probabilities are averaged (an ensemble). Returns a dict:
    ``n``, ``accuracy``, ``confusion`` (``[true][predicted]`` counts),
    ``labels`` (names) and ``by_length`` (one dict per bucket of review
    length in tokens: ``from``, ``to``, ``n``, ``accuracy``).
    """
    models = [model] if isinstance(model, str) else list(model)
    loaded = [load_model(m) for m in models]
    options = loaded[0][0]
    dataset = dataset or options.dataset
    train, test = imdb.load_dataset_file(dataset)
    x, y = test if split == "test" else train
    for m, (o, _) in zip(models, loaded):
        if o.ydim != options.ydim:
            raise DataError("%s has %d classes, %s has %d: not one ensemble"
                            % (models[0], options.ydim, m, o.ydim))
    if max(y) >= options.ydim:
        raise DataError("%s: label %d, but the model %s has %d classes"
                        % (dataset, max(y), models[0], options.ydim))
    order = sorted(range(len(x)), key=lambda n: len(x[n]))  # less padding
    probs = 0.0
    for o, f_pred_prob in loaded:
        seqs = imdb._remove_unk([x[n] for n in order], o.n_words)
        probs = probs + pred_probs(f_pred_prob, batcher(o), (seqs, [0] * len(x)),
                                   get_minibatches_idx(len(x), o.valid_batch_size))
    pred = np.empty(len(x), dtype="int64")
    pred[order] = probs.argmax(axis=1)
    x = imdb._remove_unk(x, options.n_words)
    y = np.asarray(y, dtype="int64")
    lengths = np.array([len(s) for s in x])
    confusion = np.zeros((options.ydim, options.ydim), dtype="int64")
    np.add.at(confusion, (y, pred), 1)
    edges = list(LENGTH_BUCKETS) + [None]
    by_length = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (lengths >= lo) & (lengths < (hi if hi is not None else np.inf))
        if sel.any():
            by_length.append({"from": lo, "to": hi, "n": int(sel.sum()),
                              "accuracy": float((pred[sel] == y[sel]).mean())})
    names = _label_names(options)
    return dict(model=" + ".join(models), dataset=dataset, split=split, n=len(y),
                accuracy=float((pred == y).mean()), confusion=confusion.tolist(),
                labels=[names[i] for i in range(options.ydim)], by_length=by_length)


def evaluation_text(r):
    """:func:`evaluate_model`'s result as a short report."""
    width = max(len(n) for n in r["labels"]) + 2
    lines = ["%s on %s (%s, %d reviews)" % (r["model"], r["dataset"], r["split"], r["n"]),
             "accuracy %.4f (error %.4f)" % (r["accuracy"], 1 - r["accuracy"]), "",
             "confusion matrix (rows: true label, columns: predicted)",
             " " * width + "".join("%10s" % n for n in r["labels"])]
    for name, row in zip(r["labels"], r["confusion"]):
        lines.append(name.ljust(width) + "".join("%10d" % v for v in row))
    lines += ["", "accuracy by review length (tokens)"]
    for b in r["by_length"]:
        span = "%d-%d" % (b["from"], b["to"] - 1) if b["to"] else ">= %d" % b["from"]
        lines.append("%12s  %6d reviews  %.4f" % (span, b["n"], b["accuracy"]))
    return "\n".join(lines)


def evaluate_main(argv):
    """``lstm.py evaluate``: accuracy, confusion matrix, accuracy by length."""
    p = argparse.ArgumentParser(
        prog="lstm.py evaluate",
        description="Evaluate a saved model on every review of a preprocessed split: "
                    "accuracy, confusion matrix, accuracy by review length.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", nargs="+", default=[Config().saveto],
                   help="the saved model (.npz); several: an ensemble, their class "
                        "probabilities averaged")
    p.add_argument("--dataset", default=None,
                   help="preprocessed corpus (default: the model's own)")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="which part of the dataset file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    args = p.parse_args(argv)
    try:
        result = evaluate_model(args.model, args.dataset, args.split)
    except DataError as exc:
        if args.debug:
            raise
        print("lstm.py evaluate: error: %s" % str(exc).splitlines()[0], file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2) if args.json else evaluation_text(result))
    return 0


def _label_names(options):
    """Label id -> name: ``<dataset>.labels.json`` when there is one, else
    ``neg``/``pos`` for two classes (IMDB's 0/1), else the ids."""
    names = {i: str(i) for i in range(options.ydim)}
    if options.ydim == 2:
        names = {0: "neg", 1: "pos"}
    path = imdb._stem(options.dataset) + ".labels.json"
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                names.update({int(i): str(n) for n, i in json.load(f).items()})
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise DataError("%s: bad labels file (%s)" % (path, exc)) from None
    return names


def predict(texts, model="lstm_model.npz", dictionary=None):
    """Classify raw texts with a saved model: a list of dicts (see
    :meth:`Predictor.predict`). Loads the model on each call; keep a
    :class:`Predictor` to classify many batches."""
    return Predictor(model, dictionary).predict(list(texts))


def predict_main(argv):
    """``lstm.py predict``: label and probability of each text."""
    p = argparse.ArgumentParser(
        prog="lstm.py predict",
        description="Classify raw reviews with a saved model: one line per review, "
                    "'label<TAB>probability<TAB>text'. Texts come from the arguments, "
                    "else --file, else standard input (one review per line; blank "
                    "lines are skipped).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("texts", nargs="*", help="reviews to classify")
    p.add_argument("--model", default=Config().saveto, help="the saved model (.npz)")
    p.add_argument("--dict", default=None, metavar="PATH",
                   help="word dictionary (default: the one beside the model's dataset)")
    p.add_argument("--file", default=None, metavar="PATH",
                   help="read reviews from this file, one per line ('-': stdin)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per review (text, label, name, "
                        "probability, probs)")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    args = p.parse_args(argv)
    try:
        texts = args.texts
        if not texts:
            if args.file and args.file != "-":
                try:
                    with open(args.file, encoding="utf-8") as f:
                        texts = f.read().splitlines()
                except (OSError, UnicodeDecodeError) as exc:
                    raise DataError("%s: cannot read (%s)" % (args.file, exc)) from None
            else:
                texts = sys.stdin.read().splitlines()
        texts = [t for t in texts if t.strip()]
        if not texts:
            p.error("no text to classify")
        results = Predictor(args.model, args.dict).predict(texts)
    except (DataError, ValueError) as exc:
        if args.debug:
            raise
        print("lstm.py predict: error: %s" % str(exc).splitlines()[0], file=sys.stderr)
        return 2
    for text, r in zip(texts, results):
        if args.json:
            print(json.dumps(dict(text=text, **r), ensure_ascii=False))
        else:
            snippet = text if len(text) <= 60 else text[:57] + "..."
            print("%s\t%.4f\t%s" % (r["name"], r["probability"], snippet))
    return 0


if __name__ == "__main__":
    sys.exit(main())
