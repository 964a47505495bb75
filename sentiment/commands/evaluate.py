"""``lstm.py evaluate``: accuracy, confusion matrix and accuracy by review
length of a saved model (or of an ensemble of saved models) on a whole split.

The models are loaded by the function passed in, ``lstm.load_model``: this
module holds no model code of its own. ``--explain-errors K`` explains the K
most confidently wrong reviews (:mod:`sentiment.explain.scores`).
"""
import argparse
import json
import sys

import numpy as np

import imdb
from sentiment.explain import html as explain_html, text as explain_text
from sentiment.model.config import Config
from sentiment.common.errors import DataError, report
from sentiment.commands.predict import Predictor, label_names


LENGTH_BUCKETS = (0, 100, 200, 300, 500, 1000)


def evaluate_model(model, load_model, dataset=None, split="test", batch_size=None):
    """Accuracy, confusion matrix and accuracy by review length of a saved model.

    Every review of ``split`` (``"test"`` or ``"train"``) of ``dataset``
    (default: the model's) is classified, as the model was trained
    (``n_words``, ``pad_to``). ``model`` may also be a list of saved models:
    their class probabilities are averaged (an ensemble). Returns a dict:
    ``n``, ``accuracy``, ``confusion`` (``[true][predicted]`` counts),
    ``labels`` (names) and ``by_length`` (one dict per bucket of review
    length in tokens: ``from``, ``to``, ``n``, ``accuracy``). ``load_model``
    is ``lstm.load_model``; ``batch_size``: reviews per minibatch (None: the
    model's ``valid_batch_size``).
    """
    return summarize(classify_split(model, load_model, dataset, split, batch_size))


def classify_split(model, load_model, dataset=None, split="test", batch_size=None):
    """Every review of a split classified by a model or an ensemble, sorted by
    length and in minibatches of ``batch_size`` (None: the model's
    ``valid_batch_size``): a dict of ``models``, ``loaded`` (``load_model``'s
    tuples), ``options``, ``dataset``, ``split``, ``x`` (the reviews' ids, as in
    the file), ``y`` and ``probs``."""
    models = [model] if isinstance(model, str) else list(model)
    loaded = [load_model(m) for m in models]
    options = loaded[0][0]
    dataset = dataset or options.dataset
    train, test = imdb.load_dataset_file(dataset)
    x, y = test if split == "test" else train
    for m, (o, _, _) in zip(models, loaded):
        if o.ydim != options.ydim:
            raise DataError("%s has %d classes, %s has %d: not one ensemble"
                            % (models[0], options.ydim, m, o.ydim))
    if max(y) >= options.ydim:
        raise DataError("%s: label %d, but the model %s has %d classes"
                        % (dataset, max(y), models[0], options.ydim))
    order = sorted(range(len(x)), key=lambda n: len(x[n]))  # less padding
    probs = 0.0
    for o, _, classify in loaded:
        probs = probs + classify(imdb.remove_unk([x[n] for n in order], o.n_words), batch_size)
    out = np.empty_like(probs)
    out[order] = probs / len(loaded)
    return dict(models=models, loaded=loaded, options=options, dataset=dataset, split=split,
                x=x, y=np.asarray(y, dtype="int64"), probs=out)


def summarize(c):
    """:func:`evaluate_model`'s dict, from :func:`classify_split`'s."""
    options, y = c["options"], c["y"]
    pred = c["probs"].argmax(axis=1)
    lengths = np.array([len(s) for s in c["x"]])
    confusion = np.zeros((options.ydim, options.ydim), dtype="int64")
    np.add.at(confusion, (y, pred), 1)
    edges = list(LENGTH_BUCKETS) + [None]
    by_length = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (lengths >= lo) & (lengths < (hi if hi is not None else np.inf))
        if sel.any():
            by_length.append({"from": lo, "to": hi, "n": int(sel.sum()),
                              "accuracy": float((pred[sel] == y[sel]).mean())})
    names = label_names(options)
    return dict(model=" + ".join(c["models"]), dataset=c["dataset"], split=c["split"],
                n=len(y), accuracy=float((pred == y).mean()), confusion=confusion.tolist(),
                labels=[names[i] for i in range(options.ydim)], by_length=by_length)


def confident_errors(c, k):
    """The indices of the ``k`` most confidently wrong reviews of
    :func:`classify_split`'s ``c``: wrong, by the probability of their
    predicted label, highest first."""
    pred = c["probs"].argmax(axis=1)
    wrong = np.flatnonzero(pred != c["y"])
    confidence = c["probs"][wrong, pred[wrong]]
    return [int(n) for n in wrong[np.argsort(-confidence, kind="stable")][:k]]


