"""``lstm.py inspect`` (sentiment.commands.inspection): the gates and states it shows are
the LSTM's equations recomputed in NumPy and the trained model's own, padding
changes none of them, the figure holds exactly those numbers, and the command
prints, writes and fails as a user expects."""
import dataclasses
import io

import numpy as np
import pytest

import imdb
import lstm
from conftest import train_text_model
from sentiment.commands import inspection
from sentiment.model.modelfile import load_options, save_model
from sentiment.model.variants import lstm_prefixes

TEXT = "Great, superb: I LOVED the film! But the ending was boring and awful."


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small model trained on a tiny raw-text corpus (with its dictionary)."""
    return train_text_model(tmp_path_factory.mktemp("inspect"))


def variant_model(trained, path, seed=0, **changes):
    """The trained model's options (dataset, dictionary) changed by ``changes``, with
    random parameters of order 1 (so the gates are far from 0.5): its path."""
    options = dataclasses.replace(load_options(trained), **changes)
    rng = np.random.default_rng(seed)
    params = lstm.init_params(options, rng)
    for name in params:
        params[name] = (0.7 * rng.standard_normal(params[name].shape)).astype("float32")
    save_model(str(path), params, [], options)
    return str(path)


CASES = {"tutorial": {}, "bidirectional-2-layers": dict(bidirectional=True, layers=2),
         "pad-to-truncating-pre": dict(pad_to=6, truncating="pre", padding="pre",
                                       maxlen=0, pooling="meanmax"),
         "bigrams-bidirectional": dict(bigram_buckets=7, bidirectional=True, pooling="max")}


@pytest.fixture(params=list(CASES))
def model(request, trained, tmp_path):
    if not CASES[request.param]:
        return trained
    return variant_model(trained, tmp_path / "m.npz", **CASES[request.param])


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def numpy_lstm(inputs, W, U, b):
    """The LSTM's equations, one step at a time in float64: {i, f, o, c, h}, each (T, d)."""
    d = U.shape[0]
    h, c, out = np.zeros(d), np.zeros(d), {k: [] for k in "ifoch"}
    for x_t in inputs:
        z = x_t @ W + h @ U + b
        i, f, o = sigmoid(z[:d]), sigmoid(z[d:2 * d]), sigmoid(z[2 * d:3 * d])
        c = f * c + i * np.tanh(z[3 * d:])
        h = o * np.tanh(c)
        for k, v in zip("ifoch", (i, f, o, c, h)):
            out[k].append(v)
    return {k: np.array(v) for k, v in out.items()}


def numpy_gates(params, options, ids):
    """Every LSTM's gates for one review (no bigrams), a backward one reading it reversed."""
    p = {k: v.astype("float64") for k, v in params.items()}
    inputs, out = p["Wemb"][ids], {}
    for layer in lstm_prefixes(options):
        for direction, prefix in enumerate(layer):
            seq = inputs[::-1] if direction else inputs
            got = numpy_lstm(seq, p[prefix + "_W"], p[prefix + "_U"], p[prefix + "_b"])
            out[prefix] = {k: v[::-1] if direction else v for k, v in got.items()}
        inputs = np.concatenate([out[prefix]["h"] for prefix in layer], axis=1)
    return out


@pytest.mark.parametrize("case", [c for c in CASES if "bigram" not in c])  # next test: bigrams
def test_the_gates_are_the_lstm_equations_in_numpy(case, trained, tmp_path):
    model = variant_model(trained, tmp_path / "m.npz", **CASES[case]) if CASES[case] else trained
    inspector = lstm.inspector(model)
    result = inspector.inspect(TEXT)
    want = numpy_gates(inspector.params, inspector.options, result.ids)
    assert set(result.gates) == set(want)
    for prefix, gates in want.items():
        for k in "ifoch":
            got = result.gates[prefix][k]
            assert got.shape == (len(result.ids), inspector.options.dim_proj)
            np.testing.assert_allclose(got, gates[k], rtol=1e-4, atol=1e-5,
                                       err_msg="%s.%s" % (prefix, k))


