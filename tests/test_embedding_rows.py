"""AdaDelta for the embedding row by row (sentiment.kernels.embedding_rows): the bits
of the dense rule, with the unused rows' decays left until a batch uses the
word or the state is read or set."""
import numpy as np
import pytensor
import pytest
from pytensor.tensor.sharedvar import TensorSharedVariable

import lstm
from sentiment.kernels import embedding_rows, fused_graph, fused_lstm
from sentiment.model.config import Config

MODE = fused_graph.compile_mode(pytensor.config.mode)


def bits(a):
    return np.ascontiguousarray(a).view("u%d" % a.dtype.itemsize)


def stored(shared):
    """The value as the compiled functions hold it (no catch-up)."""
    return TensorSharedVariable.get_value(shared, borrow=True)


def ops(f, kind):
    return [node.op for node in f.maker.fgraph.apply_nodes if isinstance(node.op, kind)]


# ---------------------------------------------------------------------------
# The Ops against the dense ones (EmbeddingGrad, RunningAverage, FusedStep).
# ---------------------------------------------------------------------------
def dense_functions(n_words, dim):
    zg, ru2, rg2, p = (pytensor.shared(np.zeros((n_words, dim), "float32")) for _ in range(4))
    idx = pytensor.tensor.vector(dtype="int64")
    g = pytensor.tensor.matrix(dtype="float32")
    new_zg = fused_lstm.EmbeddingGrad()(p, idx, g)
    grad = pytensor.function([idx, g], [], mode=MODE, updates=[
        (zg, new_zg), (rg2, fused_lstm.RunningAverage(True)(rg2, new_zg))])
    new_p, new_ru2 = fused_lstm.FusedStep("adadelta")(p, zg, ru2, rg2)
    step = pytensor.function([], [], mode=MODE, updates=[(p, new_p), (ru2, new_ru2)])
    return (zg, ru2, rg2, p), grad, step


def row_functions(n_words, dim, inplace):
    zg, ru2, rg2, p = (pytensor.shared(np.zeros((n_words, dim), "float32")) for _ in range(4))
    rows = embedding_rows.AdaDeltaRows(zg, ru2, rg2)
    idx = pytensor.tensor.vector(dtype="int64")
    g = pytensor.tensor.matrix(dtype="float32")
    mode = MODE if inplace else pytensor.compile.mode.get_mode(pytensor.config.mode)
    grad = pytensor.function([idx, g], [], updates=rows.grad_updates(idx, g), mode=mode)
    step = pytensor.function([], [], updates=rows.step_updates(p, 1.0), mode=mode)
    return (rows.zipped_grads, rows.running_up2, rows.running_grads2, p), grad, step


