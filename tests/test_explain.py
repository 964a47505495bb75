"""Which words moved a prediction (sentiment.explain.scores): the exact split adds up to
the model's score, padding never changes it, the occlusion fallback matches
NumPy, the page is self-contained, and the command-line flags work."""
import html.parser
import io
import json
import re
import types

import numpy as np
import pytest

import imdb
import lstm
from conftest import train_text_model
from sentiment.explain import html as explain_html, text as explain_text
from sentiment.model.config import Config
from sentiment.explain.scores import (Explainer, choose_classes, kept_span, method_for,
                               pooled_slices, step_contributions)
from sentiment.model.modelfile import load_options, save_model

NAMES2 = {0: "neg", 1: "pos"}


def random_model(path, seed=0, ydim=2, **kw):
    """A saved model with random parameters of order 1 (so the scores are not
    tiny) on tiny dimensions: ``(path, options)``."""
    options = Config(dim_proj=6, n_words=30, ydim=ydim, **kw)
    rng = np.random.default_rng(seed)
    params = lstm.init_params(options, rng)
    for name in params:
        params[name] = rng.standard_normal(params[name].shape).astype("float32")
    save_model(str(path), params, [], options)
    return str(path), options


def explainer_for(path, names=NAMES2):
    """An Explainer of the saved model ``path`` (no dictionary: reviews as ids)
    and its compiled ``f_pred_prob``."""
    options, f_pred_prob, classify = lstm.load_model(path)
    _, params, states = lstm.load_states(path, options)
    predictor = types.SimpleNamespace(options=options, classify=classify, label_names=names)
    return Explainer(predictor, params, states, path), f_pred_prob


def random_reviews(seed, n=6, n_words=30, longest=15):
    """Reviews of 1 to ``longest`` ids in [1, n_words), unknown words (1) among them."""
    rng = np.random.default_rng(seed)
    return [[int(w) for w in rng.integers(1, n_words, size=int(rng.integers(1, longest + 1)))]
            for _ in range(n)]


def model_score(f_pred_prob, seq, target, versus, prepare=imdb.prepare_data):
    """The model's ``log p_target - log p_versus`` on one review alone."""
    x, mask, _ = prepare([seq], [0])
    p = f_pred_prob(x, mask)[0].astype("float64")
    return np.log(p[target]) - np.log(p[versus])


def token_scores(result):
    return np.array([t["score"] for t in result["tokens"] if t["score"] is not None])


EXACT_CASES = [
    dict(pooling="mean"),
    dict(pooling="max"),
    dict(pooling="meanmax", pool_embeddings=True),
    dict(pooling="mean", bidirectional=True, layers=2),
    dict(pooling="max", bidirectional=True, bigram_buckets=7, dim_emb=4),
    dict(pooling="meanmax", bidirectional=True, use_dropout=False),
    dict(pooling="mean", pool_embeddings=True, bidirectional=True, bigram_buckets=5),
]


@pytest.mark.parametrize("case", EXACT_CASES, ids=lambda c: "-".join(
    "%s=%s" % kv for kv in sorted(c.items())))
def test_exact_split_adds_up_to_the_model_score(tmp_path, case):
    path, options = random_model(tmp_path / "m.npz", **case)
    explainer, f_pred_prob = explainer_for(path)
    assert explainer.method == "exact" and method_for(options) == "exact"
    reviews = random_reviews(1)
    results = explainer.explain_ids(reviews)
    for seq, r in zip(reviews, results):
        d = model_score(f_pred_prob, seq, 1, 0)
        assert abs(d) > 1e-3  # a real score, not a tiny one
        total = r["bias"] + token_scores(r).sum()
        np.testing.assert_allclose(total, d, rtol=1e-5, atol=2e-6)
        np.testing.assert_allclose(r["score"], d, rtol=1e-6, atol=1e-7)
        assert abs(r["residual"]) < 2e-6 + 1e-5 * abs(d)
        assert [t["unknown"] for t in r["tokens"]] == [w == 1 for w in seq]
        assert not any(t["cut"] for t in r["tokens"])
        # Each review alone (no padding, no neighbour): the same contributions.
        alone = explainer.explain_ids([seq])[0]
        np.testing.assert_allclose(token_scores(alone), token_scores(r), rtol=1e-5, atol=1e-7)


