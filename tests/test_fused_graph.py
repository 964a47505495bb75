"""The project's compile mode (sentiment.kernels.fused_graph): the inlined softmax, the
prediction Ops that replace the LSTM where no gradient is taken, and the kept
projections of the embedding rows; every one gives the bits of the plain graph."""
import numpy as np
import pytensor
import pytensor.tensor as pt
import pytest
from pytensor import config
from pytensor.compile.mode import get_mode

import lstm
from sentiment.kernels import embedding_rows, fused_graph, fused_lstm, lstm_ops, scheduling
from sentiment.model.config import Config

MODE = fused_graph.compile_mode(config.mode)
PLAIN = get_mode(config.mode)  # the same graph without the project's rewrites


def ops(f):
    return [type(node.op) for node in f.maker.fgraph.apply_nodes]


def bits(a):
    return np.ascontiguousarray(a).view("u%d" % a.dtype.itemsize)


def test_softmax_runs_inlined_as_c_ops():
    """pt.special.softmax compiles to element-wise ops, not a Python-called inner
    function, in the project's mode, and stays a Softmax in everybody else's."""
    z = pt.matrix(dtype=config.floatX)
    f = pytensor.function([z], pt.special.softmax(z, axis=-1), mode=MODE)
    assert pt.special.Softmax not in ops(f)
    other = pytensor.function([z], pt.special.softmax(z, axis=-1))
    assert pt.special.Softmax in ops(other)
    zv = np.array([[1.0, 2.0], [0.0, -3.0]], dtype=config.floatX)
    want = np.exp(zv) / np.exp(zv).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(f(zv), want, rtol=1e-6)


def batch(T, B, n_words, rng):
    """Word ids and a right-padded mask with lengths 1..T (one full, one of 1)."""
    x = rng.integers(0, n_words, size=(T, B)).astype("int64")
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0], lengths[-1] = T, 1
    return x, (np.arange(T)[:, None] < lengths).astype(config.floatX)


def model_functions(options, seed=0):
    """f_pred_prob of ``options``' model in the project's mode and in the plain one."""
    params = lstm.init_params(options, np.random.default_rng(seed))
    built = lstm.build_model(lstm.init_tparams(params), options, np.random.default_rng(0))
    return [pytensor.function([built["x"], built["mask"]], built["pred"], mode=mode)
            for mode in (MODE, PLAIN)]


@pytest.mark.parametrize("changes,op", [
    ({}, fused_graph.LSTMEmbedded),  # the tutorial's model: mean of an embedded input
    (dict(pooling="max"), fused_graph.LSTMEmbedded),
    (dict(bigram_buckets=50, bidirectional=True, pooling="meanmax"), fused_graph.LSTMHidden),
])
@pytest.mark.parametrize("T,B", [(7, 3), (30, 19)])
def test_prediction_gives_the_plain_graphs_bits(changes, op, T, B):
    options = Config(dim_proj=16, n_words=40, ydim=2, **changes)
    fast, plain = model_functions(options)
    assert op in ops(fast) and fused_lstm.LSTMForward not in ops(fast)
    assert fused_lstm.LSTMForward in ops(plain)
    rng = np.random.default_rng(T + B)
    for _ in range(3):  # again, with the kept rows
        x, mask = batch(T, B, options.n_words, rng)
        np.testing.assert_array_equal(bits(fast(x, mask)), bits(plain(x, mask)))


