"""Tests of sentiment/data/embeddings.py: reading word2vec / GloVe text vectors into Wemb."""
import gzip

import numpy as np
import pytest

from sentiment.data import embeddings
from sentiment.common.errors import DataError

DIM = 3
# n_words = 6: ids 2..5 are wanted; "beyond" (id 6) is outside the vocabulary.
WORDS = {"the": 2, "movie": 3, "good": 4, "rare": 5, "beyond": 6}
N_WORDS = 6

VECTORS = [("the", [0.1, 0.2, 0.3]),
           ("movie", [1.0, -2.0, 3.5]),
           ("unused", [9.0, 9.0, 9.0]),
           ("good", [-0.5, 0.25, 1e-3]),
           ("beyond", [7.0, 7.0, 7.0])]


def lines_of(pairs):
    return [word + " " + " ".join(repr(v) for v in values) for word, values in pairs]


def write(tmp_path, lines, fmt="glove", zipped=False, name="vecs.txt", dim=DIM):
    """Write `lines` (str, or bytes for raw content) to tmp_path/name."""
    if isinstance(lines, bytes):
        data = lines
    else:
        if fmt == "word2vec":
            lines = ["%d %d" % (len(lines), dim)] + lines
        data = "".join(line + "\n" for line in lines).encode("utf-8")
    if zipped:
        data = gzip.compress(data)
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def load(path, words=WORDS, n_words=N_WORDS, dim=DIM):
    return embeddings.load_vectors(path, words, n_words, dim)


def error_of(path, **kwargs):
    """Load `path`, expecting a one-line DataError that starts with the file's name."""
    with pytest.raises(DataError) as caught:
        load(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(path + ": ")
    return message[len(path) + 2:]


@pytest.mark.parametrize("zipped", [False, True])
@pytest.mark.parametrize("fmt", ["word2vec", "glove"])
def test_formats(tmp_path, fmt, zipped):
    # gzip is recognised by its magic bytes: the names say nothing.
    path = write(tmp_path, lines_of(VECTORS), fmt, zipped, name="vecs.%s" % fmt)
    ids, vectors, info = load(path)
    assert ids.dtype == np.int64 and vectors.dtype == np.float32
    assert ids.tolist() == [2, 3, 4]  # "rare" is missing, "beyond" is id 6 >= n_words
    expected = dict(VECTORS)
    np.testing.assert_array_equal(
        vectors, np.array([expected[w] for w in ("the", "movie", "good")], np.float32))
    assert info == dict(found=3, wanted=4, coverage=0.75, file_words=5, dim=DIM, format=fmt)


def test_plain_file_named_gz(tmp_path):
    path = write(tmp_path, lines_of(VECTORS), name="vecs.txt.gz")
    assert load(path)[2]["found"] == 3


def test_coverage_counts_only_wanted_ids(tmp_path):
    words = {"<pad>": 0, "<unk>": 1, "the": 2, "a": 3, "b": 4, "c": 5, "d": 6, "far": 50}
    path = write(tmp_path, lines_of([("far", [1, 1, 1]), ("the", [1, 2, 3]), ("c", [4, 5, 6])]))
    ids, vectors, info = load(path, words=words, n_words=7)
    assert ids.tolist() == [2, 5]
    assert (info["found"], info["wanted"], info["file_words"]) == (2, 5, 3)
    assert info["coverage"] == 2 / 5


def test_nothing_wanted(tmp_path):
    path = write(tmp_path, lines_of(VECTORS))
    ids, vectors, info = load(path, n_words=2)
    assert ids.shape == (0,) and vectors.shape == (0, DIM) and vectors.dtype == np.float32
    assert (info["found"], info["wanted"], info["coverage"]) == (0, 0, 0.0)


@pytest.mark.parametrize("exact_first", [True, False])
def test_exact_match_wins_over_case_fallback(tmp_path, exact_first):
    pairs = [("The", [9, 9, 9]), ("the", [1, 2, 3])]
    path = write(tmp_path, lines_of(pairs[::-1] if exact_first else pairs))
    ids, vectors, _ = load(path)
    assert ids.tolist() == [2]
    assert vectors[0].tolist() == [1, 2, 3]


def test_case_fallback_when_no_exact_match(tmp_path):
    path = write(tmp_path, lines_of([("MOVIE", [4, 5, 6]), ("The", [1, 2, 3]),
                                     ("THE", [7, 8, 9]), ("Movie", [0, 0, 0])]))
    ids, vectors, info = load(path)
    assert ids.tolist() == [2, 3]
    assert vectors.tolist() == [[1, 2, 3], [4, 5, 6]]  # the first fallback of each wins
    assert info["found"] == 2


def test_duplicates_first_wins(tmp_path):
    path = write(tmp_path, lines_of([("good", [1, 2, 3]), ("good", [4, 5, 6]),
                                     ("good", [7, 8, 9])]))
    ids, vectors, info = load(path)
    assert ids.tolist() == [4] and vectors.tolist() == [[1, 2, 3]]
    assert info["file_words"] == 3


@pytest.mark.parametrize("zipped", [False, True])
def test_words_with_spaces(tmp_path, zipped):
    # GloVe 840B has words like "at name@domain.com" and words with no-break spaces.
    words = {"at name@domain.com": 2, "a\xa0b": 3, ". . .": 4, "good": 5}
    path = write(tmp_path, ["at name@domain.com 1 2 3", "a\xa0b\t4 5 6", ". . . 7 8 9",
                            "x y z 0 0 0", "good 1.5 2.5 3.5"], zipped=zipped)
    ids, vectors, info = load(path, words=words)
    assert ids.tolist() == [2, 3, 4, 5]
    assert vectors.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [1.5, 2.5, 3.5]]
    assert info["file_words"] == 5


