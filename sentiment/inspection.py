"""``lstm.py inspect``: a trained model opened on one review.

:class:`Inspector` runs a saved model the readable way, ``--lstm-impl scan``
(the tutorial's ``_step`` as written, compiled by ``lstm.load_gates``), and
keeps what each step computed: every LSTM's input projection, its gates i, f,
o, its cell state c and its hidden state h, then the pooled vector and the
class probabilities. :meth:`Inspector.shapes` names the shape of every tensor
from the word ids to the probabilities; :func:`figure` draws the gates and
states over the review's words, above the words that moved the prediction
(:class:`sentiment.explain.Explainer`, as ``predict --explain``); :func:`main`
is the command. Like :mod:`sentiment.predict`, this module holds no model
code: the model's functions are passed in (``lstm.inspector``).
"""
import argparse
import dataclasses
import os
import sys

import numpy as np

from sentiment.config import Config
from sentiment.errors import DataError, report
from sentiment.explain import kept_span, top_tokens
from sentiment.files import atomic_write
from sentiment.predict import Predictor
from sentiment.variants import batcher, lstm_prefixes

#: What an LSTM computes at each step, in the order of ``_step``.
KEYS = ("i", "f", "o", "c", "h")
TITLES = {"i": "input gate $i_t$", "f": "forget gate $f_t$", "o": "output gate $o_t$",
          "c": "cell state $C_t$", "h": "hidden state $h_t$"}


@dataclasses.dataclass
class Inspection:
    """What a model computed for one review.

    Attributes
    ----------
    tokens, ids : list
        The tokens the model read (with ``pad_to``, the kept ones) and their
        word ids (ids >= ``n_words`` are 1).
    first, n_tokens : int
        The index of the first token read, and the review's length in tokens.
    gates : dict
        Per LSTM, by parameter prefix (``lstm``, ``lstm_rev``, ``lstm2``, ...),
        ``{"i", "f", "o", "c", "h"}`` -> array ``(len(tokens), dim_proj)``, in
        the review's order (a backward LSTM's flipped back).
    probs : numpy.ndarray
        The class probabilities, ``(ydim,)``.
    explanation : dict
        :meth:`sentiment.explain.Explainer.explain_ids`'s result for the review.
    shapes : list of tuple
        ``(name, shape, meaning)`` of every tensor, as :meth:`Inspector.shapes`.
    label_names : dict
        Label id -> name.
    """
    tokens: list
    ids: list
    first: int
    n_tokens: int
    gates: dict
    probs: np.ndarray
    explanation: dict
    shapes: list
    label_names: dict


class Inspector:
    """A saved model, ready to show what it computes on a review.

    Parameters
    ----------
    model : str
        The ``.npz`` model (its options in the JSON beside it).
    load_model, load_states, load_gates : callable
        ``lstm.load_model``, ``lstm.load_states`` and ``lstm.load_gates``.
    dictionary : str, optional
        The word dictionary (default: the one beside the model's dataset).
    """

    def __init__(self, model, load_model, load_states, load_gates, dictionary=None):
        self.model = model
        self.predictor = Predictor(model, load_model, dictionary)
        self.options = self.predictor.options
        if self.options.conv_filters:
            raise DataError("%s: its convolution (--conv-filters) pools the words before the "
                            "LSTM, whose steps are then not the review's words" % model)
        self.explainer = self.predictor.explainer(model, load_states)
        _, self.params, self.f_gates = load_gates(model, self.options)
        self.prefixes = [p for layer in lstm_prefixes(self.options) for p in layer]
        self.prepare = batcher(self.options)

    def inspect(self, text):
        """:meth:`inspect_ids` of a raw text, tokenized as the dataset was."""
        tokens, ids = self.predictor.encode_tokens(text)
        if not ids:
            raise ValueError("the text has no words")
        return self.inspect_ids(ids, tokens)

    def inspect_ids(self, ids, tokens=None):
        """An :class:`Inspection` of one review given as word ids."""
        ids = [int(i) for i in ids]
        tokens = list(tokens) if tokens is not None else [str(i) for i in ids]
        start, stop = kept_span(len(ids), self.options)
        x, mask, _ = self.prepare([ids[start:stop]], [0])
        values = dict(self.f_gates(x, mask))
        steps = np.flatnonzero(mask[:, 0] > 0)   # the real steps, in the review's order
        gates = {p: {k: values["%s.%s" % (p, k)][steps, 0] for k in KEYS}
                 for p in self.prefixes}
        explanation = self.explainer.explain_ids([ids], tokens=[tokens])[0]
        return Inspection(tokens=tokens[start:stop], ids=ids[start:stop], first=start,
                          n_tokens=len(ids), gates=gates, probs=values["pred"][0],
                          explanation=explanation, shapes=self._shapes(x, mask, values),
                          label_names=self.predictor.label_names)

    def shapes(self, x, mask):
        """``(name, shape, meaning)`` of every tensor the model computes on the
        minibatch ``x``, ``mask`` (time first), from the ids to the probabilities."""
        return self._shapes(x, mask, dict(self.f_gates(x, mask)))

    def _shapes(self, x, mask, values):
        o = self.options
        rows = [("x", x.shape, "word ids, time first: (n_timesteps, n_samples)"),
                ("mask", mask.shape, "1 on a word, 0 on padding"),
                ("emb", values["emb"].shape, "Wemb[x]; the LSTM's input x_t = emb[t], "
                                             "(n_samples, %d)" % o.emb_dim)]
        for prefix in self.prefixes:
            xw = values[prefix + ".xw"].shape
            rows += [(prefix + ".xw", xw, "x_t W + b of every step, before the loop"),
                     (prefix + " z_t", xw[1:], "one step's x_t W + b + h_{t-1} U, in _step")]
            rows += [("%s.%s" % (prefix, k), values["%s.%s" % (prefix, k)].shape, TITLES[k]
                      .replace("$", "").replace("_t", "") + " of every step") for k in KEYS]
        rows += [("proj", values["proj"].shape, "%s pooling over the real steps"
                  % o.pooling + (" (and the mean of the embeddings)" if o.pool_embeddings
                                 else "")),
                 ("pred", values["pred"].shape,
                  "softmax(%sproj U + b): the class probabilities"
                  % ("0.5 " if o.use_dropout else ""))]
        return [(name, tuple(int(n) for n in shape), meaning) for name, shape, meaning in rows]


