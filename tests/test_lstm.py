"""The model, the optimizers and training, checked against NumPy references."""
import dataclasses
import functools
import json
import os
from collections import OrderedDict

import numpy as np
import pytest

import lstm
import sentiment.model.config
import sentiment.common.files
from sentiment.data import digests
import pytensor
import pytensor.tensor as pt
from pytensor import config

from conftest import synthetic_corpus, write_corpus, write_raw_corpus


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def np_lstm(emb, mask, W, U, b):
    """Reference LSTM: emb (T, B, d), mask (T, B) -> hidden states (T, B, d)."""
    T, B, d = emb.shape
    h = np.zeros((B, d))
    c = np.zeros((B, d))
    out = []
    for t in range(T):
        z = emb[t] @ W + h @ U + b
        i, f, o = sigmoid(z[:, :d]), sigmoid(z[:, d:2 * d]), sigmoid(z[:, 2 * d:3 * d])
        c_new = f * c + i * np.tanh(z[:, 3 * d:])
        h_new = o * np.tanh(c_new)
        m = mask[t][:, None]
        c = m * c_new + (1 - m) * c
        h = m * h_new + (1 - m) * h
        out.append(h)
    return np.stack(out)


def np_pred(params, x, mask, dropout_scale=0.5):
    """Reference test-time probabilities of the whole model."""
    emb = params["Wemb"][x]
    h = np_lstm(emb, mask, params["lstm_W"], params["lstm_U"], params["lstm_b"])
    proj = (h * mask[:, :, None]).sum(0) / mask.sum(0)[:, None]
    z = dropout_scale * proj @ params["U"] + params["b"]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def small_options(**kw):
    base = dict(dim_proj=8, n_words=30, ydim=3, use_dropout=False, saveto="")
    base.update(kw)
    return lstm.Config(**base)


def random_batch(rng, T=7, B=5, n_words=30, ydim=3):
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0] = T
    seqs = [list(rng.integers(2, n_words, size=n)) for n in lengths]
    import imdb
    x, mask, _ = imdb.prepare_data(seqs, [0] * B)
    y = rng.integers(0, ydim, size=B).astype("int64")
    return x, mask, y


@pytest.fixture
def rng():
    return np.random.default_rng(42)


@pytest.mark.parametrize("lengths", [[6, 6, 6], [6, 3, 1], [1, 2, 6]])
def test_lstm_layer_matches_numpy_step_by_step(lengths, rng):
    d, T = 4, max(lengths)
    opts = small_options(dim_proj=d)
    params = lstm.init_params(opts, rng)
    params["lstm_b"] = rng.standard_normal(4 * d).astype(config.floatX)
    tparams = lstm.init_tparams(params)
    emb = pt.tensor3("emb", dtype=config.floatX)
    mask = pt.matrix("mask", dtype=config.floatX)
    f = pytensor.function([emb, mask], lstm.lstm_layer(tparams, emb, mask, d))

    e = rng.standard_normal((T, len(lengths), d)).astype(config.floatX)
    m = (np.arange(T)[:, None] < np.array(lengths)).astype(config.floatX)
    got = f(e, m)
    want = np_lstm(e.astype("float64"), m, params["lstm_W"], params["lstm_U"],
                   params["lstm_b"])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # Padded steps carry the last real state unchanged.
    for j, n in enumerate(lengths):
        np.testing.assert_array_equal(got[n:, j], np.repeat(got[n - 1:n, j], T - n, 0))


