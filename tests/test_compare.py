"""compare_optimizers.py: same start per seed, tables, curves, failures, flags."""
import csv
import json
import os
import re
import struct

import numpy as np
import pytest

import compare_optimizers as co
import lstm
from sentiment.model.cli import build_parser
from sentiment.model.config import TUTORIAL_OPTIMIZERS, Config
from sentiment.model.modelfile import load_options, params_digest
from sentiment.model.training import Trainer

from conftest import read_runs, run_compare as run_main, synthetic_corpus, write_corpus

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"  # the signature every PNG file starts with
# A small model: 380 training reviews / 16 = 24 updates an epoch, 48 in all.
SMALL = ["--dim-proj", "8", "--n-words", "60", "--max-epochs", "2", "--valid-freq", "5",
         "--test-size", "0"]


def read_csv(out):
    with open(os.path.join(out, "results.csv"), newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def png_size(path):
    """(width, height) of a PNG file, checking its signature and header chunk."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == PNG_MAGIC
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    """One real comparison (3 optimizers x 2 seeds), recording each epoch's order.

    ``Trainer.train_step`` is wrapped, not replaced: the order recorded for an
    epoch of a run is that of the minibatches its Trainer trained on.
    """
    tmp = tmp_path_factory.mktemp("compare")
    train, test = synthetic_corpus(n_train=400, n_test=100)
    corpus = write_corpus(tmp / "imdb.pkl", train, test)
    out = tmp / "out"
    batches, current = {}, {}
    real_train, real_step = lstm.train_lstm, Trainer.train_step

    def train(options, **kwargs):
        current["run"] = (options.optimizer, options.seed)
        batches[current["run"]] = []
        return real_train(options, **kwargs)

    def train_step(self, train_index):
        epochs = batches[current["run"]]
        while len(epochs) <= self.eidx:  # the first minibatch of an epoch
            epochs.append([])
        epochs[self.eidx].append(np.array(train_index))
        return real_step(self, train_index)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lstm, "train_lstm", train)
        mp.setattr(Trainer, "train_step", train_step)
        code, err = run_main(["--dataset", corpus, "--out", str(out),
                              "--optimizers", "adadelta", "rmsprop", "sgd", "--seeds", "1", "2",
                              "--lrate", "0.1", "--save-freq", "-1", *SMALL])
    orders = {run: [np.concatenate(epoch) for epoch in epochs]
              for run, epochs in batches.items()}
    return dict(code=code, err=err, out=str(out), orders=orders)


def test_runs_of_a_seed_start_from_the_same_parameters(comparison):
    runs = read_runs(comparison["out"])
    assert [(r["seed"], r["optimizer"]) for r in runs] == [
        (1, "adadelta"), (1, "rmsprop"), (1, "sgd"), (2, "adadelta"), (2, "rmsprop"),
        (2, "sgd")]
    digests = {seed: {r["init_sha256"] for r in runs if r["seed"] == seed} for seed in (1, 2)}
    assert len(digests[1]) == 1 and len(digests[2]) == 1, digests
    assert digests[1] != digests[2]
    # The digest is that of the seed's own initial parameters.
    options = Config(dim_proj=8, n_words=60, ydim=2)
    expected = params_digest(lstm.init_params(options, lstm.make_rngs(1)["init"]))
    assert digests[1] == {expected}


def test_runs_of_a_seed_see_the_same_minibatch_order(comparison):
    orders, out = comparison["orders"], comparison["out"]
    n_train = 380  # 400 reviews less 5 % held out for validation
    for seed in (1, 2):
        ref = orders[("adadelta", seed)]
        assert len(ref) == 2  # two epochs, each its own shuffle
        for order in ref:
            assert sorted(order.tolist()) == list(range(n_train))
        assert not np.array_equal(ref[0], ref[1])
        for optimizer in ("rmsprop", "sgd"):
            got = orders[(optimizer, seed)]
            assert len(got) == 2
            for a, b in zip(ref, got):
                np.testing.assert_array_equal(a, b)
        # What the runs saved agrees: the checkpoint holds the last epoch's order.
        for optimizer in ("adadelta", "rmsprop", "sgd"):
            ckpt = os.path.join(out, co.run_name(optimizer, seed), "lstm_model.ckpt.npz")
            with np.load(ckpt, allow_pickle=False) as saved:
                np.testing.assert_array_equal(saved["order"], ref[-1])
    assert not np.array_equal(orders[("adadelta", 1)][0], orders[("adadelta", 2)][0])


def test_tables_curves_and_run_files_are_written(comparison):
    out = comparison["out"]
    assert comparison["code"] == 0, comparison["err"]
    columns, rows = read_csv(out)
    assert columns == co.CSV_COLUMNS
    for col in ("optimizer", "runs", "ok", "status", "valid_err_mean", "valid_err_std",
                "test_err_mean", "updates_to_best_mean", "epochs_mean", "seconds_mean",
                "updates_per_s_mean"):
        assert col in columns
    assert [r["optimizer"] for r in rows] == ["adadelta", "rmsprop", "sgd"]
    for row in rows:
        assert row["runs"] == "2" and row["ok"] == "2" and row["status"] == "ok", row
        for stat in ("valid_err", "test_err", "train_err"):
            assert 0.0 <= float(row[stat + "_mean"]) <= 1.0
            assert float(row[stat + "_std"]) >= 0.0
        assert 5 <= float(row["updates_to_best_mean"]) <= 48
        assert float(row["epochs_mean"]) == 2.0
        assert float(row["seconds_mean"]) > 0 and float(row["updates_per_s_mean"]) > 0
    md = open(os.path.join(out, "results.md"), encoding="utf-8").read()
    # The rate each ran with: the tutorial's AdaDelta (factor 1) and RMSProp (step
    # 1e-4) ignore --lrate 0.1, which SGD takes.
    for name, rate in (("adadelta", "1"), ("rmsprop", "0.0001"), ("sgd", "0.1")):
        assert "| %s | %s | 2/2 |" % (name, rate) in md
        assert "%s-seed1" % name in md and "%s-seed2" % name in md
    assert " ± " in md and "(curves.png)" in md
    width, height = png_size(os.path.join(out, "curves.png"))
    assert width >= 800 and height >= 600
    assert os.path.getsize(os.path.join(out, "curves.png")) > 20000
    for r in read_runs(out):
        folder = os.path.join(out, co.run_name(r["optimizer"], r["seed"]))
        for name in ("lstm_model.npz", "lstm_model.json", "lstm_model.log.jsonl",
                     "lstm_model.ckpt.npz", "train.log"):
            assert os.path.getsize(os.path.join(folder, name)) > 0, name
        assert r["status"] == "ok" and "history_errs" not in r["result"]
        assert r["result"]["updates"] == 48
        # Updates to best: the last validation marked best, as in the saved model.
        log = [json.loads(line) for line in open(os.path.join(folder, "lstm_model.log.jsonl"))]
        assert r["updates_to_best"] == [x for x in log if x["best"]][-1]["update"]
        with np.load(os.path.join(folder, "lstm_model.npz"), allow_pickle=False) as saved:
            assert float(saved["valid_err"]) == pytest.approx(r["result"]["valid_err"])
        assert "The code run for 2 epochs" in open(os.path.join(folder, "train.log")).read()
    err = comparison["err"]
    assert "[1/6] adadelta seed 1: epoch" in err and "ETA" in err
    assert "[6/6] sgd seed 2: ok" in err
    assert "The code run for" not in err and "Training took" not in err


def test_training_flags_pass_through_to_every_run(comparison):
    out = comparison["out"]
    for r in read_runs(out):
        folder = os.path.join(out, co.run_name(r["optimizer"], r["seed"]))
        options = load_options(os.path.join(folder, "lstm_model.json"))
        assert (options.dim_proj, options.n_words, options.max_epochs, options.validFreq,
                options.test_size, options.saveFreq, options.lrate) == (8, 60, 2, 5, 0, -1, 0.1)
        assert (options.optimizer, options.seed) == (r["optimizer"], r["seed"])
        assert options.saveto == os.path.join(folder, "lstm_model.npz")
        log = [json.loads(line) for line in open(os.path.join(folder, "lstm_model.log.jsonl"))]
        assert [x["update"] for x in log] == list(range(5, 49, 5))


def test_a_failing_optimizer_is_reported_and_the_others_complete(tmp_path, corpus_path):
    out = tmp_path / "out"
    code, err = run_main(["--dataset", corpus_path, "--out", str(out), "--optimizers", "sgd",
                          "adadelta", "--seeds", "1", "--lrate", "inf", *SMALL])
    assert code == 0, err  # at least one run finished ok
    runs = {r["optimizer"]: r for r in read_runs(out)}
    # An infinite SGD step makes the parameters inf/NaN: the next cost is NaN. (A merely
    # huge one, 1e30 or even 1e38, does not: float32 saturates and the cost stays finite.)
    assert runs["sgd"]["status"] == "bad_cost"
    assert runs["sgd"]["result"]["updates"] == 2
    assert "bad cost detected" in open(out / "sgd-seed1" / "train.log").read()
    assert runs["adadelta"]["status"] == "ok"
    _, rows = read_csv(out)
    rows = {r["optimizer"]: r for r in rows}
    assert rows["sgd"]["status"] == "failed (bad cost) in 1/1 seeds"
    assert (rows["sgd"]["ok"], rows["sgd"]["failed"]) == ("0", "1")
    assert rows["sgd"]["valid_err_mean"] == "" and rows["sgd"]["test_err_mean"] == ""
    assert rows["adadelta"]["status"] == "ok" and rows["adadelta"]["ok"] == "1"
    assert 0.0 <= float(rows["adadelta"]["valid_err_mean"]) <= 1.0
    md = (out / "results.md").read_text()
    assert "failed (bad cost) in 1/1 seeds" in md
    assert png_size(out / "curves.png")[0] > 0
    assert "sgd seed 1: failed (bad cost)" in err


def fake_result(status, seed=1):
    return dict(status=status, train_err=0.1, valid_err=0.2, test_err=0.3, epochs=1,
                updates=10, seconds=2.0, history_errs=[[0.2, 0.3]],
                init_sha256="%064x" % seed)


def test_ctrl_c_keeps_the_finished_runs_and_exceptions_are_reported(
        tmp_path, corpus_path, monkeypatch):
    """No compiling: lstm.train_lstm is replaced by a script of outcomes."""
    outcomes = iter(["ok", "raise", "interrupted", "never"])

    def train(options, source=None, out=None, callback=None, resume=None):
        outcome = next(outcomes)
        assert outcome != "never", "the comparison went on after an interrupted run"
        callback(dict(epoch=0, update=5, cost=0.7, train_err=0.4, valid_err=0.45,
                      test_err=0.5, best=True, seconds=1.0))
        if outcome == "raise":
            raise RuntimeError("compiler exploded")
        return fake_result(outcome, options.seed)

    monkeypatch.setattr(lstm, "train_lstm", train)
    out = tmp_path / "out"
    code, err = run_main(["--dataset", corpus_path, "--out", str(out), "--optimizers",
                          "adadelta", "sgd", "--seeds", "1", "2", *SMALL])
    assert code == 130
    runs = read_runs(out)
    assert [(r["optimizer"], r["seed"], r["status"]) for r in runs] == [
        ("adadelta", 1, "ok"), ("sgd", 1, "error"), ("adadelta", 2, "interrupted")]
    assert runs[1]["error"] == "RuntimeError: compiler exploded" and runs[1]["result"] is None
    assert "compiler exploded" in (out / "sgd-seed1" / "train.log").read_text()  # traceback
    _, rows = read_csv(out)
    rows = {r["optimizer"]: r for r in rows}
    assert rows["adadelta"]["status"] == "interrupted in 1/2 seeds"
    assert (rows["adadelta"]["runs"], rows["adadelta"]["ok"]) == ("2", "1")
    assert float(rows["adadelta"]["valid_err_mean"]) == pytest.approx(0.2)
    assert rows["adadelta"]["valid_err_std"] == ""  # one seed: no standard deviation
    assert rows["sgd"]["status"] == "failed (error) in 1/1 seeds"
    assert png_size(out / "curves.png")[0] > 0
    assert "interrupted after 2 of 4 runs" in err


def test_every_run_failing_exits_1(tmp_path, corpus_path, monkeypatch):
    monkeypatch.setattr(lstm, "train_lstm",
                        lambda options, **kw: fake_result("bad_cost", options.seed))
    out = tmp_path / "out"
    code, _ = run_main(["--dataset", corpus_path, "--out", str(out), "--optimizers", "sgd",
                        "--seeds", "1", "2", *SMALL])
    assert code == 1
    _, rows = read_csv(out)
    assert [r["status"] for r in rows] == ["failed (bad cost) in 2/2 seeds"]


def test_training_flags_are_parsed_into_the_common_options(tmp_path):
    args, base = co.parse_args(["--optimizers", "sgd", "rmsprop", "sgd", "--seeds", "5", "7",
                                "--out", str(tmp_path), "--lrate", "0.5", "--no-dropout",
                                "--patience", "3", "--batch-size", "4", "--max-epochs", "9",
                                "--dataset", "x/mine.pkl", "--valid-freq", "-1"])
    assert args.optimizers == ["sgd", "rmsprop"] and args.seeds == [5, 7]
    assert args.out == str(tmp_path)
    assert (base.lrate, base.use_dropout, base.patience, base.batch_size, base.max_epochs,
            base.dataset, base.validFreq) == (0.5, False, 3, 4, 9, "x/mine.pkl", -1)
    args, base = co.parse_args([])
    assert args.optimizers == ["adadelta", "rmsprop", "sgd"] and args.seeds == [123, 124, 125]
    assert args.out == os.path.join("runs", "compare")
    assert base.max_epochs == Config().max_epochs and base.dim_proj == 128


@pytest.mark.parametrize("argv,hint", [
    (["--optimizer", "sgd"], "--optimizers"),
    (["--optimizer=rmsprop"], "--optimizers"),
    (["--seed", "7"], "--seeds"),
    (["--saveto", "m.npz"], "--out"),
    (["--resume", "m.ckpt.npz"], "lstm.py --resume"),
    (["--resume"], "lstm.py --resume"),
    (["--optim", "sgd"], "unrecognized"),  # no abbreviations: --optim is not --optimizers
    (["--optimizers", "adamax"], "invalid choice"),
    (["--seeds", "-1"], "0 or more"),
    (["--dim-proj", "0"], "dim_proj must be at least 1"),
])
def test_bad_flags_are_usage_errors(argv, hint, capsys):
    with pytest.raises(SystemExit) as exc:
        co.main(argv)
    assert exc.value.code == 2
    assert hint in capsys.readouterr().err


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        co.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--optimizers", "--seeds", "--max-epochs", "--out"):
        assert flag in text
    rejected = {"--optimizer", "--seed", "--saveto", "--resume", "--summary"}
    for action in build_parser()._actions:
        for flag in action.option_strings:
            found = re.search(r"(^|\s|,)%s(\s|,|=|$)" % re.escape(flag), text, re.M)
            assert bool(found) == (flag not in rejected), flag
    for action in co.build_parser()._actions:  # every accepted flag explains itself
        if action.help != "==SUPPRESS==":
            assert action.help and len(action.help.split()) >= 3, action.option_strings


def test_missing_dataset_is_a_one_line_error(tmp_path):
    missing = tmp_path / "mine.pkl"
    code, err = run_main(["--dataset", str(missing), "--out", str(tmp_path / "out")])
    assert code == 2
    assert err.startswith("compare_optimizers.py: error: %s" % missing)
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out" / "results.csv").exists()


def test_a_preset_sets_the_common_options(tmp_path):
    args, base = co.parse_args(["--preset", "keras-imdb", "--out", str(tmp_path),
                                "--batch-size", "32"])
    assert (base.pad_to, base.dim_emb, base.pooling, base.batch_size) == (500, 32, "last", 32)
    assert args.optimizers == list(TUTORIAL_OPTIMIZERS)  # the preset's adam is one run's
    assert base.saveto == ""


@pytest.mark.parametrize("monitor, want", [("", "train"), ("test", "train,test"),
                                           ("test,train", "train,test")])
def test_training_error_curves_always_monitor_train(monitor, want):
    _, base = co.parse_args(["--monitor", monitor])
    assert base.monitor == want
