"""Checkpoints: exact resume after SIGKILL, atomic writes, clean write errors."""
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import lstm
import sentiment.model.config
import sentiment.common.files
from sentiment.common.errors import DataError

from conftest import synthetic_corpus, write_corpus

LSTM = os.path.join(os.path.dirname(os.path.abspath(lstm.__file__)), "lstm.py")


def command(corpus, saveto, *extra):
    # 360 training reviews / 16 = 23 updates an epoch; 5 epochs = 115 updates.
    return [sys.executable, LSTM, "--dataset", corpus, "--saveto", str(saveto),
            "--dim-proj", "8", "--n-words", "60", "--max-epochs", "5",
            "--valid-freq", "10", "--save-freq", "7", "--patience", "100",
            "--test-size", "0", "--valid-portion", "0.1", *extra]


@pytest.mark.parametrize("optimizer", [["adadelta"], ["rmsprop"],
                                       ["adam", "--lrate", "0.01", "--ema", "0.9"]],
                         ids=["adadelta", "rmsprop", "adam-ema"])
def test_sigkill_then_resume_is_bit_identical(tmp_path, optimizer):
    train, test = synthetic_corpus(n_train=400, seed=3)
    corpus = write_corpus(tmp_path / "imdb.pkl", train, test)
    ref = tmp_path / "ref" / "model.npz"
    subprocess.run(command(corpus, ref, "--optimizer", *optimizer), check=True,
                   capture_output=True, timeout=600)

    # Same run, killed at a random update once a checkpoint exists.
    run = tmp_path / "run" / "model.npz"
    ckpt = lstm.checkpoint_path(str(run))
    kill_at = int(np.random.default_rng().integers(14, 100))  # after 2+ checkpoints
    proc = subprocess.Popen(command(corpus, run, "--optimizer", *optimizer, "--disp-freq", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("Epoch ") and int(line.split()[3]) >= kill_at:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert os.path.exists(ckpt)

    done = subprocess.run([sys.executable, LSTM, "--resume", ckpt], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Resuming from" in done.stdout
    assert "The code run for 5 epochs" in done.stdout
    with open(ref, "rb") as a, open(run, "rb") as b:
        assert a.read() == b.read(), "resumed model differs (killed at update %d)" % kill_at
    ref_log = open(sentiment.model.config.model_paths(str(ref))[1]).read().splitlines()
    run_log = open(sentiment.model.config.model_paths(str(run))[1]).read().splitlines()
    strip = [lambda line: line.split('"seconds"')[0]]
    assert [strip[0](x) for x in ref_log] == [strip[0](x) for x in run_log]


KILL_DURING_WRITE = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import sentiment.common.files
def slow(f):
    f.write(b"x" * 1000)
    f.flush()
    print("writing", flush=True)
    time.sleep(60)
sentiment.common.files.atomic_write(sys.argv[2], slow)
"""


def test_kill_during_a_checkpoint_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "model.npz"
    sentiment.common.files.atomic_write(str(path), lambda f: sentiment.common.files.savez(f, {"a": np.arange(3)}))
    before = path.read_bytes()
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_WRITE,
                             os.path.dirname(LSTM), str(path)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert path.read_bytes() == before
    with np.load(path, allow_pickle=False) as saved:
        assert saved["a"].tolist() == [0, 1, 2]


def test_write_error_is_one_line_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old")

    def fail(f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    with pytest.raises(DataError) as info:
        sentiment.common.files.atomic_write(str(path), fail)
    assert "No space left on device" in str(info.value) and str(path) in str(info.value)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]  # no temporary left


def test_unwritable_saveto_is_a_clean_error(tmp_path, corpus_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    code = lstm.main(["--dataset", corpus_path, "--saveto", str(blocker / "m.npz"),
                      "--dim-proj", "4", "--n-words", "60", "--max-epochs", "1",
                      "--save-freq", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot write" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("content", [b"", b"not a zip", b"PK\x03\x04garbage"])
def test_bad_checkpoint_is_a_clean_error(tmp_path, content, capsys):
    path = tmp_path / "model.ckpt.npz"
    path.write_bytes(content)
    assert lstm.main(["--resume", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and len(err.strip().splitlines()) == 1
