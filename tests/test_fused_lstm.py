"""The fused LSTM Ops compute the tutorial's scan: outputs and gradients."""
import dataclasses
import os
import shutil

import numpy as np
import pytest

import lstm
import pytensor
import pytensor.tensor as pt
from pytensor import config
from sentiment.kernels import fused_lstm, gemm, layer_ops, lstm_ops, machine, scheduling

fused_lstm.setup()  # the BLAS and the packed GEMM, which the tests below inspect

# float32: the rational tanh is within 3.3e-7 of the exact one, and the two
# implementations add in different orders; float64 uses the exact tanh.
TOL = {"float32": dict(rtol=1e-5, atol=2e-6), "float64": dict(rtol=1e-10, atol=1e-12)}


def scan_lstm(xw, mask, U, dim):
    """The tutorial's recurrence from the input projection, as lstm.lstm_layer's scan."""
    def step(m_, x_, h_, c_):
        preact = pt.dot(h_, U) + x_
        i = pt.sigmoid(preact[:, :dim])
        f = pt.sigmoid(preact[:, dim:2 * dim])
        o = pt.sigmoid(preact[:, 2 * dim:3 * dim])
        c = f * c_ + i * pt.tanh(preact[:, 3 * dim:])
        c = m_[:, None] * c + (1.0 - m_)[:, None] * c_
        h = o * pt.tanh(c)
        h = m_[:, None] * h + (1.0 - m_)[:, None] * h_
        return h, c

    zeros = pt.zeros((xw.shape[1], dim), dtype=xw.dtype)
    return pytensor.scan(step, sequences=[mask, xw], outputs_info=[zeros, zeros],
                         return_updates=False)


def masks(T, B, rng):
    """Right-padded 0/1 masks with every length from 1 to T, and one fractional."""
    lengths = rng.integers(1, T + 1, size=B)
    lengths[0], lengths[-1] = T, 1
    return (np.arange(T)[:, None] < lengths).astype("float64")


NAMES = ["h", "c", "cost", "dx", "dW", "dU", "db"]


def both(dtype, dim, use_c):
    """Compiled (h, c, cost, and the cost's gradient with respect to x, W, U, b)
    for the scan (on the projection x W + b) and the fused Ops."""
    x = pt.tensor3("x", dtype=dtype)
    mask = pt.matrix("mask", dtype=dtype)
    W = pt.matrix("W", dtype=dtype)
    U = pt.matrix("U", dtype=dtype)
    b = pt.vector("b", dtype=dtype)
    wh = pt.tensor3("wh", dtype=dtype)
    wc = pt.tensor3("wc", dtype=dtype)
    h_s, c_s = scan_lstm(pt.dot(x, W) + b, mask, U, dim)
    h_f, c_f, _ = fused_lstm.lstm_forward(x, mask, W, U, b)
    fns = []
    for h, c in ((h_s, c_s), (h_f, c_f)):
        cost = (h * wh).sum() + ((c * wc).sum() if use_c else 0)
        outs = [h, c, cost] + pytensor.grad(cost, [x, W, U, b])
        fns.append(pytensor.function([x, mask, W, U, b, wh, wc], outs,
                                     on_unused_input="ignore"))
    return fns


def lstm_args(T, B, dim, rng, n_in=3, dtype="float64", scale=1.0):
    """x, mask, W, U, b, wh, wc for :func:`both`."""
    args = [rng.standard_normal((T, B, n_in)), masks(T, B, rng),
            scale * rng.standard_normal((n_in, 4 * dim)),
            0.5 * rng.standard_normal((dim, 4 * dim)), 0.5 * rng.standard_normal(4 * dim),
            rng.standard_normal((T, B, dim)), rng.standard_normal((T, B, dim))]
    return [a.astype(dtype) for a in args]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("use_c", [False, True], ids=["cost-of-h", "cost-of-h-and-c"])
@pytest.mark.parametrize("T,B,dim", [(1, 1, 2), (9, 4, 6)])
def test_fused_matches_scan(dtype, use_c, T, B, dim):
    rng = np.random.default_rng(T * 100 + B)
    f_scan, f_fused = both(dtype, dim, use_c)
    args = lstm_args(T, B, dim, rng, dtype=dtype, scale=1.5)
    for name, want, got in zip(NAMES, f_scan(*args), f_fused(*args)):
        assert got.dtype == want.dtype == dtype, name
        np.testing.assert_allclose(got, want, err_msg=name, **TOL[dtype])