@pytest.mark.parametrize("lengths", [[6, 6, 6], [6, 3, 1]])
def test_lstm_layer_gates_are_the_equations_of_step(lengths, rng):
    """``gates`` (what ``lstm.py inspect`` draws) are _step's i, f, o, c, h,
    each line of _step as its comment says, padding carrying c and h over."""
    d, T = 4, max(lengths)
    params = lstm.init_params(small_options(dim_proj=d), rng)
    params["lstm_b"] = rng.standard_normal(4 * d).astype(config.floatX)
    emb = pt.tensor3("emb", dtype=config.floatX)
    mask = pt.matrix("mask", dtype=config.floatX)
    gates = {}
    h = lstm.lstm_layer(lstm.init_tparams(params), emb, mask, d, gates=gates)
    f = pytensor.function([emb, mask], [h] + [gates[k] for k in "ifoch"])
    e = rng.standard_normal((T, len(lengths), d)).astype(config.floatX)
    m = (np.arange(T)[:, None] < np.array(lengths)).astype(config.floatX)
    h_got, *got = f(e, m)
    W, U, b = (params[k].astype("float64") for k in ("lstm_W", "lstm_U", "lstm_b"))
    hp, cp = np.zeros((len(lengths), d)), np.zeros((len(lengths), d))
    for t in range(T):
        z = e[t] @ W + hp @ U + b
        i, f_, o = sigmoid(z[:, :d]), sigmoid(z[:, d:2 * d]), sigmoid(z[:, 2 * d:3 * d])
        c = f_ * cp + i * np.tanh(z[:, 3 * d:])
        c = m[t][:, None] * c + (1 - m[t][:, None]) * cp
        h_t = o * np.tanh(c)
        h_t = m[t][:, None] * h_t + (1 - m[t][:, None]) * hp
        for k, value in zip("ifoch", (i, f_, o, c, h_t)):
            np.testing.assert_allclose(got["ifoch".index(k)][t], value, rtol=1e-5, atol=1e-6)
        hp, cp = h_t, c
    np.testing.assert_array_equal(h_got, got[4])


