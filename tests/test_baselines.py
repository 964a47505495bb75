"""baselines/linear.py: the TF-IDF and NBSVM-bi logistic regressions, on corpora
written here (the real corpus's figures come from the command: docs/results.md)."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "baselines"))
import linear  # noqa: E402

NO_SKLEARN = "needs scikit-learn: pip install -r baselines/requirements.txt"


def word_corpus(path, n, rng):
    """``n`` training and ``n`` test reviews of word ids: positive ones use words
    2-9 more often, negative ones 10-17, both 18-59 (noise); two pickles, as imdb.pkl."""
    def split():
        reviews, labels = [], []
        for i in range(n):
            label = i % 2
            cue = rng.integers(2, 10, size=4) + (0 if label else 8)
            noise = rng.integers(18, 60, size=rng.integers(5, 15))
            reviews.append([int(w) for w in rng.permutation(np.concatenate([cue, noise]))])
            labels.append(label)
        return reviews, labels
    with open(path, "wb") as f:
        pickle.dump(split(), f)
        pickle.dump(split(), f)
    return path


def test_nb_ratios_are_wang_and_mannings():
    """r = log((p / |p|_1) / (q / |q|_1)), p = alpha + the positive rows' sum."""
    pytest.importorskip("sklearn", reason=NO_SKLEARN)
    import scipy.sparse
    counts = np.array([[1, 0, 1], [1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    labels = np.array([1, 1, 0, 0])
    p, q = 1 + np.array([2, 1, 1.0]), 1 + np.array([1, 0, 1.0])
    want = np.log(p / p.sum()) - np.log(q / q.sum())
    for matrix in (counts, scipy.sparse.csr_matrix(counts)):
        np.testing.assert_allclose(linear.nb_ratios(matrix, labels), want)


def test_features_are_binarized_uni_and_bigrams_of_the_ids():
    pytest.importorskip("sklearn", reason=NO_SKLEARN)
    texts = linear.as_text([[5, 7, 5, 7], [7, 9]])
    assert texts == ["5 7 5 7", "7 9"]
    counts, (other,) = linear.featurize("nbsvm", texts, [["5 9 9"]])
    assert counts.shape[1] == 6  # 5, 7, 9, "5 7", "7 5", "7 9"
    assert sorted(counts.toarray().sum(axis=0)) == [1, 1, 1, 1, 1, 2]  # binary: 7 twice
    assert other.toarray().sum() == 2  # "5" and "9" once each (binary); "5 9", "9 9" unseen


@pytest.mark.parametrize("model", linear.MODELS)
def test_each_model_learns_a_separable_corpus_and_c_is_chosen_on_validation(tmp_path, model):
    pytest.importorskip("sklearn", reason=NO_SKLEARN)
    dataset = word_corpus(str(tmp_path / "tiny.pkl"), 200, np.random.default_rng(0))
    result = linear.run(model, dataset, grid=(0.01, 1.0), seed=1, valid_block=10,
                        valid_portion=0.2)
    assert result["test_accuracy"] > 0.9  # chance: 0.5
    assert result["n_test"] == 200 and result["n_train"] == 200
    assert set(result["valid_accuracy"]) == {"0.01", "1.0"}
    best = max(result["valid_accuracy"].values())
    assert result["valid_accuracy"][str(result["C"])] == best


def run_command(*args):
    return subprocess.run([sys.executable, os.path.join(ROOT, "baselines", "linear.py"), *args],
                          capture_output=True, text=True, cwd=ROOT)


def test_command_writes_json_and_prints_the_machine(tmp_path):
    pytest.importorskip("sklearn", reason=NO_SKLEARN)
    dataset = word_corpus(str(tmp_path / "tiny.pkl"), 120, np.random.default_rng(1))
    out = tmp_path / "out" / "linear.json"
    done = run_command("--dataset", dataset, "--models", "nbsvm", "--grid", "1",
                       "--valid-block", "10", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("CPU: ")
    saved = json.loads(out.read_text())
    assert [r["model"] for r in saved["results"]] == ["nbsvm"]
    assert saved["results"][0]["test_accuracy"] > 0.9


@pytest.mark.parametrize("args,message", [
    (["--dataset", "no/such.pkl"], "no/such.pkl: no such dataset"),
    (["--grid", "0"], "--grid: every C must be positive"),
])
def test_bad_input_is_one_line(tmp_path, args, message):
    pytest.importorskip("sklearn", reason=NO_SKLEARN)
    if "--dataset" not in args:
        args = args + ["--dataset", word_corpus(str(tmp_path / "t.pkl"), 20,
                                                np.random.default_rng(2))]
    done = run_command(*args)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(message)


def test_a_corrupt_dataset_is_one_line(tmp_path):
    pytest.importorskip("sklearn", reason=NO_SKLEARN)
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    done = run_command("--dataset", str(bad), "--grid", "1")
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "bad.pkl" in done.stderr