def test_fractional_mask_matches_scan():
    """The tutorial's formula holds for any mask value, not only 0 and 1."""
    rng = np.random.default_rng(3)
    f_scan, f_fused = both("float64", 4, True)
    args = lstm_args(6, 3, 4, rng)
    args[1] = rng.random((6, 3))
    for name, want, got in zip(NAMES, f_scan(*args), f_fused(*args)):
        np.testing.assert_allclose(got, want, err_msg=name, **TOL["float64"])


def test_padding_content_never_matters():
    rng = np.random.default_rng(4)
    _, f_fused = both("float32", 5, False)
    args = lstm_args(9, 4, 5, rng, dtype="float32")
    mask = args[1]
    first = f_fused(*args)
    args[0] = np.where(mask[:, :, None] > 0, args[0], 1e3 * rng.standard_normal(args[0].shape)
                       ).astype("float32")
    second = f_fused(*args)
    for name, one, two in zip(NAMES, first, second):
        if name != "dx":
            np.testing.assert_array_equal(two, one, err_msg=name)
    # The gradient of the input is zero on padded steps.
    assert np.all(second[3][mask == 0] == 0)


def test_whole_model_gradients_agree():
    """Every parameter's gradient, fused against the scan reference, in float32."""
    rng = np.random.default_rng(5)
    opts = lstm.Config(dim_proj=16, n_words=40, ydim=3, use_dropout=False, saveto="",
                       decay_c=0.01)
    params = lstm.init_params(opts, rng)
    for k in params:
        params[k] = (params[k] + 0.3 * rng.standard_normal(params[k].shape)).astype(config.floatX)
    x = rng.integers(2, 40, size=(11, 6)).astype("int64")
    mask = masks(11, 6, rng).astype(config.floatX)
    y = np.arange(6) % 3
    grads = {}
    for impl in ("fused", "scan"):
        tparams = lstm.init_tparams(params)
        model = lstm.build_model(tparams, dataclasses.replace(opts, lstm_impl=impl))
        f = pytensor.function([model["x"], model["mask"], model["y"]],
                              [model["cost"]] + pytensor.grad(model["cost"], list(tparams.values())))
        grads[impl] = f(x, mask, y)
    for name, got, want in zip(["cost"] + list(params), grads["fused"], grads["scan"]):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=name)


def test_training_updates_agree():
    """Ten AdaDelta updates with each implementation end at the same parameters."""
    results = {}
    for impl in ("fused", "scan"):
        opts = lstm.Config(dim_proj=8, n_words=30, ydim=2, saveto="", lstm_impl=impl)
        params = lstm.init_params(opts, np.random.default_rng(0))
        model = lstm.compile_model(opts, params, np.random.default_rng(1))
        batch_rng = np.random.default_rng(2)
        costs = []
        for _ in range(10):
            x = batch_rng.integers(2, 30, size=(9, 4)).astype("int64")
            mask = masks(9, 4, batch_rng).astype(config.floatX)
            costs.append(float(model["f_grad_shared"](x, mask, np.array([0, 1, 1, 0]))))
            model["f_update"](np.float32(0.0))
        results[impl] = costs, lstm.unzip(model["tparams"])
    np.testing.assert_allclose(results["fused"][0], results["scan"][0], rtol=1e-5)
    for name, value in results["scan"][1].items():
        np.testing.assert_allclose(results["fused"][1][name], value, rtol=1e-4, atol=1e-6,
                                   err_msg=name)