@pytest.mark.parametrize("lengths", [[7, 7], [7, 4, 1, 2]])
def test_fused_lstm_layer_computes_step_under_scan(lengths, rng):
    """The default ``--lstm-impl fused`` is ``_step`` under ``scan``: the same
    states and the same gradients (input, lstm_W, lstm_U, lstm_b), to float32
    rounding (the fused Ops' tanh and sigmoid are within 3.3e-7)."""
    d, T = 5, max(lengths)
    params = lstm.init_params(small_options(dim_proj=d), rng)
    params["lstm_b"] = rng.standard_normal(4 * d).astype(config.floatX)
    tparams = lstm.init_tparams(params)
    emb = pt.tensor3("emb", dtype=config.floatX)
    mask = pt.matrix("mask", dtype=config.floatX)
    weights = pt.tensor3("weights", dtype=config.floatX)
    wrt = [emb] + [tparams[k] for k in ("lstm_W", "lstm_U", "lstm_b")]
    outs = {}
    for impl in ("scan", "fused"):
        h = lstm.lstm_layer(tparams, emb, mask, d, impl=impl)
        cost = (h * weights).sum()
        outs[impl] = pytensor.function([emb, mask, weights], [h] + pytensor.grad(cost, wrt))
    e = rng.standard_normal((T, len(lengths), d)).astype(config.floatX)
    m = (np.arange(T)[:, None] < np.array(lengths)).astype(config.floatX)
    w = rng.standard_normal((T, len(lengths), d)).astype(config.floatX)
    for want, got in zip(outs["scan"](e, m, w), outs["fused"](e, m, w)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


@pytest.mark.parametrize("impl", sentiment.model.config.LSTM_IMPLS)
def test_mean_pool_uses_only_unmasked_steps(rng, impl):
    h = pt.tensor3("h", dtype=config.floatX)
    mask = pt.matrix("mask", dtype=config.floatX)
    f = pytensor.function([h, mask], lstm.mean_pool(h, mask, impl))
    hv = rng.standard_normal((5, 3, 2)).astype(config.floatX)
    m = np.array([[1, 1, 1], [1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0]], config.floatX)
    want = np.stack([hv[:5, 0].mean(0), hv[:2, 1].mean(0), hv[:1, 2].mean(0)])
    np.testing.assert_allclose(f(hv, m), want, rtol=1e-6)


def test_model_prediction_matches_numpy_and_ignores_padding(rng):
    opts = small_options(use_dropout=True)
    params = lstm.init_params(opts, rng)
    for k in params:  # larger weights so that the check is not trivial
        params[k] = (params[k] + 0.3 * rng.standard_normal(params[k].shape)).astype(
            config.floatX)
    model = lstm.compile_model(opts, params, np.random.default_rng(0))
    x, mask, _ = random_batch(rng)
    got = model["f_pred_prob"](x, mask)
    np.testing.assert_allclose(got, np_pred(params, x, mask), rtol=1e-4, atol=1e-6)
    # Whatever the padding holds, the prediction is the same.
    x2 = x.copy()
    x2[mask == 0] = rng.integers(2, 30, size=int((mask == 0).sum()))
    np.testing.assert_array_equal(model["f_pred_prob"](x2, mask), got)


def test_gradients_match_finite_differences(rng):
    with config.change_flags(floatX="float64"):
        opts = small_options(dim_proj=3, n_words=12, ydim=2, decay_c=0.1)
        params = lstm.init_params(opts, rng)
        for k in params:
            params[k] = params[k] + 0.5 * rng.standard_normal(params[k].shape)
        tparams = lstm.init_tparams(params)
        model = lstm.build_model(tparams, opts)
        inputs = [model["x"], model["mask"], model["y"]]
        names = list(tparams)
        grads = pytensor.grad(model["cost"], wrt=list(tparams.values()))
        f_cost = pytensor.function(inputs, model["cost"])
        f_grads = pytensor.function(inputs, grads)
        x, mask, y = random_batch(rng, T=5, B=4, n_words=12, ydim=2)
        mask = mask.astype("float64")
        analytic = dict(zip(names, f_grads(x, mask, y)))
        eps = 1e-6
        for name in names:
            value = tparams[name].get_value()
            flat_idx = rng.choice(value.size, size=min(6, value.size), replace=False)
            if name == "Wemb":  # rows of words that occur in the batch
                rows = np.unique(x[mask > 0])
                flat_idx = np.ravel_multi_index(
                    (rng.choice(rows, 6), rng.integers(0, 3, 6)), value.shape)
            for fi in flat_idx:
                idx = np.unravel_index(fi, value.shape)
                plus, minus = value.copy(), value.copy()
                plus[idx] += eps
                minus[idx] -= eps
                tparams[name].set_value(plus)
                c_plus = f_cost(x, mask, y)
                tparams[name].set_value(minus)
                c_minus = f_cost(x, mask, y)
                tparams[name].set_value(value)
                numeric = (c_plus - c_minus) / (2 * eps)
                np.testing.assert_allclose(analytic[name][idx], numeric,
                                           rtol=1e-4, atol=1e-7, err_msg=name)


# -- optimizers -------------------------------------------------------------
def np_sgd(state, p, g, lr):
    return p - lr * g


def np_adadelta(state, p, g, lr, scale=1.0):
    rg2 = state.get("rg2", 0.0)
    ru2 = state.get("ru2", 0.0)
    rg2 = 0.95 * rg2 + 0.05 * g ** 2
    ud = -np.sqrt(ru2 + 1e-6) / np.sqrt(rg2 + 1e-6) * g
    state.update(rg2=rg2, ru2=0.95 * ru2 + 0.05 * ud ** 2)
    return p + scale * ud


def np_rmsprop(state, p, g, lr, step=1e-4):
    rg = 0.95 * state.get("rg", 0.0) + 0.05 * g
    rg2 = 0.95 * state.get("rg2", 0.0) + 0.05 * g ** 2
    ud = 0.9 * state.get("ud", 0.0) - step * g / np.sqrt(rg2 - rg ** 2 + 1e-4)
    state.update(rg=rg, rg2=rg2, ud=ud)
    return p + ud


def np_nesterov(state, p, g, lr):
    v = 0.9 * state.get("v", 0.0) + g
    state.update(v=v)
    return p - lr * (g + 0.9 * v)


def np_adagrad(state, p, g, lr):
    acc = state.get("acc", 0.0) + g ** 2
    state.update(acc=acc)
    return p - lr * g / (np.sqrt(acc) + 1e-10)


@pytest.mark.parametrize("impl", ["fused", "scan"])  # fused step / the symbolic rule
@pytest.mark.parametrize("name,reference,extra", [
    ("sgd", np_sgd, {}), ("adadelta", np_adadelta, {}), ("rmsprop", np_rmsprop, {}),
    # --adaptive-lrate: AdaDelta's step factor, RMSProp's step
    ("adadelta", functools.partial(np_adadelta, scale=0.3), dict(adaptive_lrate=0.3)),
    ("rmsprop", functools.partial(np_rmsprop, step=3e-3), dict(adaptive_lrate=3e-3)),
    ("nesterov", np_nesterov, {}), ("adagrad", np_adagrad, {})])
def test_optimizer_updates_match_numpy(name, reference, extra, impl, rng):
    opts = small_options(optimizer=name, lstm_impl=impl, **extra)
    params = lstm.init_params(opts, rng)
    model = lstm.compile_model(opts, params)
    tparams = model["tparams"]
    # Gradients at the current parameters, from an independent graph.
    check = lstm.build_model(tparams, opts)
    f_grads = pytensor.function([check["x"], check["mask"], check["y"]],
                                pytensor.grad(check["cost"], list(tparams.values())))
    lr = np.float32(0.5)
    states = {k: {} for k in tparams}
    for step in range(3):
        x, mask, y = random_batch(rng)
        before = lstm.unzip(tparams)
        grads = dict(zip(tparams, f_grads(x, mask, y)))
        model["f_grad_shared"](x, mask, y)
        model["f_update"](lr)
        for k in tparams:
            want = reference(states[k], before[k].astype("float64"),
                             grads[k].astype("float64"), float(lr))
            np.testing.assert_allclose(tparams[k].get_value(), want, rtol=2e-5,
                                       atol=1e-7, err_msg="%s step %d" % (k, step))


@pytest.mark.parametrize("name", ["adadelta", "rmsprop"])
def test_fused_step_is_the_readable_rule(name, rng):
    """lstm.adadelta / lstm.rmsprop with fused=True compute the symbolic rule
    written in them (fused=False), from the same state, to float32 rounding."""
    tparams = lstm.init_tparams(OrderedDict(
        (k, rng.standard_normal(shape).astype(config.floatX))
        for k, shape in (("W", (6, 5)), ("b", (5,)))))
    x = pt.matrix("x", dtype=config.floatX)
    cost = ((pt.dot(x, tparams["W"]) + tparams["b"]) ** 2).sum()
    grads = pytensor.grad(cost, list(tparams.values()))
    lr = pt.scalar("lr", dtype=config.floatX)
    rule = getattr(lstm, name)
    runs = {}
    xs = [rng.standard_normal((4, 6)).astype(config.floatX) for _ in range(3)]
    start = {k: p.get_value() for k, p in tparams.items()}
    for fused in (True, False):
        f_grad, f_update, state = rule(lr, tparams, grads, [x], cost, fused=fused)
        for xv in xs:
            f_grad(xv)
            f_update(np.float32(0.1))
        runs[fused] = [p.get_value() for p in tparams.values()] + [s.get_value() for s in state]
        for k, p in tparams.items():
            p.set_value(start[k])
    for got, want in zip(runs[True], runs[False]):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-7)


