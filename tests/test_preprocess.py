"""Tests of imdb_preprocess.py (tokenizing, dictionary, building, CLI) and of the
raw-corpus readers of sentiment.data.corpus."""

import gzip
import json
import os
import pickle
import socket
import sys
import tarfile

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import imdb  # noqa: E402
import imdb_preprocess as prep  # noqa: E402
from sentiment.data import moses  # noqa: E402
from sentiment.data.corpus import (hold_out, label_ids, natural_key,  # noqa: E402
                              read_csv_corpus, read_folder_corpus, read_label_files)
from sentiment.common.errors import DataError  # noqa: E402
from sentiment.common.files import atomic_write  # noqa: E402

from conftest import (REAL_ARCHIVE,  # noqa: E402  (../shared/data beside the checkout)
                      assert_one_line_naming, write_pickles)

# Reviews of the tiny aclImdb-layout corpus: (split, label, file, text).
REVIEWS = [
    ("train", "pos", "10_8.txt", "A great film, great cast!"),
    ("train", "pos", "0_9.txt", "Great acting.<br /><br />I loved it."),
    ("train", "pos", "2_7.txt", "I don't know why, but it's great."),
    ("train", "neg", "3_2.txt", "A bad, bad film & a waste."),
    ("train", "neg", "1_1.txt", 'The "plot" was bad.'),
    ("test", "pos", "5_10.txt", "Great fun, superb!"),
    ("test", "neg", "4_3.txt", "Awful film; zzzunknown."),
]

# Files of the Stanford archive that are not labeled reviews.
EXTRAS = {
    "README": "The dataset's README.",
    "imdb.vocab": "the\nand\n",
    "train/unsup/7_0.txt": "Unlabeled review that must be ignored.",
    "train/labeledBow.feat": "0 0:1\n",
    "train/urls_pos.txt": "http://example.com/\n",
}


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def write_text(path, text, encoding="utf-8"):
    """Write `text` to `path`, creating folders, and return the path."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(text.encode(encoding))
    return str(path)


def make_acl_folder(root, reviews=REVIEWS, extras=EXTRAS):
    """Write an aclImdb-layout corpus under `root`/aclImdb; return it."""
    acl = os.path.join(str(root), "aclImdb")
    for split, label, name, text in reviews:
        write_text(os.path.join(acl, split, label, name), text)
    for name, text in extras.items():
        write_text(os.path.join(acl, name), text)
    return acl


def make_archive(folder, path):
    """Pack `folder` as a top-level member of the tar archive `path`."""
    with tarfile.open(path, "w:gz") as archive:
        archive.add(folder, arcname=os.path.basename(folder))
    return str(path)


def read_outputs(pkl_path, dict_path):
    """Load our own output files: (train, test, dictionary)."""
    with open(pkl_path, "rb") as stream:
        train = pickle.load(stream)
        test = pickle.load(stream)
        with pytest.raises(EOFError):
            pickle.load(stream)
    with gzip.open(dict_path, "rb") as stream:
        dictionary = pickle.load(stream)
    return train, test, dictionary


def file_bytes(*paths):
    """Contents of files, as a list of bytes."""
    result = []
    for path in paths:
        with open(path, "rb") as stream:
            result.append(stream.read())
    return result


def closed_port():
    """A localhost TCP port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def acl(tmp_path):
    """The tiny corpus as an aclImdb folder."""
    return make_acl_folder(tmp_path / "raw")


# ---------------------------------------------------------------------------
# tokenize
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, words", [
    ("Hello, world!", ["hello", ",", "world", "!"]),
    ("I don't know.", ["i", "don", "&apos;t", "know", "."]),
    ("It's fine", ["it", "&apos;s", "fine"]),
    ('Tom & Jerry "rocks"',
     ["tom", "&amp;", "jerry", "&quot;", "rocks", "&quot;"]),
    ("Great.<br />Really", ["great", ".", "&lt;", "br", "/", "&gt;",
                            "really"]),
    ("[a] | b", ["&#91;", "a", "&#93;", "&#124;", "b"]),
    ("A WELL-KNOWN film", ["a", "well-known", "film"]),
    ("3.5 stars, 1,000 fans", ["3.5", "stars", ",", "1,000", "fans"]),
    ("Wait... what?", ["wait", "...", "what", "?"]),
    ("CAFÉ Été", ["café", "été"]),
    ("First line.\nSecond LINE!", ["first", "line", ".", "second", "line",
                                  "!"]),
    ("One.\r\nTwo.\rThree", ["one", ".", "two", ".", "three"]),
    ("", []),
    ("  \n\t \n", []),
])
def test_tokenize(text, words):
    assert prep.tokenize(text) == words