def test_rational_tanh_accuracy_and_special_values():
    x = np.linspace(-12, 12, 200001).astype("float32")
    got = np.array([fused_lstm._tanh32(np.float32(v)) for v in x[::97]])
    want = np.tanh(x[::97].astype("float64"))
    assert np.abs(got - want).max() < 4e-7
    assert fused_lstm._tanh32(np.float32(np.inf)) == pytest.approx(1.0, abs=1e-7)
    assert fused_lstm._tanh32(np.float32(-np.inf)) == pytest.approx(-1.0, abs=1e-7)
    assert np.isnan(fused_lstm._tanh32(np.float32(np.nan)))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_reaches_the_output(dtype):
    """A NaN weight must reach the cost, so training stops on 'bad cost detected'."""
    x, mask = pt.tensor3(dtype=dtype), pt.matrix(dtype=dtype)
    W, U, b = pt.matrix(dtype=dtype), pt.matrix(dtype=dtype), pt.vector(dtype=dtype)
    f = pytensor.function([x, mask, W, U, b], fused_lstm.lstm(x, mask, W, U, b))
    Uv = np.zeros((3, 12), dtype)
    Uv[0, 0] = np.nan
    h = f(np.ones((4, 2, 12), dtype), np.ones((4, 2), dtype), np.eye(12, dtype=dtype), Uv,
          np.zeros(12, dtype))
    assert not np.isnan(h[0]).any()  # h_0 = 0 meets U only from step 1 on
    assert np.isnan(h[1, :, 0]).all()  # step 1: the NaN input gate of unit 0
    assert np.isnan(h[2:]).all()  # then every unit through h U


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("trans_b", [False, True])
def test_blas_gemm_matches_numpy_dot(dtype, trans_b):
    """The kernels' GEMM (CBLAS) and its fallback (np.dot in Numba) against NumPy."""
    import numba

    @numba.njit
    def both(a, b, c1, c2, trans_b, beta):
        fused_lstm._gemm(a, b, c1, trans_b, beta)
        fused_lstm._gemm_dot(a, b, c2, trans_b, beta)

    rng = np.random.default_rng(8)
    a = rng.standard_normal((5, 7)).astype(dtype)
    b = rng.standard_normal((3, 7) if trans_b else (7, 3)).astype(dtype)
    c0 = rng.standard_normal((5, 3)).astype(dtype)
    c1, c2 = c0.copy(), c0.copy()
    beta = np.dtype(dtype).type(0.5)
    both(a, b, c1, c2, trans_b, beta)
    want = a.astype("float64") @ (b.T if trans_b else b) + 0.5 * c0
    np.testing.assert_allclose(c1, want, **TOL[dtype])
    np.testing.assert_allclose(c2, want, **TOL[dtype])


def test_blas_is_found_here():
    """With the pinned NumPy wheel the kernels call its OpenBLAS directly."""
    assert set(fused_lstm._CBLAS) == {"float32", "float64"}


def _cpu_has(*names):
    flags = machine.cpu_info()["flags"]
    return all(name in flags for name in names)


needs_packed = pytest.mark.skipif(fused_lstm._PACKED_GEMM is None,
                                  reason="no packed GEMM here: " + fused_lstm.gemm_kernel)


def test_packed_gemm_is_used_here():
    """With a C compiler and an AVX2 + FMA CPU, the kernels use the packed GEMM
    (a failed build would otherwise fall back to the BLAS unnoticed)."""
    if not (shutil.which("cc") or shutil.which("gcc")) or not _cpu_has("avx2", "fma"):
        pytest.skip("needs a C compiler and a CPU with AVX2 and FMA")
    assert fused_lstm.gemm_kernel.startswith(fused_lstm.PACKED_KERNEL)
    assert fused_lstm.gemm_kernel.endswith(
        "AVX-512 tiles" if os.environ.get("FUSED_LSTM_AVX512") != "0" and _cpu_has("avx512f")
        else "AVX2 tiles")


def test_packed_layout():
    """Panels of 16 columns, zeros past the last column."""
    B = np.arange(3 * 20, dtype="float32").reshape(3, 20)
    Bp = fused_lstm.packed(B)
    if fused_lstm._PACKED_GEMM is None:
        assert Bp.size == 0
        return
    assert Bp.shape == (2, 3, 16) and Bp.flags.c_contiguous
    np.testing.assert_array_equal(Bp[0], B[:, :16])
    np.testing.assert_array_equal(Bp[1, :, :4], B[:, 16:])
    assert not Bp[1, :, 4:].any()
    assert fused_lstm.packed(B.astype("float64")).size == 0  # float64: the BLAS


@needs_packed
@pytest.mark.parametrize("M", [1, 5, 6, 7, 16, 33])
@pytest.mark.parametrize("K,N", [(128, 512), (512, 128), (5, 20), (3, 7)])
@pytest.mark.parametrize("beta", [0, 1])
def test_packed_gemm_matches_numpy(M, K, N, beta):
    """fused_lstm_gemm.c on strided rows (as the kernels' row blocks), every
    tile height and partial panel, against NumPy in float64; the columns past
    N are left alone."""
    import numba

    @numba.njit
    def run(a, bp, c, beta):
        fused_lstm._packed_gemm(a, bp, c, beta)

    rng = np.random.default_rng(M * 1000 + K + N)
    a = rng.standard_normal((M, K + 3)).astype("float32")[:, :K]
    B = rng.standard_normal((K, N)).astype("float32")
    c_all = rng.standard_normal((M, N + 2)).astype("float32")
    c = c_all[:, :N]
    want = a.astype("float64") @ B + beta * c.astype("float64")
    kept = c_all[:, N:].copy()
    run(a, fused_lstm.packed(B), c, np.float32(beta))
    np.testing.assert_allclose(c, want, rtol=1e-5, atol=1e-5 * np.sqrt(K))
    np.testing.assert_array_equal(c_all[:, N:], kept)