def test_the_states_and_probabilities_are_the_trained_models(model):
    inspector = lstm.inspector(model)
    result = inspector.inspect(TEXT)
    options, f_pred_prob, classify = lstm.load_model(model)   # the fused model lstm.py runs
    np.testing.assert_allclose(result.probs, classify([result.ids])[0], rtol=1e-4, atol=1e-6)
    _, _, states = lstm.load_states(model, options)
    x, mask, _ = inspector.prepare([result.ids], [0])
    h = states(x, mask)[0][mask[:, 0] > 0, 0]
    last = lstm_prefixes(options)[-1]
    np.testing.assert_allclose(np.concatenate([result.gates[p]["h"] for p in last], axis=1), h,
                               rtol=1e-4, atol=2e-5)
    # The explanation is predict --explain's, for the same review.
    assert result.explanation["tokens"] == inspector.explainer.explain([TEXT])[0]["tokens"]


def test_padding_changes_nothing(model):
    inspector = lstm.inspector(model)
    alone = inspector.inspect(TEXT)
    longer = alone.ids * 3
    for batch in ([alone.ids, longer], [longer, alone.ids, alone.ids[:2]]):
        x, mask, _ = inspector.prepare(batch, [0] * len(batch))
        values = dict(inspector.f_gates(x, mask))
        col = batch.index(alone.ids)
        steps = np.flatnonzero(mask[:, col] > 0)
        assert len(steps) == len(alone.ids)
        for prefix, gates in alone.gates.items():
            for k, want in gates.items():
                np.testing.assert_allclose(values["%s.%s" % (prefix, k)][steps, col], want,
                                           rtol=1e-5, atol=1e-6)


def test_the_shapes_follow_the_minibatch(trained, tmp_path):
    model = variant_model(trained, tmp_path / "m.npz", bidirectional=True, layers=2,
                          pooling="meanmax")
    inspector = lstm.inspector(model)
    o = inspector.options
    x, mask, _ = imdb.prepare_data([[2, 3, 4], [5, 6], [7, 8, 9, 2, 3]], [0, 1, 0])
    shapes = {name: shape for name, shape, _ in inspector.shapes(x, mask)}
    assert shapes["x"] == shapes["mask"] == (5, 3)
    assert shapes["emb"] == (5, 3, o.emb_dim)
    for prefix in ("lstm", "lstm_rev", "lstm2", "lstm2_rev"):
        assert shapes[prefix + ".xw"] == (5, 3, 4 * o.dim_proj)
        assert shapes[prefix + " z_t"] == (3, 4 * o.dim_proj)
        for k in "ifoch":
            assert shapes["%s.%s" % (prefix, k)] == (5, 3, o.dim_proj)
    assert shapes["proj"] == (3, 4 * o.dim_proj)     # two directions, mean and max
    assert shapes["pred"] == (3, o.ydim)


@pytest.mark.parametrize("units,max_tokens", [(3, 5), (0, 0)])
def test_the_figure_holds_the_models_numbers(trained, tmp_path, units, max_tokens):
    model = variant_model(trained, tmp_path / "m.npz", bidirectional=True)
    result = lstm.inspector(model).inspect(TEXT)
    fig = inspection.figure(result, units=units, max_tokens=max_tokens)
    n = max_tokens or len(result.tokens)
    images = [ax.images[0] for ax in fig.axes if ax.images]
    assert len(images) == 5 * len(result.gates)
    want = []
    for prefix in result.gates:   # the figure's columns, then its rows
        chosen = inspection.chosen_units(result.gates[prefix]["h"][:n], units)
        assert len(chosen) == (units or 8)
        want.append([result.gates[prefix][k][:n, chosen].T for k in "ifoch"])
    got = [images[row * len(result.gates) + col].get_array()
           for col in range(len(result.gates)) for row in range(5)]
    for g, w in zip(got, [w for column in want for w in column]):
        np.testing.assert_array_equal(np.asarray(g), w)
    scores = [t["score"] for t in result.explanation["tokens"][:n]]
    bars = [ax for ax in fig.axes if ax.patches][0].patches
    np.testing.assert_allclose([bar.get_height() for bar in bars], scores, rtol=1e-6)
    png, svg = inspection.save(fig, str(tmp_path / "out" / "fig.png"))
    assert png.endswith("fig.png") and svg.endswith("fig.svg")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in open(svg, encoding="utf-8").read(2000)


