"""Why a saved model predicted what it did: each token's share of the score.

The explained score is the difference of two classes' scores (logits), ``d =
z_target - z_versus``: ``pos - neg`` for two classes; for more, the predicted
class against the runner-up, or a chosen class against the strongest other.
It is also the difference of the log-probabilities, ``log p_target - log
p_versus``, as the softmax's normaliser cancels.

**The exact split** (``mean``, ``max`` and ``meanmax`` pooling, no convolution).
The classifier reads the pooled vector ``p`` scaled by ``s`` (0.5 with dropout,
as ``lstm.build_model`` does at test time): ``d = s p . w + (b_target -
b_versus)`` with ``w = U[:, target] - U[:, versus]``. Every part of ``p`` is a
sum over the review's ``n`` real tokens:

- mean pooling: ``mean_t h_t``, so token ``t`` gets ``s (h_t . w_mean) / n``;
- max pooling: unit ``j`` takes its value from one step ``t_j`` (the argmax over
  the real steps), so token ``t`` gets ``s sum_{j: t_j = t} h_{t_j j} w_max_j``;
- ``meanmax``: both (``p`` is ``[mean, max]``, ``w`` split the same way);
- ``pool_embeddings``: the bag of embeddings ``mean_t e_t``: ``s (e_t . w_bag) / n``.

``h_t`` is the state after reading token ``t`` (of the last layer; with
``bidirectional``, forward and backward states at step ``t``, both given to
token ``t``). So the tokens' contributions plus the bias term ``b_target -
b_versus`` are the model's ``d``, to float32 rounding, with no approximation.
(A state carries what was read before it, so a token's number includes its
context; Murdoch and Szlam, 2017, "Automatic rule extraction from long short
term memory networks", ICLR, split an LSTM's last state instead by the change
each word makes to it.)

**Occlusion** (``last`` pooling, a convolution in front: no exact split). Token
``t``'s contribution is ``d`` minus the ``d`` of the review without it (the
erasure of Li, Monroe and Jurafsky, 2016, "Understanding neural networks through
representation erasure", arXiv:1612.08220); a review left with no token scores
the bias term (the zero state). These do not add up to ``d``: the ``residual``
says by how much.

Tokens are the model's: Moses-tokenized, lower-cased, mapped through the
dictionary (``unknown``: id 1, not in the dictionary or not among its first
``n_words``), and cut by ``pad_to`` as in training (``cut``: not read, no
score). The model is received (a :class:`sentiment.commands.predict.Predictor` and
``lstm.load_states``): this module holds no model code of its own.
"""
import numpy as np

from sentiment.model import variants

EXACT_POOLINGS = ("mean", "max", "meanmax")
UNKNOWN_ID = 1


def method_for(options):
    """``"exact"`` when the prediction splits exactly over the tokens (mean, max
    or meanmax pooling of the LSTM's states, no convolution), else ``"occlusion"``."""
    if options.pooling in EXACT_POOLINGS and not options.conv_filters:
        return "exact"
    return "occlusion"


def describe_method(options):
    """The method, in words, for the output."""
    if method_for(options) == "exact":
        return "exact split of the %s pooling" % options.pooling
    why = "a convolution in front" if options.conv_filters else "%s pooling" % options.pooling
    return "occlusion: each token left out (%s has no exact split)" % why


def kept_span(n_tokens, options):
    """The tokens the model reads of a review of ``n_tokens``, ``(start, stop)``:
    all, or with ``pad_to`` the last (``truncating="pre"``) or first ``pad_to``."""
    if not options.pad_to or n_tokens <= options.pad_to:
        return 0, n_tokens
    if options.truncating == "pre":
        return n_tokens - options.pad_to, n_tokens
    return 0, options.pad_to


def pooled_slices(options):
    """Where each part of the pooled vector lies: a dict ``mean``/``max``/``last``/
    ``bag`` -> slice, in ``lstm.encode_reviews``'s order (mean, max or last, bag)."""
    units = options.dim_proj * (2 if options.bidirectional else 1)
    parts = [("mean", units)] if options.pooling in ("mean", "meanmax") else []
    if options.pooling in ("max", "meanmax"):
        parts.append(("max", units))
    if options.pooling == "last":
        parts.append(("last", units))
    if options.pool_embeddings:
        parts.append(("bag", options.emb_dim))
    slices, start = {}, 0
    for name, width in parts:
        slices[name] = slice(start, start + width)
        start += width
    return slices