@needs_packed
@pytest.mark.parametrize("dim,B", [(128, 16), (128, 40), (20, 7)])
def test_packed_and_blas_recurrences_agree(monkeypatch, dim, B):
    """The Ops' arrays with the packed GEMM and with the BLAS (float32)."""
    rng = np.random.default_rng(dim + B)
    x = rng.standard_normal((12, B, 9)).astype("float32")
    mask = masks(12, B, rng).astype("float32")
    W, U = (0.3 * rng.standard_normal(s).astype("float32") for s in ((9, 4 * dim), (dim, 4 * dim)))
    b = 0.1 * rng.standard_normal(4 * dim).astype("float32")
    dh = rng.standard_normal((12, B, dim)).astype("float32")
    dc = rng.standard_normal((12, B, dim)).astype("float32")

    def run():
        h, c, g = fused_lstm.lstm_forward_arrays(x, mask, W, U, b)
        return [a.copy() for a in (h, c, *fused_lstm.lstm_backward_arrays(x, mask, W, U, h, c,
                                                                           g, dh, dc))]
    packed = run()
    monkeypatch.setattr(gemm, "_PACKED_GEMM", None)
    assert fused_lstm.packed(U).size == 0
    for got, want in zip(packed, run()):  # float32 sums in another order
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_gemm_falls_back_to_blas_when_the_build_fails(monkeypatch, tmp_path):
    """A C file that does not compile: the BLAS, a reason, no file left behind."""
    bad = tmp_path / "bad.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(gemm, "_GEMM_SOURCE", str(bad))
    monkeypatch.setattr(gemm, "_gemm_dir", lambda: str(tmp_path / "cache"))
    address, kernel = fused_lstm._load_packed_gemm()
    assert address is None
    assert kernel.startswith("BLAS (could not compile %s: " % bad), kernel
    assert not list((tmp_path / "cache").glob("*"))
    monkeypatch.setenv("FUSED_LSTM_GEMM", "blas")
    assert fused_lstm._load_packed_gemm() == (None, "BLAS (FUSED_LSTM_GEMM=blas)")


def symbols(dtype):
    """x, mask, W, U, b."""
    return (pt.tensor3(dtype=dtype), pt.matrix(dtype=dtype), pt.matrix(dtype=dtype),
            pt.matrix(dtype=dtype), pt.vector(dtype=dtype))


def test_bad_inputs_are_refused():
    x, mask, W, U, b = symbols("float32")
    with pytest.raises(TypeError, match="dimensions"):
        fused_lstm.lstm_forward(mask, mask, W, U, b)
    with pytest.raises(TypeError, match="dtype"):
        fused_lstm.lstm_forward(x, mask, W, pt.matrix(dtype="float64"), b)
    with pytest.raises(TypeError, match="float32 or float64"):
        fused_lstm.lstm_forward(pt.tensor3(dtype="int64"), mask, W, U, b)
    f = pytensor.function([x, mask, W, U, b], fused_lstm.lstm(x, mask, W, U, b))
    good = [np.zeros((3, 2, 5), "float32"), np.ones((3, 2), "float32"),
            np.zeros((5, 12), "float32"), np.zeros((3, 12), "float32"), np.zeros(12, "float32")]
    assert f(*good).shape == (3, 2, 3)
    for k, bad in [(2, np.zeros((4, 12), "float32")), (3, np.zeros((4, 12), "float32")),
                   (4, np.zeros(11, "float32")), (1, np.ones((3, 3), "float32"))]:
        with pytest.raises(ValueError, match="do not fit"):
            f(*(good[:k] + [bad] + good[k + 1:]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("B", [3, 19], ids=["serial-or-pipeline", "rows"])
def test_an_empty_dc_is_a_zero_dc(dtype, B):
    """LSTMBackward's empty dc (a cost of h alone) gives the bits of a zero dc."""
    rng = np.random.default_rng(5)
    x, mask, W, U, b, dh, _ = lstm_args(11, B, 6, rng, dtype=dtype)
    h, c, gates = (a.copy() for a in fused_lstm.lstm_forward_arrays(x, mask, W, U, b))
    zero = [a.copy() for a in fused_lstm.lstm_backward_arrays(
        x, mask, W, U, h, c, gates, dh, np.zeros_like(c))]
    empty = fused_lstm.lstm_backward_arrays(x, mask, W, U, h, c, gates, dh,
                                            np.zeros((0, 0, 0), dtype))
    for name, want, got in zip(["dx", "dW", "dU", "db"], zero, empty):
        np.testing.assert_array_equal(got, want, err_msg=name)
    dc = pt.tensor3(dtype=dtype)
    grads = fused_lstm.LSTMBackward()(*(pt.as_tensor_variable(a) for a in
                                        (x, mask, W, U, h, c, gates, dh)), dc)
    f = pytensor.function([dc], grads)
    np.testing.assert_array_equal(f(np.zeros((0, 0, 0), dtype))[1], zero[1])
    with pytest.raises(ValueError, match="do not fit"):
        f(np.zeros((11, B, 5), dtype))


def test_second_derivatives_are_refused():
    x, mask, W, U, b = symbols("float64")
    cost = fused_lstm.lstm(x, mask, W, U, b).sum()
    g = pytensor.grad(cost, U).sum()
    with pytest.raises(Exception, match="not implemented|NullType|undefined"):
        pytensor.grad(g, U)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(7,), (5, 3)])