# -- minibatches and randomness --------------------------------------------
def test_minibatches_cover_everything_and_can_be_reused():
    batches = lstm.get_minibatches_idx(37, 16, shuffle=True, rng=np.random.default_rng(1))
    assert [len(b) for _, b in batches] == [16, 16, 5]
    assert sorted(np.concatenate([b for _, b in batches])) == list(range(37))
    # A list, not a one-shot iterator (the tutorial's Python 3 bug).
    assert len(list(batches)) == len(list(batches)) == 3
    again = lstm.get_minibatches_idx(37, 16, shuffle=True, rng=np.random.default_rng(1))
    assert all((a == b).all() for (_, a), (_, b) in zip(batches, again))


def test_rng_streams_are_independent_and_seeded():
    a, b = lstm.make_rngs(123), lstm.make_rngs(123)
    assert a["init"].random() == b["init"].random()
    assert lstm.make_rngs(124)["init"].random() != lstm.make_rngs(123)["init"].random()
    assert a["shuffle"].random() != a["split"].random()


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match="unknown option"):
        lstm.Config.from_dict({"dim_proj": 3, "encoder": "lstm"})
    with pytest.raises(ValueError, match="optimizer"):
        lstm.Config(optimizer="adamax").validate()


# -- training ---------------------------------------------------------------
def train_options(tmp_path, corpus, **kw):
    base = dict(dataset=corpus, dim_proj=16, n_words=60, max_epochs=6, validFreq=-1,
                saveFreq=-1, dispFreq=1000, test_size=-1, valid_portion=0.1,
                saveto=str(tmp_path / "model.npz"), patience=10)
    base.update(kw)
    return lstm.Config(**base)


# RMSProp's step is the tutorial's fixed 1e-4 (it ignores lrate): it needs
# more updates before it leaves the plateau than the other two.
@pytest.mark.parametrize("optimizer,lrate,epochs", [("adadelta", 1e-4, 8),
                                                    ("rmsprop", 1e-4, 60),
                                                    ("sgd", 2.0, 8)])
