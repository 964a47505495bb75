"""``lstm.py predict``: classify raw text with a saved model.

:class:`Predictor` tokenizes a text as ``imdb_preprocess.py`` did, maps it
through the model's dictionary (checked against the digest saved with the
model) and classifies it. The model is loaded by the function passed in,
``lstm.load_model``: this module holds no model code of its own. With
``--explain`` (``--top K``, ``--html FILE``) it also says which words moved
each prediction (:mod:`sentiment.explain.scores`).
"""
import argparse
import json
import os
import sys

import numpy as np

import imdb
import imdb_preprocess
from sentiment.explain import html as explain_html, text as explain_text
from sentiment.model.config import Config, model_paths
from sentiment.common.errors import DataError, report
from sentiment.explain.scores import Explainer
from sentiment.model.modelfile import dictionary_digest, load_options


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
        return self.encode_tokens(text)[1]

    def encode_tokens(self, text):
        """The tokens of ``text`` and their word ids, as :meth:`encode`."""
        tokens = imdb_preprocess.tokenize(text)
        return tokens, imdb.remove_unk(imdb_preprocess.encode([tokens], self.words),
                                       self.options.n_words)[0]

    def explainer(self, model, load_states):
        """A :class:`sentiment.explain.scores.Explainer` of this model; ``load_states(model,
        options) -> (options, params, states)`` is ``lstm.load_states``."""
        _, params, states = load_states(model, self.options)
        return Explainer(self, params, states, model)

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


def build_parser():
    """The command line of ``lstm.py predict``."""
    p = argparse.ArgumentParser(
        prog="lstm.py predict",
        description="Classify raw reviews with a saved model: one line per review, "
                    "'label<TAB>probability<TAB>text'. Texts come from the arguments, "
                    "else --file, else standard input (one review per line; blank "
                    "lines are skipped). --explain also shows which words moved each "
                    "prediction and by how much.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("texts", nargs="*", help="reviews to classify")
    p.add_argument("--model", default=Config().saveto, help="the saved model (.npz)")
    p.add_argument("--dict", default=None, metavar="PATH",
                   help="word dictionary (default: the one beside the model's dataset)")
    p.add_argument("--file", default=None, metavar="PATH",
                   help="read reviews from this file, one per line ('-': stdin)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object per review (text, label, name, "
                        "probability, probs; with --explain, the tokens and their scores)")
    p.add_argument("--explain", action="store_true",
                   help="show each token's contribution to the score (pos - neg; with more "
                        "classes, the predicted class - the runner-up): coloured in a "
                        "terminal, word(+0.12) otherwise; exact for mean/max/meanmax "
                        "pooling, occlusion otherwise (the output says which)")
    p.add_argument("--top", type=int, default=0, metavar="K",
                   help="with --explain: list the K strongest words each way")
    p.add_argument("--html", default=None, metavar="FILE",
                   help="with --explain: also write a self-contained HTML page of the "
                        "highlighted reviews (a plot of the score for a single review)")
    p.add_argument("--label", default=None, metavar="LABEL",
                   help="with --explain: explain this class's score (name or id) against "
                        "the strongest other class")
    p.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    return p


def read_texts(args, parser):
    """The texts to classify: the arguments, else ``--file``, else stdin."""
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
        parser.error("no text to classify")
    return texts


def explain_texts(args, texts, load_model, load_states):
    """``--explain``: explain ``texts``, write the page if asked, print them."""
    predictor = Predictor(args.model, load_model, args.dict)
    results = predictor.explainer(args.model, load_states).explain(texts, args.label)
    if args.html:
        explain_html.write_page(args.html, results, subtitle="model %s" % args.model,
                                top=args.top or 10)
    explain_text.print_results(results, sys.stdout, args.top, args.json)


def main(argv, load_model, load_states=None):
    """``lstm.py predict``: label and probability of each text (``--explain``:
    and why; ``load_states`` is ``lstm.load_states``)."""
    p = build_parser()
    args = p.parse_args(argv)
    if args.top < 0:
        p.error("--top must be 0 or more")
    try:
        texts = read_texts(args, p)
        if args.explain or args.top or args.html or args.label is not None:
            explain_texts(args, texts, load_model, load_states)
            return 0
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