def test_tokenize_reuses_one_tokenizer():
    prep.tokenize("warm up")
    built = moses._TOKENIZER
    prep.tokenize("again")
    assert built is not None and moses._TOKENIZER is built


@pytest.mark.parametrize("text", [
    "Mr. Smith met Dr. Who in the U.S.A. last Jan. and left.",
    "It ended. then it began. Again... and e.g. this: no. 5 vs. No. six.",
    "Étonnant. élégant. ÉTÉ. the end. ok.ok. a.b.c. x. 1. 2.",
    "Ñandú. ñu. Straße. σοφία. Σοφία. end.",
    "A sentence.<br /><br />another one. The END.",
])
def test_faster_tokenizer_matches_sacremoses(text):
    from sacremoses import MosesTokenizer
    stock = MosesTokenizer(lang="en").tokenize(text, escape=True)
    assert prep.tokenize(text) == " ".join(stock).lower().split()


def test_tokenize_multiline_is_concatenation_of_lines():
    lines = ["Good film.", "", "Bad ending, though!", "It's OK."]
    expected = [word for line in lines for word in prep.tokenize(line)]
    assert prep.tokenize("\n".join(lines)) == expected


# ---------------------------------------------------------------------------
# build_dict / encode
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("token_lists, expected", [
    ([["b", "a"], ["a", "c", "b"], ["a"]], {"a": 2, "b": 3, "c": 4}),
    ([["z", "y", "x"]], {"x": 2, "y": 3, "z": 4}),
    ([["a", "B"]], {"B": 2, "a": 3}),             # code points: "B" < "a"
    ([["é", "z", "e"]], {"e": 2, "z": 3, "é": 4}),
    ([["q", "q"], ["p"], ["r", "r"]], {"q": 2, "r": 3, "p": 4}),
    ([], {}),
])
def test_build_dict(token_lists, expected):
    dictionary = prep.build_dict(token_lists)
    assert dictionary == expected
    assert list(dictionary.values()) == sorted(dictionary.values())


def test_build_dict_counts_only_given_lists():
    train = [["good", "good", "film"], ["bad"]]
    dictionary = prep.build_dict(train)
    assert set(dictionary) == {"good", "film", "bad"}
    assert dictionary["good"] == 2


def test_build_dict_accepts_generator():
    assert prep.build_dict(line.split() for line in ["a b", "b"]) == {
        "b": 2, "a": 3}


def test_word_counts_totals():
    counts = prep.word_counts([["a", "b", "a"], [], ["c"]])
    assert sum(counts.values()) == 4 and len(counts) == 3
    assert prep.dict_from_counts(counts) == {"a": 2, "b": 3, "c": 4}


def test_encode_unknown_is_one():
    dictionary = {"good": 2, "film": 3}
    assert prep.encode([["good", "film", "zzz"], [], ["zzz"]],
                       dictionary) == [[2, 3, 1], [], [1]]


# ---------------------------------------------------------------------------
# aclImdb layout
# ---------------------------------------------------------------------------


def expected_dataset():
    """What the tiny corpus must give, computed from the public API."""
    def texts(split, label):
        found = [(natural_key(name), text)
                 for s, lab, name, text in REVIEWS
                 if (s, lab) == (split, label)]
        return [text for _, text in sorted(found)]

    train = texts("train", "pos") + texts("train", "neg")
    test = texts("test", "pos") + texts("test", "neg")
    dictionary = prep.build_dict(prep.tokenize(t) for t in train)
    encode = (lambda items:
              prep.encode([prep.tokenize(t) for t in items], dictionary))
    return ((encode(train), [1, 1, 1, 0, 0]), (encode(test), [1, 0]),
            dictionary)


