"""``lstm.py inspect``: a trained model opened on one review.

:class:`Inspector` runs a saved model the readable way, ``--lstm-impl scan``
(the tutorial's ``_step`` as written, compiled by ``lstm.load_gates``), and
keeps what each step computed: every LSTM's input projection, its gates i, f,
o, its cell state c and its hidden state h, then the pooled vector and the
class probabilities. :meth:`Inspector.shapes` names the shape of every tensor
from the word ids to the probabilities; :func:`figure` draws the gates and
states over the review's words, above the words that moved the prediction
(:class:`sentiment.explain.scores.Explainer`, as ``predict --explain``); :func:`main`
is the command. Like :mod:`sentiment.commands.predict`, this module holds no model
code: the model's functions are passed in (``lstm.inspector``).
"""
import argparse
import dataclasses
import os
import sys
import textwrap

import numpy as np

from sentiment.model.config import Config
from sentiment.common.errors import DataError, report
from sentiment.explain.scores import kept_span, top_tokens
from sentiment.common.files import atomic_write
from sentiment.commands.predict import Predictor
from sentiment.model.variants import batcher, lstm_prefixes

#: What an LSTM computes at each step, in the order of ``_step``.
KEYS = ("i", "f", "o", "c", "h")
TITLES = {"i": "input gate $i_t$", "f": "forget gate $f_t$", "o": "output gate $o_t$",
          "c": "cell state $C_t$", "h": "hidden state $h_t$"}


class NoWords(ValueError):
    """A text with no words once tokenized."""


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
        :meth:`sentiment.explain.scores.Explainer.explain_ids`'s result for the review.
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
            raise NoWords("the text has no words")
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
                ("emb", values["emb"].shape,
                 "Wemb[x]%s; the LSTM's input x_t = emb[t], (n_samples, %d)"
                 % (" + Wbigram[bigram ids]" if o.bigram_buckets else "", o.emb_dim))]
        for prefix in self.prefixes:
            xw = values[prefix + ".xw"].shape
            rows += [(prefix + ".xw", xw, "x_t W + b of every step, before the loop"),
                     (prefix + " z_t", xw[1:], "one step's x_t W + b + h_{t-1} U, in _step")]
            rows += [("%s.%s" % (prefix, k), values["%s.%s" % (prefix, k)].shape, TITLES[k]
                      .replace("$", "").replace("_t", "") + " of every step") for k in KEYS]
        rows += [("proj", values["proj"].shape, "%s pooling over the real steps"
                  % o.pooling + (" (and the mean of the embeddings)" if o.pool_embeddings
                                 else "")),
                 ("logits", values["pred"].shape, "%sproj U + b, one score per class"
                  % ("0.5 " if o.use_dropout else "")),
                 ("pred", values["pred"].shape, "softmax(logits): the class probabilities")]
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


def colour_limits(key, data, gate_scale="data"):
    """The colour scale ``(vmin, vmax)`` of one panel of :func:`figure`.

    The gates (``i``, ``f``, ``o``): ``0.5 ± d``, ``d`` the largest distance of
    ``data`` from 0.5 rounded up to 0.05 (at most 0.5, so inside [0, 1]): a
    trained model's gates often stay within 0.3-0.7, which a [0, 1] scale
    shows as one flat colour; ``gate_scale="full"``: [0, 1]. The states (``c``,
    ``h``): symmetric around 0, to the largest ``|data|``.
    """
    data = np.asarray(data, dtype="float64")
    if key in "ifo":
        if gate_scale == "full":
            return 0.0, 1.0
        d = float(np.abs(data - 0.5).max()) if data.size else 0.5
        d = min(0.5, max(0.05, np.ceil(d / 0.05 - 1e-9) * 0.05))
        return 0.5 - d, 0.5 + d
    lim = max(float(np.abs(data).max()) if data.size else 0.0, 1e-6)
    return -lim, lim