def test_step_contributions_by_hand():
    """The split written out for a 3-step review with mean, max and bag parts."""
    options = Config(dim_proj=2, pooling="meanmax", pool_embeddings=True, dim_emb=1)
    slices = pooled_slices(options)
    assert slices == dict(mean=slice(0, 2), max=slice(2, 4), bag=slice(4, 5))
    h = np.array([[1.0, -2.0], [3.0, 0.0], [0.0, 5.0]])
    emb = np.array([[1.0], [2.0], [3.0]])
    w = np.array([1.0, 2.0, 10.0, 100.0, 6.0])
    got = step_contributions(h, emb, w, slices, 0.5)
    pooled = np.concatenate([h.mean(0), h.max(0), emb.mean(0)])
    expected = 0.5 * np.array([(1 - 4) / 3 + 2, 3 / 3 + 30 + 4, 10 / 3 + 500 + 6])
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got.sum(), 0.5 * pooled @ w)


@pytest.mark.parametrize("padding,truncating", [("pre", "pre"), ("post", "post"),
                                                ("pre", "post")])
def test_pad_to_cuts_tokens_and_padding_changes_nothing(tmp_path, padding, truncating):
    plain, _ = random_model(tmp_path / "plain.npz", seed=3, pooling="meanmax")
    padded, options = random_model(tmp_path / "padded.npz", seed=3, pooling="meanmax",
                                   pad_to=5, padding=padding, truncating=truncating)
    reviews = [[2, 3, 4, 5, 6, 7, 8, 9], [2, 3], [4, 1, 6, 7, 8]]
    explain_plain, _ = explainer_for(plain)
    explain_padded, f_padded = explainer_for(padded)
    prepare = lstm.variants.batcher(options)
    for seq, r in zip(reviews, explain_padded.explain_ids(reviews)):
        start, stop = kept_span(len(seq), options)
        assert [t["cut"] for t in r["tokens"]] == [not start <= i < stop
                                                    for i in range(len(seq))]
        assert all(t["score"] is None for t in r["tokens"] if t["cut"])
        d = model_score(f_padded, seq, 1, 0, prepare)
        np.testing.assert_allclose(r["bias"] + token_scores(r).sum(), d, rtol=1e-5, atol=2e-6)
        # The kept tokens' scores are those of the kept tokens read with no padding.
        same = explain_plain.explain_ids([seq[start:stop]])[0]
        np.testing.assert_allclose(token_scores(r), token_scores(same), rtol=1e-5, atol=1e-7)
    assert kept_span(8, options) == ((3, 8) if truncating == "pre" else (0, 5))


def test_more_classes_predicted_against_runner_up_or_a_chosen_label(tmp_path):
    path, _ = random_model(tmp_path / "m.npz", seed=5, ydim=3, pooling="mean")
    names = {0: "a", 1: "b", 2: "c"}
    explainer, f_pred_prob = explainer_for(path, names)
    reviews = random_reviews(7, n=4)
    for label in (None, "c", 0):
        for seq, r in zip(reviews, explainer.explain_ids(reviews, label)):
            probs = np.array(r["probs"])
            order = np.argsort(-probs)
            if label is None:
                assert (r["target"], r["versus"]) == (order[0], order[1])
            else:
                target = 2 if label == "c" else 0
                assert r["target"] == target and r["versus"] == [c for c in order
                                                                 if c != target][0]
            d = model_score(f_pred_prob, seq, r["target"], r["versus"])
            np.testing.assert_allclose(r["bias"] + token_scores(r).sum(), d,
                                       rtol=1e-5, atol=2e-6)
    assert choose_classes([0.2, 0.8]) == (1, 0) and choose_classes([0.9, 0.1], 0) == (0, 1)
    with pytest.raises(ValueError, match=r"--label z: not a label of .*m\.npz \(a, b, c\)"):
        explainer.explain_ids(reviews, "z")