@pytest.mark.parametrize("variant", ["acl", "parent", "tar.gz", "tgz"])
def test_build_dataset_acl_layout(tmp_path, acl, variant):
    source = {"acl": acl, "parent": os.path.dirname(acl),
              "tar.gz": make_archive(acl, tmp_path / "aclImdb_v1.tar.gz"),
              "tgz": make_archive(acl, tmp_path / "corpus.tgz")}[variant]
    out = tmp_path / "out" / "nested"
    pkl_path, dict_path = prep.build_dataset(source, out, workers=1,
                                             progress=False)
    assert pkl_path == str(out / "imdb.pkl")
    assert dict_path == str(out / "imdb.dict.pkl.gz")
    assert sorted(os.listdir(out)) == ["imdb.dict.pkl.gz", "imdb.pkl"]
    train, test, dictionary = read_outputs(pkl_path, dict_path)
    exp_train, exp_test, exp_dict = expected_dataset()
    assert train == exp_train and test == exp_test
    assert dictionary == exp_dict
    assert sorted(dictionary.values()) == list(range(2, len(dictionary) + 2))
    # counts: "." 5, "great" 4, then ",", "a", "bad" 3 each (code point order)
    assert [dictionary[w] for w in (".", "great", ",", "a", "bad")] == [
        2, 3, 4, 5, 6]
    assert "unlabeled" not in dictionary     # unsup/ ignored
    assert "zzzunknown" not in dictionary    # test words are not counted
    assert test[0][1][-2] == 1               # ... and encode as unknown
    assert train[1] == [1, 1, 1, 0, 0] and test[1] == [1, 0]


def test_output_is_python2_pickle_protocol(tmp_path, acl):
    pkl_path, dict_path = prep.build_dataset(acl, tmp_path, workers=1,
                                             progress=False)
    data, packed = file_bytes(pkl_path, dict_path)
    assert data[:2] == b"\x80\x02"
    assert gzip.decompress(packed)[:2] == b"\x80\x02"


def test_natural_file_order(tmp_path, acl):
    pkl_path, dict_path = prep.build_dataset(acl, tmp_path, workers=1,
                                             progress=False)
    (train_x, _), _, dictionary = read_outputs(pkl_path, dict_path)
    # train/pos in id order: 0_9, 2_7, 10_8
    assert train_x[0][0] == dictionary["great"]
    assert train_x[1][0] == dictionary["i"]
    assert train_x[2][:2] == [dictionary["a"], dictionary["great"]]


def test_summary_printed(tmp_path, acl, capsys):
    prep.build_dataset(acl, tmp_path, workers=1, progress=False, verbose=True)
    out = capsys.readouterr().out
    assert "train: 5 reviews (3 pos, 2 neg)" in out
    assert "test: 2 reviews (1 pos, 1 neg)" in out
    total = sum(len(prep.tokenize(text)) for split, _, _, text in REVIEWS
                if split == "train")
    unique = len(expected_dataset()[2])
    assert "%d total words %d unique words" % (total, unique) in out


def test_quiet_prints_nothing(tmp_path, acl, capsys):
    prep.build_dataset(acl, tmp_path, workers=1, progress=False)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_rerun_is_byte_identical(tmp_path, acl):
    archive = make_archive(acl, tmp_path / "a.tar.gz")
    first = prep.build_dataset(archive, tmp_path / "one", workers=1,
                               progress=False)
    second = prep.build_dataset(archive, tmp_path / "two", workers=1,
                                progress=False)
    folder = prep.build_dataset(acl, tmp_path / "three", workers=1,
                                progress=False)
    assert file_bytes(*first) == file_bytes(*second) == file_bytes(*folder)


def test_workers_give_identical_output(tmp_path):
    reviews = [("train" if i % 3 else "test", "pos" if i % 2 else "neg",
                "%d_%d.txt" % (i, 8 if i % 2 else 2),
                "Review number %d: it's %s!" % (i, "good" if i % 2 else "bad"))
               for i in range(60)]
    acl = make_acl_folder(tmp_path / "raw", reviews, {})
    one = prep.build_dataset(acl, tmp_path / "w1", workers=1, progress=False)
    two = prep.build_dataset(acl, tmp_path / "w2", workers=2, progress=False)
    assert file_bytes(*one) == file_bytes(*two)


