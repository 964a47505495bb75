"""The model variants (stacked, bidirectional, convolution, pooling, dim_emb),
Keras-style padding, Adam, presets, pre-trained embeddings, the summary and
prediction on raw text."""
import dataclasses
import gzip
import io
import json
import os

import numpy as np
import pytest
import pytensor
import pytensor.tensor as pt
from pytensor import config

import imdb
import lstm
import sentiment.model.cli
import sentiment.model.config
import sentiment.commands.predict
import sentiment.model.training
import sentiment.model.variants
from sentiment.commands import evaluate as evaluation
from conftest import synthetic_corpus, train_text_model, write_corpus
from test_lstm import sigmoid


def np_lstm(emb, W, U, b):
    """Reference LSTM over one review's real tokens: emb (L, n_in) -> (L, dim)."""
    d = U.shape[0]
    h, c, out = np.zeros(d), np.zeros(d), []
    for x in emb:
        z = x @ W + h @ U + b
        i, f, o = sigmoid(z[:d]), sigmoid(z[d:2 * d]), sigmoid(z[2 * d:3 * d])
        c = f * c + i * np.tanh(z[3 * d:])
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out)


# -- a NumPy reference that never sees padding --------------------------------
def relu(z):
    return np.maximum(z, 0.0)


def np_bigram_buckets(ids, n_words, buckets):
    """The hashed (previous word, word) bucket of each token of one review."""
    pair = np.concatenate([[0], ids[:-1]]).astype(np.uint64) * n_words + np.asarray(ids)
    return (pair * np.uint64(2654435761) % np.uint64(2 ** 32) % np.uint64(buckets)).astype(int)


def np_review(params, o, ids, word_keep=None, emb_noise=None):
    """The pooled vector of one review, computed on its real tokens only
    (``word_keep``: 0/1 per token, word dropout; ``emb_noise``: ``(L, dim_emb)``
    added to the embeddings, adversarial training)."""
    h = params["Wemb"][ids].astype("float64")  # (L, dim_emb)
    if o.bigram_buckets:
        h = h + params["Wbigram"][np_bigram_buckets(ids, o.n_words, o.bigram_buckets)]
    if emb_noise is not None:
        h = h + emb_noise
    bag = []
    if word_keep is not None:
        h = h * np.asarray(word_keep, "float64")[:, None]
    if o.pool_embeddings:  # the mean over the tokens read (zeros when none was)
        n_read = len(ids) if word_keep is None else int(np.sum(word_keep))
        bag = [h.sum(0) / max(n_read, 1)]
    if o.conv_filters:
        W, L = params["conv_W"], len(ids)
        left = (o.conv_width - 1) // 2
        padded = np.concatenate([np.zeros((left, h.shape[1])), h,
                                 np.zeros((o.conv_width - 1 - left, h.shape[1]))])
        h = relu(sum(padded[k:k + L] @ W[k] for k in range(o.conv_width)) + params["conv_b"])
        h = np.stack([h[s:s + o.pool].max(0) for s in range(0, L, o.pool)])
    for layer in sentiment.model.variants.lstm_prefixes(o):
        def run(prefix, seq):
            return np_lstm(seq, params[prefix + "_W"], params[prefix + "_U"],
                           params[prefix + "_b"])
        outs = [run(layer[0], h)]
        if o.bidirectional:
            outs.append(run(layer[1], h[::-1])[::-1])
        h = np.concatenate(outs, axis=1)
    if o.pooling == "mean":
        pooled = [h.mean(0)]
    elif o.pooling == "max":
        pooled = [h.max(0)]
    elif o.pooling == "meanmax":
        pooled = [h.mean(0), h.max(0)]
    else:
        d = o.dim_proj  # last: forward ends at the last token, backward at the first
        pooled = [np.concatenate([h[-1, :d], h[0, d:]]) if o.bidirectional else h[-1]]
    return np.concatenate(pooled + bag)


def np_predict(params, o, seqs):
    proj = np.stack([np_review(params, o, s) for s in seqs])
    z = (0.5 if o.use_dropout else 1.0) * proj @ params["U"] + params["b"]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


VARIANTS = {
    "tutorial": dict(),
    "dim-emb": dict(dim_emb=5),
    "stacked": dict(layers=2),
    "bidirectional": dict(bidirectional=True),
    "bi-last": dict(bidirectional=True, pooling="last"),
    "stacked-bi-max": dict(layers=2, bidirectional=True, pooling="max"),
    "last": dict(pooling="last"),
    "bi-meanmax": dict(bidirectional=True, pooling="meanmax"),
    "conv": dict(conv_filters=6, conv_width=3, pool=2),
    "conv-even-width-pool3-last": dict(conv_filters=4, conv_width=4, pool=3, pooling="last",
                                       dim_emb=7),
    "bigrams": dict(bigram_buckets=11),
    "bi-bigrams-meanmax": dict(bigram_buckets=5, bidirectional=True, pooling="meanmax",
                               dim_emb=3),
    "bag": dict(pool_embeddings=True),
    "bi-bigrams-meanmax-bag": dict(bigram_buckets=7, bidirectional=True, pooling="meanmax",
                                   pool_embeddings=True, dim_emb=5),
    "everything": dict(conv_filters=5, conv_width=2, pool=2, layers=2, bidirectional=True,
                       pooling="max", dim_emb=6, use_dropout=True, bigram_buckets=13,
                       pool_embeddings=True),
}


def variant_options(**kw):
    base = dict(dim_proj=4, n_words=30, ydim=3, use_dropout=False, saveto="")
    base.update(kw)
    return lstm.Config(**base).validate()


def perturbed_params(o, rng, scale=0.4):
    params = lstm.init_params(o, rng)
    return {k: (v + scale * rng.standard_normal(v.shape)).astype(config.floatX)
            for k, v in params.items()}


def random_seqs(rng, lengths, n_words=30):
    return [[int(w) for w in rng.integers(2, n_words, size=n)] for n in lengths]


# The scan (the reference, slow to compile) on a few variants, the fused Ops on all.
CASES = ([(v, "fused") for v in sorted(VARIANTS)]
         + [(v, "scan") for v in ("tutorial", "bi-last", "conv-even-width-pool3-last")])