@pytest.mark.parametrize("n_threads", [1, 3], ids=["one-block", "blocks-in-threads"])
def test_fused_optimizer_steps_match_the_tutorial_rules(dtype, shape, n_threads, monkeypatch):
    monkeypatch.setattr(scheduling, "threads", n_threads)
    monkeypatch.setattr(scheduling, "MIN_STEP_BLOCK", 2)  # 3 blocks of 2-3 (7) or 5 values
    rng = np.random.default_rng(9)
    p, g, r1, r2, ud = (rng.standard_normal(shape).astype(dtype) for _ in range(5))
    r2 = (np.abs(r2) + r1 ** 2).astype(dtype)  # E[g^2] >= E[g]^2, as in a real run
    ins = [pt.tensor(dtype=dtype, shape=(None,) * len(shape)) for _ in range(5)]
    f_ada = pytensor.function(ins[:4], fused_lstm.adadelta_step(*ins[:4]))
    f_rms = pytensor.function(ins, fused_lstm.rmsprop_step(*ins))
    p64, g64, r164, r264, ud64 = (a.astype("float64") for a in (p, g, r1, r2, ud))
    step = -np.sqrt(np.abs(r164) + 1e-6) / np.sqrt(r264 + 1e-6) * g64
    want_ada = [p64 + step, 0.95 * np.abs(r164) + 0.05 * step ** 2]
    new_ud = 0.9 * ud64 - 1e-4 * g64 / np.sqrt(r264 - r164 ** 2 + 1e-4)
    want_rms = [p64 + new_ud, new_ud]
    tol = dict(rtol=2e-6, atol=1e-7) if dtype == "float32" else dict(rtol=1e-13, atol=0)
    for got, want in zip(f_ada(p, g, np.abs(r1), r2), want_ada):
        assert got.dtype == dtype and got.shape == shape
        np.testing.assert_allclose(got, want, **tol)
    for got, want in zip(f_rms(p, g, r1, r2, ud), want_rms):
        np.testing.assert_allclose(got, want, **tol)
    # Adam (lstm.adam's rule), at step t = 3, with and without the decoupled decay.
    scalars = [pt.scalar(dtype=dtype) for _ in range(7)]
    f_adam = pytensor.function(ins[:4] + scalars, fused_lstm.adam_step(*ins[:4], *scalars))
    lr, b1, b2, eps = 0.01, 0.8, 0.99, 1e-3
    fix1, fix2 = 1 - b1 ** 3, 1 - b2 ** 3
    m64 = b1 * r164 + (1 - b1) * g64
    v64 = b2 * np.abs(r264) + (1 - b2) * g64 ** 2
    for decay in (0.0, 0.02):
        want_adam = [p64 - decay * p64 - lr * (m64 / fix1) / (np.sqrt(v64 / fix2) + eps),
                     m64, v64]
        got = f_adam(p, g, r1, np.abs(r2), lr, fix1, fix2, decay, b1, b2, eps)
        for got, want in zip(got, want_adam):
            assert got.dtype == dtype and got.shape == shape
            np.testing.assert_allclose(got, want, **tol)


def test_fused_step_refuses_bad_inputs():
    with pytest.raises(ValueError, match="unknown rule"):
        fused_lstm.FusedStep("adagrad")
    with pytest.raises(TypeError, match="takes 4 inputs"):
        fused_lstm.adadelta_step(pt.vector(), pt.vector())
    a, b = pt.vector(dtype="float32"), pt.vector(dtype="float32")
    f = pytensor.function([a, b], fused_lstm.adadelta_step(a, b, a, b))
    with pytest.raises(ValueError, match="shapes"):
        f(np.zeros(3, "float32"), np.zeros(4, "float32"))


