"""The linear models a user would pick instead of the LSTM, on the same ``imdb.pkl``.

Two classifiers of bags of uni- and bigrams of the word ids in ``data/imdb.pkl``
(the tokens the LSTM reads; every id kept, none mapped to 1):

``tfidf``
    Logistic regression on TF-IDF weights (sublinear term frequency, L2-normed
    rows), the baseline of scikit-learn's text tutorials.
``nbsvm``
    NBSVM-bi of Wang & Manning [1]_: binarized counts scaled by their naive
    Bayes log-count ratios, ``r = log((p / |p|_1) / (q / |q|_1))`` with
    ``p = 1 + sum of the positive reviews' rows`` (``q``: the negative ones'),
    then logistic regression on them (the NB-LR form of Mesnil et al. [2]_).

Each model's regularisation ``C`` is chosen, from ``--grid``, on a validation
split held out of the training reviews exactly as ``lstm.py --valid-block 125
--valid-portion 0.1`` holds it out (runs of 125 consecutive reviews, so the
movies are mostly unseen, as the test set's); the model is then refitted on all
25,000 training reviews and tested once on all 25,000 test reviews. The test
set chooses nothing.

    pip install -r baselines/requirements.txt     # scikit-learn, pinned
    python baselines/linear.py                     # both models, data/imdb.pkl
    python baselines/linear.py --models nbsvm --json runs/linear.json

References
----------
.. [1] Sida Wang and Christopher D. Manning, "Baselines and Bigrams: Simple,
   Good Sentiment and Topic Classification", ACL 2012.
.. [2] Gregoire Mesnil, Tomas Mikolov, Marc'Aurelio Ranzato and Yoshua Bengio,
   "Ensemble of Generative and Discriminative Techniques for Sentiment
   Analysis of Movie Reviews", ICLR 2015 workshop (arXiv:1412.5335).
"""
import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import imdb  # noqa: E402
from sentiment.common.errors import DataError  # noqa: E402
from sentiment.kernels.machine import describe  # noqa: E402

MODELS = ("tfidf", "nbsvm")
GRID = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
ALL_WORDS = 2 ** 62  # load_data's n_words: every id is kept


def as_text(reviews):
    """Word ids -> ``"5 17 9"`` strings, which scikit-learn's vectorizers split."""
    return [" ".join(map(str, review)) for review in reviews]


def featurize(model, train_text, other_texts):
    """Fit the model's features on ``train_text``; return them for it and the others.

    ``nbsvm`` needs the labels for its ratios: it returns the binarized counts,
    which :func:`nb_ratios` scales.
    """
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
    kwargs = dict(ngram_range=(1, 2), token_pattern=r"\S+", lowercase=False,
                  dtype=np.float64)
    if model == "tfidf":
        vectorizer = TfidfVectorizer(sublinear_tf=True, **kwargs)
    else:
        vectorizer = CountVectorizer(binary=True, **kwargs)
    train = vectorizer.fit_transform(train_text)
    return train, [vectorizer.transform(text) for text in other_texts]


def nb_ratios(counts, labels, alpha=1.0):
    """Wang & Manning's log-count ratios ``r`` of binarized ``counts`` (classes 0/1)."""
    labels = np.asarray(labels)
    p = alpha + np.asarray(counts[labels == 1].sum(axis=0)).ravel()
    q = alpha + np.asarray(counts[labels == 0].sum(axis=0)).ravel()
    return np.log(p / p.sum()) - np.log(q / q.sum())


def fit_predict(model, C, train_text, train_y, texts, seed):
    """Train ``model`` with regularisation ``C``; its predicted classes for each of ``texts``."""
    from sklearn.linear_model import LogisticRegression
    train, others = featurize(model, train_text, texts)
    if model == "nbsvm":
        r = nb_ratios(train, train_y)
        train, others = train.multiply(r).tocsr(), [x.multiply(r).tocsr() for x in others]
    classifier = LogisticRegression(C=C, solver="liblinear", dual=True, max_iter=1000,
                                    random_state=seed)
    classifier.fit(train, train_y)
    return [classifier.predict(x) for x in others]