@pytest.mark.parametrize("variant,impl", CASES)
def test_variant_matches_numpy_and_padding_never_matters(variant, impl):
    rng = np.random.default_rng(3)
    o = variant_options(lstm_impl=impl, **VARIANTS[variant])
    params = perturbed_params(o, rng)
    model = lstm.compile_model(o, params, np.random.default_rng(0))
    seqs = random_seqs(rng, [9, 4, 1, 7, 2])
    x, mask, _ = imdb.prepare_data(seqs, [0] * len(seqs))  # padding after the words
    got = model["f_pred_prob"](x, mask)
    np.testing.assert_allclose(got, np_predict(params, o, seqs), rtol=2e-4, atol=2e-6)
    # Whatever the padding holds, the outputs are the same.
    x2 = x.copy()
    x2[mask == 0] = rng.integers(2, 30, size=int((mask == 0).sum()))
    np.testing.assert_array_equal(model["f_pred_prob"](x2, mask), got)
    # More padding (a longer minibatch) changes nothing either.
    x3 = np.concatenate([x2, rng.integers(2, 30, size=(5, x.shape[1]))])
    mask3 = np.concatenate([mask, np.zeros((5, x.shape[1]), mask.dtype)])
    np.testing.assert_allclose(model["f_pred_prob"](x3, mask3), got, rtol=1e-6, atol=1e-7)
    if not o.conv_filters:  # padding before the words (Keras's default) too
        x4, mask4, _ = imdb.prepare_padded(seqs, [0] * len(seqs), 12, padding="pre")
        np.testing.assert_allclose(model["f_pred_prob"](x4, mask4), got,
                                   rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("variant,impl", [("everything", "fused"), ("bi-last", "fused"),
                                          ("conv-even-width-pool3-last", "fused"),
                                          ("bi-last", "scan"), ("bigrams", "scan"),
                                          ("bi-bigrams-meanmax-bag", "fused")])
def test_variant_gradients_match_finite_differences(variant, impl):
    rng = np.random.default_rng(5)
    with config.change_flags(floatX="float64"):
        o = variant_options(lstm_impl=impl, decay_c=0.1, n_words=12, ydim=2,
                            **dict(VARIANTS[variant], use_dropout=False))
        params = perturbed_params(o, rng, scale=0.5)
        tparams = lstm.init_tparams(params)
        model = lstm.build_model(tparams, o)
        inputs = [model["x"], model["mask"], model["y"]]
        f_cost = pytensor.function(inputs, model["cost"])
        f_grads = pytensor.function(inputs, pytensor.grad(model["cost"],
                                                          list(tparams.values())))
        seqs = random_seqs(rng, [6, 3, 5], n_words=12)
        x, mask, _ = imdb.prepare_data(seqs, [0] * 3)
        y = np.array([0, 1, 1], "int64")
        analytic = dict(zip(tparams, f_grads(x, mask, y)))
        for name, shared in tparams.items():
            value = shared.get_value()
            if name in ("Wemb", "Wbigram"):  # rows the minibatch reads
                rows = np.unique(x[mask > 0] if name == "Wemb" else np.concatenate(
                    [np_bigram_buckets(s, o.n_words, o.bigram_buckets) for s in seqs]))
                picks = [(r, c) for r, c in zip(rng.choice(rows, 4),
                                                rng.integers(0, value.shape[1], 4))]
            else:
                picks = [np.unravel_index(i, value.shape)
                         for i in rng.choice(value.size, min(4, value.size), replace=False)]
            for idx in picks:
                plus, minus = value.copy(), value.copy()
                plus[idx] += 1e-6
                minus[idx] -= 1e-6
                shared.set_value(plus)
                c_plus = f_cost(x, mask, y)
                shared.set_value(minus)
                c_minus = f_cost(x, mask, y)
                shared.set_value(value)
                np.testing.assert_allclose(analytic[name][idx], (c_plus - c_minus) / 2e-6,
                                           rtol=1e-4, atol=1e-7, err_msg=name)


def test_last_pooling_is_the_last_real_token_never_padding():
    rng = np.random.default_rng(1)
    o = variant_options(pooling="last")
    params = perturbed_params(o, rng)
    tparams = lstm.init_tparams(params)
    x = pytensor.tensor.matrix("x", dtype="int64")
    mask = pytensor.tensor.matrix("mask", dtype=config.floatX)
    emb = tparams["Wemb"][x.flatten()].reshape((x.shape[0], x.shape[1], o.emb_dim))
    f = pytensor.function([x, mask], [lstm.encode_reviews(tparams, o, x, mask),
                                      lstm.lstm_layer(tparams, emb, mask, o.dim_proj,
                                                     impl=o.lstm_impl)])
    seqs = random_seqs(rng, [5, 2, 3])
    xv, mv, _ = imdb.prepare_data(seqs, [0] * 3)
    last, h = f(xv, mv)
    for j, seq in enumerate(seqs):
        np.testing.assert_array_equal(last[j], h[len(seq) - 1, j])


@pytest.mark.parametrize("pooling,impl", [(p, "fused") for p in ("mean", "max", "meanmax", "last")]
                         + [("meanmax", "scan")])  # (the scan is slow to compile)
def test_each_direction_pooled_apart_gives_the_bits_of_pooling_the_joined_states(pooling, impl):
    """``encode_reviews`` pools each direction's states and joins the pooled
    vectors: the same bits, and the same gradients, as pooling the states
    joined into one ``h`` (``taps["states"]``), which it no longer copies."""
    rng = np.random.default_rng(7)
    o = variant_options(pooling=pooling, bidirectional=True, layers=2, lstm_impl=impl)
    tparams = lstm.init_tparams(perturbed_params(o, rng))
    x = pytensor.tensor.matrix("x", dtype="int64")
    mask = pytensor.tensor.matrix("mask", dtype=config.floatX)
    taps = {}
    pooled = lstm.encode_reviews(tparams, o, x, mask, taps=taps)
    h, half = taps["states"], o.dim_proj
    parts = {"mean": [lstm.mean_pool(h, mask, impl)],
             "max": [sentiment.model.variants.max_pool(h, mask)],
             "meanmax": [lstm.mean_pool(h, mask, impl), sentiment.model.variants.max_pool(h, mask)],
             "last": [pytensor.tensor.concatenate([h[-1, :, :half], h[0, :, half:]], axis=1)]}
    joined = pytensor.tensor.concatenate(parts[pooling], axis=1)
    names = [k for k in tparams if k.startswith("lstm")]
    weights = [tparams[k] for k in names]
    outputs = [pooled, joined]
    for p in (pooled, joined):
        outputs += pytensor.grad((p ** 2).sum(), weights)
    f = pytensor.function([x, mask], outputs)
    seqs = random_seqs(rng, [7, 2, 5, 9])
    got = f(*imdb.prepare_data(seqs, [0] * 4)[:2])
    n = len(weights)
    np.testing.assert_array_equal(got[0], got[1])
    for name, a, b in zip(names, got[2:2 + n], got[2 + n:]):
        np.testing.assert_array_equal(a, b, err_msg=name)


# -- pad_sequences ---------------------------------------------------------------
@pytest.mark.parametrize("padding,truncating,want", [
    ("pre", "pre", [[0, 0, 1, 2], [3, 4, 5, 6], [0, 0, 0, 0]]),
    ("post", "pre", [[1, 2, 0, 0], [3, 4, 5, 6], [0, 0, 0, 0]]),
    ("pre", "post", [[0, 0, 1, 2], [2, 3, 4, 5], [0, 0, 0, 0]]),
    ("post", "post", [[1, 2, 0, 0], [2, 3, 4, 5], [0, 0, 0, 0]]),
])
def test_pad_sequences_keras_semantics(padding, truncating, want):
    seqs = [[1, 2], [2, 3, 4, 5, 6], []]
    got = imdb.pad_sequences(seqs, 4, padding=padding, truncating=truncating)
    assert got.dtype == np.int64 and got.tolist() == want


def test_pad_sequences_refuses_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        imdb.pad_sequences([[1]], 3, padding="middle")
    with pytest.raises(ValueError, match="maxlen"):
        imdb.pad_sequences([[1]], 0)


@pytest.mark.parametrize("padding", ["pre", "post"])
@pytest.mark.parametrize("align", [1, 2, 3])
def test_prepare_padded_is_pad_sequences_transposed_minus_unused_steps(padding, align):
    seqs = [[5, 6, 7], [8], [9, 10, 11, 12, 13, 14, 15]]
    x, mask, labels = imdb.prepare_padded(seqs, [1, 0, 1], 12, padding, "post", align=align)
    full = imdb.pad_sequences(seqs, 12, padding, "post").T
    assert labels == [1, 0, 1]
    assert (12 - x.shape[0]) % align == 0 and x.shape[0] >= 7
    kept = full[-x.shape[0]:] if padding == "pre" else full[:x.shape[0]]
    np.testing.assert_array_equal(x, kept)
    assert not full[:12 - x.shape[0]].any() if padding == "pre" else not full[x.shape[0]:].any()
    np.testing.assert_array_equal(mask.sum(0), [3, 1, 7])
    np.testing.assert_array_equal(mask > 0, x > 0)
    # Truncation to pad_to.
    x, mask, _ = imdb.prepare_padded(seqs, [0] * 3, 4, padding, "pre")
    assert x.shape == (4, 3) and list(x[:, 2]) == [12, 13, 14, 15]


@pytest.mark.parametrize("variant", ["conv", "conv-even-width-pool3-last", "bi-last"])
@pytest.mark.parametrize("padding", ["pre", "post"])
def test_pad_to_outputs_equal_the_full_keras_matrix(variant, padding):
    """Leaving out the all-padding steps gives the (pad_to, N) matrix's outputs."""
    rng = np.random.default_rng(2)
    o = variant_options(pad_to=15, padding=padding, **VARIANTS[variant])
    params = perturbed_params(o, rng)
    model = lstm.compile_model(o, params, np.random.default_rng(0))
    seqs = random_seqs(rng, [9, 4, 1, 20])
    x, mask, _ = sentiment.model.variants.batcher(o)(seqs, [0] * 4)
    full = imdb.pad_sequences(seqs, 15, padding, "pre").T
    np.testing.assert_allclose(model["f_pred_prob"](x, mask),
                               model["f_pred_prob"](full, (full > 0).astype(config.floatX)),
                               rtol=1e-6, atol=1e-7)
    x, mask, _ = sentiment.model.variants.batcher(o)(seqs[:3], [0] * 3)
    assert x.shape[0] < 15  # the short minibatch really was cut


# -- Adam ----------------------------------------------------------------------
def np_adam(state, p, g, lr):
    t = state.get("t", 0) + 1
    m = 0.9 * state.get("m", 0.0) + 0.1 * g
    v = 0.999 * state.get("v", 0.0) + 0.001 * g ** 2
    state.update(t=t, m=m, v=v)
    return p - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)