def test_embedding_lookup_and_gradient_match_pytensor():
    rng = np.random.default_rng(10)
    W = pytensor.shared(rng.standard_normal((9, 4)).astype(config.floatX))
    idx = pt.vector(dtype="int64")
    wg = pt.matrix(dtype=config.floatX)
    outs = []
    for emb in (fused_lstm.embedding(W, idx), W[idx]):
        cost = (emb * wg).sum()
        outs.append(pytensor.function([idx, wg], [emb, pytensor.grad(cost, W)]))
    i = np.array([3, 0, 3, 8, 3, 1])  # repeated words add up
    g = rng.standard_normal((6, 4)).astype(config.floatX)
    for got, want in zip(outs[0](i, g), outs[1](i, g)):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    with pytest.raises(IndexError, match="out of range"):
        outs[0](np.array([9]), g[:1])


def chunked(monkeypatch, n_threads, row_split_rows):
    """Small chunks of steps, so that every schedule has several."""
    monkeypatch.setattr(scheduling, "threads", n_threads)
    monkeypatch.setattr(lstm_ops, "ROW_SPLIT_ROWS", row_split_rows)
    monkeypatch.setattr(lstm_ops, "ROWS_PER_THREAD", row_split_rows)
    monkeypatch.setattr(lstm_ops, "CHUNK_ROWS", 20)  # 2 steps of 9 or 10 rows
    monkeypatch.setattr(lstm_ops, "FORWARD_CHUNK_ROWS", 40)  # 2 steps of 19 rows
    monkeypatch.setattr(lstm_ops, "BACKWARD_CHUNK_ROWS", 60)  # 3 steps


@pytest.mark.parametrize("schedule,n_threads,row_split_rows", [
    ("pipeline", 2, 16), ("rows", 2, 8), ("rows", 3, 6)])
def test_schedules_compute_what_one_thread_computes(monkeypatch, schedule, n_threads,
                                                    row_split_rows):
    """The recurrence in this thread with a helper for the large products, and
    row blocks in threads, against everything in one thread."""
    if fused_lstm._BLAS_THREADS is None:
        pytest.skip("NumPy's OpenBLAS not found: one thread only")
    rng = np.random.default_rng(11)
    T, B, D = 7, 19, 5  # 19 rows: blocks of 9 and 10 with two threads
    args = lstm_args(T, B, D, rng, dtype=config.floatX)
    _, f_fused = both(config.floatX, D, True)
    chunked(monkeypatch, 1, row_split_rows)
    assert fused_lstm._schedule(B, row_split_rows) == "serial"
    want = f_fused(*args)
    chunked(monkeypatch, n_threads, row_split_rows)
    assert fused_lstm._schedule(B, row_split_rows) == schedule
    for _ in range(3):
        got = f_fused(*args)
        for name, one, other in zip(NAMES, want, got):
            np.testing.assert_array_equal(other, one, err_msg=name)  # the same bits


def test_pipeline_results_never_depend_on_timing(monkeypatch):
    """Who computes which chunk's gradients depends on timing; the sum does not."""
    rng = np.random.default_rng(13)
    args = lstm_args(40, 19, 6, rng, dtype=config.floatX)
    _, f_fused = both(config.floatX, 6, True)
    chunked(monkeypatch, 2, 16)
    first = f_fused(*args)
    for _ in range(10):
        for name, one, other in zip(NAMES, first, f_fused(*args)):
            np.testing.assert_array_equal(other, one, err_msg=name)


