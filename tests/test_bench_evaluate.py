"""benchmarks/bench_evaluate.py: PyTorch's copy of a saved model gives the class
probabilities ``lstm.py evaluate`` gives, on the same minibatches."""
import dataclasses
import importlib.util
import io
import json
import os

import numpy as np
import pytest

from conftest import ROOT, synthetic_corpus, write_corpus

torch = pytest.importorskip("torch", reason="PyTorch is not installed "
                            "(pip install -r benchmarks/requirements.txt)")

import lstm  # noqa: E402
import pytensor  # noqa: E402
import pytensor.tensor as pt  # noqa: E402

from sentiment.model import variants  # noqa: E402
from sentiment.model.modelfile import save_model  # noqa: E402


def load_bench():
    spec = importlib.util.spec_from_file_location(
        "bench_evaluate", os.path.join(ROOT, "benchmarks", "bench_evaluate.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = load_bench()

TRAINED = {
    "tutorial": dict(),
    "full-like": dict(bigram_buckets=64, bidirectional=True, pooling="meanmax", pad_to=30,
                      padding="post", truncating="pre", use_dropout=True, word_dropout=0.2),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    train, test = synthetic_corpus(n_train=160, n_test=90)
    return write_corpus(tmp_path_factory.mktemp("corpus") / "imdb.pkl", train, test)


def compare(model, dataset, split="test", lstm_impl="reversed"):
    """Ours (as lstm.py evaluate) and PyTorch's probabilities of every review."""
    c, timing = bench.run_ours(model, dataset, split)
    options, params = lstm.saved_model(model)
    train, test = bench.imdb.load_dataset_file(dataset)
    x = (test if split == "test" else train)[0]
    order, seqs = bench.sorted_reviews(x, options)
    probs, seconds = bench.run_torch(bench.TorchModel(options, params, lstm_impl), options,
                                     order, seqs)
    assert timing["classify_s"] > 0 and seconds > 0
    return c["probs"], probs


@pytest.mark.parametrize("name", sorted(TRAINED))
def test_trained_model_same_probabilities(tmp_path, corpus, name):
    o = lstm.Config(dataset=corpus, saveto=str(tmp_path / "m.npz"), dim_proj=8, n_words=50,
                    max_epochs=1, validFreq=-1, saveFreq=-1, dispFreq=1000, maxlen=0,
                    test_size=0, valid_portion=0.1, optimizer="adam", lrate=0.01,
                    monitor="", **TRAINED[name])
    lstm.train_lstm(o, out=io.StringIO())
    for lstm_impl in bench.TORCH_LSTMS:
        ours, theirs = compare(o.saveto, corpus, lstm_impl=lstm_impl)
        assert ours.shape == theirs.shape == (90, 2)
        assert np.abs(ours - theirs).max() < 1e-5, lstm_impl
        assert np.abs(ours - 0.5).max() > 1e-3  # trained: not all ties
        assert bench.max_difference(ours, theirs) < 1e-5


# Untrained variants, random weights large enough for the states to matter: pre
# padding (tokens at the end), last pooling, a bag of embeddings, unknown words,
# both ways PyTorch skips the padding.
RANDOM = {
    "bi-last-pre": dict(bidirectional=True, pooling="last", pad_to=25, padding="pre",
                        truncating="post"),
    "bi-last-post": dict(bidirectional=True, pooling="last", pad_to=25, padding="post"),
    "bi-bigrams-max-bag-pre": dict(bidirectional=True, pooling="max", bigram_buckets=13,
                                   pool_embeddings=True, pad_to=20, padding="pre",
                                   dim_emb=5),
    "bigrams-meanmax-3-classes": dict(bigram_buckets=7, pooling="meanmax", ydim=3),
    "last-no-pad": dict(pooling="last", use_dropout=False),
}


@pytest.mark.parametrize("lstm_impl", bench.TORCH_LSTMS)
@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_variant_same_probabilities(tmp_path, name, lstm_impl):
    n_classes = RANDOM[name].get("ydim", 2)
    train, test = synthetic_corpus(n_train=10, n_test=70, seed=3, n_classes=n_classes)
    dataset = write_corpus(tmp_path / "imdb.pkl", train, test)
    o = lstm.Config(**dict(dict(dataset=dataset, dim_proj=6, n_words=45, ydim=2,
                                valid_batch_size=16), **RANDOM[name])).validate()
    rng = np.random.default_rng(1)
    params = {k: (v + 0.5 * rng.standard_normal(v.shape)).astype("float32")
              for k, v in lstm.init_params(o, rng).items()}
    model = str(tmp_path / "m.npz")
    save_model(model, params, [], o)
    ours, theirs = compare(model, dataset, lstm_impl=lstm_impl)
    assert ours.shape == (70, n_classes)
    assert np.abs(ours - theirs).max() < 1e-5
    assert np.abs(ours - 1.0 / n_classes).max() > 1e-2


def test_numpy_bigram_ids_are_the_models():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 30000, size=(12, 5)).astype("int64")
    mask = (np.arange(12)[:, None] < rng.integers(0, 13, size=5)).astype("float32")
    mask[:, 0] = np.arange(12) >= 4  # pre padding
    xs, ms = pt.matrix("x", dtype="int64"), pt.matrix("m", dtype="float32")
    f = pytensor.function([xs, ms], variants.bigram_ids(xs, ms, 30000, 131072))
    np.testing.assert_array_equal(bench.bigram_ids(x, mask, 30000, 131072), f(x, mask))


def test_left_aligned_moves_pre_padded_reviews_to_the_start():
    x, mask, _ = bench.imdb.prepare_padded([[5, 6, 7], [8], [9, 10, 11, 12, 13]], [0] * 3,
                                           4, padding="pre", truncating="pre", dtype="float32")
    aligned, lengths = bench.left_aligned(x, mask)
    assert lengths.tolist() == [3, 1, 4]
    assert aligned.T.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0], [10, 11, 12, 13]]
    x, mask, _ = bench.imdb.prepare_data([[5, 6], [7]], [0, 0], dtype="float32")
    assert bench.left_aligned(x, mask)[0] is x