def test_training_graphs_keep_the_training_ops():
    """f_grad_shared needs c and the gates: no prediction Op replaces LSTMForward."""
    options = Config(dim_proj=8, n_words=30, ydim=2)
    model = lstm.compile_model(options, lstm.init_params(options, np.random.default_rng(1)),
                               np.random.default_rng(0))
    assert fused_lstm.LSTMForward in ops(model["f_grad_shared"])
    assert fused_graph.LSTMEmbedded in ops(model["f_pred_prob"])


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("B", [1, 8, 19, 40])
def test_every_schedule_of_the_prediction_kernel_gives_the_same_bits(monkeypatch, n_threads, B):
    """lstm_predict_arrays (row blocks in threads, projection by chunks of steps,
    or rows from a table) against lstm_forward_arrays then MaskedMean."""
    monkeypatch.setattr(scheduling, "threads", n_threads)
    monkeypatch.setattr(lstm_ops, "CHUNK_ROWS", 24)  # several chunks
    rng = np.random.default_rng(B)
    T, D, n_in = 13, 16, 8
    E = rng.standard_normal((600, n_in)).astype("float32")  # most words new: projected in turn
    W = rng.standard_normal((n_in, 4 * D)).astype("float32")
    U = (0.5 * rng.standard_normal((D, 4 * D))).astype("float32")
    b = rng.standard_normal(4 * D).astype("float32")
    ids, mask = batch(T, B, len(E), rng)
    x = E[ids]
    h, _, _ = fused_lstm.lstm_forward_arrays(x, mask, W, U, b)
    pooled = np.empty((B, D), "float32")
    fused_lstm._masked_mean(h, mask, pooled, 0, B)
    got_h, got_pooled = fused_lstm.lstm_predict_arrays(x, mask, W, U, b, pool=True)
    np.testing.assert_array_equal(bits(got_h), bits(h))
    np.testing.assert_array_equal(bits(got_pooled), bits(pooled))
    rows = fused_graph.ProjectedRows()
    if rows.applies(E, W):
        # Then the same weights again (the batch projected token by token, its new rows written to
        # the table, or computed apart when few), then the same words read from
        # the table, then one more word.
        assert rows.update(E, ids, W, b) == (None, None, None)  # new weights: projected only
        for step in ("new weights", "kept rows", "one more word"):
            if step == "one more word":
                ids[-1, 0] = (ids.max() + 1) % len(E)
                h, _, _ = fused_lstm.lstm_forward_arrays(E[ids], mask, W, U, b)
                fused_lstm._masked_mean(h, mask, pooled, 0, B)
            new = len(np.unique(ids)) if step == "new weights" else int(step != "kept rows")
            table, fill, stale = rows.update(E, ids, W, b)
            assert (fill is not None) == (4 * new > ids.size), step
            _, got = fused_lstm.lstm_predict_arrays(E[ids], mask, W, U, b, keep_h=False,
                                                    pool=True, projected=(ids, table, fill))
            if stale is not None:
                rows.computed(stale)
            np.testing.assert_array_equal(bits(got), bits(pooled), err_msg=step)


@pytest.fixture
def tutorial_model():
    options = Config(dim_proj=16, n_words=40, ydim=2)
    model = lstm.compile_model(options, lstm.init_params(options, np.random.default_rng(3)),
                               np.random.default_rng(0))
    if not fused_graph.ProjectedRows.applies(model["tparams"]["Wemb"].get_value(),
                                             model["tparams"]["lstm_W"].get_value()):
        pytest.skip("no packed kernel (a CPU without AVX2 and FMA): every token is projected")
    return options, model


def _pred_graph(options, params):
    built = lstm.build_model(lstm.init_tparams(params), options, np.random.default_rng(0))
    return [built["x"], built["mask"]], built["pred"]


@pytest.mark.parametrize("change", ["update", "set_value", "in place", "W in place"])
def test_kept_rows_follow_every_change_of_the_weights(tutorial_model, change):
    """The kept projections are never served stale: after a training update,
    set_value, or an array changed in place, predictions are those of a
    freshly compiled function with the new weights."""
    options, model = tutorial_model
    rng = np.random.default_rng(4)
    x, mask = batch(9, 5, options.n_words, rng)
    before = model["f_pred_prob"](x, mask)
    tp = model["tparams"]
    if change == "update":
        model["f_grad_shared"](x, mask, np.zeros(5, "int64"))
        model["f_update"](np.float32(0.1))
    elif change == "set_value":
        tp["Wemb"].set_value(tp["Wemb"].get_value() * 2)
    elif change == "in place":
        tp["Wemb"].get_value(borrow=True)[x[0, 0]] *= -5.0  # one word's row
    else:
        tp["lstm_W"].get_value(borrow=True)[:] *= -2.0
    after = model["f_pred_prob"](x, mask)
    want = pytensor.function(*_pred_graph(options, lstm.unzip(tp)), mode=PLAIN)(x, mask)
    np.testing.assert_array_equal(bits(after), bits(want))
    assert not np.array_equal(after, before)


def test_kept_rows_check_the_word_ids(tutorial_model):
    options, model = tutorial_model
    x, mask = batch(4, 2, options.n_words, np.random.default_rng(5))
    x[1, 1] = options.n_words
    with pytest.raises(IndexError, match="out of range"):
        model["f_pred_prob"](x, mask)