def test_the_colour_scales_follow_the_data(trained, tmp_path):
    model = variant_model(trained, tmp_path / "m.npz", bidirectional=True)
    result = lstm.inspector(model).inspect(TEXT)
    for gate_scale in ("data", "full"):
        fig = inspection.figure(result, units=0, gate_scale=gate_scale)
        images = [ax.images[0] for ax in fig.axes if ax.images]
        for n, image in enumerate(images):
            key = "ifoch"[n // len(result.gates)]   # the images go row by row
            data = np.asarray(image.get_array())
            vmin, vmax = image.get_clim()
            assert vmin <= data.min() and data.max() <= vmax
            if key in "ch":   # symmetric around 0, to the panel's largest value
                assert vmin == -vmax and vmax == pytest.approx(np.abs(data).max())
            elif gate_scale == "full":
                assert (vmin, vmax) == (0, 1)
            else:             # 0.5 +- the largest distance from 0.5, inside [0, 1]
                assert vmin + vmax == pytest.approx(1) and 0 <= vmin < vmax <= 1
                assert vmax - 0.5 < np.abs(data - 0.5).max() + 0.05 + 1e-9
    # Gates near 0.5 get a narrow scale; a gate that closes gets all of [0, 1].
    assert inspection.colour_limits("f", [[0.45, 0.58]]) == pytest.approx((0.4, 0.6))
    assert inspection.colour_limits("i", [[0.01, 0.5]]) == pytest.approx((0.0, 1.0))
    assert inspection.colour_limits("c", [[-0.2, 3.0]]) == (-3.0, 3.0)


def test_the_command_prints_the_shapes_and_writes_the_figure(trained, tmp_path, capsys):
    out = tmp_path / "fig" / "inspect.png"
    assert lstm.main(["inspect", "--model", trained, "--out", str(out), "--units", "4",
                      "Great", "film!"]) == 0
    printed = capsys.readouterr().out
    assert "prediction: " in printed and "run as --lstm-impl scan" in printed
    assert "lstm.h           (3, 1, 8)" in printed
    assert "logits           (1, 2)" in printed and "pred             (1, 2)" in printed
    assert out.exists() and out.with_suffix(".svg").exists()
    # --dictionary (or --dict, as predict): the dictionary the model was trained with.
    words = imdb.dict_path_for(load_options(trained).dataset)
    assert lstm.main(["inspect", "--model", trained, "--dictionary", words, "--out",
                      str(tmp_path / "g.png"), "--gate-scale", "full", "Great"]) == 0
    assert "(1, 1, 8)" in capsys.readouterr().out


def test_the_command_reads_a_file(trained, tmp_path, capsys):
    review = tmp_path / "review.txt"
    review.write_text("An awful, boring film.\nI hated it.\n", encoding="utf-8")
    assert lstm.main(["inspect", "--model", trained, "--file", str(review),
                      "--out", str(tmp_path / "f.png")]) == 0
    assert "10 tokens read of 10" in capsys.readouterr().out


def one_line_error(capsys, argv):
    assert lstm.main(["inspect"] + argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lstm.py inspect: error: "), err
    return err


def test_bad_input_is_one_line(trained, tmp_path, capsys, monkeypatch):
    out = ["--out", str(tmp_path / "f.png")]
    missing = str(tmp_path / "nope.npz")
    assert missing in one_line_error(capsys, ["--model", missing, "Great film"] + out)
    not_npz = tmp_path / "bad.npz"
    not_npz.write_bytes(b"not a model")
    (tmp_path / "bad.json").write_text(open(trained[:-4] + ".json").read())
    assert "bad.npz" in one_line_error(capsys, ["--model", str(not_npz), "Great film"] + out)
    assert "the command line: no text" in one_line_error(capsys, ["--model", trained, "  "]
                                                         + out)
    assert "no words" in one_line_error(capsys, ["--model", trained, "\x00"] + out)
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert "standard input: no text" in one_line_error(capsys, ["--model", trained] + out)
    (tmp_path / "a-file").write_text("")
    blocked = str(tmp_path / "a-file" / "f.png")
    assert "a-file/f.png: cannot write" in one_line_error(
        capsys, ["--model", trained, "--out", blocked, "Great film"])
    conv = variant_model(trained, tmp_path / "conv.npz", conv_filters=4, conv_width=3, pool=2)
    assert "convolution" in one_line_error(capsys, ["--model", conv, "Great film"] + out)
    assert not (tmp_path / "f.png").exists()