def test_main_prints_and_writes_json(tmp_path, corpus, capsys):
    o = lstm.Config(dataset=corpus, bidirectional=True, pooling="meanmax", bigram_buckets=16,
                    pad_to=30, padding="post", dim_proj=5, n_words=50, ydim=2)
    params = lstm.init_params(o, np.random.default_rng(2))
    model = str(tmp_path / "m.npz")
    save_model(model, params, [], o)
    out = str(tmp_path / "r.json")
    assert bench.main(["--model", model, "--limit", "40", "--repeats", "2",
                       "--torch-threads", "1", "--json", out]) == 0
    text = capsys.readouterr().out
    assert "CPU:" in text and "ratio (PyTorch's time / ours" in text
    r = json.load(open(out))
    assert r["n"] == 40 and len(r["ours"]["all_s"]) == len(r["pytorch"]["all_s"]) == 2
    assert r["agree"] and r["max_prob_diff"] < 1e-5 and r["torch_threads"] == 1
    assert r["ours"]["accuracy"] == r["pytorch"]["accuracy"]
    assert "model" in r["machine"]


def test_json_never_overwrites_the_models_options(tmp_path, capsys):
    model = str(tmp_path / "m.npz")
    with pytest.raises(SystemExit):
        bench.main(["--model", model, "--json", str(tmp_path / "m.json")])
    assert "would overwrite the model or its options file" in capsys.readouterr().err


@pytest.mark.parametrize("kw, phrase", [
    (dict(conv_filters=4), "convolution"),
    (dict(layers=2, bidirectional=True), "2 stacked LSTM layers"),
])
def test_main_refuses_other_variants_in_one_line(tmp_path, corpus, kw, phrase):
    o = dataclasses.replace(lstm.Config(dataset=corpus, dim_proj=4, n_words=50, ydim=2), **kw)
    model = str(tmp_path / "m.npz")
    save_model(model, lstm.init_params(o, np.random.default_rng(0)), [], o)
    with pytest.raises(SystemExit) as err:
        bench.main(["--model", model])
    message = str(err.value)
    assert phrase in message and model in message and "\n" not in message