def numpy_last_state_score(params, seq):
    """``z_1 - z_0`` of a one-layer LSTM with ``last`` pooling and test-time
    dropout, computed directly in NumPy (float64; exact sigmoid and tanh)."""
    p = {k: np.asarray(v, dtype="float64") for k, v in params.items()}
    dim = p["lstm_U"].shape[0]
    h, c = np.zeros(dim), np.zeros(dim)
    for word in seq:
        z = p["Wemb"][word] @ p["lstm_W"] + p["lstm_b"] + h @ p["lstm_U"]
        i, f, o = (1 / (1 + np.exp(-z[k * dim:(k + 1) * dim])) for k in range(3))
        c = f * c + i * np.tanh(z[3 * dim:])
        h = o * np.tanh(c)
    logits = 0.5 * h @ p["U"] + p["b"]
    return logits[1] - logits[0]


def test_occlusion_fallback_against_numpy(tmp_path):
    path, options = random_model(tmp_path / "m.npz", seed=11, pooling="last")
    assert method_for(options) == "occlusion"
    assert method_for(Config(conv_filters=4)) == "occlusion"  # a convolution: no exact split
    explainer, _ = explainer_for(path)
    params = dict(np.load(path))
    reviews = random_reviews(2, n=5, longest=8) + [[5]]
    for seq, r in zip(reviews, explainer.explain_ids(reviews)):
        assert r["method"] == "occlusion" and "occlusion" in r["method_text"]
        full = numpy_last_state_score(params, seq)
        expected = [full - numpy_last_state_score(params, seq[:t] + seq[t + 1:])
                    for t in range(len(seq))]
        np.testing.assert_allclose(token_scores(r), expected, rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(r["score"], full, rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(r["residual"], full - r["bias"] - sum(expected),
                                   rtol=1e-4, atol=5e-5)


# ---------------------------------------------------------------------------
# The views: text and page.
# ---------------------------------------------------------------------------
def fake_result(tokens, scores, unknown=(), cut=(), **extra):
    rows = [dict(token=t, id=i + 2, score=None if i in cut else s, unknown=i in unknown,
                 cut=i in cut) for i, (t, s) in enumerate(zip(tokens, scores))]
    kept = sum(s for i, s in enumerate(scores) if i not in cut)
    result = dict(label=1, name="pos", probability=0.9, probs=[0.1, 0.9], target=1,
                  target_name="pos", versus=0, versus_name="neg", score=0.25 + kept,
                  bias=0.25, residual=0.0, method="exact",
                  method_text="exact split of the mean pooling", tokens=rows)
    result.update(extra)
    return result


TOKENS = ["great", "&quot;", "<b>", "film", "awful", "great", "&amp;", "x"]
SCORES = [1.5, 0.01, -0.2, 0.0, -0.9, 0.7, 0.02, 0.3]


def test_plain_and_coloured_text():
    r = fake_result(TOKENS, SCORES, unknown={3}, cut={7})
    plain = explain_text.format_result(r, "none", top=2).splitlines()
    assert plain[0].startswith("pos\t0.9000\tscore pos-neg +1.38 = bias +0.25 + tokens +1.13")
    assert plain[1] == ('great(+1.50) "(+0.01) <b>(-0.20) film(unk +0.00) awful(-0.90) '
                        'great(+0.70) &(+0.02) x(cut)')
    assert plain[2:] == ["top 2 towards pos: great(+1.50) great(+0.70)",
                         "top 2 towards neg: awful(-0.90) <b>(-0.20)"]
    coloured = explain_text.format_result(r, "24bit")
    assert "\x1b[48;2;44;160;44;38;2;0;0;0mgreat\x1b[0m" in coloured  # full green
    assert "\x1b[2;9mx\x1b[0m" in coloured and "\x1b[4mfilm\x1b[0m" in coloured
    assert " \"" in coloured.splitlines()[1]  # near zero: no colour
    assert "\x1b[48;5;" in explain_text.format_result(r, "256")
    assert explain_text.cube_index((255, 255, 255)) == 231
    assert explain_text.number(0.001234, 0.003) == "+0.0012"
    tty = types.SimpleNamespace(isatty=lambda: True)
    assert explain_text.colour_mode(io.StringIO(), {}) == "none"
    assert explain_text.colour_mode(tty, {"COLORTERM": "truecolor"}) == "24bit"
    assert explain_text.colour_mode(tty, {}) == "256"
    assert explain_text.colour_mode(tty, {"NO_COLOR": "1"}) == "none"


class PageParser(html.parser.HTMLParser):
    """The token spans (``class="t ..."``) of each review, and every tag."""

    def __init__(self):
        super().__init__()
        self.reviews, self.tags, self.open = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self.reviews.append([])
        if tag == "span" and "t" in (attrs.get("class") or "").split():
            self.open = ""
            assert "title" in attrs  # the score on hover

    def handle_data(self, data):
        if self.open is not None:
            self.open += data

    def handle_endtag(self, tag):
        if tag == "span" and self.open is not None:
            self.reviews[-1].append(self.open)
            self.open = None


def check_self_contained(page):
    """Nothing in ``page`` loads anything: no script, link, src, url() or @import."""
    parser = PageParser()
    parser.feed(page)
    parser.close()
    assert not re.search(r"<script|<link|<img|<iframe|<object|<embed|@import|url\s*\(",
                         page, re.I)
    assert not re.search(r"\b(src|href|xlink:href)\s*=", page, re.I)
    assert "http" not in page.lower()
    return parser


def test_page_is_self_contained_and_holds_every_token_once():
    one = fake_result(TOKENS, SCORES, unknown={3}, cut={7})
    other = fake_result(["bad", "<script>"], [-1.0, 0.5], true=1, true_name="pos")
    page = explain_html.page([one, other], subtitle="model <m>.npz")
    parser = check_self_contained(page)
    expected = [['great', '"', '<b>', 'film', 'awful', 'great', '&', 'x'],
                ['bad', '<script>']]
    assert parser.reviews == expected
    assert "<svg" not in page  # the plot: for a single review only
    single = explain_html.page([one])
    parser = check_self_contained(single)
    assert parser.reviews == expected[:1]
    assert single.count("<svg") == 1
    circles = [a for t, a in parser.tags if t == "circle"]
    assert len(circles) == 7  # one point per token read (the cut one is not)


# ---------------------------------------------------------------------------
# The command line, on a model trained on raw text.
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    """A model trained through imdb_preprocess on a tiny raw-text corpus, and an
    untrained one of the same options (so that it makes mistakes)."""
    tmp = tmp_path_factory.mktemp("explain")
    model = train_text_model(tmp)
    options = load_options(model)
    untrained = str(tmp / "untrained.npz")
    params = lstm.init_params(options, np.random.default_rng(4))
    params["U"] = np.random.default_rng(5).standard_normal(params["U"].shape).astype("float32")
    save_model(untrained, params, [], options)
    return tmp, model, untrained


TEXTS = ["Great, superb: I LOVED the film!", "Boring and awful. I hated it."]


def test_explain_from_python(text_model):
    tmp, model, _ = text_model
    results = lstm.explain(TEXTS, model=model)
    assert [r["name"] for r in results] == ["pos", "neg"]
    assert [r["name"] for r in lstm.predict(TEXTS, model=model)] == ["pos", "neg"]
    first = results[0]
    assert first["text"] == TEXTS[0] and first["method"] == "exact"
    words = [t["token"] for t in first["tokens"]]
    assert words == ["great", ",", "superb", ":", "i", "loved", "the", "film", "!"]
    scores = {t["token"]: t for t in first["tokens"]}
    assert scores[","]["unknown"] and not scores["great"]["unknown"]
    assert scores["great"]["score"] > 0 and scores["superb"]["score"] > 0
    hated = {t["token"]: t["score"] for t in results[1]["tokens"]}
    assert hated["awful"] < 0 and hated["hated"] < 0
    for r in results:
        assert abs(r["residual"]) < 1e-5


def test_predict_explain_command_line(text_model, capsys, tmp_path):
    _, model, _ = text_model
    assert lstm.main(["predict", "--explain", "--top", "2", "--model", model] + TEXTS) == 0
    out = capsys.readouterr().out.split("\n\n")
    assert len(out) == 2
    lines = out[0].splitlines()  # captured: not a terminal, so plain numbers
    assert lines[0].startswith("pos\t") and "exact split of the mean pooling" in lines[0]
    assert re.fullmatch(r"(\S+\((unk )?[+-]\d+\.\d+\) ?)+", lines[1]), lines[1]
    assert lines[1].startswith("great(+") and ",(unk " in lines[1]
    assert lines[2].startswith("top 2 towards pos: ") and lines[3].startswith(
        "top 2 towards neg: ")
    assert "\x1b[" not in "".join(out)
    page = tmp_path / "why.html"
    assert lstm.main(["predict", "--json", "--top", "3", "--html", str(page), "--model", model,
                      TEXTS[1]]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["name"] == "neg" and record["text"] == TEXTS[1]
    assert [t["token"] for t in record["tokens"]][:3] == ["boring", "and", "awful"]
    assert set(record["top"]) == {"pos", "neg"} and len(record["top"]["neg"]) <= 3
    parser = check_self_contained(page.read_text(encoding="utf-8"))
    assert parser.reviews == [["boring", "and", "awful", ".", "i", "hated", "it", "."]]
    assert lstm.main(["predict", "--explain", "--label", "neg", "--model", model,
                      TEXTS[0]]) == 0
    assert "score neg-pos -" in capsys.readouterr().out


def test_predict_explain_errors(text_model, capsys, tmp_path):
    _, model, _ = text_model
    assert lstm.main(["predict", "--explain", "--label", "meh", "--model", model, "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("lstm.py predict: error: --label meh: not a label of %s (neg, pos)" % model)
    assert lstm.main(["predict", "--explain", "--html", str(tmp_path / "no" / "dir" / "x.html"),
                      "--model", str(tmp_path / "nope.npz"), "x"]) == 2
    assert "nope.npz: no such model file" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    blocked = tmp_path / "file" / "x.html"
    assert lstm.main(["predict", "--explain", "--html", str(blocked), "--model", model,
                      "x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstm.py predict: error: %s: cannot write" % blocked)
    assert err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        lstm.main(["predict", "--top", "-1", "--model", model, "x"])
    assert exit_.value.code == 2


def test_evaluate_explain_errors(text_model, capsys, tmp_path):
    tmp, _, untrained = text_model
    page = tmp_path / "errors.html"
    assert lstm.main(["evaluate", "--model", untrained, "--explain-errors", "3",
                      "--html", str(page), "--top", "2"]) == 0
    out = capsys.readouterr().out
    report, explained = out.split("the 3 most confidently wrong reviews, explained")
    assert report.startswith(untrained)
    reviews = explained.strip().split("\n\n")
    assert len(reviews) == 3
    for review in reviews:
        assert re.match(r"true (pos|neg), predicted (pos|neg)\t", review)
    parser = check_self_contained(page.read_text(encoding="utf-8"))
    assert len(parser.reviews) == 3 and "<svg" not in page.read_text(encoding="utf-8")
    # The words come from the dictionary beside the dataset: real words.
    _, test = imdb.load_dataset_file(str(tmp / "data" / "imdb.pkl"))
    words = {i: w for w, i in imdb.load_dict(str(tmp / "data" / "imdb.dict.pkl.gz")).items()}
    assert lstm.main(["evaluate", "--model", untrained, "--explain-errors", "2",
                      "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    errors = result["explained_errors"]
    assert len(errors) == 2 and errors[0]["probability"] >= errors[1]["probability"]
    for e in errors:
        assert e["true"] != e["label"] and e["true"] == test[1][e["index"]]
        assert [t["token"] for t in e["tokens"]] == [words[i] for i in test[0][e["index"]]]
        assert abs(e["residual"]) < 1e-5
    assert lstm.main(["evaluate", "--model", untrained, untrained, "--explain-errors",
                      "1"]) == 2
    assert "not an ensemble" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        lstm.main(["evaluate", "--model", untrained, "--html", str(page)])