@pytest.mark.parametrize("optimizer,weight_decay,decay_rate", [
    ("adam", 0.0, 0.0), ("adam", 0.5, 0.5), ("adamw", 0.0, 0.01), ("adamw", 0.5, 0.5)])
def test_adam_matches_numpy(optimizer, weight_decay, decay_rate):
    """Adam; with weight_decay (AdamW), the weight matrices also decay by
    lr * wd * p besides Adam's step, and the biases do not; adamw's decay
    is torch.optim.AdamW's 0.01 unless given."""
    rng = np.random.default_rng(0)
    o = variant_options(optimizer=optimizer, layers=2, weight_decay=weight_decay)
    model = lstm.compile_model(o, lstm.init_params(o, rng))
    tparams = model["tparams"]
    assert {k for k in tparams if tparams[k].ndim == 1} == {"lstm_b", "lstm2_b", "b"}
    check = lstm.build_model(tparams, o)
    f_grads = pytensor.function([check["x"], check["mask"], check["y"]],
                                pytensor.grad(check["cost"], list(tparams.values())))
    states = {k: {} for k in tparams}
    for step in range(4):
        x, mask, _ = imdb.prepare_data(random_seqs(rng, [5, 3, 2]), [0] * 3)
        y = rng.integers(0, 3, size=3).astype("int64")
        before = lstm.unzip(tparams)
        grads = dict(zip(tparams, f_grads(x, mask, y)))
        model["f_grad_shared"](x, mask, y)
        model["f_update"](np.float32(0.01))
        for k in tparams:
            p = before[k].astype("float64")
            decay = 0.01 * decay_rate * p if p.ndim >= 2 else 0.0
            want = np_adam(states[k], p, grads[k].astype("float64"), 0.01) - decay
            np.testing.assert_allclose(tparams[k].get_value(), want, rtol=1e-5, atol=1e-7,
                                       err_msg="%s step %d" % (k, step))


@pytest.mark.parametrize("kw,message", [
    (dict(weight_decay=0.1), "use it with optimizer adam"),
    (dict(weight_decay=-1.0, optimizer="adam"), "weight_decay must be 0"),
])
def test_weight_decay_options_checked(kw, message):
    with pytest.raises(ValueError, match=message):
        lstm.Config(**kw).validate()


# -- training, saving, reloading, summary -------------------------------------
def train_options(tmp_path, corpus, **kw):
    base = dict(dataset=corpus, dim_proj=8, n_words=60, max_epochs=2, validFreq=-1,
                saveFreq=-1, dispFreq=1000, test_size=-1, valid_portion=0.1,
                saveto=str(tmp_path / "model.npz"))
    base.update(kw)
    return lstm.Config(**base)


@pytest.mark.parametrize("variant", [
    dict(layers=2, bidirectional=True, pooling="last", dim_emb=6),
    dict(conv_filters=8, pool=2, pooling="max", pad_to=30, padding="post", truncating="post"),
    dict(optimizer="adam", lrate=0.01, pad_to=25, dim_emb=5, pooling="last",
         use_dropout=False),
    dict(bidirectional=True, pooling="meanmax", word_dropout=0.2, monitor="",
         bigram_buckets=64, pool_embeddings=True),
], ids=["stacked-bi-last", "conv-max-pad", "keras-like", "bi-meanmax-word-dropout-bigrams-bag"])
def test_variants_train_save_reload_and_summarise(tmp_path, variant, capsys):
    train, test = synthetic_corpus(n_train=600)
    corpus = write_corpus(tmp_path / "imdb.pkl", train, test)
    # Adam at 0.01 leaves the plateau at once (AdaDelta's first epochs are flat).
    opts = train_options(tmp_path, corpus, max_epochs=4, **dict(
        dict(optimizer="adam", lrate=0.01), **variant))
    result = lstm.train_lstm(opts)
    assert result["status"] == "ok" and result["test_err"] < 0.3, result
    out = capsys.readouterr().out
    # The summary printed at start counts exactly the saved parameters.
    with np.load(opts.saveto, allow_pickle=False) as saved:
        sizes = sum(saved[k].size for k in saved.files
                    if k not in ("history_errs", "train_err", "valid_err", "test_err"))
    assert "Total params: {:,}".format(sizes) in out
    saved_opts = lstm.load_options(opts.saveto)
    for key, value in variant.items():
        assert getattr(saved_opts, key) == value
    again = lstm.train_lstm(dataclasses.replace(saved_opts, max_epochs=0,
                                                reload_model=opts.saveto,
                                                saveto=str(tmp_path / "again.npz")))
    assert again["test_err"] == pytest.approx(result["test_err"])
    assert again["valid_err"] == pytest.approx(result["valid_err"])


