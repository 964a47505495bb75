"""sentiment.experiments.reporting: what compare_optimizers.py and run_variants.py share."""
import csv
import io
import math
import os
import sys

import numpy as np
import pytest

from sentiment.experiments import plotting, reporting
from sentiment.common.errors import DataError


def test_run_name_and_the_files_a_run_leaves(tmp_path):
    assert reporting.run_name("sgd", 7) == "sgd-seed7"
    saveto = str(tmp_path / "sgd-seed7" / reporting.MODEL_FILE)
    names = sorted(os.path.basename(p) for p in reporting.run_files(saveto))
    assert names == ["lstm_model.ckpt.npz", "lstm_model.json", "lstm_model.log.jsonl",
                     "lstm_model.npz", "train.log"]
    assert {os.path.dirname(p) for p in reporting.run_files(saveto)} == {
        str(tmp_path / "sgd-seed7")}


def test_open_run_log_starts_a_clean_run_folder(tmp_path):
    saveto = str(tmp_path / "run" / reporting.MODEL_FILE)
    with reporting.open_run_log(saveto) as log:  # the folder is made
        log.write("first\n")
    for path in reporting.run_files(saveto):
        with open(path, "w") as f:
            f.write("stale")
    (tmp_path / "run" / "notes.txt").write_text("kept")
    with reporting.open_run_log(saveto) as log:
        assert log.name == str(tmp_path / "run" / "train.log")
        log.write("second\n")
    assert sorted(os.listdir(tmp_path / "run")) == ["notes.txt", "train.log"]
    assert (tmp_path / "run" / "train.log").read_text() == "second\n"


def test_open_run_log_where_it_cannot_write_is_a_data_error(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(DataError, match="train.log: cannot write"):
        reporting.open_run_log(str(tmp_path / "file" / "run" / reporting.MODEL_FILE))


def test_train_run_records_each_outcome():
    def ok(options, out=None, source=None):
        print("progress", file=out)
        print("Training took 1.0s", file=sys.stderr)
        return dict(status="ok", valid_err=0.25, history_errs=[[0.3, 0.2]], source=source)

    log = io.StringIO()
    status, result, error = reporting.train_run(ok, "options", log, source="src")
    assert (status, error) == ("ok", None)
    assert result == dict(status="ok", valid_err=0.25, source="src")  # no history_errs
    assert log.getvalue() == "progress\nTraining took 1.0s\n"  # standard error too

    def broken(options, out=None):
        raise RuntimeError("compiler\n  exploded")

    log = io.StringIO()
    assert reporting.train_run(broken, None, log) == (
        "error", None, "RuntimeError: compiler exploded")
    assert "Traceback" in log.getvalue() and "exploded" in log.getvalue()

    def ctrl_c(options, out=None):
        raise KeyboardInterrupt

    assert reporting.train_run(ctrl_c, None, io.StringIO()) == (
        "interrupted", None, "stopped by Ctrl-C")

    def bad_data(options, out=None):
        raise DataError("imdb.pkl: no such file")

    with pytest.raises(DataError, match="no such file"):
        reporting.train_run(bad_data, None, io.StringIO())


def test_error_text_and_result_record():
    assert reporting.error_text(ValueError("a\n b")) == "ValueError: a b"
    assert reporting.error_text(KeyError()) == "KeyError: KeyError"
    result = dict(status="ok", history_errs=[1], test_err=0.5)
    assert reporting.result_record(result) == dict(status="ok", test_err=0.5)
    assert "history_errs" in result  # the argument is left as it was


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (-3, "0s"), (59.4, "59s"), (60, "1m00s"),
                                           (187, "3m07s"), (3599, "59m59s"),
                                           (3600, "1h00m"), (7500, "2h05m")])
def test_duration(seconds, text):
    assert reporting.duration(seconds) == text


def test_mean_std_leaves_out_missing_values():
    assert reporting.mean_std([]) == (None, None)
    assert reporting.mean_std([None, float("nan"), float("inf")]) == (None, None)
    assert reporting.mean_std([0.5]) == (0.5, None)
    mean, std = reporting.mean_std(iter([1, 2, None, 3, float("nan")]))
    assert mean == 2.0 and std == pytest.approx(1.0)  # sample standard deviation
    assert reporting.format_mean_std(2.0, 1.0, "%.3f") == "2.000 ± 1.000"
    assert reporting.format_mean_std(2.0, None, "%.1f") == "2.0"
    assert reporting.format_mean_std(None, None, "%.1f") == reporting.MISSING == "–"