@pytest.mark.parametrize("inplace,threads", [(True, 1), (False, 1), (True, 2), (True, 3)])
def test_the_ops_give_the_dense_ops_bits(inplace, threads, monkeypatch):
    """From random (non-zero) state, batches that use few words, with repeats,
    some steps without a new gradient and some gradients without a step: the
    parameter and the state have the dense Ops' bits, read at any point, with
    the rows shared out to any number of threads."""
    monkeypatch.setattr(fused_lstm, "threads", threads)
    monkeypatch.setattr(embedding_rows, "MIN_THREAD_ROWS", 1)
    n_words, dim = 40, 20  # (20: not a multiple of a vector's width)
    rng = np.random.default_rng(1)
    start = [rng.standard_normal((n_words, dim)).astype("float32") for _ in range(4)]
    start[1:3] = [np.abs(v) * 1e-3 for v in start[1:3]]
    dense, dense_grad, dense_step = dense_functions(n_words, dim)
    rows, row_grad, row_step = row_functions(n_words, dim, inplace)
    for a, b, value in zip(dense, rows, start):
        a.set_value(value)
        b.set_value(value)
    untouched = []
    for k in range(12):
        n = int(rng.integers(1, 9))
        idx = rng.integers(0, 10 if k % 3 else n_words, size=n)  # rows 10.. often unused
        idx[n // 2] = idx[0]  # a repeated word
        g = rng.standard_normal((n, dim)).astype("float32")
        if k != 5:
            dense_grad(idx, g)
            row_grad(idx, g)
        if k != 8:
            dense_step()
            row_step()
        untouched.append(not np.isin(np.arange(10, n_words), idx).all())
        if k in (3, 9):  # read in the middle: every row brought up to date
            for a, b in zip(dense, rows):
                np.testing.assert_array_equal(bits(a.get_value()), bits(b.get_value()))
    assert any(untouched)
    for a, b in zip(dense, rows):
        np.testing.assert_array_equal(bits(a.get_value()), bits(b.get_value()))


def test_unused_rows_wait_and_catch_up_when_read():
    """A row no batch used is not computed (the stored value stays as it was)
    until the state is read: then it is the dense rule's."""
    rows, row_grad, row_step = row_functions(6, 4, inplace=True)
    dense, dense_grad, dense_step = dense_functions(6, 4)
    for shared in (rows[2], dense[2]):
        shared.set_value(np.full((6, 4), 0.5, "float32"))
    g = np.ones((2, 4), "float32")
    for _ in range(3):
        row_grad(np.array([0, 1]), g)
        row_step()
        dense_grad(np.array([0, 1]), g)
        dense_step()
    assert (stored(rows[2])[2:] == np.float32(0.5)).all()  # rows 2..5: not yet
    np.testing.assert_array_equal(bits(rows[2].get_value()), bits(dense[2].get_value()))
    assert (stored(rows[2])[2:] < np.float32(0.5)).all()  # caught up in place
    np.testing.assert_array_equal(bits(stored(rows[2])), bits(dense[2].get_value()))


def test_setting_the_state_starts_from_the_new_values():
    """set_value (a restored checkpoint) brings the rows up to date first, and
    the values set then owe nothing: the next steps are the dense rule's."""
    rows, row_grad, row_step = row_functions(6, 4, inplace=True)
    dense, dense_grad, dense_step = dense_functions(6, 4)
    g = np.ones((2, 4), "float32")
    row_grad(np.array([0, 1]), g)
    row_step()
    new = [np.full((6, 4), v, "float32") for v in (0.1, 0.2, 0.3, 0.4)]
    for shared_set in (rows, dense):
        for shared, value in zip(shared_set, new):
            shared.set_value(value)
    for f in (row_grad, dense_grad):
        f(np.array([2, 2]), g)
    row_step()
    dense_step()
    for a, b in zip(dense, rows):
        np.testing.assert_array_equal(bits(a.get_value()), bits(b.get_value()))


# ---------------------------------------------------------------------------
# In lstm.adadelta: where it applies, and a few updates of the model.
# ---------------------------------------------------------------------------
def compiled(options, params, monkeypatch=None):
    if monkeypatch is not None:  # the dense rule: no gradient taken for an embedding
        monkeypatch.setattr(embedding_rows, "_embedding_grad", lambda param, grad: None)
    return lstm.compile_model(options, {k: v.copy() for k, v in params.items()},
                              np.random.default_rng(5))


@pytest.mark.parametrize("adaptive", [0.0, 0.5])
def test_the_models_updates_have_the_dense_rules_bits(adaptive, monkeypatch):
    """lstm.py's model (fused, the default): five updates with batches of few
    words give the bits of the dense rule in every parameter and state."""
    options = Config(dim_proj=8, n_words=50, ydim=2, use_dropout=True, adaptive_lrate=adaptive,
                     lrate=0.5)
    params = lstm.init_params(options, np.random.default_rng(3))
    rows = compiled(options, params)
    assert ops(rows["f_update"], embedding_rows.StepRows)
    assert not ops(rows["f_grad_shared"], fused_lstm.EmbeddingGrad)
    with monkeypatch.context() as patch:
        dense = compiled(options, params, patch)
    assert not ops(dense["f_update"], embedding_rows.StepRows)
    rng = np.random.default_rng(4)
    for k in range(5):
        x = rng.integers(0, 12 if k % 2 else 50, size=(7, 3)).astype("int64")
        mask = np.ones((7, 3), "float32")
        y = rng.integers(0, 2, 3)
        for model in (rows, dense):
            model["f_grad_shared"](x, mask, y)
            model["f_update"](np.float32(options.lrate))
    for name in params:
        np.testing.assert_array_equal(bits(rows["tparams"][name].get_value()),
                                      bits(dense["tparams"][name].get_value()))
    assert [s.name for s in rows["optimizer_state"]] == [s.name for s in dense["optimizer_state"]]
    for a, b in zip(rows["optimizer_state"], dense["optimizer_state"]):
        np.testing.assert_array_equal(bits(a.get_value()), bits(b.get_value()))


@pytest.mark.parametrize("changes", [dict(clip_c=1.0), dict(optimizer="rmsprop"),
                                     dict(lstm_impl="scan")])
def test_the_dense_rule_where_the_gradient_is_not_the_embeddings_own(changes):
    """Clipped gradients, other rules and the tutorial's graph keep the dense rule."""
    options = Config(dim_proj=8, n_words=50, ydim=2, **changes)
    model = compiled(options, lstm.init_params(options, np.random.default_rng(3)))
    assert not ops(model["f_update"], embedding_rows.StepRows)
    assert not any(isinstance(s, embedding_rows.RowState) for s in model["optimizer_state"])