def step_contributions(h, emb, w, slices, scale):
    """The exact split of ``scale * (pooled @ w)`` over one review's real steps.

    Parameters
    ----------
    h : numpy.ndarray, ``(n, units)``
        The states before pooling at the review's ``n`` real steps, in order.
    emb : numpy.ndarray, ``(n, emb_dim)``
        The embeddings at those steps (read with ``pool_embeddings``).
    w : numpy.ndarray, ``(pooled_dim,)``
        ``U[:, target] - U[:, versus]``.
    slices : dict
        :func:`pooled_slices`.
    scale : float
        0.5 with dropout (the test-time scaling), else 1.

    Returns
    -------
    numpy.ndarray, ``(n,)``, float64: they sum to ``scale * (pooled @ w)``.
    """
    h, emb, w = (np.asarray(a, dtype="float64") for a in (h, emb, w))
    n = len(h)
    out = np.zeros(n)
    if "mean" in slices:
        out += h @ w[slices["mean"]] / n
    if "max" in slices:
        steps = h.argmax(axis=0)  # the step each unit's maximum comes from
        np.add.at(out, steps, h[steps, np.arange(h.shape[1])] * w[slices["max"]])
    if "bag" in slices:
        out += emb @ w[slices["bag"]] / max(n, 1)
    return scale * out


def log_odds(probs, target, versus):
    """``log p_target - log p_versus``: the logit difference (the softmax's
    normaliser cancels); probabilities that underflowed count as 1e-45."""
    probs = np.maximum(np.asarray(probs, dtype="float64"), 1e-45)
    return float(np.log(probs[target]) - np.log(probs[versus]))


def choose_classes(probs, label=None):
    """``(target, versus)``: ``label`` (default: class 1 of two, else the
    predicted class) against the strongest other class."""
    probs = np.asarray(probs)
    if label is None:
        label = 1 if len(probs) == 2 else int(probs.argmax())
    others = [c for c in np.argsort(-probs, kind="stable") if c != label]
    return int(label), int(others[0])


def resolve_label(label, names, model=""):
    """A label given by id or name (``"pos"``, ``"1"``) as its id; a ValueError
    naming the model's labels otherwise; None stays None."""
    if label is None:
        return None
    for i, name in names.items():
        if str(label) in (name, str(i)):
            return int(i)
    raise ValueError("--label %s: not a label of %s (%s)" % (
        label, model or "the model", ", ".join(names[i] for i in sorted(names))))


def top_tokens(result, k):
    """The ``k`` strongest tokens each way: ``(towards_target, towards_versus)``,
    lists of ``(token, score)``, strongest first."""
    scored = [(t["token"], t["score"]) for t in result["tokens"] if t["score"] is not None]
    up = sorted((s for s in scored if s[1] > 0), key=lambda s: -s[1])[:k]
    down = sorted((s for s in scored if s[1] < 0), key=lambda s: s[1])[:k]
    return up, down


