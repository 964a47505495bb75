"""compare_optimizers.py --tune, --jobs, --cluster and kept runs; sentiment.experiments.tuning."""
import csv
import math
import os

import pytest

import compare_optimizers as co
import lstm
from sentiment.experiments import tuning
from sentiment.model.config import Config

from conftest import read_runs, run_compare as run_main, synthetic_corpus, write_corpus

SMALL = ["--dim-proj", "8", "--n-words", "60", "--max-epochs", "2", "--valid-freq", "5",
         "--test-size", "0"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


# -- the grids and the choice --------------------------------------------------
def test_lrates_are_parsed_per_optimizer():
    assert tuning.parse_lrates(["sgd=1,0.01,0.1", "adam=1e-3"]) == {
        "sgd": (0.01, 0.1, 1.0), "adam": (0.001,)}
    grids = tuning.grids_for(["adadelta", "sgd"], {"sgd": (0.5,)})
    assert grids == {"adadelta": tuning.DEFAULT_GRIDS["adadelta"], "sgd": (0.5,)}


@pytest.mark.parametrize("spec,message", [
    ("sgd", "NAME=RATE"), ("sgd=", "NAME=RATE"), ("nadam=0.1", "unknown optimizer"),
    ("sgd=0.1,x", "must be numbers"), ("sgd=-1", "positive"), ("sgd=inf", "positive"),
])
def test_bad_lrates_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        tuning.parse_lrates([spec])
    with pytest.raises(ValueError, match="given twice"):
        tuning.parse_lrates(["sgd=0.1", "sgd=1"])


@pytest.mark.parametrize("optimizer,field", [
    ("sgd", "lrate"), ("adam", "lrate"), ("adamw", "lrate"), ("nesterov", "lrate"),
    ("adagrad", "lrate"), ("adadelta", "adaptive_lrate"), ("rmsprop", "adaptive_lrate")])
def test_with_lrate_sets_the_rate_each_optimizer_runs_with(optimizer, field):
    options = tuning.with_lrate(Config(), optimizer, 0.25)
    assert getattr(options, field) == 0.25 and options.optimizer == optimizer
    assert options.optimizer_lrate() == 0.25
    options.validate()
    # None: the options' own rate (the tutorial's for AdaDelta and RMSProp).
    tutorial = {"adadelta": 1.0, "rmsprop": 1e-4}.get(optimizer, Config().lrate)
    assert tuning.with_lrate(Config(), optimizer, None).optimizer_lrate() == tutorial


def record(optimizer, lrate, valid, test, status="ok", seed=1):
    return dict(optimizer=optimizer, lrate=lrate, seed=seed, status=status,
                result=dict(valid_err=valid, test_err=test))


def test_the_choice_reads_the_validation_error_only():
    """The rate whose test error is lowest is not the one chosen: a test split
    leaking into the choice would pick it."""
    runs = [record("sgd", 0.1, 0.30, 0.10), record("sgd", 1.0, 0.20, 0.40),
            record("sgd", 10.0, 0.25, 0.05)]
    choice = tuning.select(runs, {"sgd": (0.1, 1.0, 10.0)})["sgd"]
    assert choice["lrate"] == 1.0 and choice["valid_err"] == 0.20
    assert not choice["at_edge"]
    # Any test errors at all: the same choice.
    for run in runs:
        run["result"]["test_err"] = 1.0 - run["result"]["test_err"]
    assert tuning.select(runs, {"sgd": (0.1, 1.0, 10.0)})["sgd"]["lrate"] == 1.0


def test_the_choice_averages_seeds_and_counts_failures_as_no_learning():
    runs = [record("adam", 1e-3, 0.20, 0.2, seed=1), record("adam", 1e-3, 0.30, 0.2, seed=2),
            record("adam", 1e-2, 0.10, 0.2, seed=1),
            record("adam", 1e-2, None, None, status="bad_cost", seed=2),
            record("adam", 1e-4, 0.26, 0.2, seed=1), record("adam", 1e-4, 0.24, 0.2, seed=2)]
    choice = tuning.select(runs, {"adam": (1e-4, 1e-3, 1e-2)})["adam"]
    # 1e-3: mean 0.25 = 1e-4's mean 0.25: the smaller rate wins the tie;
    # 1e-2 diverged once: not chosen despite its 0.10.
    assert choice["lrate"] == 1e-4 and choice["at_edge"]
    assert choice["table"] == [(1e-4, pytest.approx(0.25), 2, 2),
                               (1e-3, pytest.approx(0.25), 2, 2), (1e-2, 0.10, 1, 2)]
    none = tuning.select([record("sgd", 1.0, None, None, "bad_cost")], {"sgd": (1.0,)})
    assert none["sgd"]["lrate"] is None


# -- a tuned comparison, end to end, without compiling --------------------------
def fake_train(calls, best=None):
    """lstm.train_lstm's stand-in: the validation error is lowest at rate
    ``best[optimizer]``; the test error is lowest far from it."""
    best = best or {"sgd": 0.1, "adam": 1e-3}

    def train(options, source=None, out=None, callback=None, resume=None):
        calls.append((options.optimizer, options.optimizer_lrate(), options.seed))
        distance = abs(math.log10(options.optimizer_lrate() / best[options.optimizer]))
        valid = 0.1 + 0.1 * distance + 0.001 * options.seed
        test = 0.5 - 0.1 * distance
        for update, err in ((5, 0.45), (10, valid)):
            callback(dict(epoch=0, update=update, cost=0.5, train_err=err, valid_err=err,
                          test_err=None, best=True, seconds=update / 10.0))
        return dict(status="ok", train_err=valid, valid_err=valid, test_err=test, epochs=1,
                    updates=10, seconds=1.0, history_errs=[], best_update=10,
                    init_sha256="%064x" % options.seed, params_sha256="%064x" % 7)
    return train


def test_a_tuned_comparison_chooses_on_validation_then_runs_the_seeds(
        tmp_path, corpus_path, monkeypatch):
    calls = []
    monkeypatch.setattr(lstm, "train_lstm", fake_train(calls))
    out = tmp_path / "out"
    code, err = run_main(["--dataset", corpus_path, "--out", str(out), "--optimizers", "sgd",
                          "adam", "--seeds", "1", "2", "3", "--lrates", "sgd=0.01,0.1,1",
                          "adam=1e-4,1e-3,1e-2", *SMALL])
    assert code == 0, err
    # Tuning: 3 rates x 2 optimizers on seed 1; then seeds 2 and 3 at the chosen rates
    # (seed 1's run at the chosen rate is the tuning run: not run twice).
    assert len(calls) == 6 + 4 and len(set(calls)) == 10
    assert set(calls[6:]) == {("sgd", 0.1, 2), ("sgd", 0.1, 3), ("adam", 1e-3, 2),
                              ("adam", 1e-3, 3)}
    rows = {r["optimizer"]: r for r in read_csv(out / "results.csv")}
    assert float(rows["sgd"]["lrate"]) == 0.1 and float(rows["adam"]["lrate"]) == 1e-3
    assert rows["sgd"]["runs"] == "3" and rows["sgd"]["seeds_ok"] == "1 2 3"
    # The test error of the chosen rate (0.5), with its interval over 3 seeds.
    assert float(rows["sgd"]["test_err_mean"]) == pytest.approx(0.5)
    # The default target is the highest mean best validation error, 0.102 here:
    # seeds 1 and 2 (0.101, 0.102) reach it, seed 3 (0.103) does not.
    assert float(rows["sgd"]["target_valid"]) == pytest.approx(0.102)
    assert rows["sgd"]["reached"] == "2" and float(rows["sgd"]["updates_to_target_mean"]) == 10
    md = (out / "results.md").read_text()
    assert "## Learning rates (chosen on the validation split only)" in md
    assert "**0.1: 0.1010**" in md and "**0.001: 0.1010**" in md
    assert "## Paired comparisons of the test error" in md
    pairs = read_csv(out / "pairs.csv")
    assert [(p["a"], p["b"], p["n"]) for p in pairs] == [("sgd", "adam", "3")]
    assert (out / "tuning.png").stat().st_size > 10000
    assert "chosen on validation: sgd 0.1, adam 0.001" in err
    # Folders name the rate: sgd-lr0.1-seed2/ ...
    assert (out / "sgd-lr0.1-seed2" / "train.log").exists()


def test_a_wider_grid_runs_only_the_new_rates_and_what_they_change(
        tmp_path, corpus_path, monkeypatch):
    """Started again with a wider grid: the new rates' tuning runs, then the final
    runs of the optimizer whose choice moved; every other run is kept, the
    final runs of the first start included."""
    calls = []
    monkeypatch.setattr(lstm, "train_lstm", fake_train(calls, best={"sgd": 3.0, "adam": 1e-3}))
    out = tmp_path / "out"
    argv = ["--dataset", corpus_path, "--out", str(out), "--optimizers", "sgd", "adam",
            "--seeds", "1", "2", *SMALL]
    code, err = run_main(argv + ["--lrates", "sgd=0.1,1", "adam=1e-3,1e-2"])
    assert code == 0, err
    assert len(calls) == 4 + 2  # the grid on seed 1, then seed 2 at sgd 1, adam 1e-3
    calls.clear()
    code, err = run_main(argv + ["--lrates", "sgd=0.1,1,3", "adam=1e-3,1e-2"])
    assert code == 0, err
    assert calls == [("sgd", 3.0, 1), ("sgd", 3.0, 2)], err
    assert "4 of 5 runs finished in %s by an earlier start: kept" % out in err  # tuning
    assert "1 of 4 runs finished in %s by an earlier start: kept" % out in err  # adam, seed 2
    rows = {r["optimizer"]: r for r in read_csv(out / "results.csv")}
    assert float(rows["sgd"]["lrate"]) == 3.0 and rows["adam"]["runs"] == "2"
    # sgd's first final run (rate 1, seed 2) is no longer in the tables, but kept.
    assert ("sgd", 1.0, 2) in {(r["optimizer"], r["lrate"], r["seed"]) for r in read_runs(out)}
    calls.clear()
    code, err = run_main(argv + ["--lrates", "sgd=0.1,1", "adam=1e-3,1e-2"])
    assert code == 0 and calls == [], err  # back to the first grid: all kept


def test_lrates_for_an_optimizer_not_compared_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        co.main(["--optimizers", "sgd", "--lrates", "adam=1e-3"])
    assert exc.value.code == 2
    assert "which --optimizers does not compare" in capsys.readouterr().err


# -- kept runs ----------------------------------------------------------------
def test_a_comparison_started_again_runs_only_what_did_not_finish(
        tmp_path, corpus_path, monkeypatch):
    calls, train = [], fake_train([])
    outcome = {("adam", 2): "interrupted"}

    def stopping(options, **kw):
        calls.append((options.optimizer, options.seed))
        result = train(options, **kw)
        result["status"] = outcome.get((options.optimizer, options.seed), "ok")
        return result

    monkeypatch.setattr(lstm, "train_lstm", stopping)
    out = tmp_path / "out"
    argv = ["--dataset", corpus_path, "--out", str(out), "--optimizers", "sgd", "adam",
            "--seeds", "1", "2", "--lrate", "0.1", *SMALL]
    code, err = run_main(argv)
    assert code == 130 and calls == [("sgd", 1), ("adam", 1), ("sgd", 2), ("adam", 2)]
    outcome.clear()
    calls.clear()
    code, err = run_main(argv)  # the same command: only the interrupted run again
    assert code == 0 and calls == [("adam", 2)], err
    assert "3 of 4 runs finished in %s by an earlier start: kept" % out in err
    runs = read_runs(out)
    assert [(r["optimizer"], r["seed"], r["status"]) for r in runs] == [
        ("sgd", 1, "ok"), ("adam", 1, "ok"), ("sgd", 2, "ok"), ("adam", 2, "ok")]
    assert "(3 kept from an earlier start)" in (out / "results.md").read_text()
    calls.clear()
    code, _ = run_main(argv + ["--max-epochs", "3"])  # other options: other runs
    assert code == 0 and len(calls) == 4
    calls.clear()
    code, _ = run_main(argv + ["--max-epochs", "3", "--restart"])
    assert code == 0 and len(calls) == 4


# -- the same results alone, beside others, on a cluster's workers ---------------
def deterministic(value):
    """A record without what depends on time or on where the run went."""
    if isinstance(value, dict):
        return {k: deterministic(v) for k, v in value.items()
                if "seconds" not in k and k not in ("updates_per_s",)}
    if isinstance(value, list):
        return [deterministic(v) for v in value]
    return value


def csv_without_times(path):
    return [{k: v for k, v in row.items() if "seconds" not in k and "updates_per_s" not in k}
            for row in read_csv(path)]


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("parallel")
    train, test = synthetic_corpus(n_train=200, n_test=60)
    return write_corpus(tmp / "imdb.pkl", train, test)


def test_jobs_and_a_dask_cluster_give_the_serial_results(tmp_path, small_corpus):
    distributed = pytest.importorskip("distributed", reason="Dask distributed is in "
                                      "requirements.txt; without it --jobs cannot run")
    common = ["--dataset", small_corpus, "--optimizers", "adadelta", "sgd", "--seeds", "1",
              "2", "--lrate", "0.5", *SMALL]
    outs = {}
    for mode, extra in (("serial", []), ("jobs", ["--jobs", "2"])):
        outs[mode] = tmp_path / mode
        code, err = run_main(common + ["--out", str(outs[mode])] + extra)
        assert code == 0, err
    assert "sent to a worker" in err
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        outs["cluster"] = tmp_path / "cluster"
        code, err = run_main(common + ["--out", str(outs["cluster"]),
                                       "--cluster", cluster.scheduler_address])
        assert code == 0, err
    runs = {mode: [deterministic(r) for r in read_runs(out)] for mode, out in outs.items()}
    for mode, records in runs.items():
        for r in records:  # the same file names in another folder
            r["log"], r["model"] = (os.path.relpath(r[k], outs[mode]) for k in ("log", "model"))
    for mode in ("jobs", "cluster"):
        assert runs[mode] == runs["serial"]
        assert csv_without_times(outs[mode] / "results.csv") == csv_without_times(
            outs["serial"] / "results.csv")
        assert read_csv(outs[mode] / "pairs.csv") == read_csv(outs["serial"] / "pairs.csv")
    assert len({r["params_sha256"] for r in runs["serial"]}) == 4  # four real runs


def test_adaptive_lrate_applies_to_adadelta_and_rmsprop_only():
    args, base = co.parse_args(["--optimizers", "sgd", "adadelta", "--adaptive-lrate", "0.5"])
    assert tuning.with_lrate(base, "adadelta", None).optimizer_lrate() == 0.5
    assert tuning.with_lrate(base, "sgd", None).optimizer_lrate() == base.lrate


def test_jobs_and_cluster_together_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        co.main(["--jobs", "2", "--cluster", "tcp://127.0.0.1:8786"])
    assert exc.value.code == 2
    assert "--jobs and --cluster" in capsys.readouterr().err
