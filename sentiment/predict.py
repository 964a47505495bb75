"""``lstm.py predict``: classify raw text with a saved model.

:class:`Predictor` tokenizes a text as ``imdb_preprocess.py`` did, maps it
through the model's dictionary (checked against the digest saved with the
model) and classifies it. The model is loaded by the function passed in,
``lstm.load_model``: this module holds no model code of its own.
"""
import argparse
import json
import os
import sys

import numpy as np

import imdb
import imdb_preprocess
from sentiment.config import Config, model_paths
from sentiment.errors import DataError, report
from sentiment.modelfile import dictionary_digest, load_options


class Predictor:
    """A saved model, ready to classify raw text.

    Parameters
    ----------
    model : str
        The ``.npz`` model; its options are read from the JSON beside it.
    load_model : callable
        ``load_model(model, options) -> (options, f_pred_prob, classify)``
        (``lstm.load_model``); ``classify(seqs)`` gives the class
        probabilities of lists of word ids.
    dictionary : str, optional
        The word dictionary (default: the one beside the options' dataset).
        It must be the one the model was trained with (checked against the
        options' ``dict_sha256``).

    Texts are tokenized by :func:`imdb_preprocess.tokenize`, the tokenizer
    that made the dataset, and cut/padded as in training (``pad_to``).
    """

    def __init__(self, model, load_model, dictionary=None):
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
        self.options, self.f_pred_prob, self.classify = load_model(model, options)
        self.label_names = label_names(options)

    def encode(self, text):
        """Word ids of ``text`` (ids >= n_words and unknown words become 1)."""
        tokens = imdb_preprocess.tokenize(text)
        return imdb.remove_unk(imdb_preprocess.encode([tokens], self.words),
                               self.options.n_words)[0]

    def predict_proba(self, texts):
        """Class probabilities, ``(len(texts), ydim)``."""
        seqs = [self.encode(t) for t in texts]
        for n, seq in enumerate(seqs):
            if not seq:
                raise ValueError("text %d has no words" % (n + 1))
        order = sorted(range(len(seqs)), key=lambda n: len(seqs[n]))  # less padding
        probs = self.classify([seqs[n] for n in order])
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


def label_names(options):
    """Label id -> name: ``<dataset>.labels.json`` when there is one, else
    ``neg``/``pos`` for two classes (IMDB's 0/1), else the ids."""
    names = {i: str(i) for i in range(options.ydim)}
    if options.ydim == 2:
        names = {0: "neg", 1: "pos"}
    path = imdb.labels_path_for(options.dataset)
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                names.update({int(i): str(n) for n, i in json.load(f).items()})
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise DataError("%s: bad labels file (%s)" % (path, exc)) from None
    return names


def main(argv, load_model):
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
        results = Predictor(args.model, load_model, args.dict).predict(texts)
    except (DataError, ValueError) as exc:
        if args.debug:
            raise
        return report("lstm.py predict", exc)
    for text, r in zip(texts, results):
        if args.json:
            print(json.dumps(dict(text=text, **r), ensure_ascii=False))
        else:
            snippet = text if len(text) <= 60 else text[:57] + "..."
            print("%s\t%.4f\t%s" % (r["name"], r["probability"], snippet))
    return 0
