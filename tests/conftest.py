"""Shared test helpers: small corpora the tests write themselves."""
import gzip
import os
import pickle
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import sentiment.kernels.pytensor_flags  # noqa: E402,F401  (first: the project's PyTensor flags, e.g. mode=CVM)

REAL_ARCHIVE = os.environ.get("IMDB_SOURCE") or os.path.join(
    ROOT, "..", "shared", "data", "aclImdb_v1_labeled.tar.gz")


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "realdata: needs the real IMDB archive (../shared/data or $IMDB_SOURCE)")


def pytest_collection_modifyitems(config, items):
    # JAX's tests last: JAX starts threads, and other tests fork (the preprocessing
    # workers), which is not safe in a process where threads run.
    items.sort(key=lambda item: item.nodeid.startswith("tests/test_jax.py"))
    if os.path.exists(REAL_ARCHIVE):
        return
    skip = pytest.mark.skip(reason="real IMDB archive not found at %s (set IMDB_SOURCE)"
                            % REAL_ARCHIVE)
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


def synthetic_corpus(n_train=400, n_test=200, seed=0, n_classes=2):
    """A learnable corpus in imdb.pkl's format.

    Each class c has ten marker words (ids 2 + 10 c ... 11 + 10 c); a review of
    class c mixes its markers with shared noise words (ids 40..59), 5 to 40
    tokens long. Returns ``(train, test)``, each ``(x, y)``.
    """
    rng = np.random.default_rng(seed)

    def review(label):
        n = int(rng.integers(5, 40))
        markers = rng.integers(2 + 10 * label, 12 + 10 * label, size=n)
        noise = rng.integers(40, 60, size=n)
        return [int(w) for w in np.where(rng.random(n) < 0.3, markers, noise)]

    def split(n):
        y = [int(v) for v in rng.integers(0, n_classes, size=n)]
        return [review(label) for label in y], y

    return split(n_train), split(n_test)


def write_corpus(path, train, test):
    """Write ``imdb.pkl``'s format: two pickles, train then test."""
    with open(path, "wb") as f:
        pickle.dump(train, f, protocol=2)
        pickle.dump(test, f, protocol=2)
    return str(path)


def run_compare(argv):
    """``compare_optimizers.main(argv)`` -> (exit code, what it wrote to stderr)."""
    import contextlib
    import io

    import compare_optimizers
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = compare_optimizers.main(argv)
    return code, err.getvalue()


def read_runs(out):
    """The records of a comparison's ``runs.jsonl``."""
    import json
    with open(os.path.join(out, "runs.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def write_raw_corpus(root, n_train, n_test, seed=0):
    """A raw aclImdb-style folder ``root/aclImdb``: 8-word reviews of good or bad
    words (pos/neg) mixed with neutral ones. Returns the folder."""
    rng = np.random.default_rng(seed)
    good, bad = ["great", "superb", "loved"], ["awful", "boring", "hated"]
    for split, n in (("train", n_train), ("test", n_test)):
        for label, words in (("pos", good), ("neg", bad)):
            folder = root / "aclImdb" / split / label
            folder.mkdir(parents=True)
            for i in range(n):
                text = " ".join(rng.choice(words + ["the", "film", "was"], size=8))
                (folder / ("%d_5.txt" % i)).write_text(text + ".")
    return root / "aclImdb"


def write_pickles(path, objects, protocol=2):
    """Pickle `objects` one after the other into `path` (gzip if .gz)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as stream:
        for obj in objects:
            pickle.dump(obj, stream, protocol=protocol)
    return str(path)


def assert_one_line_naming(err, path):
    """The message of the DataError `err` (a pytest ExceptionInfo): one line
    that names `path`."""
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    return message


@pytest.fixture
def corpus_path(tmp_path):
    """A small learnable two-class corpus written to ``tmp_path/imdb.pkl``."""
    train, test = synthetic_corpus()
    return write_corpus(tmp_path / "imdb.pkl", train, test)


def train_text_model(tmp):
    """Train, through ``lstm.py`` and imdb_preprocess, a small model on a tiny raw-text
    corpus written in ``tmp``; returns the model's path (``tmp/m.npz``)."""
    import lstm  # here: the data tests must not import PyTensor's model
    write_raw_corpus(tmp, 80, 20)
    model = str(tmp / "m.npz")
    assert lstm.main(["--dataset", str(tmp / "data" / "imdb.pkl"),
                      "--source", str(tmp / "aclImdb"), "--saveto", model,
                      "--dim-proj", "8", "--max-epochs", "6", "--valid-freq", "-1",
                      "--test-size", "0", "--valid-portion", "0.1", "--n-words", "20",
                      "--optimizer", "adam", "--lrate", "0.02"]) == 0
    return model
