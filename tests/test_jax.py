"""``--device gpu``: the model through PyTensor's JAX backend (here JAX on the CPU)
against the C backend: outputs, gradients, one update of each optimizer,
training, and models and checkpoints passed from one to the other.

Skipped when JAX is not installed (``pip install -r requirements-jax.txt``);
CI installs it."""
import dataclasses
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import lstm
from sentiment.kernels import device
from sentiment.model.config import OPTIMIZERS, PRESET_DIR, Config, read_config_file
from sentiment.common.errors import DataError

from conftest import ROOT, synthetic_corpus, write_corpus

NO_JAX = "JAX is not installed (pip install -r requirements-jax.txt)"
pytestmark = [pytest.mark.filterwarnings("ignore:Explicitly requested dtype"),
              pytest.mark.filterwarnings("ignore:Skipping Assert")]


@pytest.fixture(scope="module")
def jax():
    return pytest.importorskip("jax", reason=NO_JAX)


def tutorial_options(**kw):
    """The tutorial's model, small."""
    return Config(dim_proj=8, n_words=50, ydim=2, **kw).validate()


def full_options(**kw):
    """``--preset full``'s model (bidirectional, meanmax, bigrams, word dropout,
    Adam), small."""
    values = read_config_file(os.path.join(PRESET_DIR, "full.json"))
    values.update(dim_proj=8, n_words=50, bigram_buckets=64, ydim=2, **kw)
    return Config.from_dict(values).validate()


