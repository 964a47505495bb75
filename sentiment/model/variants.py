"""The model's variants beyond the tutorial: stacked and bidirectional layers,
a convolution before the LSTM, hashed bigrams, max/last pooling, a bag of
embeddings beside the LSTM, Keras-style padding, and two regularisers of
training: DropConnect on ``U`` and adversarial perturbations of the embeddings.

``lstm.build_model`` calls these when the options ask for them; with the
tutorial's options none of them is used. Axes are time first, as in
``lstm.py``: ``x`` and ``mask`` are ``(n_timesteps, n_samples)``.
"""
import sentiment.kernels.pytensor_flags  # noqa: F401  (before PyTensor: the project's flags)

from collections import OrderedDict

import numpy as np
import pytensor
import pytensor.tensor as pt
from pytensor import config
from pytensor.gradient import disconnected_grad

import imdb


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



def trainable_params(tparams, options):
    """The parameters training changes (of a dict of shared variables or arrays):
    all but a frozen ``Wemb``."""
    return OrderedDict((k, v) for k, v in tparams.items()
                       if not (k == "Wemb" and options.freeze_embeddings))


def param_init_conv(options, params, rng):
    """``conv_W`` ``(conv_width, emb_dim, conv_filters)``, Glorot uniform as
    Keras's ``Conv1D``, and ``conv_b`` (zeros), added to ``params``."""
    fan = options.conv_width * (options.emb_dim + options.conv_filters)
    bound = np.sqrt(6.0 / fan)
    params["conv_W"] = rng.uniform(-bound, bound, (
        options.conv_width, options.emb_dim, options.conv_filters)).astype(config.floatX)
    params["conv_b"] = np.zeros((options.conv_filters,), dtype=config.floatX)
    return params