def explain_errors(c, k, load_states, label=None):
    """The ``k`` most confidently wrong reviews of :func:`classify_split`'s ``c``,
    explained (:meth:`sentiment.explain.scores.Explainer.explain_ids`); their words
    come from the dictionary beside the dataset. Each dict also has ``true``,
    ``true_name`` and ``index`` (the review's place in the split)."""
    if len(c["models"]) > 1:
        raise DataError("--explain-errors explains one model, not an ensemble of %d"
                        % len(c["models"]))
    model = c["models"][0]
    predictor = Predictor(model, lambda m, o: c["loaded"][0], imdb.dict_path_for(c["dataset"]))
    words = {i: w for w, i in predictor.words.items()}
    chosen = confident_errors(c, k)
    seqs = imdb.remove_unk([c["x"][n] for n in chosen], c["options"].n_words)
    tokens = [[words.get(i, "<unk>") for i in c["x"][n]] for n in chosen]
    results = predictor.explainer(model, load_states).explain_ids(seqs, label, tokens)
    for n, r in zip(chosen, results):
        r.update(true=int(c["y"][n]), true_name=predictor.label_names[int(c["y"][n])], index=n)
    return results


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


def build_parser():
    """The command line of ``lstm.py evaluate``."""
    p = argparse.ArgumentParser(
        prog="lstm.py evaluate",
        description="Evaluate a saved model on every review of a preprocessed split: "
                    "accuracy, confusion matrix, accuracy by review length; "
                    "--explain-errors K: and why it got its K most confident errors wrong.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", nargs="+", default=[Config().saveto],
                   help="the saved model (.npz); several: an ensemble, their class "
                        "probabilities averaged")
    p.add_argument("--dataset", default=None,
                   help="preprocessed corpus (default: the model's own)")
    p.add_argument("--split", choices=("test", "train"), default="test",
                   help="which part of the dataset file")
    p.add_argument("--batch-size", type=int, default=None,
                   help="reviews per minibatch, the reviews sorted by length first (default: "
                        "the model's valid_batch_size); the probabilities do not depend on it")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--explain-errors", type=int, default=0, metavar="K",
                   help="explain the K most confidently wrong reviews: each token's "
                        "contribution to the score (as 'lstm.py predict --explain'); the "
                        "words come from the dictionary beside the dataset")
    p.add_argument("--top", type=int, default=0, metavar="K",
                   help="with --explain-errors: list each review's K strongest words each way")
    p.add_argument("--html", default=None, metavar="FILE",
                   help="with --explain-errors: also write them as a self-contained HTML page")
    p.add_argument("--label", default=None, metavar="LABEL",
                   help="with --explain-errors: explain this class's score (name or id) "
                        "against the strongest other class")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def main(argv, load_model, load_states=None):
    """``lstm.py evaluate``: accuracy, confusion matrix, accuracy by length (and
    ``--explain-errors``; ``load_states`` is ``lstm.load_states``)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.explain_errors < 0 or args.top < 0:
        p.error("--explain-errors and --top must be 0 or more")
    if (args.html or args.top or args.label is not None) and not args.explain_errors:
        p.error("--html, --top and --label need --explain-errors K")
    if args.batch_size is not None and args.batch_size < 1:
        p.error("--batch-size must be 1 or more")
    try:
        c = classify_split(args.model, load_model, args.dataset, args.split, args.batch_size)
        result = summarize(c)
        errors = (explain_errors(c, args.explain_errors, load_states, args.label)
                  if args.explain_errors else None)
        if args.html:
            explain_html.write_page(
                args.html, errors, title="The %d most confidently wrong reviews" % len(errors),
                subtitle="model %s on %s (%s split)" % (result["model"], result["dataset"],
                                                        result["split"]), top=args.top or 10)
    except (DataError, ValueError) as exc:
        if args.debug:
            raise
        return report("lstm.py evaluate", exc)
    if args.json:
        if errors is not None:
            result["explained_errors"] = [explain_text.json_record(r, args.top) for r in errors]
        print(json.dumps(result, indent=2))
        return 0
    print(evaluation_text(result))
    if errors is not None:
        print("\nthe %d most confidently wrong reviews, explained\n" % len(errors))
        explain_text.print_results(errors, sys.stdout, args.top)
    return 0