def chosen_units(h, units):
    """The ``units`` units whose hidden state varies most over the review, most
    first; every unit when ``units`` is 0 or more than there are."""
    order = np.argsort(-h.std(axis=0), kind="stable")
    return order if not units or units >= len(order) else order[:units]


def direction_title(prefix):
    """The title of an LSTM's column in the figure, from its parameter prefix."""
    layer = prefix.split("_")[0][4:] or "1"
    text = "layer %s" % layer if layer != "1" else "the LSTM"
    if prefix.endswith("_rev"):
        return "%s, backward (%s: reads the review from its end)" % (text, prefix)
    return "%s (%s)" % (text, prefix)


def figure(inspection, units=32, max_tokens=60):
    """The gates i, f, o, the cell state and the hidden state of each LSTM over
    the review's tokens (one row per unit), above each token's share of the
    prediction; a :class:`matplotlib.figure.Figure`.

    Each image holds exactly ``inspection.gates[prefix][k][:n, chosen].T``
    (``chosen``: :func:`chosen_units` of that LSTM's ``h``; ``n``: at most
    ``max_tokens``, 0 for all), so the figure's numbers are the model's.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend

    n = len(inspection.tokens) if not max_tokens else min(max_tokens, len(inspection.tokens))
    prefixes = list(inspection.gates)
    dim = next(iter(inspection.gates.values()))["h"].shape[1]
    shown = {p: chosen_units(inspection.gates[p]["h"][:n], units) for p in prefixes}
    n_units = len(shown[prefixes[0]])
    width = max(7.0, 0.2 * n + 2.5) * len(prefixes)
    panel = max(1.1, 0.035 * n_units + 0.5)
    fig = Figure(figsize=(width, 5 * panel + 2.4), layout="constrained")
    axes = fig.subplots(6, len(prefixes), squeeze=False, sharex=True,
                        gridspec_kw=dict(height_ratios=[panel] * 5 + [1.6]))
    # One colour scale per row, so one colour bar reads every column: gates on [0, 1],
    # the states symmetric around 0.
    lims = {k: max(max(float(np.abs(inspection.gates[p][k][:n, shown[p]]).max())
                       for p in prefixes), 1e-6) for k in "ch"}
    scores = [t["score"] for t in inspection.explanation["tokens"]
              [inspection.first:inspection.first + n]]
    for col, prefix in enumerate(prefixes):
        gates = inspection.gates[prefix]
        for row, key in enumerate(KEYS):
            ax, data = axes[row, col], gates[key][:n, shown[prefix]].T
            if key in "ifo":
                image = ax.imshow(data, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                                  interpolation="nearest")
            else:
                image = ax.imshow(data, aspect="auto", cmap="RdBu_r", vmin=-lims[key],
                                  vmax=lims[key], interpolation="nearest")
            ax.set_title(TITLES[key], loc="left", fontsize=9)
            ax.set_ylabel("unit", fontsize=8)
            ticks = range(0, n_units, max(1, n_units // 8))
            ax.set_yticks(list(ticks), [str(shown[prefix][k]) for k in ticks], fontsize=6)
            if col == len(prefixes) - 1:
                fig.colorbar(image, ax=axes[row, :].tolist(), pad=0.01, aspect=12)
        axes[0, col].set_title(direction_title(prefix) + "\n" + TITLES["i"], loc="left",
                               fontsize=9)
        _draw_scores(axes[5, col], scores, inspection)
        axes[5, col].set_xticks(range(n), inspection.tokens[:n], rotation=70, fontsize=7)
    probs, names = inspection.probs, inspection.label_names
    best = int(np.argmax(probs))
    fig.suptitle("prediction %s %.3f; rows: the %d of %d units whose hidden state varies most; "
                 "tokens %d-%d of %d"
                 % (names[best], probs[best], n_units, dim, inspection.first + 1,
                    inspection.first + n, inspection.n_tokens), fontsize=10)
    return fig


def _draw_scores(ax, scores, inspection):
    """Each token's share of the score ``log p(target) - log p(versus)``."""
    e = inspection.explanation
    values = np.array([0.0 if s is None else s for s in scores])
    ax.bar(range(len(values)), values, color=np.where(values >= 0, "C2", "C3"), width=0.8)
    ax.axhline(0, color="0.5", lw=0.6)
    ax.set_title("each word's share of log P(%s) - log P(%s) (%s)"
                 % (e["target_name"], e["versus_name"], e["method"]), loc="left", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)