def conv_pool(tparams, x, mask, width, pool, dot=pt.dot):
    """Convolution over time (ReLU, "same" padding), then max-pooling over time.

    Parameters
    ----------
    x : tensor, ``(n_timesteps, n_samples, dim_emb)``
    mask : tensor, ``(n_timesteps, n_samples)``
    width, pool : int
        Filter width and pooling size (= stride) in time steps.
    dot : callable
        The matrix product (``pt.dot``, or ``fused_lstm.dot``).

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
    h = sum(dot(padded[k:k + n_steps], W[k]) for k in range(width)) + b
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


def max_pool(h, mask):
    """Maximum of ``h`` over the unmasked steps, per unit."""
    floor = np.asarray(-np.inf, dtype=config.floatX)
    return pt.where(mask[:, :, None] > 0, h, floor).max(axis=0)


def last_pool(states):
    """The state after the last real token: ``h[-1]``, as a padded step
    carries the state over unchanged. ``states``: each direction's ``h``; the
    backward direction's ends at the first token: ``h[0]`` (after flipping
    back)."""
    return joined([h[-1] if k == 0 else h[0] for k, h in enumerate(states)])


def joined(pooled):
    """The pooled vectors ``(n_samples, units)`` side by side (one: itself)."""
    return pt.concatenate(pooled, axis=1) if len(pooled) > 1 else pooled[0]


def bigram_ids(x, mask, n_words, buckets):
    """The hashed bucket of each (previous word, word) pair, ``(n_timesteps, n_samples)``.

    The previous word of a review's first token (or of any token after a
    padded step) is 0, so padding never leaks into a review. The pair
    ``prev * n_words + word`` is spread by Knuth's multiplicative hash
    (``* 2654435761 mod 2**32``) and taken modulo ``buckets``; pairs that
    fall in one bucket share its vector (the "hashing trick" of fastText,
    Joulin et al. 2017). The arithmetic is in uint32, whose wrap-around is the
    ``mod 2**32`` (the same ids as in int64, and JAX's 32-bit integers run it).
    """
    # x, mask: (n_timesteps, n_samples); prev[t] = x[t-1] where step t-1 is real, else 0.
    prev = pt.concatenate([pt.zeros_like(x[:1]), pt.switch(mask[:-1] > 0, x[:-1], 0)])
    pair = prev.astype("uint32") * _uint32(n_words) + x.astype("uint32")
    return ((pair * _uint32(2654435761)) % _uint32(buckets)).astype("int64")


def _uint32(value):
    return np.asarray(value, dtype="uint32")


def tokens_read(mask, word_keep=None):
    """The tokens a training pass reads, ``(n_timesteps, n_samples)``: real
    (``mask``) and, in training, kept by word dropout (``word_keep``)."""
    return mask if word_keep is None else mask * word_keep


def bag_of_embeddings(emb, mask, word_keep=None):
    """The mean of the embeddings ``emb`` ``(n_timesteps, n_samples, dim)`` over
    the tokens read: real (``mask``) and, in training, kept (``word_keep``), so
    that training and test see means of the same scale; a review whose tokens
    were all dropped pools to zeros. Concatenated to the pooled LSTM states, it
    is a bag-of-words (with bigrams, of bigrams) path beside the LSTM, as
    fastText's (Joulin et al. 2017)."""
    read = tokens_read(mask, word_keep)
    return (emb * read[:, :, None]).sum(axis=0) / pt.maximum(read.sum(axis=0), 1)[:, None]


def other_pooling(states, mask, options):
    """The pooled vectors besides the tutorial's mean: ``max`` (also the second
    half of ``meanmax``) or ``last``, of each direction's ``states``, joined;
    an empty list for ``mean``."""
    if options.pooling == "last":
        return [last_pool(states)]
    if options.pooling in ("max", "meanmax"):
        return [joined([max_pool(h, mask) for h in states])]
    return []


def drop_connect(tparams, options, rng, noise):
    """DropConnect on the recurrent weights (the "weight drop" of AWD-LSTM [1]_).

    Each LSTM's ``U`` is multiplied by its own 0/1 mask, kept with probability
    ``1 - options.u_dropout`` and drawn once per minibatch (every time step of
    every review sees the same ``U``), and scaled by ``1 / (1 - u_dropout)``, so
    the test-time model reads ``U`` unchanged. The draws are added to ``noise``
    (``u_keep_<prefix>``). Returns ``(rng, tparams)``: the next RNG and a copy of
    ``tparams`` with the dropped ``U``.

    .. [1] Stephen Merity, Nitish Shirish Keskar and Richard Socher,
       "Regularizing and Optimizing LSTM Language Models", ICLR 2018.
    """
    dropped = OrderedDict(tparams)
    scale = np.asarray(1.0 / (1.0 - options.u_dropout), dtype=config.floatX)
    for layer in lstm_prefixes(options):
        for prefix in layer:
            U = tparams[prefix + "_U"]
            rng, keep = rng.binomial(1, 1.0 - options.u_dropout, size=U.shape)
            noise["u_keep_" + prefix] = keep
            dropped[prefix + "_U"] = U * (keep.astype(config.floatX) * scale)
    return rng, dropped


def adversarial_direction(grad, eps):
    """The adversarial perturbation of Miyato et al. [1]_: ``eps * g / ||g||``
    per review, ``g`` the gradient of the loss with respect to the embeddings
    ``(n_timesteps, n_samples, emb_dim)`` and the norm over each review's time
    steps and dimensions (padding's gradient is 0). Held constant: no gradient
    flows through it. The scaling by the largest ``|g|`` first is theirs (it
    keeps the squares in range).

    .. [1] Takeru Miyato, Andrew M. Dai and Ian Goodfellow, "Adversarial
       Training Methods for Semi-Supervised Text Classification", ICLR 2017
       (section 3, equation 2).
    """
    g = disconnected_grad(grad)
    alpha = pt.max(abs(g), axis=(0, 2), keepdims=True) + np.asarray(1e-12, config.floatX)
    scaled = g / alpha
    norm = alpha * pt.sqrt((scaled ** 2).sum(axis=(0, 2), keepdims=True)
                           + np.asarray(1e-6, config.floatX))
    return np.asarray(eps, config.floatX) * (g / norm)


def adversarial_move(cost, emb, mask, word_keep, options, rng, noise):
    """The move of the embeddings ``emb`` ``(n_timesteps, n_samples, emb_dim)``
    that ``adv_eps`` trains against: along the gradient of ``cost`` (Miyato et
    al. [1]_), or with ``adv_direction`` ``"random"`` in a Gaussian direction
    over the tokens read (:func:`tokens_read` of ``mask`` and ``word_keep``), their
    control (random noise instead of the adversarial move: 7.20 % error on IMDB
    against 6.21 %). Either is scaled by :func:`adversarial_direction` to the
    norm ``adv_eps`` per review. The random draw is added to ``noise``
    (``adv_random``). Returns ``(rng, move)``.

    .. [1] Takeru Miyato, Andrew M. Dai and Ian Goodfellow, "Adversarial
       Training Methods for Semi-Supervised Text Classification", ICLR 2017
       (table 2: "Random perturbation with labeled examples").
    """
    if options.adv_direction == "random":
        rng, draw = rng.normal(0.0, 1.0, size=emb.shape)
        noise["adv_random"] = draw
        direction = draw.astype(config.floatX) * tokens_read(mask, word_keep)[:, :, None]
    else:
        direction = pytensor.grad(cost, emb)
    return rng, adversarial_direction(direction, options.adv_eps)


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