@pytest.mark.parametrize("square", [False, True])
def test_running_average_gives_pytensors_bits(square):
    """The tutorial's 0.95 * avg + 0.05 * g (** 2), fused and threaded, as
    PyTensor's element-wise C code computes it, bit for bit."""
    g, avg = pt.vector(dtype="float32"), pt.vector(dtype="float32")
    f = pytensor.function([avg, g], [0.95 * avg + 0.05 * (g ** 2 if square else g),
                                     fused_lstm.RunningAverage(square)(avg, g)], mode=PLAIN)
    rng = np.random.default_rng(6)
    n = 3 * fused_lstm.MIN_STEP_BLOCK + 5  # in blocks, in threads
    gv = (rng.standard_normal(n) * np.exp(rng.uniform(-30, 10, n))).astype("float32")
    av = np.abs(rng.standard_normal(n) * np.exp(rng.uniform(-30, 10, n))).astype("float32")
    gv[:4] = [0.0, -0.0, np.inf, np.nan]
    want, got = f(av, gv)
    np.testing.assert_array_equal(bits(got), bits(want))
    with pytest.raises(TypeError, match="float32 only"):
        fused_lstm.RunningAverage(square)(pt.vector(dtype="float64"), pt.vector(dtype="float64"))


def steps(f):
    return [node.op for node in f.maker.fgraph.apply_nodes
            if isinstance(node.op, (fused_lstm.FusedStep, fused_lstm.RunningAverage,
                                    embedding_rows.GradRows, embedding_rows.StepRows))]


@pytest.mark.parametrize("optimizer", ["adadelta", "rmsprop", "adam"])
def test_optimizer_steps_write_over_the_shared_variables_with_the_same_bits(optimizer,
                                                                            monkeypatch):
    """In the project's mode the optimizers' steps and running averages write
    their new values over the shared variables they update (no new arrays);
    three updates give the bits of the same functions without that rewrite."""
    options = Config(dim_proj=8, n_words=30, ydim=2, use_dropout=False, optimizer=optimizer,
                     lrate=0.01)
    params = lstm.init_params(options, np.random.default_rng(11))
    in_place = lstm.compile_model(options, {k: v.copy() for k, v in params.items()})
    monkeypatch.setattr(fused_graph, "compile_mode", lambda mode: get_mode(mode).including(
        fused_graph.REWRITE_TAG).excluding("steps_in_place_" + fused_graph.REWRITE_TAG))
    apart = lstm.compile_model(options, {k: v.copy() for k, v in params.items()})
    assert all(op.inplace for op in steps(in_place["f_update"]))
    assert steps(in_place["f_update"]) and not any(
        op.inplace for op in steps(apart["f_update"]) + steps(apart["f_grad_shared"]))
    if optimizer != "adam":  # (Adam keeps its averages in its step)
        assert steps(in_place["f_grad_shared"])
        assert all(op.inplace for op in steps(in_place["f_grad_shared"]))
    wemb = in_place["tparams"]["Wemb"].get_value(borrow=True)
    rng = np.random.default_rng(12)
    for _ in range(3):
        x, mask = batch(6, 5, options.n_words, rng)
        y = rng.integers(0, 2, 5)
        for model in (in_place, apart):
            model["f_grad_shared"](x, mask, y)
            model["f_update"](np.float32(options.lrate))
    assert in_place["tparams"]["Wemb"].get_value(borrow=True) is wemb  # the same array
    for name in params:
        np.testing.assert_array_equal(bits(in_place["tparams"][name].get_value()),
                                      bits(apart["tparams"][name].get_value()))
    for a, b in zip(in_place["optimizer_state"], apart["optimizer_state"]):
        np.testing.assert_array_equal(bits(a.get_value()), bits(b.get_value()))
    assert not np.array_equal(in_place["tparams"]["Wemb"].get_value(), params["Wemb"])


def test_a_step_whose_inputs_are_not_updated_leaves_them_alone():
    """Without an update of its inputs, the step may not write over them: they
    keep their values."""
    rng = np.random.default_rng(13)
    values = [rng.standard_normal(50).astype("float32") for _ in range(4)]
    values[2:] = [np.abs(v) for v in values[2:]]
    shared = [pytensor.shared(v.copy()) for v in values]
    f = pytensor.function([], fused_lstm.adadelta_step(*shared) +
                          [fused_lstm.RunningAverage(True)(shared[3], shared[1])], mode=MODE)
    assert not any(op.inplace for op in steps(f))
    p_new, ru2_new, rg2_new = f()
    for s, v in zip(shared, values):
        np.testing.assert_array_equal(s.get_value(), v)
    assert not np.array_equal(p_new, values[0]) and not np.array_equal(rg2_new, values[3])