def accuracy(predicted, labels):
    return float(np.mean(np.asarray(predicted) == np.asarray(labels)))


def choose_C(model, dataset, grid, seed, valid_block, valid_portion):
    """The ``C`` of ``grid`` with the best validation accuracy, and every one measured."""
    (train_x, train_y), (valid_x, valid_y), _ = imdb.load_data(
        dataset, n_words=ALL_WORDS, valid_portion=valid_portion, seed=seed,
        valid_block=valid_block, sort_by_len=False)
    train_text, valid_text = as_text(train_x), as_text(valid_x)
    scores = {}
    for C in grid:
        (predicted,) = fit_predict(model, C, train_text, train_y, [valid_text], seed)
        scores[C] = accuracy(predicted, valid_y)
    best = max(grid, key=lambda C: (scores[C], -C))  # ties: the stronger regularisation
    return best, scores


def run(model, dataset, grid=GRID, seed=123, valid_block=125, valid_portion=0.1):
    """Choose ``C`` on validation, refit on all training reviews, test once.

    Returns a dict: ``model``, ``C``, ``valid_accuracy`` (per C), ``test_accuracy``,
    ``test_error``, ``n_test``, ``seconds`` (the refit and the test's prediction) and
    ``choice_seconds`` (the validation fits).
    """
    start = time.perf_counter()
    C, scores = choose_C(model, dataset, grid, seed, valid_block, valid_portion)
    chosen = time.perf_counter()
    (train_x, train_y), (test_x, test_y) = imdb.load_dataset_file(dataset)
    (predicted,) = fit_predict(model, C, as_text(train_x), train_y, [as_text(test_x)], seed)
    test_accuracy = accuracy(predicted, test_y)
    return dict(model=model, C=C, valid_accuracy={str(c): s for c, s in scores.items()},
                test_accuracy=test_accuracy, test_error=1.0 - test_accuracy,
                n_train=len(train_y), n_test=len(test_y),
                seconds=round(time.perf_counter() - chosen, 1),
                choice_seconds=round(chosen - start, 1))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default=os.path.join("data", "imdb.pkl"),
                        help="the preprocessed corpus (default: data/imdb.pkl)")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS),
                        help="which linear models to run (default: both)")
    parser.add_argument("--grid", nargs="+", type=float, default=list(GRID),
                        help="values of C tried on the validation split (default: %s)"
                        % " ".join(map(str, GRID)))
    parser.add_argument("--seed", type=int, default=123,
                        help="seed of the validation split and of liblinear (default: 123)")
    parser.add_argument("--valid-block", type=int, default=125,
                        help="validation runs of N consecutive reviews, as lstm.py's "
                        "(default: 125; 0: random reviews)")
    parser.add_argument("--valid-portion", type=float, default=0.1,
                        help="share of the training reviews held out to choose C (default: 0.1)")
    parser.add_argument("--json", default="",
                        help="also write the results to this JSON file")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        import sklearn
    except ImportError:
        sys.exit("baselines/linear.py needs scikit-learn: "
                 "pip install -r baselines/requirements.txt")
    if not os.path.exists(args.dataset):
        sys.exit("%s: no such dataset (python imdb_preprocess.py builds it)" % args.dataset)
    if any(C <= 0 for C in args.grid):
        sys.exit("--grid: every C must be positive")
    print(describe())
    print("scikit-learn %s, %s" % (sklearn.__version__, args.dataset))
    results = []
    for model in args.models:
        try:
            result = run(model, args.dataset, args.grid, args.seed, args.valid_block,
                         args.valid_portion)
        except DataError as exc:
            sys.exit(str(exc))
        results.append(result)
        print("%-6s C=%-5g valid %s  test accuracy %.4f (%d reviews)  %.0f s (+ %.0f s to choose C)"
              % (model, result["C"], " ".join("%s:%.4f" % kv
                                              for kv in result["valid_accuracy"].items()),
                 result["test_accuracy"], result["n_test"], result["seconds"],
                 result["choice_seconds"]))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(dict(machine=describe(), sklearn=sklearn.__version__,
                           dataset=args.dataset, results=results), f, indent=1)
    return results


if __name__ == "__main__":
    main()