def figure(inspection, units=32, max_tokens=60, gate_scale="data"):
    """The gates i, f, o, the cell state and the hidden state of each LSTM over
    the review's tokens (one row per unit; one column per LSTM, a backward one
    in the review's order), above each token's share of the prediction; a
    :class:`matplotlib.figure.Figure`.

    Each image holds exactly ``inspection.gates[prefix][k][:n, chosen].T``
    (``chosen``: :func:`chosen_units` of that LSTM's ``h``; ``n``: at most
    ``max_tokens`` tokens from the first one the model reads, 0 for all), so the
    figure's numbers are the model's; each has its own colour bar
    (:func:`colour_limits`, ``gate_scale`` "data" or "full").
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, any backend

    if gate_scale not in ("data", "full"):
        raise ValueError("gate_scale must be 'data' or 'full', not %r" % (gate_scale,))
    n = len(inspection.tokens) if not max_tokens else min(max_tokens, len(inspection.tokens))
    prefixes = list(inspection.gates)
    dim = next(iter(inspection.gates.values()))["h"].shape[1]
    shown = {p: chosen_units(inspection.gates[p]["h"][:n], units) for p in prefixes}
    n_units = len(shown[prefixes[0]])
    width = max(7.5, 0.19 * n + 3.0) * len(prefixes)
    panel = max(1.2, 0.04 * n_units + 0.5)
    fig = Figure(figsize=(width, 5 * panel + 3.0), layout="constrained")
    axes = fig.subplots(6, len(prefixes), squeeze=False, sharex=True,
                        gridspec_kw=dict(height_ratios=[panel] * 5 + [1.8]))
    scores = [t["score"] for t in inspection.explanation["tokens"]
              [inspection.first:inspection.first + n]]
    cmaps = dict(i="BrBG", f="BrBG", o="BrBG", c="RdBu_r", h="RdBu_r")
    for col, prefix in enumerate(prefixes):
        gates = inspection.gates[prefix]
        for row, key in enumerate(KEYS):
            ax, data = axes[row, col], gates[key][:n, shown[prefix]].T
            vmin, vmax = colour_limits(key, data, gate_scale)
            image = ax.imshow(data, aspect="auto", cmap=cmaps[key], vmin=vmin, vmax=vmax,
                              interpolation="nearest")
            ax.set_title(TITLES[key], loc="left", fontsize=9)
            ax.set_ylabel("unit", fontsize=8)
            ticks = range(0, n_units, max(1, n_units // 8))
            ax.set_yticks(list(ticks), [str(shown[prefix][k]) for k in ticks], fontsize=6)
            bar = fig.colorbar(image, ax=ax, pad=0.005, aspect=10, fraction=0.03)
            bar.ax.tick_params(labelsize=7)
        axes[0, col].set_title(direction_title(prefix) + "\n" + TITLES["i"], loc="left",
                               fontsize=9)
        _draw_scores(axes[5, col], scores, inspection)
        axes[5, col].set_xticks(range(n), inspection.tokens[:n], rotation=70, fontsize=7)
        axes[0, col].tick_params(axis="x", labeltop=True, labelrotation=70, labelsize=7)
    probs, names = inspection.probs, inspection.label_names
    best = int(np.argmax(probs))
    shown_tokens = "tokens %d-%d of %d" % (inspection.first + 1, inspection.first + n,
                                           inspection.n_tokens)
    if n < len(inspection.tokens) or len(inspection.tokens) < inspection.n_tokens:
        shown_tokens += " (the model reads %d-%d)" % (
            inspection.first + 1, inspection.first + len(inspection.tokens))
    fig.suptitle("\n".join(textwrap.fill(line, int(8 * width)) for line in [
        "prediction: %s %.3f; columns: %s" % (names[best], probs[best], shown_tokens),
        "rows: %s" % ("all %d units" % dim if n_units == dim else
                      "the %d of %d units whose hidden state varies most (unit numbers on "
                      "the left)" % (n_units, dim)),
        "gates i, f, o: %s; c and h: blue < 0 < red" % (
            "on [0, 1], brown closed, green open" if gate_scale == "full" else
            "brown closed, green open, each panel on 0.5 ± its largest distance from 0.5")]),
        fontsize=10)
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
    p.add_argument("--dict", "--dictionary", dest="dict", default=None, metavar="PATH",
                   help="word dictionary (default: the one beside the model's dataset)")
    p.add_argument("--file", default=None, metavar="PATH",
                   help="read the review from this file ('-': standard input)")
    p.add_argument("--out", default="inspect.png", metavar="PATH",
                   help="the figure, PNG; the SVG goes beside it, with the extension .svg")
    p.add_argument("--units", type=int, default=32,
                   help="draw the N units whose hidden state varies most (0: all)")
    p.add_argument("--max-tokens", type=int, default=60,
                   help="draw the first N tokens the model reads (0: all); the figure's "
                        "title says which tokens it shows")
    p.add_argument("--gate-scale", choices=("data", "full"), default="data",
                   help="colour scale of the gates: 'data', 0.5 +- their largest distance "
                        "from 0.5 in the panel; 'full', [0, 1]")
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
    source = ("the command line" if args.text else
              args.file if args.file and args.file != "-" else "standard input")
    try:
        text = read_text(args)
        if not text.strip():
            raise DataError("%s: no text to inspect" % source)
        inspector = Inspector(args.model, load_model, load_states, load_gates, args.dict)
        try:
            inspection = inspector.inspect(text)
        except NoWords:
            raise DataError("%s: no words to inspect (nothing left after tokenizing)"
                            % source) from None
        fig = figure(inspection, args.units, args.max_tokens, args.gate_scale)
        try:
            paths = save(fig, args.out)
        except OSError as exc:
            raise DataError("%s: cannot write the figure (%s)" % (args.out, exc)) from None
    except (DataError, ValueError) as exc:
        if args.debug:
            raise
        return report("lstm.py inspect", exc)
    print(report_text(inspection, args.model, paths, args.top))
    return 0