def test_short_training_learns(tmp_path, optimizer, lrate, epochs, capsys):
    train, test = synthetic_corpus(n_train=1000)
    corpus = write_corpus(tmp_path / "imdb.pkl", train, test)
    opts = train_options(tmp_path, corpus, optimizer=optimizer, lrate=lrate,
                         max_epochs=epochs, patience=epochs)
    result = lstm.train_lstm(opts)
    assert result["status"] == "ok"
    # Chance is 0.5; the marker words make the task easy.
    assert result["test_err"] < 0.2, result
    assert result["train_err"] < 0.2, result
    out = capsys.readouterr().out
    assert "The code run for %d epochs" % epochs in out
    assert "Train " in out and "Valid " in out and "Test " in out
    # The tutorial's keys, the JSON options and one log line per validation.
    with np.load(opts.saveto, allow_pickle=False) as saved:
        keys = set(saved.files)
        assert {"Wemb", "lstm_W", "lstm_U", "lstm_b", "U", "b", "history_errs",
                "train_err", "valid_err", "test_err"} <= keys
        assert float(saved["test_err"]) == pytest.approx(result["test_err"])
        assert saved["history_errs"].shape == (epochs, 2)
    options_path, log_path = sentiment.model.config.model_paths(opts.saveto)
    reloaded = lstm.load_options(options_path)
    assert reloaded == dataclasses.replace(opts, ydim=2,
                                           dataset_sha256=digests.file_sha256(corpus))
    records = [json.loads(line) for line in open(log_path)]
    assert len(records) == epochs and {"valid_err", "test_err", "update"} <= set(records[0])


def test_same_seed_same_model_and_reload(tmp_path, corpus_path):
    a = lstm.train_lstm(train_options(tmp_path, corpus_path, max_epochs=2,
                                      saveto=str(tmp_path / "a.npz")))
    b = lstm.train_lstm(train_options(tmp_path, corpus_path, max_epochs=2,
                                      saveto=str(tmp_path / "b.npz")))
    with np.load(tmp_path / "a.npz") as fa, np.load(tmp_path / "b.npz") as fb:
        for k in ("Wemb", "lstm_W", "lstm_U", "U"):
            np.testing.assert_array_equal(fa[k], fb[k])
    assert a["test_err"] == b["test_err"]
    c = lstm.train_lstm(train_options(tmp_path, corpus_path, max_epochs=2, seed=7,
                                      saveto=str(tmp_path / "c.npz")))
    with np.load(tmp_path / "a.npz") as fa, np.load(tmp_path / "c.npz") as fc:
        assert not np.array_equal(fa["Wemb"], fc["Wemb"])
    # --reload-model with no training reproduces the saved model's errors.
    r = lstm.train_lstm(train_options(tmp_path, corpus_path, max_epochs=0,
                                      reload_model=str(tmp_path / "a.npz"),
                                      saveto=str(tmp_path / "r.npz")))
    assert r["test_err"] == pytest.approx(a["test_err"])
    assert r["valid_err"] == pytest.approx(a["valid_err"])
    with np.load(tmp_path / "a.npz") as fa, np.load(tmp_path / "r.npz") as fr:
        np.testing.assert_array_equal(fa["lstm_U"], fr["lstm_U"])


def test_reload_model_mismatch_is_one_line_error(tmp_path, corpus_path, capsys):
    bad = tmp_path / "bad.npz"
    np.savez(bad, Wemb=np.zeros((3, 3), "float32"))
    code = lstm.main(["--dataset", corpus_path, "--reload-model", str(bad),
                      "--saveto", "", "--dim-proj", "4", "--n-words", "60"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and ("not in the archive" in err or "shape" in err)
    assert len(err.strip().splitlines()) == 1


def test_bad_cost_stops_and_reports(tmp_path, corpus_path, capsys):
    opts = train_options(tmp_path, corpus_path, max_epochs=1, dim_proj=4)
    params = lstm.init_params(dataclasses.replace(opts, ydim=2), np.random.default_rng(0))
    params["U"][:] = np.nan
    np.savez(tmp_path / "nan.npz", **params)
    result = lstm.train_lstm(dataclasses.replace(opts, reload_model=str(tmp_path / "nan.npz")))
    assert result["status"] == "bad_cost"
    assert "bad cost detected" in capsys.readouterr().out


def test_cli_help_documents_every_option(capsys):
    with pytest.raises(SystemExit) as exc:
        lstm.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dim-proj", "--optimizer", "--lrate", "--max-epochs", "--maxlen",
                 "--batch-size", "--valid-freq", "--save-freq", "--patience",
                 "--decay-c", "--no-dropout", "--n-words", "--test-size", "--saveto",
                 "--reload-model", "--dataset", "--seed", "--mode"):
        assert flag in text


def test_cli_missing_source_is_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("IMDB_SOURCE", str(tmp_path / "nowhere.tar.gz"))
    code = lstm.main(["--dataset", str(tmp_path / "imdb.pkl"), "--saveto", ""])
    err = capsys.readouterr().err
    assert code == 2
    assert "nowhere.tar.gz" in err and len(err.strip().splitlines()) == 1


def test_ctrl_c_stops_and_keeps_the_best_model(tmp_path, corpus_path):
    """SIGINT during training: the run ends cleanly with its best model saved."""
    import signal
    import subprocess
    import sys
    import time

    saveto = tmp_path / "model.npz"
    log = tmp_path / "model.log.jsonl"
    proc = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(lstm.__file__), "lstm.py"),
         "--dataset", corpus_path, "--max-epochs", "100000", "--valid-freq", "5",
         "--dim-proj", "8", "--n-words", "60", "--test-size", "0",
         "--saveto", str(saveto)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and proc.poll() is None:
            if log.exists() and len(log.read_text().splitlines()) >= 3:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Training interupted" in out
    assert "Traceback" not in err
    with np.load(saveto, allow_pickle=False) as saved:
        assert len(saved["history_errs"]) >= 3
        assert 0.0 <= float(saved["test_err"]) <= 1.0


