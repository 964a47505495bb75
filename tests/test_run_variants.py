"""run_variants.py: the table of one run per preset and variant."""
import json

import lstm
import run_variants as rv
from conftest import synthetic_corpus, write_corpus

TINY = dict(max_epochs=1, dim_proj=4, n_words=60, test_size=0, validFreq=-1, saveFreq=-1,
            valid_portion=0.1, maxlen=0)


def test_table_of_runs_and_a_rerun_replaces_its_row(tmp_path, monkeypatch, capsys):
    train, test = synthetic_corpus(n_train=200, n_test=50)
    corpus = write_corpus(tmp_path / "imdb.pkl", train, test)
    monkeypatch.setattr(rv, "RUNS", {"plain": ("tutorial", dict(TINY)),
                                     "bi-last": ("tutorial", dict(TINY, bidirectional=True,
                                                                  pooling="last"))})
    out = tmp_path / "out"
    argv = ["--out", str(out), "--dataset", corpus]
    assert rv.main(argv) == 0
    table = (out / "results.md").read_text()
    assert "| plain | `--preset tutorial --max-epochs 1" in table
    assert "--bidirectional --pooling last" in table
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["name"] for r in runs] == ["plain", "bi-last"]
    # 60 x 4 embeddings + 2 x (4 x 16 + 4 x 16 + 16) LSTMs + 8 x 2 + 2 classifier
    assert runs[1]["params"] == 60 * 4 + 2 * (4 * 16 + 4 * 16 + 16) + 8 * 2 + 2
    assert runs[1]["result"]["n_test"] == 50 and runs[1]["options"]["bidirectional"]
    assert (out / "bi-last-seed123" / "lstm_model.npz").exists()
    assert rv.main(argv + ["--runs", "plain"]) == 0  # trained again: replaced, not added
    runs = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    assert [r["name"] for r in runs] == ["plain", "bi-last"]
    assert (out / "results.csv").read_text().count("\n") == 3


def test_ensemble_of_the_seeds_is_evaluate_on_their_models(tmp_path, monkeypatch, capsys):
    train, test = synthetic_corpus(n_train=200, n_test=50)
    corpus = write_corpus(tmp_path / "imdb.pkl", train, test)
    monkeypatch.setattr(rv, "RUNS", {"plain": ("tutorial", dict(TINY))})
    out = tmp_path / "out"
    assert rv.main(["--out", str(out), "--dataset", corpus, "--seeds", "1", "2",
                    "--ensemble"]) == 0
    records = [json.loads(line) for line in (out / "ensembles.jsonl").read_text().splitlines()]
    assert [(r["name"], r["seeds"], r["n"]) for r in records] == [("plain", [1, 2], 50)]
    models = [str(out / ("plain-seed%d" % s) / "lstm_model.npz") for s in (1, 2)]
    want = lstm.evaluate_model(models)
    assert records[0]["accuracy"] == want["accuracy"]
    assert records[0]["confusion"] == want["confusion"]
    assert "plain: ensemble of seeds 1 2: test accuracy %.4f" % want["accuracy"] in (
        capsys.readouterr().out)
    # One seed is no ensemble: said, and the earlier record is kept.
    assert rv.main(["--out", str(out), "--dataset", corpus, "--seeds", "3", "--ensemble"]) == 0
    assert "fewer than two finished seeds" in capsys.readouterr().out
    assert [json.loads(line) for line in (out / "ensembles.jsonl").read_text().splitlines()
            ] == records
