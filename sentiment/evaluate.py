"""``lstm.py evaluate``: accuracy, confusion matrix and accuracy by review
length of a saved model (or of an ensemble of saved models) on a whole split.

The models are loaded by the function passed in, ``lstm.load_model``: this
module holds no model code of its own.
"""
import argparse
import json

import numpy as np

import imdb
from sentiment.config import Config
from sentiment.errors import DataError, report
from sentiment.predict import label_names


LENGTH_BUCKETS = (0, 100, 200, 300, 500, 1000)


def evaluate_model(model, load_model, dataset=None, split="test"):
    """Accuracy, confusion matrix and accuracy by review length of a saved model.

    Every review of ``split`` (``"test"`` or ``"train"``) of ``dataset``
    (default: the model's) is classified, as the model was trained
    (``n_words``, ``pad_to``). ``model`` may also be a list of saved models:
    their class probabilities are averaged (an ensemble). Returns a dict:
    ``n``, ``accuracy``, ``confusion`` (``[true][predicted]`` counts),
    ``labels`` (names) and ``by_length`` (one dict per bucket of review
    length in tokens: ``from``, ``to``, ``n``, ``accuracy``). ``load_model``
    is ``lstm.load_model``.
    """
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
        probs = probs + classify(imdb.remove_unk([x[n] for n in order], o.n_words))
    pred = np.empty(len(x), dtype="int64")
    pred[order] = probs.argmax(axis=1)
    x = imdb.remove_unk(x, options.n_words)
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
    names = label_names(options)
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


def main(argv, load_model):
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
        result = evaluate_model(args.model, load_model, args.dataset, args.split)
    except DataError as exc:
        if args.debug:
            raise
        return report("lstm.py evaluate", exc)
    print(json.dumps(result, indent=2) if args.json else evaluation_text(result))
    return 0