def test_blank_lines_crlf_tabs_and_bom(tmp_path):
    data = "\ufeff\r\nthe\t1 2 3 \r\n\r\n  \nmovie  4\t5 6\r\n\n".encode("utf-8")
    ids, vectors, info = load(write(tmp_path, data))
    assert ids.tolist() == [2, 3] and vectors.tolist() == [[1, 2, 3], [4, 5, 6]]
    assert (info["file_words"], info["format"]) == (2, "glove")


def test_header_only_counts_as_word2vec_with_numeric_words(tmp_path):
    # "2 3" is a header; "1 0 0 0" later is a vector for the word "1".
    path = write(tmp_path, "2 3\n1 0 0 0\nthe 1 2 3\n".encode())
    ids, _, info = load(path)
    assert info["format"] == "word2vec" and info["file_words"] == 2 and ids.tolist() == [2]


ERRORS = [
    ("header dim", "2 100\nthe " + "0 " * 100 + "\n", 128,
     "line 1 declares dimension 100, the model's embedding dimension is 128"
     " (use --dim-emb 100)"),
    ("first vector short", "the " + "0 " * 100 + "\nmovie " + "0 " * 100 + "\n", 128,
     "the vectors have dimension 100, the model's embedding dimension is 128"
     " (use --dim-emb 100)"),
    ("first vector long", "\n\nthe " + "0 " * 300 + "\n", 128,
     "the vectors have dimension 300, the model's embedding dimension is 128"
     " (use --dim-emb 300)"),
    ("first vector vs header", "2 3\nthe 1 2\n", 3,
     "line 2 has 2 values, expected 3 (the header declares 3)"),
    ("ragged short", "the 1 2 3\nx 1 2 3\n\nmovie 1 2\n", 3,
     "line 4 has 2 values, expected 3 (the file's first vector has 3)"),
    ("ragged one value", "the 1 2 3\nmovie 1\n", 3,
     "line 2 has 1 value, expected 3 (the file's first vector has 3)"),
    ("ragged long", "the 1 2 3\nmovie 1 2 3 4\n", 3,
     "line 2 has 4 values, expected 3 (the file's first vector has 3)"),
    ("ragged unused word", "the 1 2 3\nunused 1 2\n", 3,
     "line 2 has 2 values, expected 3 (the file's first vector has 3)"),
    ("word2vec ragged", "3 3\nthe 1 2 3\nmovie 1 2 3\ngood 1 2 3 4 5\n", 3,
     "line 4 has 5 values, expected 3 (the file's first vector has 3)"),
    ("not a number", "the 1 2 3\nx 1 2 3\nmovie 1 abc 3\n", 3, "line 3: 'abc' is not a number"),
    ("nan", "the 1 2 3\ngood 1 nan 3\n", 3, "line 2: 'nan' is not a finite number"),
    ("inf", "the -inf 2 3\n", 3, "line 1: '-inf' is not a finite number"),
    ("float32 overflow", "the 1 2 1e39\n", 3, "line 1: '1e39' is not a finite number"),
    ("fallback word checked", "The 1 x 3\n", 3, "line 1: 'x' is not a number"),
    ("long field clipped", "the 1 2 " + "z" * 500 + "\n", 3,
     "line 1: '" + "z" * 35 + "...' is not a number"),
    ("empty", "", 3, "empty file"),
    ("blank lines only", "\n \n\t\n", 3, "empty file"),
    ("header only", "0 3\n", 3, "no vectors after the header"),
]