@pytest.mark.skipif(fused_lstm._BLAS_THREADS is None, reason="NumPy's OpenBLAS not found")
@pytest.mark.parametrize("row_split_rows", [16, 4], ids=["pipeline", "rows"])
def test_threaded_kernels_leave_numpys_blas_threads_alone(monkeypatch, row_split_rows):
    """NumPy's OpenBLAS runs on one thread while the kernels' threads run, and
    gets its count back after. (The first version called OpenBLAS's
    ``openblas_set_num_threads_local`` in each kernel thread, which sets the
    count for the whole process: every later NumPy product ran on one thread.)"""
    get_threads, set_threads = fused_lstm._BLAS_THREADS
    before = get_threads()
    set_threads(2)
    try:
        chunked(monkeypatch, 2, row_split_rows)
        rng = np.random.default_rng(12)
        x, mask, W, U, b, dh, dc = lstm_args(5, 16, 4, rng, dtype=config.floatX)
        calls = []
        monkeypatch.setattr(scheduling, "_BLAS_THREADS",
                            (get_threads, lambda n: (calls.append(n), set_threads(n))))
        h, c, gates = fused_lstm.lstm_forward_arrays(x, mask, W, U, b)
        fused_lstm.lstm_backward_arrays(x, mask, W, U, h, c, gates, dh, dc)
        assert calls == [1, 2, 1, 2]  # one thread for the kernels' calls, then back
        assert get_threads() == 2
    finally:
        set_threads(before)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_masked_mean_and_gradient_match_pytensor(dtype):
    """MaskedMean does the tutorial's mean pooling's arithmetic, to the last
    bit or so (PyTensor fuses the division with neighbouring ops, compiled with
    its own flags, and may round once differently)."""
    rng = np.random.default_rng(13)
    h, mask = pt.tensor3(dtype=dtype), pt.matrix(dtype=dtype)
    w = pt.matrix(dtype=dtype)
    outs = []
    for pooled in (fused_lstm.masked_mean(h, mask),
                   (h * mask[:, :, None]).sum(axis=0) / mask.sum(axis=0)[:, None]):
        cost = (pt.tanh(pooled) * w).sum()
        outs.append(pytensor.function([h, mask, w], [pooled, pytensor.grad(cost, h)]))
    hv = rng.standard_normal((9, 5, 6)).astype(dtype)
    mv = (rng.random((9, 5)) < 0.6).astype(dtype)
    mv[0] = 1
    wv = rng.standard_normal((5, 6)).astype(dtype)
    rtol = {"float32": 3e-7, "float64": 1e-15}[dtype]
    for fractional in (False, True):
        if fractional:
            mv[:, 1] = 0.5
        (mean, grad), (mean_want, grad_want) = (f(hv, mv, wv) for f in outs)
        np.testing.assert_allclose(mean, mean_want, rtol=rtol, atol=0)
        np.testing.assert_allclose(grad, grad_want, rtol=rtol, atol=0)
    with pytest.raises(ValueError, match="do not fit"):
        outs[0](hv, mv[:, :4], wv)
    g = pt.matrix(dtype=dtype)
    grad = pytensor.function([g, mask, h], fused_lstm.MaskedMeanGrad()(g, mask, h))
    with pytest.raises(ValueError, match="do not fit"):  # never read out of bounds
        grad(wv[:3], mv, hv)


@pytest.mark.parametrize("n_threads", [2, 3])
def test_masked_mean_in_threads_gives_one_threads_bits(monkeypatch, n_threads):
    """MaskedMean and its gradient shared out by blocks of rows: the same bits."""
    if fused_lstm._BLAS_THREADS is None:
        pytest.skip("NumPy's OpenBLAS not found: one thread only")
    rng = np.random.default_rng(17)
    h = rng.standard_normal((13, 19, 6)).astype(config.floatX)
    mask = (rng.random((13, 19)) < 0.7).astype(config.floatX)
    mask[0] = 1
    g = rng.standard_normal((19, 6)).astype(config.floatX)

    def run():
        outs = [[None], [None]]
        fused_lstm.MaskedMean().perform(None, [h, mask], [outs[0]])
        fused_lstm.MaskedMeanGrad().perform(None, [g, mask, h], [outs[1]])
        return [np.array(out[0]) for out in outs]

    monkeypatch.setattr(scheduling, "threads", 1)
    want = run()
    monkeypatch.setattr(scheduling, "threads", n_threads)
    monkeypatch.setattr(layer_ops, "MIN_THREAD_FLOATS", 0)
    calls = []
    real = fused_lstm._in_threads
    monkeypatch.setattr(layer_ops, "_in_threads",
                        lambda fn, calls_, start=None: (calls.append(len(calls_)),
                                                        real(fn, calls_, start)))
    for name, one, other in zip(["mean", "gradient"], want, run()):
        np.testing.assert_array_equal(other, one, err_msg=name)
    assert calls == [n_threads, n_threads]


def test_recycled_buffers_are_never_shared_while_in_use():
    """The pool lends a buffer again only once nothing refers to it."""
    pool = fused_lstm._Pool()
    n = fused_lstm.MIN_POOLED_BYTES // 4
    a = pool.empty((n,), "float32")
    b = pool.empty((2, n), "float32")
    assert not np.shares_memory(a, b)
    view = b[1]
    del b
    c = pool.empty((n,), "float32")  # b's buffer is still held by its view
    assert not np.shares_memory(c, view) and not np.shares_memory(c, a)
    del view, c
    d = pool.zeros((2, n), "float32")  # now b's buffer (or c's) is lent again
    assert len(pool.buffers) == 3 and not np.shares_memory(d, a) and not d.any()
    small = pool.empty((3,), "float64")  # small arrays come from malloc
    assert len(pool.buffers) == 3 and small.shape == (3,)