def test_json_lines_are_safe_and_read_back(tmp_path):
    value = dict(a=float("nan"), b=[np.float32(0.5), (np.int64(3), float("-inf"))],
                 c={"d": np.bool_(True)}, e="x")
    assert reporting.json_safe(value) == dict(a=None, b=[0.5, [3, None]], c={"d": True},
                                              e="x")
    text = reporting.jsonl_text([dict(z=1, a=float("inf"), curve=[1, 2]), dict(y=2)],
                                drop=("curve",))
    assert text == '{"a": null, "z": 1}\n{"y": 2}\n'
    path = tmp_path / "runs.jsonl"
    reporting.write_text(str(path), text + "\n")
    assert reporting.read_jsonl(str(path)) == [dict(a=None, z=1), dict(y=2)]
    assert reporting.read_jsonl(str(tmp_path / "missing.jsonl")) == []
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(DataError, match="runs.jsonl: line 2 is not JSON"):
        reporting.read_jsonl(str(path))


def test_csv_text():
    rows = [dict(name="sgd", err=0.123456789, n=3, std=None),
            dict(name='say "hi", twice', err=1.0)]  # a missing key: an empty cell
    text = reporting.csv_text(["name", "err", "n", "std"], rows)
    assert text.splitlines() == ["name,err,n,std", "sgd,0.123457,3,",
                                 '"say ""hi"", twice",1,,']
    assert list(csv.DictReader(io.StringIO(text)))[1]["name"] == 'say "hi", twice'
    quoted = reporting.csv_text(["run", "sec/epoch"], [{"run": "a", "sec/epoch": "1,5"}],
                                quote_all=True)
    assert quoted == 'run,sec/epoch\n"a","1,5"\n'


def test_markdown_table():
    assert reporting.markdown_table(["a", "b"], [["1", "2"], ["x"]]) == [
        "| a | b |", "|---|---|", "| 1 | 2 |", "| x |"]


def test_write_texts_replaces_each_file(tmp_path):
    (tmp_path / "a.md").write_text("old")
    reporting.write_texts(str(tmp_path), {"a.md": "é\n", "b.csv": "x\n"})
    assert (tmp_path / "a.md").read_bytes() == "é\n".encode("utf-8")
    assert (tmp_path / "b.csv").read_text() == "x\n"
    assert sorted(os.listdir(tmp_path)) == ["a.md", "b.csv"]  # no temporary file left


def test_plotting_helpers():
    assert plotting.time_unit(299) == (1.0, "s")
    assert plotting.time_unit(600) == (60.0, "min")
    assert plotting.time_unit(4 * 3600) == (3600.0, "h")
    a = [dict(update=5, seconds=1.0, valid_err=0.4), dict(update=10, seconds=3.0, valid_err=0.2)]
    b = [dict(update=5, seconds=2.0, valid_err=0.6), dict(update=10, seconds=4.0, valid_err=0.4),
         dict(update=15, seconds=6.0, valid_err=0.3)]
    grid = plotting.common_grid([a, b], "update")
    np.testing.assert_array_equal(grid, [5.0, 10.0])
    mean, lo, hi = plotting.aggregate([a, b], "valid_err", "update", grid)
    np.testing.assert_allclose(mean, [0.5, 0.3])
    np.testing.assert_allclose(lo, [0.4, 0.2])
    np.testing.assert_allclose(hi, [0.6, 0.4])
    seconds = plotting.common_grid([a, b], "seconds")
    assert seconds[0] == 2.0 and seconds[-1] == 3.0
    assert plotting.common_grid([a, [dict(update=5, seconds=5.0)]], "seconds").size == 0
    row = dict(optimizer="sgd", ok=2, runs=3, valid_err_mean=0.25, valid_err_std=0.01,
               status="failed (bad cost) in 1/3 seeds")
    assert plotting.legend_label(row) == ("sgd: 2/3 runs ok, best valid 0.250 ± 0.010 — "
                                          "failed (bad cost) in 1/3 seeds")
    assert math.isfinite(plotting.aggregate([a], "valid_err", "seconds",
                                            np.array([2.0]))[0][0])