def batch(n_steps=13, n_samples=5, seed=0):
    """A minibatch ``(x, mask, y)`` of reviews of different lengths."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, n_steps + 1, size=n_samples)
    lengths[0] = n_steps
    mask = (np.arange(n_steps)[:, None] < lengths[None, :]).astype("float32")
    x = (rng.integers(2, 50, size=(n_steps, n_samples)) * mask).astype("int64")
    return x, mask, rng.integers(0, 2, size=n_samples).astype("int64")


def params_for(options, seed=1):
    """Parameters drawn as training would, with noise so that no gradient is tiny."""
    params = lstm.init_params(options, lstm.make_rngs(seed)["init"])
    rng = np.random.default_rng(seed)
    return {k: (v + 0.1 * rng.standard_normal(v.shape)).astype(v.dtype)
            for k, v in params.items()}


def compiled(options, params, dev):
    return lstm.compile_model(dataclasses.replace(options, device=dev), params,
                              np.random.default_rng(5))


def close(got, want, what):
    """Equal to float32 precision: within 1e-5 of the largest value."""
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(np.abs(want).max(), 1e-3),
                               err_msg=what)


def scan_options():
    """The tutorial's model in the tutorial's formulation (PyTensor's scan)."""
    return tutorial_options(lstm_impl="scan")


def adversarial_options():
    """``--preset full-adv``'s model, small, with DropConnect on ``U`` too."""
    return full_options(adv_eps=0.25, u_dropout=0.2)


@pytest.mark.parametrize("make", [tutorial_options, full_options, scan_options,
                                  adversarial_options],
                         ids=["tutorial", "full", "scan", "full-adv-u-dropout"])
def test_outputs_and_gradients_equal_the_c_backend(jax, make):
    """Class probabilities, the training cost (with the same dropout draws) and
    every parameter's gradient, on a minibatch of ragged reviews (13 steps, run
    padded to 16 by the JAX path)."""
    options = make()
    params = params_for(options)
    x, mask, y = batch()
    got = {}
    for dev in ("cpu", "gpu"):
        model = compiled(options, params, dev)
        pred = model["f_pred_prob"](x, mask)
        costs = [model["f_grad_shared"](x, mask, y), model["f_grad_shared"](x, mask, y)]
        grads = {s.name: s.get_value() for s in model["optimizer_state"]
                 if s.name.endswith("_grad")}
        got[dev] = dict(pred=pred, costs=costs, **grads)
    assert set(got["gpu"]) == set(got["cpu"]) and len(got["cpu"]) == len(params) + 2
    assert got["cpu"]["costs"][0] != got["cpu"]["costs"][1]  # the dropout draws differ...
    for name, want in got["cpu"].items():  # ...as they do in the JAX path
        close(got["gpu"][name], want, name)
        assert np.asarray(got["gpu"][name]).dtype == np.asarray(want).dtype, name


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_one_update_of_each_optimizer_is_the_same(jax, optimizer):
    options = tutorial_options(optimizer=optimizer, lrate=0.05)
    params = params_for(options)
    x, mask, y = batch(seed=2)
    after = {}
    for dev in ("cpu", "gpu"):
        model = compiled(options, params, dev)
        model["f_grad_shared"](x, mask, y)
        model["f_update"](np.float32(0.05))
        state = {s.name: np.asarray(s.get_value()) for s in model["optimizer_state"]}
        after[dev] = dict(model["get_params"](), **state)
    for name, want in after["cpu"].items():
        assert not np.array_equal(want, params.get(name, want + 1)), name  # it moved
        close(after["gpu"][name], want, name)


def test_the_padded_lengths(jax):
    lengths = [device.padded_steps(n) for n in range(1, 3000)]
    assert lengths[:16] == [16] * 16 and lengths[16:20] == [20] * 4
    assert all(n <= p <= max(16, 1.25 * n) for n, p in zip(range(1, 3000), lengths))
    assert len(set(lengths)) == 31  # lengths to compile for, up to 3,000 steps


def corpus(tmp_path):
    train, test = synthetic_corpus(n_train=400, seed=3)
    return write_corpus(tmp_path / "imdb.pkl", train, test)


def train_args(corpus_path, saveto, *extra):
    # 360 training reviews in 18 minibatches of 20; each split evaluated in one batch.
    return ["--dataset", corpus_path, "--saveto", str(saveto), "--dim-proj", "8",
            "--n-words", "60", "--batch-size", "20", "--valid-batch-size", "400",
            "--valid-freq", "6", "--save-freq", "6", "--patience", "100", "--test-size", "0",
            "--valid-portion", "0.1", "--monitor", "", *extra]


def test_training_on_the_jax_backend_learns(jax, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(device, "_announced", False)
    saveto = tmp_path / "m.npz"
    assert lstm.main(train_args(corpus(tmp_path), saveto, "--device", "gpu",
                                "--optimizer", "adam", "--lrate", "0.02",
                                "--max-epochs", "4")) == 0
    out, err = capsys.readouterr()
    assert device.describe() in err.splitlines()
    if jax.default_backend() != "gpu":
        assert "device gpu: no GPU found, JAX runs on the CPU" in err.splitlines()
    test_err = float(out.split("Train ")[-1].split("Test ")[1].split()[0])
    assert test_err < 0.1, out[-500:]
    assert lstm.load_options(str(saveto)).device == "gpu"
    # A model trained on the GPU predicts through the C backend.
    probs = lstm.load_model(str(saveto))[2]([[2, 3, 4, 5], [12, 13, 14, 15]])
    assert probs.shape == (2, 2) and probs[0].argmax() != probs[1].argmax()


def run_and_copy_checkpoint(args, saveto, copy):
    """Train with ``args``; copy the checkpoint as it is at the second validation."""
    def callback(record):
        if record["update"] == 12:  # the checkpoint on disk: update 6's
            shutil.copy(lstm.checkpoint_path(str(saveto)), copy)
    parser, parsed = lstm.cli.parse_options(args)
    values = {k: v for k, v in vars(parsed).items()
              if k not in ("debug", "source", "resume", "summary", "preset", "config")}
    with open(os.devnull, "w") as out:
        return lstm.train_lstm(Config.from_dict(values), callback=callback, out=out)


def saved_params(saveto):
    options = lstm.load_options(str(saveto))
    return options, lstm.load_params(str(saveto), lstm.init_params(
        options, lstm.make_rngs(0)["init"]))


@pytest.mark.parametrize("first,then", [("cpu", "gpu"), ("gpu", "cpu")])
def test_resume_on_the_other_backend(jax, tmp_path, first, then):
    """A run checkpointed on one backend goes on on the other (with the dropout
    generator's state, the minibatch order and AdaDelta's averages) and ends
    where the uninterrupted run ends, to float32 rounding. (AdaDelta: Adam
    turns a rounding difference in a near-zero gradient into a whole step.)"""
    saveto, copy = tmp_path / "run" / "m.npz", str(tmp_path / "at6.ckpt.npz")
    whole = run_and_copy_checkpoint(train_args(
        corpus(tmp_path), saveto, "--device", first, "--max-epochs", "2",
        "--word-dropout", "0.2"), saveto, copy)
    _, want = saved_params(saveto)
    state = lstm.read_checkpoint(copy)[1]
    assert state["uidx"] == 6 and state["options"]["device"] == first
    with open(os.devnull, "w") as out:
        resumed = lstm.train_lstm(Config(device=then), resume=copy, out=out)
    assert resumed["updates"] == whole["updates"] == 36
    assert resumed["test_err"] == pytest.approx(whole["test_err"], abs=0.011)
    options, got = saved_params(saveto)
    assert options.device == then
    for name, value in want.items():
        close(got[name], value, name)


def test_device_gpu_without_jax_is_one_line_naming_the_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "jax", None)  # import jax fails
    with pytest.raises(DataError) as info:
        device.require_jax()
    assert "\n" not in str(info.value) and "requirements-gpu.txt" in str(info.value)
    code = lstm.main(train_args(corpus(tmp_path), tmp_path / "m.npz", "--device", "gpu"))
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "pip install -r requirements-gpu.txt" in err


def test_bad_device_and_importing_does_not_import_jax():
    with pytest.raises(ValueError, match="device must be one of cpu, gpu"):
        Config(device="tpu").validate()
    check = ("import sys, lstm, compare_optimizers, sentiment.kernels.device, sentiment.kernels.jax_ops; "
             "assert 'jax' not in sys.modules; print('ok')")
    done = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.stdout.strip() == "ok", done.stderr[-2000:]