@pytest.mark.parametrize("zipped", [False, True])
@pytest.mark.parametrize("content, dim, expected",
                         [case[1:] for case in ERRORS], ids=[case[0] for case in ERRORS])
def test_errors(tmp_path, content, dim, expected, zipped):
    path = write(tmp_path, content.encode(), zipped=zipped)
    assert error_of(path, dim=dim) == expected


@pytest.mark.parametrize("zipped", [False, True])
def test_not_utf8(tmp_path, zipped):
    data = b"the 1 2 3\n\nmovie 1 2 3\ncaf\xe9 1 2 3\n"
    path = write(tmp_path, data, zipped=zipped)
    assert error_of(path) == "not UTF-8 text (line 4)"


def test_missing_file(tmp_path):
    path = str(tmp_path / "vecs.txt")
    assert error_of(path) == "no such embeddings file"


def test_directory(tmp_path):
    assert error_of(str(tmp_path)).startswith("cannot read")


def bad_crc(data):
    damaged = bytearray(data)
    damaged[-8] ^= 0xFF  # the CRC-32 of the trailer
    return bytes(damaged)


@pytest.mark.parametrize("damage", [lambda d: d[:len(d) // 2], lambda d: d[:-4], bad_crc,
                                    lambda d: d[:2]],
                         ids=["half", "no size", "bad crc", "magic only"])
def test_corrupt_gzip(tmp_path, damage):
    rng = np.random.default_rng(0)
    text = "".join("w%d %s\n" % (i, " ".join("%.6f" % v for v in rng.random(DIM)))
                   for i in range(2000))
    path = write(tmp_path, damage(gzip.compress(text.encode())))
    assert "corrupt or truncated gzip file" in error_of(path)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_apply_vectors(dtype):
    rng = np.random.default_rng(1)
    Wemb = rng.random((6, DIM)).astype(dtype)
    before = Wemb.copy()
    ids = np.array([2, 5], dtype=np.int64)
    vectors = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
    out = embeddings.apply_vectors(Wemb, ids, vectors)
    assert out.dtype == dtype and out.shape == Wemb.shape
    np.testing.assert_array_equal(Wemb, before)  # the input is left alone
    np.testing.assert_array_equal(out[ids], vectors)
    others = [0, 1, 3, 4]
    np.testing.assert_array_equal(out[others], before[others])


def test_apply_loaded_vectors(tmp_path):
    ids, vectors, _ = load(write(tmp_path, lines_of(VECTORS), "word2vec"))
    out = embeddings.apply_vectors(np.zeros((N_WORDS, DIM)), ids, vectors)
    np.testing.assert_allclose(out[3], [1.0, -2.0, 3.5])
    assert not out[[0, 1, 5]].any()


@pytest.mark.parametrize("ids, vectors", [([2], np.ones((2, DIM))), ([2], np.ones((1, 4))),
                                          ([6], np.ones((1, DIM))), ([-1], np.ones((1, DIM)))])
def test_apply_vectors_rejects_bad_shapes(ids, vectors):
    with pytest.raises(ValueError, match="apply_vectors"):
        embeddings.apply_vectors(np.zeros((6, DIM)), ids, vectors)


def test_describe(tmp_path):
    path = write(tmp_path, lines_of(VECTORS), "word2vec", name="vecs.vec")
    line = embeddings.describe(load(path)[2], path)
    assert line == "embeddings %s (word2vec): 3 of 4 words found (75.0%%)" % path
    info = dict(format="glove", found=8123, wanted=9998, coverage=8123 / 9998)
    assert embeddings.describe(info, "vecs.vec") == (
        "embeddings vecs.vec (glove): 8,123 of 9,998 words found (81.2%)")