def test_the_pool_lets_free_buffers_go_beyond_its_cap(monkeypatch):
    monkeypatch.setattr(scheduling, "MAX_POOLED", 4)
    pool = fused_lstm._Pool()
    n = fused_lstm.MIN_POOLED_BYTES // 4
    held = [pool.empty((n * (k + 1),), "float32") for k in range(6)]  # all in use
    assert len(pool.buffers) == 6
    del held[:5]
    big = pool.empty((n * 10,), "float32")  # none fits: new; the free ones beyond 4 go
    assert len(pool.buffers) == 4
    assert any(buf is held[0].base for buf in pool.buffers)
    assert any(buf is big.base for buf in pool.buffers)


def test_the_pool_lets_free_buffers_go_beyond_its_byte_cap(monkeypatch):
    n = fused_lstm.MIN_POOLED_BYTES // 4
    pool = fused_lstm._Pool()
    monkeypatch.setattr(scheduling, "MAX_POOLED_BYTES", 5 * n * 4)
    a, b = pool.empty((2 * n,), "float32"), pool.empty((2 * n,), "float32")
    del b  # free, but within the cap: kept
    c = pool.empty((2 * n,), "float32")  # b's buffer again
    assert len(pool.buffers) == 2
    del c
    d = pool.empty((4 * n,), "float32")  # none fits: b's buffer goes, d's is new
    assert len(pool.buffers) == 2 and any(buf is a.base for buf in pool.buffers)
    del d
    e = pool.empty((6 * n,), "float32")  # over the cap: d's buffer goes; a is held
    assert [buf.nbytes >= 6 * n * 4 for buf in pool.buffers].count(True) == 1
    assert any(buf is a.base for buf in pool.buffers) and len(pool.buffers) == 2
    del e


def test_op_outputs_held_by_the_caller_are_not_overwritten():
    """A function's output that the caller keeps is not lent out again."""
    rng = np.random.default_rng(14)
    x, mask, W, U, b, _, _ = lstm_args(40, 16, 64, rng, n_in=8, dtype=config.floatX)
    tx, tm = pt.tensor3(dtype=config.floatX), pt.matrix(dtype=config.floatX)
    f = pytensor.function([tx, tm], fused_lstm.lstm(tx, tm, W, U, b))
    first = f(x, mask)
    kept = first.copy()
    second = f(x[::-1].copy(), mask)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(5, 7, 3), (16, 128, 2), (3, 20, 33)])
def test_dot_and_its_gradients_match_numpy(dtype, shape):
    """fused_lstm.dot: a @ b, and the gradients of a cost of it, as pt.dot's."""
    rng = np.random.default_rng(11)
    M, K, N = shape
    a_val = rng.standard_normal((M, K)).astype(dtype)
    b_val = rng.standard_normal((K, N)).astype(dtype)
    a, b = pt.matrix(dtype=dtype), pt.matrix(dtype=dtype)
    weights = rng.standard_normal((M, N)).astype(dtype)
    outs = []
    for fn in (fused_lstm.dot, pt.dot):
        c = fn(a, b)
        cost = (pt.tanh(c) * weights).sum()
        outs.append(pytensor.function([a, b], [c] + pytensor.grad(cost, [a, b]))(a_val, b_val))
    # Sums of up to 128 float32 products in two orders: rounding of ~1e-6 of their size.
    tol = dict(rtol=1e-4, atol=2e-5) if dtype == "float32" else TOL[dtype]
    for got, want in zip(*outs):
        np.testing.assert_allclose(got, want, **tol)
    np.testing.assert_allclose(outs[0][0], a_val.astype("float64") @ b_val, **tol)


def test_dot_sums_each_element_in_k_order_whatever_the_rows():
    """Row i of a @ b is the same bits whether computed alone or with other rows
    (tiles of 6 rows), as the LSTM's thread blocks need."""
    rng = np.random.default_rng(12)
    if fused_lstm._PACKED_GEMM is None:
        pytest.skip("no packed GEMM here: " + fused_lstm.gemm_kernel)
    a_val = rng.standard_normal((13, 300)).astype("float32")
    b_val = rng.standard_normal((300, 40)).astype("float32")
    a, b = pt.matrix(dtype="float32"), pt.matrix(dtype="float32")
    f = pytensor.function([a, b], fused_lstm.dot(a, b))
    whole = f(a_val, b_val)
    for i in range(13):
        np.testing.assert_array_equal(f(a_val[i:i + 1], b_val)[0], whole[i])