def save(fig, path):
    """Write ``fig`` to ``path`` (PNG) and beside it as SVG, each atomically;
    returns the two paths."""
    svg = os.path.splitext(path)[0] + ".svg"
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=110))
    atomic_write(svg, lambda f: fig.savefig(f, format="svg"))
    return path, svg


def format_shapes(shapes):
    """The shape table, one line per tensor."""
    lines = ["%-16s %-18s %s" % ("tensor", "shape", "what")]
    lines += ["%-16s %-18s %s" % (name, str(shape), meaning) for name, shape, meaning in shapes]
    return "\n".join(lines)


def build_parser():
    """The command line of ``lstm.py inspect``."""
    p = argparse.ArgumentParser(
        prog="lstm.py inspect",
        description="Open a trained model on one review: print the shape of every tensor "
                    "from the word ids to the class probabilities and the words that moved "
                    "the prediction, and draw the gates i, f, o, the cell state and the "
                    "hidden state of each LSTM over the review's words (PNG and SVG). The "
                    "model runs as --lstm-impl scan, the tutorial's _step as written.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("text", nargs="*", help="the review (the words are joined with spaces); "
                                           "none: --file, else standard input")
    p.add_argument("--model", default=Config().saveto, help="the saved model (.npz)")
    p.add_argument("--dict", default=None, metavar="PATH",
                   help="word dictionary (default: the one beside the model's dataset)")
    p.add_argument("--file", default=None, metavar="PATH",
                   help="read the review from this file ('-': standard input)")
    p.add_argument("--out", default="inspect.png", metavar="PATH",
                   help="the figure, PNG; the SVG goes beside it, with the extension .svg")
    p.add_argument("--units", type=int, default=32,
                   help="draw the N units whose hidden state varies most (0: all)")
    p.add_argument("--max-tokens", type=int, default=60,
                   help="draw the first N tokens the model reads (0: all)")
    p.add_argument("--top", type=int, default=5,
                   help="list the N words that moved the prediction most, each way")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def read_text(args):
    """The review: the arguments, else ``--file``, else standard input."""
    if args.text:
        return " ".join(args.text)
    if args.file and args.file != "-":
        try:
            with open(args.file, encoding="utf-8") as f:
                return f.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError("%s: cannot read (%s)" % (args.file, exc)) from None
    return sys.stdin.read()


def report_text(inspection, model, paths, top):
    """What ``lstm.py inspect`` prints."""
    probs, names = inspection.probs, inspection.label_names
    order = np.argsort(-probs, kind="stable")
    lines = ["model %s, run as --lstm-impl scan; %d tokens read of %d"
             % (model, len(inspection.tokens), inspection.n_tokens),
             "prediction: " + ", ".join("%s %.4f" % (names[int(k)], probs[k]) for k in order),
             "", format_shapes(inspection.shapes), ""]
    up, down = top_tokens(inspection.explanation, top)
    e = inspection.explanation
    for label, words in (("towards " + e["target_name"], up), ("towards " + e["versus_name"],
                                                                down)):
        lines.append("words %-14s %s" % (label + ":", " ".join("%s(%+.3f)" % w for w in words)
                                         or "-"))
    lines.append("figure: %s" % ", ".join(paths))
    return "\n".join(lines)


def main(argv, load_model, load_states, load_gates):
    """``lstm.py inspect``; returns the exit status."""
    p = build_parser()
    args = p.parse_args(argv)
    for flag in ("units", "max_tokens", "top"):
        if getattr(args, flag) < 0:
            p.error("--%s must be 0 or more" % flag.replace("_", "-"))
    try:
        text = read_text(args)
        if not text.strip():
            raise DataError("%s: no text to inspect" % (args.file or "the command line"))
        inspector = Inspector(args.model, load_model, load_states, load_gates, args.dict)
        inspection = inspector.inspect(text)
        paths = save(figure(inspection, args.units, args.max_tokens), args.out)
    except (DataError, ValueError) as exc:
        if args.debug:
            raise
        return report("lstm.py inspect", exc)
    print(report_text(inspection, args.model, paths, args.top))
    return 0
