"""Tests of imdb.py: minibatches, safe loading, splitting."""

import copyreg
import gzip
import os
import pickle
import sys

import numpy
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import imdb  # noqa: E402
from conftest import assert_one_line_naming, write_pickles  # noqa: E402
from sentiment.common.errors import DataError  # noqa: E402


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def write_bytes(path, data):
    """Write raw bytes to `path` (gzip-compressed if it ends in .gz)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as stream:
        stream.write(data)
    return str(path)


def make_split(rng, n, min_len=1, max_len=20, vocab=50, first_id=0):
    """`n` distinct reviews; review i starts with word id first_id + i.

    The label is a function of the review (its first word id, mod 2) so
    that tests can check that labels travel with their reviews.
    """
    x = []
    for i in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        rest = rng.integers(0, vocab, size=length - 1).tolist()
        x.append([first_id + i] + rest)
    y = [review[0] % 2 for review in x]
    return x, y


@pytest.fixture
def corpus(tmp_path):
    """A small dataset file: 200 training and 50 test reviews."""
    rng = numpy.random.default_rng(0)
    train = make_split(rng, 200, max_len=30, vocab=40, first_id=2)
    test = make_split(rng, 50, max_len=40, vocab=40, first_id=1000)
    path = write_pickles(tmp_path / "imdb.pkl", [train, test])
    return path, train, test


def reference_prepare_data(seqs, labels, maxlen=None, dtype="float64"):
    """The original loop, kept as the reference."""
    lengths = [len(s) for s in seqs]
    if maxlen is not None:
        kept = [i for i, n in enumerate(lengths) if n < maxlen]
        seqs = [seqs[i] for i in kept]
        labels = [labels[i] for i in kept]
        lengths = [lengths[i] for i in kept]
        if not lengths:
            return None, None, None
    n_samples = len(seqs)
    longest = numpy.max(lengths)
    x = numpy.zeros((longest, n_samples)).astype("int64")
    x_mask = numpy.zeros((longest, n_samples)).astype(dtype)
    for idx, s in enumerate(seqs):
        x[:lengths[idx], idx] = s
        x_mask[:lengths[idx], idx] = 1.
    return x, x_mask, labels


# ---------------------------------------------------------------------------
# prepare_data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("lengths", [[3], [1, 5, 2], [4, 4, 4], [0, 2, 7, 1],
                                     list(range(1, 30))])
@pytest.mark.parametrize("maxlen", [None, 1, 3, 5, 100])
def test_prepare_data_matches_reference_loop(lengths, maxlen):
    rng = numpy.random.default_rng(len(lengths))
    seqs = [rng.integers(1, 1000, size=n).tolist() for n in lengths]
    labels = [i % 2 for i in range(len(seqs))]
    got = imdb.prepare_data(seqs, labels, maxlen=maxlen, dtype="float64")
    want = reference_prepare_data(seqs, labels, maxlen=maxlen)
    if want[0] is None:
        assert got == (None, None, None)
        return
    numpy.testing.assert_array_equal(got[0], want[0])
    numpy.testing.assert_array_equal(got[1], want[1])
    assert got[2] == want[2]
    assert got[0].dtype == numpy.int64
    assert got[0].flags.c_contiguous


def test_prepare_data_shapes_padding_and_mask():
    seqs = [[5, 6, 7], [8], [9, 10]]
    x, mask, y = imdb.prepare_data(seqs, [1, 0, 1], dtype="float32")
    assert x.shape == mask.shape == (3, 3)  # (maxlen, n_samples)
    assert x.dtype == numpy.int64 and mask.dtype == numpy.float32
    numpy.testing.assert_array_equal(x, [[5, 8, 9], [6, 0, 10], [7, 0, 0]])
    numpy.testing.assert_array_equal(mask, [[1, 1, 1], [1, 0, 1], [1, 0, 0]])
    assert y == [1, 0, 1]


def test_prepare_data_mask_defaults_to_floatx():
    import pytensor
    x, mask, _ = imdb.prepare_data([[1, 2], [3]], [0, 1])
    assert mask.dtype == numpy.dtype(pytensor.config.floatX)
    assert x.dtype == numpy.int64


def test_prepare_data_accepts_numpy_reviews():
    seqs = [numpy.array([3, 4], dtype="int32"), numpy.array([5])]
    x, _, _ = imdb.prepare_data(seqs, [0, 1], dtype="float64")
    numpy.testing.assert_array_equal(x, [[3, 5], [4, 0]])


def test_prepare_data_maxlen_is_strict_and_filters_labels():
    seqs = [[1] * 4, [2] * 5, [3] * 6, [4] * 2]
    x, mask, y = imdb.prepare_data(seqs, ["a", "b", "c", "d"], maxlen=5,
                                   dtype="float64")
    assert y == ["a", "d"]  # length 5 is not < 5
    numpy.testing.assert_array_equal(x[:, 0], [1, 1, 1, 1])
    numpy.testing.assert_array_equal(x[:, 1], [4, 4, 0, 0])
    assert x.shape == (4, 2)
    assert mask.sum() == 6


def test_prepare_data_nothing_left_gives_none_triple():
    assert imdb.prepare_data([[1, 2, 3], [4, 5]], [0, 1], maxlen=2) == \
        (None, None, None)


def test_prepare_data_without_maxlen_returns_labels_as_given():
    labels = [0, 1]
    assert imdb.prepare_data([[1], [2]], labels, dtype="float64")[2] is labels


@pytest.mark.parametrize("seqs, labels", [([], []), ([[1]], [0, 1])])
def test_prepare_data_bad_arguments(seqs, labels):
    with pytest.raises(ValueError):
        imdb.prepare_data(seqs, labels, dtype="float64")


# ---------------------------------------------------------------------------
# load_data
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("n, valid_portion", [(200, 0.1), (200, 0.05),
                                              (7, 0.5), (10, 0.25),
                                              (11, 0.15), (5, 0.0)])
def test_load_data_split_sizes(tmp_path, n, valid_portion):
    rng = numpy.random.default_rng(1)
    train = make_split(rng, n, first_id=2)
    test = make_split(rng, 3, first_id=500)
    path = write_pickles(tmp_path / "imdb.pkl", [train, test])
    tr, va, te = imdb.load_data(path, valid_portion=valid_portion)
    n_train = int(round(n * (1. - valid_portion)))
    assert len(tr[0]) == len(tr[1]) == n_train
    assert len(va[0]) == len(va[1]) == n - n_train
    assert len(te[0]) == len(te[1]) == 3


def test_load_data_valid_and_train_partition_the_filtered_train(corpus):
    path, train, _ = corpus
    maxlen = 20
    tr, va, _ = imdb.load_data(path, maxlen=maxlen, valid_portion=0.2)
    filtered = [tuple(r) for r in train[0] if len(r) < maxlen]
    got_train = [tuple(r) for r in tr[0]]
    got_valid = [tuple(r) for r in va[0]]
    assert not set(got_train) & set(got_valid)
    assert sorted(got_train + got_valid) == sorted(filtered)
    assert len(filtered) < len(train[0])  # the filter did something


def test_load_data_labels_travel_with_reviews(corpus):
    path, _, _ = corpus
    for x, y in imdb.load_data(path, maxlen=25):
        assert y == [review[0] % 2 for review in x]
        assert all(type(label) is int for label in y)


def test_load_data_maxlen_filters_train_only(corpus):
    path, train, test = corpus
    maxlen = 10
    tr, va, te = imdb.load_data(path, maxlen=maxlen)
    assert all(len(r) < maxlen for r in tr[0] + va[0])
    assert len(te[0]) == len(test[0])
    assert any(len(r) >= maxlen for r in te[0])
    assert sorted(map(tuple, te[0])) == sorted(map(tuple, test[0]))


@pytest.mark.parametrize("maxlen", [None, 0])
def test_load_data_no_maxlen_keeps_everything(corpus, maxlen):
    path, train, _ = corpus
    tr, va, _ = imdb.load_data(path, maxlen=maxlen)
    assert len(tr[0]) + len(va[0]) == len(train[0])


def test_load_data_remove_unk(tmp_path):
    train = ([[2, 3, 9, 10, 11], [0, 1, 12]], [0, 1])
    test = ([[9, 10, 100000]], [1])
    path = write_pickles(tmp_path / "imdb.pkl", [train, test])
    tr, va, te = imdb.load_data(path, n_words=10, valid_portion=0.0)
    assert sorted(tr[0]) == [[0, 1, 1], [2, 3, 9, 1, 1]]
    assert va == ([], [])
    assert te[0] == [[9, 1, 1]]
    # The file's data is left as it was.
    assert imdb.load_dataset_file(path)[1][0] == [[9, 10, 100000]]


def test_remove_unk_returns_new_lists():
    reviews = [[2, 3], [9, 10, 11], [], (4, 12)]
    out = imdb.remove_unk(reviews, 10)
    assert out == [[2, 3], [9, 1, 1], [], [4, 1]]
    assert all(type(r) is list for r in out)
    assert out[0] is not reviews[0]
    assert reviews == [[2, 3], [9, 10, 11], [], (4, 12)]


def test_load_data_sort_by_len_is_a_stable_sort_of_the_shuffled_order(corpus):
    path, _, test = corpus
    unsorted = imdb.load_data(path, sort_by_len=False, seed=5)
    ordered = imdb.load_data(path, sort_by_len=True, seed=5)
    for (ux, uy), (sx, sy) in zip(unsorted, ordered):
        order = sorted(range(len(ux)), key=lambda i: len(ux[i]))
        assert sx == [ux[i] for i in order]
        assert sy == [uy[i] for i in order]
        lengths = [len(r) for r in sx]
        assert lengths == sorted(lengths)
    # Reviews of equal length keep the file's order in the test set.
    assert unsorted[2][0] == test[0]


def test_load_data_without_sorting_keeps_the_permutation_order(corpus):
    path, train, _ = corpus
    seed = 42
    tr, va, _ = imdb.load_data(path, sort_by_len=False, seed=seed,
                               valid_portion=0.1)
    n = len(train[0])
    sidx = numpy.random.default_rng(seed).permutation(n)
    n_train = int(numpy.round(n * 0.9))
    assert tr[0] == [train[0][i] for i in sidx[:n_train]]
    assert va[0] == [train[0][i] for i in sidx[n_train:]]
    assert tr[1] == [train[1][i] for i in sidx[:n_train]]


def test_load_data_seed(corpus):
    path, _, _ = corpus
    first = imdb.load_data(path, seed=7)
    assert imdb.load_data(path, seed=7) == first
    assert imdb.load_data(path, seed=numpy.random.default_rng(7)) == first
    other = imdb.load_data(path, seed=8)
    assert sorted(map(tuple, other[1][0])) != sorted(map(tuple, first[1][0]))
    assert other[2] == first[2]  # the test set does not depend on the seed


def test_load_data_does_not_touch_the_global_rng(corpus):
    path, _, _ = corpus
    numpy.random.seed(3)
    before = numpy.random.get_state()[1].copy()
    imdb.load_data(path)
    numpy.testing.assert_array_equal(numpy.random.get_state()[1], before)


def test_load_data_empty_after_maxlen(corpus):
    path, _, _ = corpus
    with pytest.raises(DataError) as err:
        imdb.load_data(path, maxlen=1)
    message = assert_one_line_naming(err, path)
    assert "no training review is shorter than maxlen=1" in message


def test_load_data_valid_portion_leaving_no_train(corpus):
    path, _, _ = corpus
    with pytest.raises(DataError) as err:
        imdb.load_data(path, valid_portion=1.0)
    assert "valid_portion" in assert_one_line_naming(err, path)


@pytest.mark.parametrize("kwargs", [{"valid_portion": -0.1},
                                    {"valid_portion": 1.5},
                                    {"n_words": 1}])
def test_load_data_bad_arguments(corpus, kwargs):
    with pytest.raises(ValueError):
        imdb.load_data(corpus[0], **kwargs)


def test_load_data_missing_file(tmp_path):
    path = tmp_path / "nothing.pkl"
    with pytest.raises(DataError) as err:
        imdb.load_data(path)
    assert "no such file" in assert_one_line_naming(err, path)


# ---------------------------------------------------------------------------
# Reading dataset files
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["imdb.pkl", "imdb.pkl.gz"])
@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_dataset_file_formats(tmp_path, name, protocol):
    train = ([[2, 3, 4], [5], (6, 7)], [0, 1, 1])
    test = ([[8, 2 ** 40]], [0])
    path = write_pickles(tmp_path / name, [train, test], protocol=protocol)
    got_train, got_test = imdb.load_dataset_file(path)
    assert got_train == ([[2, 3, 4], [5], [6, 7]], [0, 1, 1])
    assert got_test == ([[8, 2 ** 40]], [0])


def test_dataset_file_accepts_a_pathlike(tmp_path):
    path = tmp_path / "imdb.pkl"
    write_pickles(path, [([[2]], [0]), ([[3]], [1])])
    assert imdb.load_dataset_file(path)[1] == ([[3]], [1])


# Python 2 `cPickle.dumps(([[2, 3]], [1L]), 0)`: text opcodes, a long.
PY2_PROTOCOL0_SPLIT = b"((lp0\n(lp1\nI2\naI3\naa(lp2\nL1L\natp3\n."
# Python 2 `cPickle.dumps(([[2, 300, 70000], [5]], [0, 1L]), 1)`.
PY2_PROTOCOL1_SPLIT = (b"((]q\x00(]q\x01(K\x02M,\x01J\x70\x11\x01\x00e]q\x02"
                       b"K\x05ae]q\x03(K\x00\x8a\x01\x01etq\x04.")


def test_python2_dataset_file_loads(tmp_path):
    path = write_bytes(tmp_path / "imdb.pkl",
                       PY2_PROTOCOL1_SPLIT + PY2_PROTOCOL0_SPLIT)
    train, test = imdb.load_dataset_file(path)
    assert train == ([[2, 300, 70000], [5]], [0, 1])
    assert test == ([[2, 3]], [1])


def test_dataset_file_with_extra_data_after_two_pickles(tmp_path):
    path = write_pickles(tmp_path / "imdb.pkl",
                         [([[2]], [0]), ([[3]], [1]), "whatever"])
    assert imdb.load_dataset_file(path) == (([[2]], [0]), ([[3]], [1]))


def test_load_pickles_reads_in_sequence(tmp_path):
    path = write_pickles(tmp_path / "many.pkl", [1, [2], {"a": 3}, "b"])
    assert imdb.load_pickles(path, 3) == [1, [2], {"a": 3}]


def test_shared_and_recursive_containers_load(tmp_path):
    shared = [b"x", 1]
    loop = [b"y"]
    loop.append(loop)
    # Protocol 3 or above: protocol 2 pickles Python 3 bytes with a global.
    path = write_pickles(tmp_path / "x.pkl", [[shared, shared, loop]],
                         protocol=3)
    (got,) = imdb.load_pickles(path, 1)
    assert got[0] == ["x", 1] and got[0] is got[1]
    assert got[2][0] == "y" and got[2][1] is got[2]


# ---------------------------------------------------------------------------
# Malicious pickles
# ---------------------------------------------------------------------------


def malicious_payloads(marker):
    """(name, pickle bytes) pairs that would create `marker` if run."""
    command = f"touch {marker}".encode()
    code = f"open({str(marker)!r}, 'w').close()".encode()

    class Reduce:
        def __reduce__(self):
            return os.system, (command.decode(),)

    return [
        ("global-reduce", b"cos\nsystem\n(V" + command + b"\ntR."),
        ("builtins-eval", b"cbuiltins\neval\n(V" + code + b"\ntR."),
        ("builtin-exec-py2-name", b"c__builtin__\nexec\n(V" + code + b"\ntR."),
        ("stack-global", pickle.dumps(Reduce(), protocol=4)),
        ("inst", b"(V" + command + b"\nios\nsystem\n."),
        ("obj", b"(cos\nsystem\nV" + command + b"\no."),
        ("newobj", b"\x80\x02cos\nsystem\n)\x81."),
        ("stack-global-weird-name",
         b"\x80\x04\x8c\x02os\x8c\x08sys\ntem\n\x93."),
        ("persistent-id", b"Pfoo\n."),
        ("binpersid", b"\x80\x02X\x03\x00\x00\x00fooQ."),
        ("global-in-list", b"\x80\x02]q\x00(K\x01cos\nsystem\nq\x01e."),
    ]


@pytest.mark.parametrize("name", ["evil.pkl", "evil.pkl.gz"])
@pytest.mark.parametrize("index", range(11))
def test_malicious_pickles_are_refused(tmp_path, name, index):
    marker = tmp_path / "pwned"
    label, payload = malicious_payloads(marker)[index]
    path = write_bytes(tmp_path / name, payload)
    with pytest.raises(DataError) as err:
        imdb.load_pickles(path, 1)
    message = assert_one_line_naming(err, path)
    assert "refused to unpickle" in message, label
    assert not marker.exists(), label


def test_malicious_second_pickle_of_a_dataset_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    payload = dict(malicious_payloads(marker))["global-reduce"]
    path = str(tmp_path / "imdb.pkl")
    write_pickles(path, [([[2]], [0])])
    with open(path, "ab") as stream:
        stream.write(payload)
    with pytest.raises(DataError) as err:
        imdb.load_dataset_file(path)
    assert "refused to unpickle os.system" in assert_one_line_naming(err, path)
    assert not marker.exists()


def test_registered_extension_code_is_refused(tmp_path):
    code = 0xBEEF
    copyreg.add_extension("os", "system", code)
    try:
        path = write_bytes(tmp_path / "ext.pkl",
                           b"\x80\x02\x83\xef\xbe(Vtrue\ntR.")
        with pytest.raises(DataError) as err:
            imdb.load_pickles(path, 1)
    finally:
        copyreg.remove_extension("os", "system", code)
    assert "refused to unpickle os.system" in assert_one_line_naming(err, path)


def test_restricted_unpickler_refuses_globals_directly():
    import io
    unpickler = imdb.RestrictedUnpickler(io.BytesIO(b"cos\ngetcwd\n."),
                                         path="inline")
    with pytest.raises(DataError,
                       match="inline: refused to unpickle os.getcwd"):
        unpickler.load()


# ---------------------------------------------------------------------------
# Broken files
# ---------------------------------------------------------------------------


def good_dataset_bytes():
    return (pickle.dumps(([[2, 3, 4], [5, 6]], [0, 1]), protocol=2)
            + pickle.dumps(([[7, 8]], [1]), protocol=2))


def broken_files():
    good = good_dataset_bytes()
    first = pickle.dumps(([[2, 3, 4], [5, 6]], [0, 1]), protocol=2)
    deep = b"\x80\x02" + b"]" * 200000 + b"a" * 199999 + b"."
    return {
        "truncated": ("imdb.pkl", good[:len(good) - 5], "truncated"),
        "truncated-in-first": ("imdb.pkl", good[:10], "truncated"),
        "garbage": ("imdb.pkl", b"this is not a pickle at all\n\x00\xff",
                    "corrupt"),
        "empty": ("imdb.pkl", b"", "found 0 (empty file)"),
        "one-pickle": ("imdb.pkl", first,
                       "expected 2 pickles (train then test), found 1"),
        "empty-gz": ("imdb.pkl.gz", gzip.compress(b""), "found 0"),
        "not-gzip": ("imdb.pkl.gz", good, "not a valid gzip file"),
        "truncated-gzip": ("imdb.pkl.gz", gzip.compress(good)[:-12],
                           "truncated"),
        "gzip-named-pkl": ("imdb.pkl", gzip.compress(good),
                           "name does not end in .gz"),
        "bad-memo": ("imdb.pkl", b"\x80\x02h\x05.", "corrupt"),
        "deeply-nested": ("imdb.pkl", deep + deep, "expected a pair"),
        "huge-length": ("imdb.pkl",
                        b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f.",
                        "imdb.pkl"),
    }


@pytest.mark.parametrize("case", sorted(broken_files()))
def test_broken_files(tmp_path, case):
    name, data, expected = broken_files()[case]
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError) as err:
        imdb.load_dataset_file(path)
    assert expected in assert_one_line_naming(err, path)


def test_deeply_nested_pickle(tmp_path):
    path = write_bytes(tmp_path / "imdb.dict.pkl",
                       b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b".")
    with pytest.raises(DataError) as err:
        imdb.load_dict(path)
    assert "nested too deeply" in assert_one_line_naming(err, path)


def test_corrupt_gzip_data(tmp_path):
    data = bytearray(gzip.compress(good_dataset_bytes() * 50))
    for i in range(20, len(data) - 20, 7):
        data[i] ^= 0x5A
    path = tmp_path / "imdb.pkl.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError) as err:
        imdb.load_dataset_file(path)
    assert_one_line_naming(err, path)


def test_missing_file_and_folder(tmp_path):
    for path, expected in [(tmp_path / "missing.pkl", "no such file"),
                           (tmp_path / "missing.pkl.gz", "no such file"),
                           (tmp_path, "folder")]:
        with pytest.raises(DataError) as err:
            imdb.load_dataset_file(path)
        assert expected in assert_one_line_naming(err, path)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root can read anything")
def test_unreadable_file(tmp_path):
    path = tmp_path / "imdb.pkl"
    path.write_bytes(good_dataset_bytes())
    path.chmod(0)
    with pytest.raises(DataError) as err:
        imdb.load_dataset_file(path)
    assert "cannot read" in assert_one_line_naming(err, path)


def test_fuzzed_files_only_raise_data_error(tmp_path):
    """Random damage to a valid file either loads or raises a DataError."""
    rng = numpy.random.default_rng(2024)
    good = good_dataset_bytes()
    path = tmp_path / "imdb.pkl"
    for _ in range(400):
        data = bytearray(good)
        if rng.random() < 0.3:
            data = data[:int(rng.integers(0, len(data)))]
        for _ in range(int(rng.integers(1, 4))):
            if data:
                data[int(rng.integers(0, len(data)))] = int(
                    rng.integers(0, 256))
        path.write_bytes(bytes(data))
        try:
            imdb.load_dataset_file(path)
        except DataError as err:
            assert "\n" not in str(err) and str(path) in str(err)


BAD_STRUCTURES = {
    "not-a-pair": (["train"], "train: expected a pair (reviews, labels)"),
    "triple": (([[2]], [0], [1]), "got a tuple of 3"),
    "dict": ({"x": [[2]], "y": [0]}, "got a dict"),
    "x-not-list": (("abc", [0, 1, 2]), "train: x should be a list"),
    "y-not-list": (([[2]], 0), "train: y should be a list"),
    "length-mismatch": (([[2], [3]], [0]),
                        "train: x has 2 reviews but y has 1 label"),
    "review-not-list": (([[2], "ab"], [0, 1]),
                        "train review 1 is a str, expected a list"),
    "review-int": (([[2], 5], [0, 1]), "train review 1 is an int"),
    "negative-word": (([[2], [4, -3]], [0, 1]),
                      "train review 1 has a negative word id -3"),
    "bool-word": (([[True]], [0]),
                  "train review 0 has a bool word id at position 0"),
    "float-word": (([[2, 2.0]], [0]), "has a float word id at position 1"),
    "str-word": (([[2, "w"]], [0]), "has a str word id"),
    "float-label": (([[2]], [1.0]), "train label 0 is a float"),
    "bool-label": (([[2]], [True]), "train label 0 is a bool"),
    "none-label": (([[2]], [None]), "train label 0 is a NoneType"),
    "negative-label": (([[2], [3]], [0, -1]), "train label 1 is negative"),
}


@pytest.mark.parametrize("case", sorted(BAD_STRUCTURES))
def test_wrong_structure(tmp_path, case):
    train, expected = BAD_STRUCTURES[case]
    path = write_pickles(tmp_path / "imdb.pkl", [train, ([[2]], [0])])
    with pytest.raises(DataError) as err:
        imdb.load_dataset_file(path)
    assert expected in assert_one_line_naming(err, path)


def test_wrong_structure_in_test_set(tmp_path):
    path = write_pickles(tmp_path / "imdb.pkl",
                         [([[2]], [0]), ([[2]] * 18 + [[5, -3]], [0] * 19)])
    with pytest.raises(DataError) as err:
        imdb.load_dataset_file(path)
    message = assert_one_line_naming(err, path)
    assert message == (f"{path}: test review 18 has a negative word id -3")


def test_length_mismatch_message(tmp_path):
    path = write_pickles(tmp_path / "imdb.pkl",
                         [([[2]] * 5, [0] * 4), ([[2]], [0])])
    with pytest.raises(DataError) as err:
        imdb.load_dataset_file(path)
    assert str(err.value) == \
        f"{path}: train: x has 5 reviews but y has 4 labels"


# ---------------------------------------------------------------------------
# load_dict
# ---------------------------------------------------------------------------

# Python 2 `cPickle.dumps({'the': 2, 'and': 3}, 2)`.
PY2_DICT = b"\x80\x02}q\x00(U\x03theq\x01K\x02U\x03andq\x02K\x03u."


@pytest.mark.parametrize("name", ["imdb.dict.pkl", "imdb.dict.pkl.gz"])
def test_load_dict_python3(tmp_path, name):
    words = {"the": 2, "and": 3, "café": 4}
    path = write_pickles(tmp_path / name, [words], protocol=4)
    assert imdb.load_dict(path) == words


@pytest.mark.parametrize("name", ["imdb.dict.pkl", "imdb.dict.pkl.gz"])
def test_load_dict_python2_byte_keys(tmp_path, name):
    path = write_bytes(tmp_path / name, PY2_DICT)
    words = imdb.load_dict(path)
    assert words == {"the": 2, "and": 3}
    assert all(type(word) is str for word in words)


def test_load_dict_python2_protocol0_utf8_latin1_and_long(tmp_path):
    data = (b"(dp0\nS'caf\\xc3\\xa9'\np1\nI2\nsS'na\\xefve'\np2\nL7L\n"
            b"sVthe\np3\nI3\ns.")
    path = write_bytes(tmp_path / "imdb.dict.pkl", data)
    assert imdb.load_dict(path) == {"café": 2, "naïve": 7, "the": 3}


BAD_DICTS = {
    "not-a-dict": ([("the", 2)],
                   "expected a dict from word to id, got a list"),
    "id-too-small": ({"the": 1},
                     "word the has id 1, expected an integer >= 2"),
    "id-bool": ({"the": True}, "word the has id True"),
    "id-str": ({"the": "2"}, "word the has id 2"),
    "key-int": ({5: 2}, "dictionary key 5 is an int"),
    "key-tuple": ({("a",): 2}, "is a tuple"),
}


@pytest.mark.parametrize("case", sorted(BAD_DICTS))
def test_load_dict_rejects(tmp_path, case):
    words, expected = BAD_DICTS[case]
    path = write_pickles(tmp_path / "imdb.dict.pkl.gz", [words])
    with pytest.raises(DataError) as err:
        imdb.load_dict(path)
    assert expected in assert_one_line_naming(err, path)


def test_load_dict_keys_colliding_after_decoding(tmp_path):
    path = write_pickles(tmp_path / "d.pkl", [{b"caf\xc3\xa9": 2,
                                               b"caf\xe9": 3}], protocol=3)
    with pytest.raises(DataError) as err:
        imdb.load_dict(path)
    assert "same string" in assert_one_line_naming(err, path)


def test_load_dict_missing(tmp_path):
    path = tmp_path / "imdb.dict.pkl.gz"
    with pytest.raises(DataError) as err:
        imdb.load_dict(path)
    assert "no such file" in assert_one_line_naming(err, path)


# ---------------------------------------------------------------------------
# dict_path_for
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dataset, expected", [
    ("data/imdb.pkl", "data/imdb.dict.pkl.gz"),
    ("foo.pkl.gz", "foo.dict.pkl.gz"),
    ("a/b/corpus.pkl", "a/b/corpus.dict.pkl.gz"),
    ("noext", "noext.dict.pkl.gz"),
])
def test_dict_path_for(dataset, expected):
    assert imdb.dict_path_for(dataset) == expected


def test_dict_path_for_prefers_existing_uncompressed(tmp_path):
    dataset = tmp_path / "imdb.pkl"
    plain = tmp_path / "imdb.dict.pkl"
    compressed = tmp_path / "imdb.dict.pkl.gz"
    plain.write_bytes(PY2_DICT)
    assert imdb.dict_path_for(dataset) == str(plain)
    compressed.write_bytes(gzip.compress(PY2_DICT))
    assert imdb.dict_path_for(dataset) == str(compressed)
    plain.unlink()
    assert imdb.dict_path_for(dataset) == str(compressed)


@pytest.mark.parametrize("dataset, expected", [
    ("data/imdb.pkl", "data/imdb.labels.json"),
    ("foo.pkl.gz", "foo.labels.json"),
    ("a/b/corpus.pkl", "a/b/corpus.labels.json"),
    ("noext", "noext.labels.json"),
])
def test_labels_path_for(dataset, expected):
    assert imdb.labels_path_for(dataset) == expected
    assert imdb.labels_path_for(os.path.join(".", dataset)) == os.path.join(".", expected)


def test_importing_imdb_does_not_import_pytensor():
    import subprocess
    code = ("import sys; sys.path.insert(0, %r); import imdb; "
            "print('pytensor' in sys.modules, "
            "'imdb_preprocess' in sys.modules)"
            % os.path.dirname(os.path.abspath(imdb.__file__)))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize("module", ["imdb", "imdb_preprocess", "sentiment.data.corpus",
                                    "sentiment.data.pickles", "sentiment.data.embeddings",
                                    "sentiment.data.moses"])
def test_importing_a_data_module_does_no_work(module):
    """No tokenizer built, no PyTensor, no model code, nothing read at import."""
    import subprocess
    code = ("import sys; sys.path.insert(0, %r); import %s; "
            "print(*(name in sys.modules for name in "
            "('pytensor', 'sacremoses', 'lstm')))"
            % (os.path.dirname(os.path.abspath(imdb.__file__)), module))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


@pytest.mark.parametrize("n, valid_portion, block", [(1000, 0.05, 100), (1000, 0.1, 30),
                                                     (997, 0.2, 50), (40, 0.5, 7)])
def test_load_data_valid_block_holds_out_runs_of_consecutive_reviews(tmp_path, n,
                                                                     valid_portion, block):
    # Review i is [i + 2, i + 2]: its position in the file can be read back.
    train = ([[i + 2, i + 2] for i in range(n)], [i % 2 for i in range(n)])
    path = write_pickles(tmp_path / "imdb.pkl", [train, ([[2]], [0])])
    tr, va, _ = imdb.load_data(path, n_words=n + 2, valid_portion=valid_portion,
                               valid_block=block, seed=4)
    valid = sorted(r[0] - 2 for r in va[0])
    n_train = int(round(n * (1. - valid_portion)))
    assert len(valid) == n - n_train and len(tr[0]) == n_train
    assert sorted(valid + [r[0] - 2 for r in tr[0]]) == list(range(n))
    # Whole blocks, except at most one cut short: few runs, all but one aligned.
    runs = numpy.split(valid, numpy.flatnonzero(numpy.diff(valid) != 1) + 1)
    blocks = {i // block for i in valid}
    partial = [b for b in blocks if sum(i // block == b for i in valid)
               < min(block, n - b * block)]
    assert len(partial) <= 1
    assert len(runs) <= len(blocks)
    # Another seed, other blocks; the same seed, the same split.
    again = imdb.load_data(path, n_words=n + 2, valid_portion=valid_portion,
                           valid_block=block, seed=4)[1]
    assert again == va
    other = imdb.load_data(path, n_words=n + 2, valid_portion=valid_portion,
                           valid_block=block, seed=5)[1]
    assert sorted(r[0] for r in other[0]) != sorted(r[0] for r in va[0])


def test_load_data_refuses_a_negative_valid_block(tmp_path):
    path = write_pickles(tmp_path / "imdb.pkl", [([[2]], [0]), ([[2]], [0])])
    with pytest.raises(ValueError, match="valid_block"):
        imdb.load_data(path, valid_block=-1)