class Explainer:
    """A saved model, ready to say which tokens moved its predictions.

    Parameters
    ----------
    predictor : sentiment.commands.predict.Predictor
        The model (``options``, ``classify(seqs)``, ``label_names`` and
        ``encode_tokens(text)``; only the first three for :meth:`explain_ids`).
    params : dict of numpy.ndarray
        The model's parameters (``U`` and ``b`` are read).
    states : callable
        ``states(x, mask) -> (h, emb)``: the hidden states before pooling,
        ``(n_timesteps, n_samples, units)``, and the embeddings (``lstm.load_states``).
    model : str, optional
        The model's file, for error messages.
    """

    def __init__(self, predictor, params, states, model=""):
        self.predictor, self.model = predictor, model
        self.options = predictor.options
        self.names = predictor.label_names
        self.U = np.asarray(params["U"], dtype="float64")
        self.b = np.asarray(params["b"], dtype="float64")
        self.states = states
        self.method = method_for(self.options)
        self.scale = 0.5 if self.options.use_dropout else 1.0

    def explain(self, texts, label=None):
        """One dict per raw text (see :meth:`explain_ids`), with its ``text``."""
        encoded = [self.predictor.encode_tokens(t) for t in texts]
        for n, (_, ids) in enumerate(encoded):
            if not ids:
                raise ValueError("text %d has no words" % (n + 1))
        results = self.explain_ids([ids for _, ids in encoded], label,
                                   [tokens for tokens, _ in encoded])
        for text, r in zip(texts, results):
            r["text"] = text
        return results

    def explain_ids(self, seqs, label=None, tokens=None):
        """Explain reviews given as word ids (ids >= ``n_words`` already 1).

        Returns one dict per review: ``label``, ``name``, ``probability``,
        ``probs`` (as :meth:`Predictor.predict`); ``target``, ``versus`` and
        their names (the score explained is ``z_target - z_versus``);
        ``score`` (the model's, ``log p_target - log p_versus``), ``bias``
        (``b_target - b_versus``), ``residual`` (``score - bias - sum of the
        tokens' scores``: float32 rounding for the exact split); ``method``,
        ``method_text``; ``tokens``: one dict per token, ``token``, ``id``,
        ``score`` (None when cut), ``unknown``, ``cut``.
        """
        label = resolve_label(label, self.names, self.model)
        seqs = [list(s) for s in seqs]
        tokens = tokens or [[str(i) for i in s] for s in seqs]
        spans = [kept_span(len(s), self.options) for s in seqs]
        kept = [s[a:b] for s, (a, b) in zip(seqs, spans)]
        probs = self._classify(kept)
        classes = [choose_classes(p, label) for p in probs]
        if self.method == "exact":
            scores = self._exact(kept, classes)
        else:
            scores = self._occlusion(kept, classes, probs)
        return [self._result(*args) for args in zip(seqs, tokens, spans, probs, classes, scores)]

    def _classify(self, seqs):
        """Class probabilities, in minibatches of reviews of similar length."""
        order = sorted(range(len(seqs)), key=lambda n: len(seqs[n]))
        probs = np.asarray(self.predictor.classify([seqs[n] for n in order]))
        out = np.empty_like(probs)
        out[order] = probs
        return out

    def _exact(self, seqs, classes):
        """The exact split of each review's score, one array per review."""
        prepare = variants.batcher(self.options)
        slices = pooled_slices(self.options)
        order = sorted(range(len(seqs)), key=lambda n: len(seqs[n]))
        out = [None] * len(seqs)
        size = max(self.options.valid_batch_size, 1)
        for start in range(0, len(order), size):
            batch = order[start:start + size]
            x, mask, _ = prepare([seqs[n] for n in batch], [0] * len(batch))
            h, emb = self.states(x, mask)
            for col, n in enumerate(batch):
                steps = np.flatnonzero(mask[:, col] > 0)  # the real steps, in order
                target, versus = classes[n]
                w = self.U[:, target] - self.U[:, versus]
                out[n] = step_contributions(h[steps, col], emb[steps, col], w, slices,
                                            self.scale)
        return out

    def _occlusion(self, seqs, classes, probs):
        """Each token's ``d`` minus the ``d`` of the review without it."""
        variants, owners = [], []
        for n, seq in enumerate(seqs):
            for t in range(len(seq)):
                if len(seq) > 1:
                    variants.append(seq[:t] + seq[t + 1:])
                    owners.append(n)
        left_out = self._classify(variants) if variants else []
        scores = [np.zeros(len(s)) for s in seqs]
        filled = [0] * len(seqs)
        for n, p in zip(owners, left_out):
            scores[n][filled[n]] = log_odds(p, *classes[n])
            filled[n] += 1
        for n, (target, versus) in enumerate(classes):
            if len(seqs[n]) == 1:  # without its only token: the zero state, the bias
                scores[n][0] = self.b[target] - self.b[versus]
            scores[n] = log_odds(probs[n], target, versus) - scores[n]
        return scores

    def _result(self, seq, tokens, span, probs, classes, scores):
        """One review's dict (see :meth:`explain_ids`)."""
        target, versus = classes
        score, bias = log_odds(probs, target, versus), float(self.b[target] - self.b[versus])
        rows = []
        for i, (token, word_id) in enumerate(zip(tokens, seq)):
            cut = not span[0] <= i < span[1]
            rows.append(dict(token=token, id=int(word_id), unknown=word_id == UNKNOWN_ID,
                             cut=cut, score=None if cut else float(scores[i - span[0]])))
        predicted = int(np.argmax(probs))
        return dict(label=predicted, name=self.names[predicted],
                    probability=float(probs[predicted]), probs=[float(p) for p in probs],
                    target=target, target_name=self.names[target], versus=versus,
                    versus_name=self.names[versus], score=score, bias=bias,
                    residual=float(score - bias - np.sum(scores)), method=self.method,
                    method_text=describe_method(self.options), tokens=rows)

