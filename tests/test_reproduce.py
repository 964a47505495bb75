"""reproduce.py: runs, their report with the environment, and resuming."""
import json
import os

import lstm
import reproduce
from conftest import synthetic_corpus, write_corpus


def test_reproduce_reports_each_run_and_keeps_finished_ones(tmp_path, capsys, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    write_corpus(data / "mine.pkl", *synthetic_corpus(60, 30, seed=2))
    args = ["--dataset", str(data / "mine.pkl"), "--out", str(tmp_path / "runs"),
            "--report", str(tmp_path / "reproduce.md"), "--seeds", "7", "8",
            "--max-epochs", "1"]
    assert reproduce.main(args) == 0
    records = [json.loads(line) for line in open(tmp_path / "runs" / "results.jsonl")]
    assert [(r["run"], r["seed"], r["status"]) for r in records] == [
        ("tutorial", 7, "ok"), ("tutorial", 8, "ok")]
    for r in records:
        assert r["n_test_all"] == 30 and 0 <= r["test_err_all"] <= 1
        assert len(r["params_sha256"]) == 64 and len(r["dataset_sha256"]) == 64
    text = open(tmp_path / "reproduce.md", encoding="utf-8").read()
    assert "- Machine: CPU: " in text and "pytensor" in text and "- Commit: " in text
    assert records[0]["params_sha256"] in text and records[1]["params_sha256"] in text
    assert "test error, all 30 test reviews" in text
    # Run again: both runs are kept, nothing is trained.
    capsys.readouterr()
    assert reproduce.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("done before, kept") == 2 and "training" not in out
    assert os.path.exists(tmp_path / "runs" / "tutorial-seed7" / "train.log")
    # The ensemble of a set-up's seeds (at the full level: --preset full's), on all test reviews.
    records = [json.loads(line) for line in open(tmp_path / "runs" / "results.jsonl")]
    args = reproduce.build_parser().parse_args(args)
    monkeypatch.setattr(reproduce, "ENSEMBLE", "tutorial")
    ensemble = reproduce.ensemble_record(records, args)
    models = [str(tmp_path / "runs" / ("tutorial-seed%d" % s) / "lstm_model.npz") for s in (7, 8)]
    assert ensemble["seed"] == "7 8" and ensemble["n_test_all"] == 30
    assert ensemble["test_err_all"] == 1 - lstm.evaluate_model(models)["accuracy"]
    assert "tutorial ensemble" in reproduce.report_text(records + [ensemble],
                                                        reproduce.environment())