def test_summary_flag_prints_the_table_without_training(tmp_path, capsys):
    code = lstm.main(["--summary", "--dataset", str(tmp_path / "none.pkl"), "--layers", "2",
                      "--bidirectional", "--dim-emb", "32", "--dim-proj", "10",
                      "--n-words", "100"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Embedding" in out and "LSTM, backward" in out and "lstm2_rev" in out
    o = lstm.Config(layers=2, bidirectional=True, dim_emb=32, dim_proj=10, n_words=100,
                    ydim=2)
    total = sum(v.size for v in lstm.init_params(o, np.random.default_rng(0)).values())
    assert total == 100 * 32 + 2 * (32 * 40 + 10 * 40 + 40) + 2 * (20 * 40 + 10 * 40 + 40) + 42
    assert "Total params: {:,}".format(total) in out
    assert not (tmp_path / "lstm_model.npz").exists()


def np_cost(params, o, seqs, y, word_keep, emb_noise=None):
    """Training cost without unit dropout; ``word_keep`` is ``(T, N)``, time first;
    ``emb_noise``: one ``(L, dim_emb)`` array per review, or None."""
    noise = emb_noise if emb_noise is not None else [None] * len(seqs)
    proj = np.stack([np_review(params, o, s, word_keep[:len(s), n], noise[n])
                     for n, s in enumerate(seqs)])
    z = proj @ params["U"] + params["b"]
    logp = z - z.max(1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(1, keepdims=True))
    return -logp[np.arange(len(y)), y].mean()


@pytest.mark.parametrize("variant,impl", [("tutorial", "fused"), ("everything", "fused"),
                                          ("tutorial", "scan")])
def test_word_dropout_zeroes_the_drawn_tokens_in_training_only(variant, impl):
    rng = np.random.default_rng(7)
    o = variant_options(lstm_impl=impl, word_dropout=0.4,
                        **dict(VARIANTS[variant], use_dropout=False))
    params = perturbed_params(o, rng)
    model = lstm.compile_model(o, params, np.random.default_rng(11))
    seqs = random_seqs(rng, [9, 4, 1, 7, 2])
    y = np.array([0, 2, 1, 1, 0], "int64")
    x, mask, _ = imdb.prepare_data(seqs, y)
    # The dropout stream draws a 0/1 keep per (time step, review), as NumPy would.
    draws = np.random.default_rng(11)
    for _ in range(2):  # the stream advances: a new mask each update
        keep = draws.binomial(1, 0.6, size=x.shape)
        assert 0 < keep[mask > 0].mean() < 1
        np.testing.assert_allclose(model["f_grad_shared"](x, mask, y),
                                   np_cost(params, o, seqs, y, keep), rtol=2e-4)
    # Prediction reads every token.
    np.testing.assert_allclose(model["f_pred_prob"](x, mask), np_predict(params, o, seqs),
                               rtol=2e-4, atol=2e-6)
    assert "Word dropout 0.4" in lstm.model_summary(o, params)


@pytest.mark.parametrize("variant,impl", [("bidirectional", "fused"), ("stacked", "fused"),
                                          ("tutorial", "scan")])
def test_u_dropout_drops_the_recurrent_weights_once_a_minibatch(variant, impl):
    """DropConnect: each LSTM's U times a 0/1 mask (drawn, as NumPy would, after
    word dropout's keep, one per U in lstm_prefixes' order) over 1 - p; every
    time step reads the same dropped U; prediction reads U."""
    rng = np.random.default_rng(5)
    o = variant_options(lstm_impl=impl, u_dropout=0.3, word_dropout=0.2,
                        **VARIANTS[variant])
    params = perturbed_params(o, rng)
    model = lstm.compile_model(o, params, np.random.default_rng(13))
    seqs = random_seqs(rng, [8, 3, 6])
    y = np.array([2, 0, 1], "int64")
    x, mask, _ = imdb.prepare_data(seqs, y)
    draws = np.random.default_rng(13)
    prefixes = [p for layer in sentiment.model.variants.lstm_prefixes(o) for p in layer]
    for _ in range(2):
        keep = draws.binomial(1, 0.8, size=x.shape)
        dropped = dict(params)
        for prefix in prefixes:
            u_keep = draws.binomial(1, 0.7, size=params[prefix + "_U"].shape)
            assert 0 < u_keep.mean() < 1
            dropped[prefix + "_U"] = params[prefix + "_U"] * u_keep / 0.7
        np.testing.assert_allclose(model["f_grad_shared"](x, mask, y),
                                   np_cost(dropped, o, seqs, y, keep), rtol=2e-4)
    np.testing.assert_allclose(model["f_pred_prob"](x, mask), np_predict(params, o, seqs),
                               rtol=2e-4, atol=2e-6)


def np_embedding_grad(params, o, seqs, y, step=1e-4):
    """The clean cost's gradient with respect to each review's (word + bigram)
    embeddings, by central differences in float64: one ``(L, dim_emb)`` per review."""
    ones = np.ones((max(map(len, seqs)), len(seqs)))
    grads = []
    for n, s in enumerate(seqs):
        g = np.zeros((len(s), o.emb_dim))
        for idx in np.ndindex(*g.shape):
            noise = [np.zeros((len(t), o.emb_dim)) for t in seqs]
            noise[n][idx] = step
            up = np_cost(params, o, seqs, y, ones, noise)
            noise[n][idx] = -step
            g[idx] = (up - np_cost(params, o, seqs, y, ones, noise)) / (2 * step)
        grads.append(g)
    return grads


@pytest.mark.parametrize("variant,impl", [("tutorial", "fused"), ("bi-bigrams-meanmax", "fused"),
                                          ("tutorial", "scan")])
def test_adversarial_cost_adds_the_loss_at_the_worst_small_move(variant, impl):
    """adv_eps (Miyato et al. 2017): the cost is the clean loss plus the loss with
    each review's embeddings moved by adv_eps along its own gradient (L2 over
    the review's real tokens), the gradient computed here by finite differences."""
    rng = np.random.default_rng(9)
    o = variant_options(lstm_impl=impl, adv_eps=0.7, **VARIANTS[variant])
    params = {k: v.astype("float64") for k, v in perturbed_params(o, rng).items()}
    seqs = random_seqs(rng, [5, 2, 4])
    y = np.array([1, 0, 2], "int64")
    x, mask, _ = imdb.prepare_data(seqs, y)
    grads = np_embedding_grad(params, o, seqs, y)
    r = [0.7 * g / np.sqrt((g ** 2).sum()) for g in grads]
    ones = np.ones(x.shape)
    clean, moved = np_cost(params, o, seqs, y, ones), np_cost(params, o, seqs, y, ones, r)
    assert moved > clean + 1e-3  # the move is uphill, so the test can fail
    model = lstm.compile_model(o, {k: v.astype(config.floatX) for k, v in params.items()})
    np.testing.assert_allclose(model["f_grad_shared"](x, mask, y), clean + moved, rtol=2e-4)
    np.testing.assert_allclose(model["f_pred_prob"](x, mask), np_predict(params, o, seqs),
                               rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("variant,impl", [("tutorial", "fused"), ("bi-bigrams-meanmax", "fused")])
def test_random_direction_moves_the_read_tokens_by_adv_eps(variant, impl):
    """adv_direction random (Miyato et al.'s control): the move is a Gaussian draw
    (after word dropout's keep in the stream, as NumPy would draw it) over the
    real, kept tokens, scaled to adv_eps per review; a new one each update."""
    rng = np.random.default_rng(3)
    o = variant_options(lstm_impl=impl, adv_eps=0.7, adv_direction="random", word_dropout=0.3,
                        **dict(VARIANTS[variant], use_dropout=False))
    params = perturbed_params(o, rng)
    model = lstm.compile_model(o, params, np.random.default_rng(17))
    seqs = random_seqs(rng, [5, 2, 4])
    y = np.array([1, 0, 2], "int64")
    x, mask, _ = imdb.prepare_data(seqs, y)
    draws = np.random.default_rng(17)
    costs = []
    for _ in range(2):
        keep = draws.binomial(1, 0.7, size=x.shape)
        d = draws.normal(0.0, 1.0, size=x.shape + (o.emb_dim,)) * (mask * keep)[:, :, None]
        r = [0.7 * d[:len(s), n] / np.sqrt((d[:, n] ** 2).sum()) for n, s in enumerate(seqs)]
        want = np_cost(params, o, seqs, y, keep) + np_cost(params, o, seqs, y, keep, r)
        costs.append(model["f_grad_shared"](x, mask, y))
        np.testing.assert_allclose(costs[-1], want, rtol=2e-4)
    assert costs[0] != costs[1]  # the stream advances: a new direction each update


def test_adversarial_move_is_held_fixed_in_the_gradient():
    """No gradient flows through the perturbation: the parameters' gradient is the
    clean loss's plus the moved loss's with the move as a constant."""
    rng = np.random.default_rng(4)
    o = variant_options(adv_eps=0.5, bigram_buckets=5)
    tparams = lstm.init_tparams(perturbed_params(o, rng))
    model = lstm.build_model(tparams, o)
    x, mask, y = model["x"], model["mask"], model["y"]
    got = pytensor.grad(model["cost"], list(tparams.values()))
    taps, r = {}, pt.tensor3("r", dtype=config.floatX)

    def loss(proj):
        return lstm.nll(pt.special.softmax(proj @ tparams["U"] + tparams["b"], axis=-1), y)
    clean = loss(lstm.encode_reviews(tparams, o, x, mask, taps=taps))
    move = sentiment.model.variants.adversarial_direction(pytensor.grad(clean, taps["emb"]), 0.5)
    moved = loss(lstm.encode_reviews(tparams, o, x, mask, emb_noise=r))
    want = pytensor.grad(clean + moved, list(tparams.values()))
    f_move = pytensor.function([x, mask, y], move)
    f_got = pytensor.function([x, mask, y], got)
    f_want = pytensor.function([x, mask, y, r], want)
    seqs = random_seqs(rng, [6, 3, 4])
    xv, mv, _ = imdb.prepare_data(seqs, [0] * 3)
    yv = np.array([0, 2, 1], "int64")
    for g, w in zip(f_got(xv, mv, yv), f_want(xv, mv, yv, f_move(xv, mv, yv))):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_clip_c_rescales_the_global_gradient_norm():
    rng = np.random.default_rng(2)
    o = variant_options(optimizer="sgd")
    params = perturbed_params(o, rng)
    seqs = random_seqs(rng, [6, 3, 5])
    x, mask, _ = imdb.prepare_data(seqs, [0] * 3)
    y = np.array([0, 1, 2], "int64")

    def stored_grads(clip_c):
        model = lstm.compile_model(dataclasses.replace(o, clip_c=clip_c), params)
        model["f_grad_shared"](x, mask, y)  # sgd's state: the stored gradients
        return [g.get_value().astype("float64") for g in model["optimizer_state"]]

    raw = stored_grads(0.0)
    norm = np.sqrt(sum((g ** 2).sum() for g in raw))
    for clip_c in (norm / 3, 2 * norm):
        want = [g * min(1.0, clip_c / norm) for g in raw]
        for got, ref in zip(stored_grads(clip_c), want):
            np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-8)


def test_lrate_decay_scales_each_epochs_learning_rate(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "imdb.pkl", *synthetic_corpus(64, 16))
    seen = []
    compile_model = lstm.compile_model

    def recording(*args, **kw):
        model = compile_model(*args, **kw)
        f_update = model["f_update"]
        model["f_update"] = lambda lr: seen.append(float(lr)) or f_update(lr)
        return model

    monkeypatch.setattr(lstm, "compile_model", recording)
    o = lstm.Config(dataset=corpus, saveto="", dim_proj=4, n_words=60, max_epochs=3,
                    batch_size=20, validFreq=-1, maxlen=0, test_size=0, optimizer="sgd",
                    lrate=0.1, lrate_decay=0.5)
    lstm.train_lstm(o, out=io.StringIO())
    per_epoch = len(seen) // 3
    assert len(seen) == 3 * per_epoch and per_epoch > 1
    np.testing.assert_allclose(seen, np.repeat([0.1, 0.05, 0.025], per_epoch), rtol=1e-6)


@pytest.mark.parametrize("decay", [0.9, 0.999])
def test_ema_is_the_numpy_moving_average_of_the_weights(decay):
    rng = np.random.default_rng(0)
    o = lstm.Config(dim_proj=4, n_words=20, ydim=2, optimizer="sgd", ema=decay,
                    use_dropout=False)
    params = lstm.init_params(o, rng)
    model = lstm.compile_model(o, params)
    seqs = [rng.integers(2, 20, size=n).tolist() for n in (3, 5, 4)]
    x, mask, y = imdb.prepare_data(seqs, [0, 1, 1])
    ref = {k: v.astype("float64") for k, v in params.items()}
    for t in range(1, 13):
        model["f_grad_shared"](x, mask, y)
        model["f_update"](lstm.numpy_floatX(0.5))
        model["f_ema"]()
        d = min(decay, (1.0 + t) / (10.0 + t))
        for k, p in model["tparams"].items():
            ref[k] = d * ref[k] + (1 - d) * p.get_value().astype("float64")
    assert model["ema"]["ema_t"].get_value() == 12
    moved = 0.0
    for k, p in model["tparams"].items():
        np.testing.assert_allclose(model["ema"][k].get_value(), ref[k], rtol=1e-5, atol=1e-7)
        moved = max(moved, np.abs(p.get_value() - params[k]).max())
    assert moved > 1e-3  # the weights did move, so the average is not trivially equal


def test_ema_model_is_what_gets_validated_and_saved(tmp_path, monkeypatch):
    corpus = write_corpus(tmp_path / "imdb.pkl", *synthetic_corpus(120, 40))
    kept, last_raw = {}, {}
    compile_model = lstm.compile_model

    def recording(*args, **kw):
        kept.update(compile_model(*args, **kw))
        f_ema = kept["f_ema"]

        def f_ema_recording():  # called after each update: the raw weights are current
            last_raw.update(lstm.unzip(kept["tparams"]))
            f_ema()
        kept["f_ema"] = f_ema_recording
        return kept

    monkeypatch.setattr(lstm, "compile_model", recording)
    o = lstm.Config(dataset=corpus, saveto=str(tmp_path / "m.npz"), dim_proj=8, n_words=50,
                    max_epochs=1, validFreq=-1, saveFreq=-1, maxlen=0, test_size=0,
                    optimizer="adam", lrate=0.01, ema=0.99, use_dropout=False)
    result = lstm.train_lstm(o, out=io.StringIO())
    assert result["best_update"] == result["updates"] > 1  # one validation, at the end
    saved = np.load(tmp_path / "m.npz")
    for k in kept["tparams"]:
        np.testing.assert_array_equal(saved[k], kept["ema"][k].get_value())
    assert any(not np.array_equal(saved[k], last_raw[k]) for k in last_raw)
    # The reported valid error is the saved (averaged) model's.
    splits = lstm.load_splits(o, lstm.make_rngs(o.seed), out=io.StringIO())
    lstm.zipp(dict((k, saved[k]) for k in kept["tparams"]), kept["tparams"])
    errs = lstm.evaluate_splits(kept["f_pred_prob"], o, {"valid": splits[1]})  # batches of 64
    assert errs["valid"] == pytest.approx(result["valid_err"])


def test_monitor_none_skips_train_and_test_errors_until_the_end(tmp_path):
    corpus = write_corpus(tmp_path / "imdb.pkl", *synthetic_corpus(120, 40))
    o = lstm.Config(dataset=corpus, saveto=str(tmp_path / "m.npz"), dim_proj=8,
                    n_words=50, max_epochs=2, validFreq=-1, saveFreq=-1, maxlen=0,
                    test_size=0, monitor="", optimizer="adam", lrate=0.01)
    result = lstm.train_lstm(o, out=io.StringIO())
    log = [json.loads(line) for line in open(tmp_path / "m.log.jsonl")]
    assert len(log) == 2
    assert all(r["train_err"] is None and r["test_err"] is None
               and 0.0 <= r["valid_err"] <= 1.0 for r in log)
    assert 0.0 <= result["test_err"] <= 1.0 and 0.0 <= result["train_err"] <= 1.0
    history = np.load(tmp_path / "m.npz")["history_errs"]
    assert history.shape == (2, 2) and np.isnan(history[:, 1]).all()


def test_config_rejects_bad_variant_values():
    for bad in (dict(pooling="sum"), dict(padding="middle"), dict(layers=0),
                dict(pool=0), dict(conv_filters=-1), dict(freeze_embeddings=True),
                dict(word_dropout=1.0), dict(word_dropout=-0.1), dict(monitor="valid"),
                dict(monitor="train,tset"), dict(clip_c=-1.0), dict(lrate_decay=0.0),
                dict(lrate_decay=1.5), dict(ema=1.0), dict(ema=-0.5), dict(u_dropout=1.0),
                dict(u_dropout=-0.1), dict(adv_eps=-0.25),
                dict(adv_eps=0.25, adv_direction="up"), dict(adv_direction="random")):
        with pytest.raises(ValueError):
            lstm.Config(**bad).validate()


# -- presets and config files ----------------------------------------------------
def test_presets_are_valid_and_tutorial_is_the_default():
    assert {"tutorial", "keras-imdb"} <= set(sentiment.model.config.preset_names())
    for name in sentiment.model.config.preset_names():
        values = sentiment.model.config.read_config_file(os.path.join(sentiment.model.config.PRESET_DIR, name + ".json"))
        lstm.Config.from_dict(values).validate()
    _, args = sentiment.model.cli.parse_options(["--preset", "tutorial"])
    _, plain = sentiment.model.cli.parse_options([])
    assert vars(args) == dict(vars(plain), preset="tutorial")


def test_preset_then_config_then_flags(tmp_path):
    _, args = sentiment.model.cli.parse_options(["--preset", "keras-imdb"])
    assert (args.optimizer, args.dim_emb, args.dim_proj, args.pad_to, args.pooling,
            args.use_dropout) == ("adam", 32, 100, 500, "last", False)
    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps({"description": "mine", "dim_proj": 64, "max_epochs": 5}))
    _, args = sentiment.model.cli.parse_options(["--preset", "keras-imdb", "--config", str(mine),
                                  "--max-epochs", "2"])
    assert (args.optimizer, args.dim_proj, args.max_epochs) == ("adam", 64, 2)


@pytest.mark.parametrize("content,message", [
    ('{"dim_proj": 64, "encoder": "gru"}', "unknown option"),
    ('{"dim_proj": "big"}', "must be int"),
    ('[1, 2]', "not a JSON object"),
    ('{"pooling": "sum"}', "pooling"),
    ('{nope', "bad config file"),
])
def test_bad_config_file_is_one_line_error(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert lstm.main(["--config", str(bad), "--summary"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and message in err and len(err.strip().splitlines()) == 1


def test_full_adv_preset_is_full_with_adversarial_training():
    _, full = sentiment.model.cli.parse_options(["--preset", "full"])
    _, adv = sentiment.model.cli.parse_options(["--preset", "full-adv"])
    assert adv.adv_eps == 0.25 and full.adv_eps == 0.0
    assert dict(vars(adv), adv_eps=0.0, preset="full") == vars(full)


def test_full_adv_preset_trains_a_tiny_corpus_for_one_epoch(tmp_path, capsys):
    """The preset's model (bidirectional, mean+max, bigrams, word dropout, the
    adversarial cost), smaller, for one epoch through lstm.main."""
    train, test = synthetic_corpus(n_train=160, n_test=40, seed=3)
    dataset = write_corpus(str(tmp_path / "tiny.pkl"), train, test)
    model = str(tmp_path / "m.npz")
    assert lstm.main(["--preset", "full-adv", "--dataset", dataset, "--saveto", model,
                      "--n-words", "60", "--bigram-buckets", "31", "--dim-proj", "8",
                      "--pad-to", "40", "--max-epochs", "1", "--valid-block", "8",
                      "--valid-freq", "-1", "--save-freq", "-1", "--disp-freq", "1"]) == 0
    out = capsys.readouterr().out
    assert "The code run for 1 epochs" in out
    saved = json.load(open(str(tmp_path / "m.json")))  # the options beside the model
    assert saved["adv_eps"] == 0.25 and saved["bidirectional"] and saved["bigram_buckets"] == 31
    costs = [float(line.split()[-1]) for line in out.splitlines() if line.startswith("Epoch ")]
    assert costs and all(1.0 < c < 2.0 for c in costs[:1])  # two losses near log 2 each


def test_unknown_preset_is_refused(capsys):
    with pytest.raises(SystemExit):
        lstm.main(["--preset", "nope"])
    assert "unknown preset" in capsys.readouterr().err


# -- pre-trained embeddings ------------------------------------------------------
def write_dictionary(path, n):
    import pickle
    with gzip.open(path, "wb") as f:
        pickle.dump({"w%d" % i: i for i in range(2, n)}, f, protocol=2)


@pytest.mark.parametrize("fmt", ["glove", "word2vec.gz"])
def test_embeddings_initialise_wemb_and_can_be_frozen(tmp_path, fmt, capsys):
    train, test = synthetic_corpus(n_train=300)
    corpus = write_corpus(tmp_path / "imdb.pkl", train, test)
    write_dictionary(tmp_path / "imdb.dict.pkl.gz", 80)
    rng = np.random.default_rng(0)
    vectors = {i: rng.standard_normal(6).round(4) for i in range(2, 60, 2)}  # half of them
    lines = ["W%d %s" % (i, " ".join(map(str, v))) if i == 4 else  # upper case: fallback
             "w%d %s" % (i, " ".join(map(str, v))) for i, v in vectors.items()]
    lines.append("notindict " + " ".join(["1.0"] * 6))
    text = "\n".join(lines) + "\n"
    path = tmp_path / "vecs.txt"
    if fmt == "word2vec.gz":
        path = tmp_path / "vecs.vec.gz"
        text = "%d 6\n" % len(lines) + text
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    opts = train_options(tmp_path, corpus, dim_emb=6, embeddings=str(path), max_epochs=1,
                         freeze_embeddings=True)
    lstm.train_lstm(opts)
    out = capsys.readouterr().out
    assert "29 of 58 words found (50.0%)" in out
    with np.load(opts.saveto) as saved:
        wemb = saved["Wemb"]
    for i, v in vectors.items():  # frozen: exactly the file's vectors
        np.testing.assert_allclose(wemb[i], v.astype(config.floatX), rtol=1e-6)
    untouched = lstm.init_params(dataclasses.replace(opts, ydim=2),
                                 lstm.make_rngs(opts.seed)["init"])["Wemb"]
    np.testing.assert_array_equal(wemb[3::2], untouched[3::2])
    # Not frozen: the vectors are only the start.
    lstm.train_lstm(dataclasses.replace(opts, freeze_embeddings=False))
    with np.load(opts.saveto) as saved:
        assert not np.allclose(saved["Wemb"][2], vectors[2].astype(config.floatX))


def test_embeddings_dimension_mismatch_is_one_line_error(tmp_path, capsys):
    train, test = synthetic_corpus(n_train=100)
    corpus = write_corpus(tmp_path / "imdb.pkl", train, test)
    write_dictionary(tmp_path / "imdb.dict.pkl.gz", 80)
    vecs = tmp_path / "v.txt"
    vecs.write_text("w2 1 2 3\nw3 4 5 6\n")
    code = lstm.main(["--dataset", corpus, "--embeddings", str(vecs), "--saveto", "",
                      "--n-words", "60", "--dim-proj", "8"])
    err = capsys.readouterr().err
    assert code == 2 and str(vecs) in err and "--dim-emb 3" in err
    assert len(err.strip().splitlines()) == 1


# -- prediction on raw text ------------------------------------------------------
@pytest.fixture(scope="module")
def trained_text_model(tmp_path_factory):
    """A model trained through imdb_preprocess on a tiny raw-text corpus."""
    tmp = tmp_path_factory.mktemp("predict")
    model = train_text_model(tmp)
    with np.load(model) as saved:
        assert float(saved["test_err"]) < 0.1  # it learnt the task
    return tmp, model


def test_predict_round_trip(trained_text_model, capsys, monkeypatch):
    tmp, model = trained_text_model
    texts = ["Great, superb: I LOVED the film!", "Boring and awful. I hated it."]
    results = lstm.predict(texts, model=model)
    assert [r["name"] for r in results] == ["pos", "neg"]
    assert all(r["probability"] > 0.5 and abs(sum(r["probs"]) - 1) < 1e-5 for r in results)
    # The same numbers as the training code's own prediction on the encoded text.
    p = sentiment.commands.predict.Predictor(model, lstm.load_model)
    seqs = [p.encode(t) for t in texts]
    assert seqs[0][:2] == [p.words["great"], 1]  # "," never seen in training: unknown
    x, mask, _ = imdb.prepare_data(seqs, [0, 0])
    np.testing.assert_allclose(p.predict_proba(texts), p.f_pred_prob(x, mask), rtol=1e-6)
    # Command line: arguments, --json, a file and stdin.
    assert lstm.main(["predict", "--model", model] + texts) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["pos", "neg"]
    reviews = tmp / "reviews.txt"
    reviews.write_text(texts[1] + "\n\n" + texts[0] + "\n")
    assert lstm.main(["predict", "--model", model, "--file", str(reviews), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["name"] for r in rows] == ["neg", "pos"] and rows[1]["text"] == texts[0]
    monkeypatch.setattr("sys.stdin", io.StringIO(texts[0] + "\n"))
    assert lstm.main(["predict", "--model", model]) == 0
    assert capsys.readouterr().out.startswith("pos\t")


def test_predict_refuses_mismatches(trained_text_model, tmp_path, capsys):
    _, model = trained_text_model
    other = tmp_path / "other.dict.pkl.gz"
    write_dictionary(other, 40)
    assert lstm.main(["predict", "--model", model, "--dict", str(other), "text"]) == 2
    err = capsys.readouterr().err
    assert str(other) in err and "not the dictionary" in err
    assert len(err.strip().splitlines()) == 1
    # Options that do not fit the saved arrays.
    base = tmp_path / "m"
    for suffix in (".npz",):
        (tmp_path / ("m" + suffix)).write_bytes(open(model, "rb").read())
    values = json.load(open(sentiment.model.config.model_paths(model)[0]))
    values["dim_proj"] = 16
    (tmp_path / "m.json").write_text(json.dumps(values))
    assert lstm.main(["predict", "--model", str(base) + ".npz", "text"]) == 2
    err = capsys.readouterr().err
    assert "shape" in err and len(err.strip().splitlines()) == 1
    # No options file at all.
    os.remove(tmp_path / "m.json")
    assert lstm.main(["predict", "--model", str(base) + ".npz", "text"]) == 2
    assert "no such options file" in capsys.readouterr().err


# -- evaluation of a saved model -----------------------------------------------------
def test_evaluate_reports_accuracy_confusion_and_length_buckets(trained_text_model, capsys):
    tmp, model = trained_text_model
    result = lstm.evaluate_model(model)
    with np.load(model) as saved:  # trained with --test-size 0: the same 40 reviews
        assert result["accuracy"] == pytest.approx(1 - float(saved["test_err"]))
    assert result["n"] == 40 and result["labels"] == ["neg", "pos"]
    confusion = np.array(result["confusion"])
    assert confusion.sum() == 40 and confusion.sum(1).tolist() == [20, 20]
    assert np.trace(confusion) / 40 == pytest.approx(result["accuracy"])
    assert sum(b["n"] for b in result["by_length"]) == 40
    assert lstm.main(["evaluate", "--model", model]) == 0
    out = capsys.readouterr().out
    assert "confusion matrix" in out and "accuracy by review length" in out
    assert lstm.main(["evaluate", "--model", model, "--json", "--split", "train"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 160
    assert lstm.main(["evaluate", "--model", str(tmp / "none.npz")]) == 2
    assert "none.npz: no such model file" in capsys.readouterr().err


def test_evaluate_an_ensemble_averages_the_models_probabilities(trained_text_model, capsys):
    tmp, model = trained_text_model
    options = lstm.load_options(model)
    with np.load(model) as saved:
        params = {k: saved[k] for k in saved.files if k not in (
            "history_errs", "train_err", "valid_err", "test_err")}
    rng = np.random.default_rng(5)
    other = str(tmp / "other.npz")  # a second, different model of the same shape
    lstm.save_model(other, {k: v + rng.normal(0, 0.5, v.shape).astype(v.dtype)
                            for k, v in params.items()}, [], options)
    train, test = imdb.load_dataset_file(options.dataset)
    x, mask, _ = imdb.prepare_data(imdb.remove_unk(test[0], options.n_words), test[1])
    probs = [lstm.load_model(m)[1](x, mask) for m in (model, other)]
    want = np.mean((probs[0] + probs[1]).argmax(1) == np.asarray(test[1]))
    assert (probs[0].argmax(1) != probs[1].argmax(1)).any()  # the average is not trivial
    result = lstm.evaluate_model([model, other])
    assert result["accuracy"] == pytest.approx(want)
    assert result["model"] == model + " + " + other
    assert lstm.main(["evaluate", "--model", model, other]) == 0
    assert "accuracy %.4f" % want in capsys.readouterr().out
    bad = dataclasses.replace(options, ydim=3)
    lstm.save_model(str(tmp / "three.npz"), dict(params, U=np.zeros((8, 3), "float32"),
                                                 b=np.zeros(3, "float32")), [], bad)
    assert lstm.main(["evaluate", "--model", model, str(tmp / "three.npz")]) == 2
    assert "not one ensemble" in capsys.readouterr().err


@pytest.mark.parametrize("variant", [
    {},  # the tutorial's model: the kept projections of the embedding rows
    dict(bidirectional=True, bigram_buckets=64, pooling="meanmax"),
    dict(pad_to=30, conv_filters=8, pooling="max"),
])
def test_evaluation_gives_the_same_bits_at_any_batch_size(variant, tmp_path, capsys):
    corpus = tmp_path / "imdb.pkl"
    write_corpus(corpus, *synthetic_corpus(n_train=20, n_test=90, seed=3))
    options = sentiment.model.config.Config(dataset=str(corpus), dim_proj=16, n_words=60, ydim=2,
                                      saveto=str(tmp_path / "m.npz"), **variant)
    params = lstm.init_params(options, np.random.default_rng(3))
    lstm.save_model(options.saveto, {k: 10 * v for k, v in params.items()}, [], options)
    probs = [evaluation.classify_split(options.saveto, lstm.load_model, batch_size=size)["probs"]
             for size in (256, 1, 7, 64)]
    assert probs[0].shape == (90, 2) and np.ptp(probs[0][:, 0]) > 1e-3  # not all alike
    for other in probs[1:]:
        assert other.tobytes() == probs[0].tobytes()
    with pytest.raises(SystemExit) as stop:
        lstm.main(["evaluate", "--model", options.saveto, "--batch-size", "0"])
    assert stop.value.code == 2
    assert "--batch-size must be 1 or more" in capsys.readouterr().err


# -- length-bucketed minibatches -------------------------------------------------------
def test_bucket_order_is_a_permutation_with_less_padding():
    rng = np.random.default_rng(0)
    seqs = [[2] * int(n) for n in rng.integers(1, 300, size=1003)]
    order = rng.permutation(len(seqs))
    bucketed = sentiment.model.training.bucket_order(order, seqs, 16, 10, np.random.default_rng(1))
    assert sorted(bucketed) == list(range(len(seqs)))
    assert (bucketed[-(1003 % 16):] == sentiment.model.training.bucket_order(
        order, seqs, 16, 10, np.random.default_rng(2))[-(1003 % 16):]).all()  # partial last

    def padded_steps(o):
        return sum(max(len(seqs[i]) for i in o[s:s + 16]) * len(o[s:s + 16])
                   for s in range(0, len(o), 16))
    assert padded_steps(bucketed) < 0.7 * padded_steps(order)
    # Each pool's minibatches come from that pool only.
    pools = [set(order[s:s + 160]) for s in range(0, 1003, 160)]
    for s in range(0, 1003 - 16, 16):
        assert any(set(bucketed[s:s + 16]) <= pool for pool in pools)


def test_bucketed_training_learns_and_resumes_the_same_order(tmp_path):
    train, test = synthetic_corpus(n_train=600)
    corpus = write_corpus(tmp_path / "imdb.pkl", train, test)
    opts = train_options(tmp_path, corpus, max_epochs=4, bucket=5, optimizer="adam",
                         lrate=0.01)
    result = lstm.train_lstm(opts)
    assert result["status"] == "ok" and result["test_err"] < 0.3, result
    again = lstm.train_lstm(dataclasses.replace(opts, saveto=str(tmp_path / "b.npz")))
    assert again["test_err"] == result["test_err"]  # same seed, same buckets


def test_forget_bias_initialises_only_the_forget_gates():
    o = variant_options(layers=2, bidirectional=True, forget_bias=1.0)
    params = lstm.init_params(o, np.random.default_rng(0))
    plain = lstm.init_params(variant_options(layers=2, bidirectional=True),
                             np.random.default_rng(0))
    d = o.dim_proj
    for name in [n for n in params if n.endswith("_b") and n.startswith("lstm")]:
        assert params[name][d:2 * d].tolist() == [1.0] * d
        assert not params[name][:d].any() and not params[name][2 * d:].any()
    for name in params:  # the random draws are the same
        if not name.endswith("_b"):
            np.testing.assert_array_equal(params[name], plain[name])