def test_overwrite_leaves_no_temp_files(tmp_path, acl):
    out = tmp_path / "out"
    prep.build_dataset(acl, out, workers=1, progress=False)
    prep.build_dataset(acl, out, workers=1, progress=False)
    assert sorted(os.listdir(out)) == ["imdb.dict.pkl.gz", "imdb.pkl"]


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")

    def boom(stream):
        stream.write(b"half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic_write(str(path), boom)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_name_sets_file_stem(tmp_path, acl):
    pkl_path, dict_path = prep.build_dataset(acl, tmp_path, name="small",
                                             workers=1, progress=False)
    assert os.path.basename(pkl_path) == "small.pkl"
    assert os.path.basename(dict_path) == "small.dict.pkl.gz"


def test_loads_with_imdb_reader(tmp_path, acl):
    if not hasattr(imdb, "load_dataset_file"):
        pytest.skip("imdb.load_dataset_file not available")
    pkl_path, _ = prep.build_dataset(acl, tmp_path, workers=1, progress=False)
    train, test = imdb.load_dataset_file(pkl_path)
    exp_train, exp_test, _ = expected_dataset()
    assert [list(part) for part in train] == [list(p) for p in exp_train]
    assert [list(part) for part in test] == [list(p) for p in exp_test]


def no_test_split(tmp):
    """A corpus folder whose test/ split has no review file."""
    write_text(tmp / "c" / "train" / "pos" / "1_9.txt", "x")
    os.makedirs(tmp / "c" / "test" / "pos")
    return str(tmp / "c")


@pytest.mark.parametrize("setup, fragment", [
    (lambda tmp: str(tmp / "nowhere"), "no such file or folder"),
    (lambda tmp: write_text(tmp / "x.zip", "zip"), "not a folder"),
    (lambda tmp: str(tmp), "no train/ and test/ folders"),
    (lambda tmp: write_text(tmp / "bad.tar.gz", "not gzip"),
     "unreadable archive"),
    (no_test_split, "no test/<label>/*.txt files"),
])
def test_build_dataset_errors(tmp_path, setup, fragment):
    source = setup(tmp_path)
    with pytest.raises(DataError) as info:
        prep.build_dataset(source, tmp_path / "out", progress=False)
    message = str(info.value)
    assert fragment in message and "\n" not in message
    assert not os.path.exists(tmp_path / "out" / "imdb.pkl")


def test_undecodable_review_names_file(tmp_path, acl):
    bad = os.path.join(acl, "train", "neg", "9_1.txt")
    write_text(bad, "Un café horrible.", encoding="latin-1")
    with pytest.raises(DataError) as info:
        prep.build_dataset(acl, tmp_path / "out", progress=False)
    message = str(info.value)
    assert message.startswith(bad + ": not valid utf-8 (byte 0xe9")
    assert "--encoding" in message
    archive = make_archive(acl, tmp_path / "a.tar.gz")
    with pytest.raises(DataError, match=r"a\.tar\.gz:aclImdb/train/neg/9_1"):
        prep.build_dataset(archive, tmp_path / "out", progress=False)
    _, dict_path = prep.build_dataset(acl, tmp_path / "out",
                                      encoding="latin-1", progress=False)
    _, _, dictionary = read_outputs(str(tmp_path / "out" / "imdb.pkl"),
                                    dict_path)
    assert "café" in dictionary


# ---------------------------------------------------------------------------
# (a) custom <split>/<label>/*.txt folders
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("names, mapping, json_file", [
    (["pos", "neg"], {"neg": 0, "pos": 1}, False),
    (["2", "0", "1"], {"0": 0, "1": 1, "2": 2}, False),
    (["tech", "sports", "politics"],
     {"politics": 0, "sports": 1, "tech": 2}, True),
    (["pos", "neg", "neutral"], {"neg": 0, "neutral": 1, "pos": 2}, True),
])
def test_custom_folder_labels(tmp_path, names, mapping, json_file):
    reviews = [(split, label, "%d.txt" % i,
                "%s text %s %d" % (label, split, i))
               for i, (split, label) in enumerate(
                   (s, lab) for s in ("train", "test") for lab in names
                   for _ in range(2))]
    root = tmp_path / "corpus"
    for split, label, name, text in reviews:
        write_text(root / split / label / name, text)
    out = tmp_path / "out"
    pkl_path, dict_path = prep.build_dataset(root, out, workers=1,
                                             progress=False)
    (train_x, train_y), (_, test_y), dictionary = read_outputs(pkl_path,
                                                               dict_path)
    assert label_ids(names) == mapping
    if names == ["pos", "neg"]:
        order = [1, 1, 0, 0]                 # pos first, as the tutorial
    else:
        order = sorted(list(mapping.values()) * 2)
    assert train_y == order and test_y == order
    # each text starts with its label name, so the label follows the text
    inverse = {v: k for k, v in dictionary.items()}
    by_id = {v: k for k, v in mapping.items()}
    assert all(inverse[x[0]] == by_id[y] for x, y in zip(train_x, train_y))
    labels_json = out / "imdb.labels.json"
    assert imdb.labels_path_for(pkl_path) == str(labels_json)  # where readers look
    assert labels_json.exists() == json_file
    if json_file:
        assert json.loads(labels_json.read_text("utf-8")) == mapping


def test_integer_label_collision():
    with pytest.raises(DataError, match="same integer id"):
        label_ids(["1", "01"])


def test_stale_labels_json_removed(tmp_path, acl):
    out = tmp_path / "out"
    write_text(out / "imdb.labels.json", "{}")
    prep.build_dataset(acl, out, workers=1, progress=False)
    assert not (out / "imdb.labels.json").exists()


# ---------------------------------------------------------------------------
# (b) one text per line, one file per label
# ---------------------------------------------------------------------------


def lines_file(path, label, count, start=0):
    """A file of `count` numbered one-line texts of `label`."""
    text = "".join("%s review %d\n" % (label, i)
                   for i in range(start, start + count))
    return write_text(path, text)


@pytest.mark.parametrize("count, portion, n_test", [
    (10, 0.2, 2), (10, 0.5, 5), (7, 0.2, 1), (3, 0.9, 2), (1, 0.5, 0),
])
def test_hold_out_sizes(count, portion, n_test):
    items = [("t%d" % i, label) for label in ("a", "b")
             for i in range(count)]
    train, test = hold_out(items, portion, seed=1)
    for label in ("a", "b"):
        assert sum(lab == label for _, lab in test) == n_test
        assert sum(lab == label for _, lab in train) == count - n_test
    assert sorted(train + test) == sorted(items)
    assert train == [item for item in items if item in train]  # order kept


def test_hold_out_seed_determinism():
    items = [("t%d" % i, "pos" if i % 2 else "neg") for i in range(40)]
    first = hold_out(items, 0.25, seed=123)
    assert hold_out(items, 0.25, seed=123) == first
    assert hold_out(items, 0.25, seed=124) != first


def test_label_files_pos_neg_cli(tmp_path):
    pos = lines_file(tmp_path / "pos.txt", "good", 10)
    neg = lines_file(tmp_path / "neg.txt", "bad", 10)
    out = tmp_path / "out"
    argv = ["--pos", pos, "--neg", neg, "--out", str(out), "--quiet",
            "--workers", "1"]
    assert prep.main(argv) == 0
    (train_x, train_y), (test_x, test_y), dictionary = read_outputs(
        out / "imdb.pkl", out / "imdb.dict.pkl.gz")
    assert train_y == [1] * 8 + [0] * 8 and test_y == [1] * 2 + [0] * 2
    assert len(train_x) == 16 and len(test_x) == 4
    assert not (out / "imdb.labels.json").exists()
    first = file_bytes(out / "imdb.pkl", out / "imdb.dict.pkl.gz")
    assert prep.main(argv) == 0
    assert file_bytes(out / "imdb.pkl", out / "imdb.dict.pkl.gz") == first
    assert prep.main(argv + ["--seed", "7"]) == 0
    assert file_bytes(out / "imdb.pkl")[0] != first[0]


def test_label_files_test_portion_flag(tmp_path):
    pos = lines_file(tmp_path / "pos.txt", "good", 10)
    neg = lines_file(tmp_path / "neg.txt", "bad", 10)
    out = tmp_path / "out"
    assert prep.main(["--pos", pos, "--neg", neg, "--out", str(out),
                      "--quiet", "--workers", "1",
                      "--test-portion", "0.5"]) == 0
    (train_x, _), (test_x, _), _ = read_outputs(out / "imdb.pkl",
                                                out / "imdb.dict.pkl.gz")
    assert len(train_x) == len(test_x) == 10


def test_label_files_many_labels_with_test_files(tmp_path):
    train_files = [(name, lines_file(tmp_path / (name + ".txt"), name, 3))
                   for name in ("joy", "anger", "fear")]
    test_files = [("fear", lines_file(tmp_path / "t_fear.txt", "fear", 2)),
                  ("joy", lines_file(tmp_path / "t_joy.txt", "joy", 1))]
    corpus = read_label_files(train_files, test_files)
    assert corpus.labels == {"anger": 0, "fear": 1, "joy": 2}
    assert [label for _, label in corpus.train] == (
        ["anger"] * 3 + ["fear"] * 3 + ["joy"] * 3)
    assert corpus.test == [("fear review 0", "fear"),
                           ("fear review 1", "fear"), ("joy review 0", "joy")]
    out = tmp_path / "out"
    argv = ["--out", str(out), "--quiet", "--workers", "1"]
    for name, path in train_files:
        argv += ["--label-file", "%s=%s" % (name, path)]
    for name, path in test_files:
        argv += ["--test-label-file", "%s=%s" % (name, path)]
    assert prep.main(argv) == 0
    (_, train_y), (_, test_y), _ = read_outputs(out / "imdb.pkl",
                                                out / "imdb.dict.pkl.gz")
    assert train_y == [0, 0, 0, 1, 1, 1, 2, 2, 2] and test_y == [1, 1, 2]
    assert json.loads((out / "imdb.labels.json").read_text()) == (
        corpus.labels)


def test_label_files_skip_blank_lines_and_bom(tmp_path):
    path = write_text(tmp_path / "p.txt", "\ufeffone\r\n\r\n  \ntwo\rthree")
    corpus = read_label_files([("pos", path)], [("neg", path)])
    assert [text for text, _ in corpus.train] == ["one", "two", "three"]


def test_label_file_latin1(tmp_path, capsys):
    pos = write_text(tmp_path / "pos.txt",
                     "Un très bon film\nCafé génial\n", encoding="latin-1")
    neg = write_text(tmp_path / "neg.txt", "Mauvais\nNul\n")
    out = tmp_path / "out"
    argv = ["--pos", pos, "--neg", neg, "--out", str(out), "--quiet",
            "--workers", "1", "--test-portion", "0.5"]
    assert prep.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("imdb_preprocess.py: error: %s: not valid utf-8"
                          % pos)
    assert "--encoding" in err
    assert not out.exists()
    assert prep.main(argv + ["--encoding", "latin-1"]) == 0
    with gzip.open(out / "imdb.dict.pkl.gz") as stream:
        words = set(pickle.load(stream))
    assert words & {"très", "café", "génial"}


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_label_file_without_texts(tmp_path, content):
    empty = write_text(tmp_path / "empty.txt", content)
    with pytest.raises(DataError, match="empty.txt: no texts"):
        read_label_files([("pos", empty)])


def test_label_file_missing(tmp_path):
    with pytest.raises(DataError, match="nope.txt: No such file"):
        read_label_files([("pos", str(tmp_path / "nope.txt"))])


def test_hold_out_leaving_no_test_is_an_error(tmp_path):
    one = write_text(tmp_path / "one.txt", "single text\n")
    with pytest.raises(DataError, match="leaves no test texts"):
        read_label_files([("pos", one), ("neg", one)])


# ---------------------------------------------------------------------------
# (c) CSV
# ---------------------------------------------------------------------------


CSV_TEXT = ('id,review,sentiment\n'
            '1,"Loved it, really.",pos\n'
            '2,"Hated it.\nTwo lines!",neg\n'
            '3,Fine film,pos\n'
            '4,Terrible,neg\n')


def test_csv_corpus(tmp_path):
    train = write_text(tmp_path / "train.csv", CSV_TEXT)
    test = write_text(tmp_path / "test.csv",
                      "review,sentiment,extra\nGreat,pos,x\nBad,neg,y\n")
    out = tmp_path / "out"
    assert prep.main(["--csv", train, "--test-csv", test, "--text-column",
                      "review", "--label-column", "sentiment", "--out",
                      str(out), "--quiet", "--workers", "1"]) == 0
    (train_x, train_y), (test_x, test_y), dictionary = read_outputs(
        out / "imdb.pkl", out / "imdb.dict.pkl.gz")
    assert train_y == [1, 1, 0, 0] and test_y == [1, 0]
    assert train_x[0] == prep.encode([prep.tokenize("Loved it, really.")],
                                     dictionary)[0]
    assert train_x[2] == prep.encode([prep.tokenize("Hated it.\nTwo lines!")],
                                     dictionary)[0]
    assert test_x == [[1], [1]]


@pytest.mark.parametrize("suffix, delimiter, flag", [
    (".tsv", "\t", None), (".csv", ";", ";"), (".txt", "\t", "\\t"),
])
def test_csv_delimiters(tmp_path, suffix, delimiter, flag):
    rows = ["text|label", "good one|2", "bad one|0", "so so|1"] * 1
    body = "\n".join(row.replace("|", delimiter) for row in rows) + "\n"
    body += "".join("more %d%s%d\n" % (i, delimiter, i % 3) for i in range(9))
    path = write_text(tmp_path / ("data" + suffix), body)
    corpus = read_csv_corpus(path, delimiter=flag, test_portion=0.5)
    assert corpus.labels == {"0": 0, "1": 1, "2": 2}
    assert len(corpus.train) + len(corpus.test) == 12
    assert len(corpus.test) == 6


def test_csv_hold_out_deterministic(tmp_path):
    body = "text,label\n" + "".join("t%d,%s\n" % (i, "ab"[i % 2])
                                    for i in range(30))
    path = write_text(tmp_path / "d.csv", body)
    first = read_csv_corpus(path, seed=5)
    assert read_csv_corpus(path, seed=5) == first
    assert len(first.test) == 6 and len(first.train) == 24
    assert first.labels == {"a": 0, "b": 1}


@pytest.mark.parametrize("body, kwargs, fragment", [
    (CSV_TEXT, {"text_column": "text", "label_column": "sentiment"},
     "no column 'text' (columns: id, review, sentiment); pass --text-column"),
    (CSV_TEXT, {"text_column": "review"},
     "no column 'label' (columns: id, review, sentiment); "
     "pass --label-column"),
    ("", {}, "empty file (a header row is required)"),
    ("text,label\n", {}, "no rows after the header"),
    ("text,label\nonly text\n", {}, "line 2: 1 fields, expected 2"),
    ("text,label\nsome text, \n", {}, "line 2: empty label in column 'label'"),
])
def test_csv_errors(tmp_path, body, kwargs, fragment):
    path = write_text(tmp_path / "d.csv", body)
    with pytest.raises(DataError) as info:
        read_csv_corpus(path, **kwargs)
    assert str(info.value) == "%s: %s" % (path, fragment)


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------


def test_main_missing_source(tmp_path, capsys):
    missing = str(tmp_path / "nowhere.tar.gz")
    assert prep.main(["--source", missing, "--out", str(tmp_path / "o"),
                      "--quiet"]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("imdb_preprocess.py: error: " + missing)
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert not (tmp_path / "o").exists()


def test_main_uses_imdb_source_env(tmp_path, acl, monkeypatch, capsys):
    monkeypatch.setenv("IMDB_SOURCE", acl)
    out = tmp_path / "out"
    assert prep.main(["--out", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    assert "train: 5 reviews (3 pos, 2 neg)" in captured.out
    assert "total words" in captured.out
    assert (out / "imdb.pkl").exists()


def test_main_unwritable_output(tmp_path, acl, capsys):
    blocker = write_text(tmp_path / "file", "x")
    assert prep.main(["--source", acl, "--out", blocker, "--quiet",
                      "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imdb_preprocess.py: error: " + blocker)
    assert err.count("\n") == 1


@pytest.mark.parametrize("argv", [
    ["--source", "x", "--csv", "y.csv"],
    ["--pos", "a.txt", "--csv", "y.csv"],
    ["--test-pos", "a.txt"],
    ["--test-csv", "a.csv"],
    ["--label-file", "no-equals-sign"],
    ["--test-portion", "1.5"],
    ["--workers", "0"],
])
def test_main_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as info:
        prep.main(argv)
    assert info.value.code == 2
    assert "imdb_preprocess.py: error:" in capsys.readouterr().err


def test_every_flag_has_help():
    parser = prep.build_parser()
    for action in parser._actions:
        assert action.help, action.option_strings


# ---------------------------------------------------------------------------
# download_archive (no network: file:// and a closed local port)
# ---------------------------------------------------------------------------


def test_download_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(bytes(range(256)) * 1000)
    dest = tmp_path / "dest.tar.gz"
    assert prep.download_archive(str(dest), src.as_uri(),
                                 progress=False) == str(dest)
    assert dest.read_bytes() == src.read_bytes()
    assert not os.path.exists(str(dest) + ".part")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:%d/aclImdb_v1.tar.gz" % closed_port(),
    "file:///nonexistent/dir/x.tar.gz",
])
def test_download_failure(tmp_path, url):
    dest = tmp_path / "dest.tar.gz"
    with pytest.raises(DataError) as info:
        prep.download_archive(str(dest), url, progress=False)
    message = str(info.value)
    assert message.startswith(url + ": download failed")
    assert "IMDB_SOURCE" in message and "--source PATH" in message
    assert "\n" not in message
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------
# The real corpus
# ---------------------------------------------------------------------------


def real_source():
    """The real aclImdb archive or folder, or None."""
    for path in (os.environ.get("IMDB_SOURCE"), REAL_ARCHIVE):
        if path and os.path.exists(path):
            return path
    return None


@pytest.mark.realdata
@pytest.mark.skipif(real_source() is None,
                    reason="real corpus absent: set IMDB_SOURCE or provide "
                           + REAL_ARCHIVE)
def test_real_corpus_reads():
    corpus = read_folder_corpus(real_source())
    assert corpus.labels == {"neg": 0, "pos": 1}
    for split in (corpus.train, corpus.test):
        assert len(split) == 25000
        assert [label for _, label in split] == ["pos"] * 12500 + [
            "neg"] * 12500
    words = prep.tokenize(corpus.train[0][0])
    assert words and all(word == word.lower() for word in words)


# ---------------------------------------------------------------------------
# ensure_dataset
# ---------------------------------------------------------------------------


@pytest.fixture
def preprocess(monkeypatch):
    """Fake imdb_preprocess.build_dataset / download_archive, recording calls."""
    calls = []

    def build_dataset(source, out_dir, name):
        calls.append(("build", str(source), out_dir, name))
        write_pickles(os.path.join(out_dir, name + ".pkl"),
                      [([[2]], [0]), ([[3]], [1])])
        write_pickles(os.path.join(out_dir, name + ".dict.pkl.gz"),
                      [{"the": 2}])

    def download_archive(dest):
        calls.append(("download", str(dest)))
        with open(dest, "wb") as stream:
            stream.write(b"archive")
        return dest

    monkeypatch.setattr(prep, "build_dataset", build_dataset)
    monkeypatch.setattr(prep, "download_archive", download_archive)
    monkeypatch.delenv("IMDB_SOURCE", raising=False)
    return calls


def test_ensure_dataset_existing_file_is_returned(tmp_path, preprocess):
    path = write_pickles(tmp_path / "imdb.pkl", [([[2]], [0]), ([[3]], [1])])
    assert prep.ensure_dataset(path, download=False) == path
    assert preprocess == []


@pytest.mark.parametrize("available", [
    ["argument", "env", "local", "download"],
    ["env", "local", "download"],
    ["local", "download"],
    ["download"],
])
def test_ensure_dataset_source_precedence(tmp_path, monkeypatch, preprocess,
                                          capsys, available):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    path = str(data_dir / "imdb.pkl")
    argument_source = tmp_path / "given.tar.gz"
    env_source = tmp_path / "env_dir"
    local = data_dir / "aclImdb_v1.tar.gz"
    argument_source.write_bytes(b"x")
    env_source.mkdir()
    if "env" in available:
        monkeypatch.setenv("IMDB_SOURCE", str(env_source))
    if "local" in available:
        local.write_bytes(b"x")
    source = argument_source if "argument" in available else None

    assert prep.ensure_dataset(path, source=source) == path

    expected_source = {"argument": argument_source, "env": env_source,
                       "local": local, "download": local}[available[0]]
    expected = [("build", str(expected_source), str(data_dir), "imdb")]
    if available[0] == "download":
        expected.insert(0, ("download", str(local)))
    assert preprocess == expected
    out = capsys.readouterr().out
    assert f"{path} not found: building it from {expected_source}" in out
    assert imdb.load_dataset_file(path)[1] == ([[3]], [1])


def test_ensure_dataset_name_from_path(tmp_path, preprocess):
    path = str(tmp_path / "small.pkl")
    source = tmp_path / "src"
    source.mkdir()
    prep.ensure_dataset(path, source=source)
    assert preprocess == [("build", str(source), str(tmp_path), "small")]


def test_ensure_dataset_without_download(tmp_path, preprocess):
    path = tmp_path / "data" / "imdb.pkl"
    with pytest.raises(DataError) as err:
        prep.ensure_dataset(path, download=False)
    message = assert_one_line_naming(err, path)
    assert "download=False" in message and "IMDB_SOURCE" in message
    assert preprocess == []


def test_ensure_dataset_missing_sources(tmp_path, monkeypatch, preprocess):
    path = tmp_path / "imdb.pkl"
    missing = tmp_path / "x" / "y"
    with pytest.raises(DataError) as err:
        prep.ensure_dataset(path, source=missing)
    assert str(err.value) == f"source={missing}: no such file or folder"
    monkeypatch.setenv("IMDB_SOURCE", str(missing))
    with pytest.raises(DataError) as err:
        prep.ensure_dataset(path)
    assert str(err.value) == f"IMDB_SOURCE={missing}: no such file or folder"
    assert preprocess == []


def test_ensure_dataset_build_not_producing_the_file(tmp_path, preprocess):
    path = tmp_path / "imdb.pkl.gz"  # build_dataset writes imdb.pkl
    source = tmp_path / "src"
    source.mkdir()
    with pytest.raises(DataError) as err:
        prep.ensure_dataset(path, source=source)
    assert "still missing" in assert_one_line_naming(err, path)