def test_missing_custom_dataset_is_an_error_not_a_download(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("IMDB_SOURCE", raising=False)
    missing = tmp_path / "mine.pkl"
    assert lstm.main(["--dataset", str(missing), "--saveto", ""]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "imdb_preprocess.py" in err
    assert not (tmp_path / "aclImdb_v1.tar.gz").exists()


def test_lstm_builds_a_missing_imdb_pkl_from_a_raw_folder(tmp_path, capsys):
    """imdb_preprocess output feeds lstm.py: a raw aclImdb-style folder, end to end."""
    write_raw_corpus(tmp_path, 60, 20)
    code = lstm.main(["--dataset", str(tmp_path / "data" / "imdb.pkl"),
                      "--source", str(tmp_path / "aclImdb"), "--saveto", str(tmp_path / "m.npz"),
                      "--dim-proj", "8", "--max-epochs", "3", "--valid-freq", "-1",
                      "--test-size", "0", "--valid-portion", "0.1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "building it from" in out and "The code run for 3 epochs" in out
    assert (tmp_path / "data" / "imdb.dict.pkl.gz").exists()


@pytest.mark.parametrize("env_flags, expected", [
    ("", ("float32", "CVM")),  # the project's defaults, though PyTensor was imported first
    ("floatX=float64", ("float64", "CVM")),  # what the user set in PYTENSOR_FLAGS wins
])
def test_project_flags_apply_when_pytensor_was_imported_first(env_flags, expected):
    """``import pytensor`` before ``import lstm`` must not leave the model in float64."""
    import subprocess
    import sys

    root = os.path.dirname(os.path.abspath(lstm.__file__))
    env = dict(os.environ, PYTENSOR_FLAGS=env_flags)
    out = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, %r); import pytensor; "
         "import lstm; print(pytensor.config.floatX, pytensor.config.mode)" % root],
        env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert tuple(out.stdout.split()) == expected


# -- errors name the file the user gave, before the slow work ------------------
def test_errors_name_the_file_given_and_come_before_loading_data(tmp_path, capsys):
    missing = str(tmp_path / "nope.npz")
    assert lstm.main(["predict", "--model", missing, "x"]) == 2
    assert capsys.readouterr().err.strip() == "lstm.py predict: error: %s: no such model file" % missing
    model = tmp_path / "m.npz"
    sentiment.common.files.atomic_write(str(model), lambda f: sentiment.common.files.savez(
        f, {"Wemb": np.zeros((2, 2), "float32"), "history_errs": np.zeros((0, 2))}))
    assert lstm.main(["--resume", str(model)]) == 2
    err = capsys.readouterr().err
    assert str(model) + ": not a checkpoint" in err and str(tmp_path / "m.ckpt.npz") in err
    junk = tmp_path / "junk.npz"
    junk.write_text("not a model")
    # The dataset does not exist: had the data been loaded first, that would be the error.
    for flag, path, what in (
            ("--reload-model", junk, "not a readable .npz model (not an .npz (zip) archive)"),
            ("--reload-model", tmp_path / "none.npz", "no such model file"),
            ("--embeddings", tmp_path / "none.vec", "no such embeddings file")):
        code = lstm.main(["--dataset", str(tmp_path / "nowhere.pkl"), flag, str(path)])
        captured = capsys.readouterr()
        assert code == 2 and "Loading data" not in captured.out
        assert captured.err.strip() == "lstm.py: error: %s: %s" % (path, what)
