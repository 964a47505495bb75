"""Fuzz tests of every reader of a file the project reads.

Whatever the bytes of the file (corrupt, truncated, mutated or hostile),
each reader must either return well-formed data or raise ``sentiment.common.errors.DataError``
with a one-line message naming the file; nothing else may escape, and no
code in the file may run.  Readers:

* ``imdb.load_pickles``, ``imdb.load_dataset_file``, ``imdb.load_dict``
  (pickles, plain or gzip-compressed);
* ``lstm.load_params`` (model ``.npz``) and ``lstm.load_options`` (JSON).

The inputs come from Hypothesis, derandomized so that every run fuzzes the
same inputs.  Run with ``-s`` to see how many inputs each reader got.

Any exception other than ``DataError`` escapes at once and fails the test.
"""
import collections
import copyreg
import dataclasses
import gzip
import io
import json
import lzma
import os
import pickle
import pickletools
import struct
import tempfile
import warnings
import zipfile
import zlib
from collections import OrderedDict

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import imdb
import lstm
from sentiment.common.errors import DataError

#: Inputs fed to each reader, printed at the end of the module.
COUNTS = collections.Counter()


def fuzz_settings(max_examples):
    return settings(
        max_examples=max_examples, derandomize=True, database=None,
        deadline=None, print_blob=False,
        suppress_health_check=[HealthCheck.function_scoped_fixture,
                               HealthCheck.too_slow,
                               HealthCheck.data_too_large])


@pytest.fixture(scope="module", autouse=True)
def print_counts():
    yield
    total = sum(COUNTS.values())
    print(f"\nfuzz inputs per reader ({total} in all):")
    for reader, count in sorted(COUNTS.items()):
        print(f"  {reader:32} {count}")


def check_message(err, path):
    """A DataError message is one line that names the file."""
    message = str(err)
    assert "\n" not in message and "\r" not in message, repr(message)
    assert os.fspath(path) in message, (path, message)


def write(directory, name, data):
    path = os.path.join(directory, name)
    with open(path, "wb") as stream:
        stream.write(data)
    return path


# ---------------------------------------------------------------------------
# Byte mutations
# ---------------------------------------------------------------------------

#: Every pickle opcode, and fragments that load globals, persistent ids,
#: extensions, huge lengths and huge numbers.
PICKLE_SNIPPETS = sorted({op.code.encode("latin-1") for op in pickletools.opcodes}) + [
    b"cos\nsystem\n", b"cbuiltins\neval\n", b"c__builtin__\nopen\n",
    b"\x8c\x02os\x8c\x06system\x93", b"(S'x'\nios\nsystem\n", b"(cos\nsystem\no",
    b"P0\n", b"X\x01\x00\x00\x00xQ", b"\x82\x01", b"\x83\x01\x00",
    b"\x84\x01\x00\x00\x00", b"R", b"b", b"\x81", b"\x92", b"\x94", b"\x97", b"\x98",
    b"\x95\xff\xff\xff\xff\xff\xff\xff\x7f", b"\x8e\xff\xff\xff\xff\xff\xff\xff\x7f",
    b"\x8d\x00\x00\x00\x00\x01\x00\x00\x00", b"\x96\xff\xff\xff\xff\x00\x00\x00\x00",
    b"B\xff\xff\xff\x7f", b"T\xff\xff\xff\xff", b"X\xff\xff\xff\xff",
    b"\x8a\xff" + b"\xff" * 8, b"\x8b\xff\xff\xff\x7f", b"I" + b"9" * 5000 + b"\n",
    b"L" + b"9" * 5000 + b"L\n", b"F1e999999\n", b"h\xff", b"j\xff\xff\xff\x7f",
    b"g99999\n", b"(" * 200, b"]" * 200, b"\x80\x05", b"\x80\xff", b"S'\\x'\n",
    b"V\\u12\n", b"\x8c\x04\xff\xfe\xfd\xfc", b"U\x02\xc3(",
]


@st.composite
def mutations(draw, base, snippets=(), max_ops=4):
    """`base` with 1 to `max_ops` truncations, flips, inserts, deletes and
    splices (of `snippets`) at random places."""
    data = bytearray(base)
    kinds = ["truncate", "flip", "insert", "delete", "overwrite"]
    if snippets:
        kinds.append("splice")
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(kinds))
        pos = draw(st.integers(0, len(data)))
        if kind == "truncate":
            del data[pos:]
        elif kind == "flip" and pos < len(data):
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=8))
            data[pos:pos + len(chunk)] = chunk
        elif kind == "splice":
            data[pos:pos] = draw(st.sampled_from(snippets))
    return bytes(data)


# ---------------------------------------------------------------------------
# Pickles: imdb.load_pickles, imdb.load_dataset_file, imdb.load_dict
# ---------------------------------------------------------------------------

TRAIN = ([[2, 3, 4], [5, 6], [7, 300, 70000]], [0, 1, 1])
TEST = ([[8], [9, 10, 11, 12]], (1, 0))
WORDS = {"the": 2, "movie": 3, "caf\u00e9": 4, "x" * 300: 70000}


def dataset_bytes(protocol):
    stream = io.BytesIO()
    pickle.dump(TRAIN, stream, protocol=protocol)
    pickle.dump(TEST, stream, protocol=protocol)
    return stream.getvalue()


def dict_bytes(protocol):
    return pickle.dumps(WORDS, protocol=protocol)


#: A dictionary as Python 2 pickled it: byte-string keys (SHORT_BINSTRING).
PY2_DICT = (b"\x80\x02}q\x00(U\x03theq\x01K\x02U\x05movieq\x02K\x03"
            b"U\x04caf\xe9q\x03K\x04u.")

DATASETS = {f"protocol {p}": dataset_bytes(p) for p in (0, 2, 4)}
DICTS = {f"protocol {p}": dict_bytes(p) for p in (0, 2, 4)}
DICTS["python 2"] = PY2_DICT


def test_valid_bases_load():
    """The files the mutations start from are read correctly."""
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in DATASETS.items():
            for suffix, raw in ((".pkl", data), (".pkl.gz", gzip.compress(data))):
                path = write(tmp, "imdb" + suffix, raw)
                train, test = imdb.load_dataset_file(path)
                assert train == (TRAIN[0], TRAIN[1]), name
                assert test == (TEST[0], list(TEST[1])), name
        for name, data in DICTS.items():
            path = write(tmp, "imdb.dict.pkl.gz", gzip.compress(data))
            expected = WORDS if name != "python 2" else {
                "the": 2, "movie": 3, "caf\u00e9": 4}
            assert imdb.load_dict(path) == expected, name


def check_dataset(result):
    """What load_dataset_file returned is two (reviews, labels) pairs."""
    assert len(result) == 2
    for reviews, labels in result:
        assert type(reviews) is list and type(labels) is list
        assert len(reviews) == len(labels)
        for review in reviews:
            assert type(review) is list
            assert all(type(w) is int and w >= 0 for w in review)
        assert all(type(label) is int and label >= 0 for label in labels)


def check_dict(result):
    assert type(result) is dict
    for word, index in result.items():
        assert type(word) is str and type(index) is int and index >= 2


def read_dataset(path, marker=None):
    """load_dataset_file(path): DataError or well-formed data."""
    COUNTS["imdb.load_dataset_file"] += 1
    try:
        check_dataset(imdb.load_dataset_file(path))
    except DataError as err:
        check_message(err, path)
    if marker:
        assert not os.path.exists(marker), "the pickle ran code"


def read_dict(path, marker=None):
    """load_dict(path): DataError or a dict str -> int >= 2."""
    COUNTS["imdb.load_dict"] += 1
    try:
        check_dict(imdb.load_dict(path))
    except DataError as err:
        check_message(err, path)
    if marker:
        assert not os.path.exists(marker), "the pickle ran code"


def read_pickles(path, count, marker=None):
    COUNTS["imdb.load_pickles"] += 1
    try:
        objects = imdb.load_pickles(path, count)
        assert len(objects) == count
    except DataError as err:
        check_message(err, path)
    if marker:
        assert not os.path.exists(marker), "the pickle ran code"


@fuzz_settings(160)
@given(st.sampled_from(sorted(DATASETS)), st.data())
def test_dataset_pickle_mutated(base, data):
    raw = data.draw(mutations(DATASETS[base], PICKLE_SNIPPETS))
    with tempfile.TemporaryDirectory() as tmp:
        read_dataset(write(tmp, "imdb.pkl", raw))


@fuzz_settings(120)
@given(st.sampled_from(sorted(DICTS)), st.data())
def test_dict_pickle_mutated(base, data):
    raw = data.draw(mutations(DICTS[base], PICKLE_SNIPPETS))
    with tempfile.TemporaryDirectory() as tmp:
        read_dict(write(tmp, "imdb.dict.pkl", raw))


@fuzz_settings(60)
@given(st.binary(max_size=200), st.integers(1, 3))
def test_pickle_random_bytes(raw, count):
    with tempfile.TemporaryDirectory() as tmp:
        read_pickles(write(tmp, "imdb.pkl", raw), count)
        read_dict(write(tmp, "imdb.dict.pkl", raw))


@fuzz_settings(40)
@given(st.lists(st.sampled_from(PICKLE_SNIPPETS), min_size=1, max_size=12),
       st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"\x80\x05"]))
def test_pickle_opcode_soup(snippets, header):
    """Pickles made of opcodes and hostile fragments strung together."""
    raw = header + b"".join(snippets) + b"."
    with tempfile.TemporaryDirectory() as tmp:
        read_pickles(write(tmp, "imdb.pkl", raw), 1)
        read_dataset(write(tmp, "imdb.pkl", raw + raw))


def _text(s):
    """SHORT_BINUNICODE or BINUNICODE of `s` (bytes)."""
    if len(s) < 256:
        return b"\x8c" + bytes([len(s)]) + s
    return b"X" + struct.pack("<I", len(s)) + s


def hostile_pickles(marker):
    """Pickles that would create `marker` if any of their code ran."""
    cmd = f"touch {marker}".encode()
    m = marker.encode()
    touch_args = b"(S'" + cmd + b"'\nt"          # tuple ("touch marker",)
    open_args = _text(m) + _text(b"w") + b"\x86"   # tuple (marker, "w")
    return {
        "GLOBAL os.system + REDUCE": b"cos\nsystem\n" + touch_args + b"R.",
        "GLOBAL posix.system + REDUCE": b"cposix\nsystem\n" + touch_args + b"R.",
        "GLOBAL builtins.open + REDUCE": (
            b"\x80\x02cbuiltins\nopen\n" + open_args + b"R."),
        "GLOBAL __builtin__.open (fix_imports)": (
            b"\x80\x02c__builtin__\nopen\n" + open_args + b"R."),
        "GLOBAL builtins.exec": (
            b"cbuiltins\nexec\n(S'open(\"" + m + b"\", \"w\")'\ntR."),
        "GLOBAL subprocess.call": (
            b"csubprocess\ncall\n((S'touch'\nS'" + m + b"'\nltR."),
        "STACK_GLOBAL + REDUCE": (
            b"\x80\x04" + _text(b"os") + _text(b"system") + b"\x93"
            + _text(cmd) + b"\x85R."),
        "STACK_GLOBAL in FRAME": (
            b"\x80\x04\x95" + struct.pack("<Q", 22 + len(cmd)) + _text(b"os")
            + _text(b"system") + b"\x93" + _text(cmd) + b"\x85R."),
        "INST": b"(S'" + cmd + b"'\nios\nsystem\n.",
        "OBJ": b"(cos\nsystem\nS'" + cmd + b"'\no.",
        "NEWOBJ": b"\x80\x02cbuiltins\nopen\n" + open_args + b"\x81.",
        "NEWOBJ_EX": (b"\x80\x04" + _text(b"builtins") + _text(b"open") + b"\x93"
                      + open_args + b"}\x92."),
        "BUILD on a global": (b"\x80\x02cbuiltins\nopen\n" + open_args
                              + b"R}b."),
        "BUILD on a list": b"\x80\x02]}X\x01\x00\x00\x00aK\x01sb.",
        "BUILD setstate tuple": b"\x80\x02](N}tb.",
        "EXT1 (unregistered)": b"\x80\x02\x82\xf0" + touch_args + b"R.",
        "EXT2 (unregistered)": b"\x80\x02\x83\xf0\xf0" + touch_args + b"R.",
        "EXT4 (unregistered)": b"\x80\x02\x84\xf0\xf0\xf0\x00" + touch_args + b"R.",
        "EXT1 (registered os.system)": b"\x80\x02\x82\xf1" + touch_args + b"R.",
        "PERSID": b"P" + cmd + b"\n.",
        "BINPERSID": b"\x80\x02" + _text(cmd) + b"Q.",
        "global inside a list": (b"\x80\x02](cos\nsystem\n" + touch_args
                                 + b"Ra."),
        "global as a dict key": b"\x80\x02}cos\nsystem\nK\x02s.",
        "copyreg._reconstructor": (
            b"\x80\x02ccopyreg\n_reconstructor\n(cbuiltins\nobject\n"
            b"cbuiltins\nobject\nNtR."),
        "pickle.loads of a pickle": (
            b"\x80\x02cpickle\nloads\n" + _text(b"cos\nsystem\n" + touch_args
                                                 + b"R.") + b"\x85R."),
        "numpy _reconstruct": (
            b"\x80\x02cnumpy.core.multiarray\n_reconstruct\n(cnumpy\nndarray\n"
            b"K\x00\x85C\x01btR."),
    }


HOSTILE_NAMES = sorted(hostile_pickles("/m"))


@pytest.fixture
def registered_extension():
    """Extension code 241 registered for os.system, as a process could."""
    copyreg.add_extension("os", "system", 0xF1)
    yield
    copyreg.remove_extension("os", "system", 0xF1)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("compressed", [False, True], ids=["pkl", "gz"])
def test_hostile_pickle(name, compressed, registered_extension):
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "pwned")
        evil = hostile_pickles(marker)[name]
        good = DATASETS["protocol 2"]
        first = pickle.dumps(TRAIN, protocol=2)
        suffix = ".pkl.gz" if compressed else ".pkl"
        pack = gzip.compress if compressed else bytes
        # As the file itself, the second of the two pickles, and the dict.
        for raw in (evil, first + evil, evil + good):
            path = write(tmp, "imdb" + suffix, pack(raw))
            with pytest.raises(DataError) as info:
                COUNTS["imdb.load_dataset_file"] += 1
                imdb.load_dataset_file(path)
            check_message(info.value, path)
            assert not os.path.exists(marker), "the pickle ran code"
        path = write(tmp, "imdb.dict" + suffix, pack(evil))
        with pytest.raises(DataError) as info:
            COUNTS["imdb.load_dict"] += 1
            imdb.load_dict(path)
        check_message(info.value, path)
        # Plain data (a BUILD that sets nothing) may load here.
        read_pickles(path, 1, marker)


@fuzz_settings(60)
@given(st.sampled_from(HOSTILE_NAMES), st.sampled_from(sorted(DATASETS)),
       st.data())
def test_hostile_pickle_spliced(name, base, data):
    """A hostile pickle spliced into (or mutated after) a valid one."""
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "pwned")
        evil = hostile_pickles(marker)[name]
        valid = DATASETS[base]
        at = data.draw(st.integers(0, len(valid)), label="at")
        raw = valid[:at] + evil + valid[at:]
        if data.draw(st.booleans(), label="mutate"):
            raw = data.draw(mutations(raw, PICKLE_SNIPPETS, max_ops=2))
        read_dataset(write(tmp, "imdb.pkl", raw), marker)
        read_dict(write(tmp, "imdb.dict.pkl", raw), marker)


def test_pickle_deep_nesting():
    """Nesting far past the recursion limit: DataError, not a crash."""
    with tempfile.TemporaryDirectory() as tmp:
        deep = b"\x80\x02" + b"]" * 200000 + b"a" * 199999 + b"."
        path = write(tmp, "imdb.pkl", deep + deep)
        read_dataset(path)
        read_dict(write(tmp, "imdb.dict.pkl", deep))
        words = b"\x80\x02}U\x01a" + b"]" * 200000 + b"a" * 199999 + b"s."
        read_dict(write(tmp, "imdb.dict.pkl", words))


def _cycles():
    loop = []
    loop.append(loop)
    pair = (loop, b"x")
    loop.append(pair)
    words = {b"self": None, "caf\u00e9": 2, b"caf\xc3\xa9": 3}
    words[b"self"] = words
    words[b"list"] = [words, b"x", pair]
    return [pickle.dumps(obj, protocol=p) for p in (0, 2, 4)
            for obj in (loop, pair, words, (loop, loop), ([loop], [0]))]


@pytest.mark.parametrize("raw", _cycles())
def test_pickle_cycles(raw):
    """Self-referencing containers: DataError, never endless recursion."""
    with tempfile.TemporaryDirectory() as tmp:
        read_dataset(write(tmp, "imdb.pkl", raw + raw))
        read_dict(write(tmp, "imdb.dict.pkl", raw))
        read_pickles(write(tmp, "imdb.pkl", raw), 1)


@pytest.mark.parametrize("name", ["imdb.pkl", "imdb.pkl.gz",
                                  "imdb.dict.pkl.gz"])
def test_pickle_path_is_a_folder(name):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, name)
        os.mkdir(path)
        for reader in (imdb.load_dataset_file, imdb.load_dict):
            with pytest.raises(DataError) as info:
                reader(path)
            check_message(info.value, path)


# ---------------------------------------------------------------------------
# Gzip streams
# ---------------------------------------------------------------------------

GZ_DATASET = gzip.compress(DATASETS["protocol 2"], mtime=0)
GZ_DICT = gzip.compress(DICTS["protocol 4"], mtime=0)


@st.composite
def gzip_corruptions(draw, base):
    data = bytearray(base)
    kind = draw(st.sampled_from(["header", "trailer", "body", "truncate",
                                 "append", "random", "any"]))
    if kind == "header":        # magic, method, flags, mtime, xfl, os
        pos = draw(st.integers(0, 9))
        data[pos] ^= draw(st.integers(1, 255))
    elif kind == "trailer":     # CRC-32 and size
        pos = draw(st.integers(len(data) - 8, len(data) - 1))
        data[pos] ^= draw(st.integers(1, 255))
    elif kind == "body":
        pos = draw(st.integers(10, len(data) - 9))
        data[pos] ^= draw(st.integers(1, 255))
    elif kind == "truncate":
        del data[draw(st.integers(0, len(data) - 1)):]
    elif kind == "append":      # a second member, or trailing garbage
        data += draw(st.sampled_from([
            bytes(base), b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"\x00" * 8,
            gzip.compress(b"junk")])) + draw(st.binary(max_size=8))
    elif kind == "random":
        data = b"\x1f\x8b" + draw(st.sampled_from([b"", b"\x08", b"\x08\x1f"])) \
            + draw(st.binary(max_size=60))
    else:
        data = bytearray(draw(mutations(bytes(base))))
    return bytes(data)


@fuzz_settings(120)
@given(gzip_corruptions(GZ_DATASET))
def test_dataset_gzip_corrupt(raw):
    with tempfile.TemporaryDirectory() as tmp:
        read_dataset(write(tmp, "imdb.pkl.gz", raw))


@fuzz_settings(80)
@given(gzip_corruptions(GZ_DICT))
def test_dict_gzip_corrupt(raw):
    with tempfile.TemporaryDirectory() as tmp:
        read_dict(write(tmp, "imdb.dict.pkl.gz", raw))


def test_gzip_without_gz_suffix():
    with tempfile.TemporaryDirectory() as tmp:
        path = write(tmp, "imdb.pkl", GZ_DATASET)
        with pytest.raises(DataError, match="gzip"):
            imdb.load_dataset_file(path)


# ---------------------------------------------------------------------------
# Model .npz: lstm.load_params
# ---------------------------------------------------------------------------

OPTIONS = lstm.Config(dim_proj=4, n_words=20, ydim=2)
PARAMS = lstm.init_params(OPTIONS, np.random.default_rng(0))
FLOATX = lstm.config.floatX


def fresh_params():
    return OrderedDict((name, np.zeros_like(value)) for name, value in PARAMS.items())


def npz_bytes(arrays, compressed=False):
    stream = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(stream, **arrays)
    return stream.getvalue()


def zip_bytes(members, method=zipfile.ZIP_STORED):
    stream = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names
        with zipfile.ZipFile(stream, "w", method) as archive:
            for name, data in members:
                archive.writestr(name, data)
    return stream.getvalue()


def npy_bytes(array):
    stream = io.BytesIO()
    np.save(stream, array, allow_pickle=True)
    return stream.getvalue()


NPZ = npz_bytes(PARAMS)
NPZ_COMPRESSED = npz_bytes(PARAMS, compressed=True)
#: Other compression methods a zip may use: bzip2, LZMA.
NPZ_OTHERS = [zip_bytes([(name + ".npy", npy_bytes(value))
                         for name, value in PARAMS.items()], method)
              for method in (zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA)]


def read_params(path, expect_ok=None):
    """load_params(path): DataError or every parameter at its shape.

    `expect_ok` True / False: the file is / is not a valid model.
    """
    COUNTS["lstm.load_params"] += 1
    params = fresh_params()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded = lstm.load_params(path, params)
    except DataError as err:
        check_message(err, path)
        assert expect_ok is not True, f"valid model refused: {err}"
        return
    for name, value in PARAMS.items():
        assert loaded[name].shape == value.shape, name
        assert loaded[name].dtype == np.dtype(FLOATX), name
    assert expect_ok is not False, "bad model accepted: " + "; ".join(
        str(w.message) for w in caught)


def test_npz_mutated_bytes():

    @fuzz_settings(200)
    @given(st.sampled_from([NPZ, NPZ_COMPRESSED] + NPZ_OTHERS), st.data())
    def run(base, data):
        raw = data.draw(mutations(base, max_ops=3))
        with tempfile.TemporaryDirectory() as tmp:
            read_params(write(tmp, "model.npz", raw))

    with tempfile.TemporaryDirectory() as tmp:  # a known bug, every run
        read_params(write(tmp, "model.npz", NPZ[:-10]), expect_ok=False)
    run()


def npy_header(header, body=b""):
    """A .npy file with `header` (str) as its header dict."""
    text = header.encode("latin-1")
    pad = -(10 + len(text) + 1) % 64
    text += b" " * pad + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text + body


#: How a member of the archive is written: (kind, still a valid model?).
MEMBER_KINDS = [
    ("float64", True), ("int32", True), ("bool", True), ("uint8", True),
    ("complex", False), ("str", False), ("bytes", False),
    ("structured", False), ("object", False), ("datetime", False),
    ("timedelta", False), ("void", False), ("transposed", False),
    ("flat", False), ("scalar", False), ("extra-axis", False),
    ("empty", False), ("big-shape", False), ("negative-shape", False),
    ("bad-descr", False), ("short-body", False), ("garbage", False),
    ("pickle", False), ("empty-member", False), ("header-only", False),
    ("missing", False),
]
member_kinds = st.just(("keep", True)) | st.sampled_from(MEMBER_KINDS)


def member_bytes(kind, value, draw):
    shape = value.shape
    if kind == "keep":
        return npy_bytes(value)
    if kind in ("float64", "int32", "bool", "uint8"):
        return npy_bytes(value.astype(kind))
    if kind == "complex":
        return npy_bytes(value + 1j)
    if kind == "str":
        return npy_bytes(np.full(shape, "x"))
    if kind == "bytes":
        return npy_bytes(np.full(shape, b"1.5"))
    if kind == "structured":
        return npy_bytes(np.zeros(shape, dtype="i4,f4"))
    if kind == "object":
        return npy_bytes(np.full(shape, None, dtype=object))
    if kind == "datetime":
        return npy_bytes(np.zeros(shape, dtype="datetime64[s]"))
    if kind == "timedelta":
        return npy_bytes(np.zeros(shape, dtype="timedelta64[s]"))
    if kind == "void":
        return npy_bytes(np.zeros(shape, dtype="V4"))
    if kind == "transposed":
        return npy_bytes(np.zeros(shape[::-1] + (1,) * (len(shape) == 1)))
    if kind == "flat":
        return npy_bytes(value.reshape(-1)[:-1])
    if kind == "scalar":
        return npy_bytes(np.float32(1))
    if kind == "extra-axis":
        return npy_bytes(value[None])
    if kind == "empty":
        return npy_bytes(np.zeros((0,) + shape[1:], dtype=value.dtype))
    if kind == "big-shape":
        big = draw(st.sampled_from([10 ** 12, 2 ** 40, 2 ** 62, 2 ** 31, 10 ** 30]))
        return npy_header(f"{{'descr': '<f8', 'fortran_order': False,"
                          f" 'shape': ({big}, {big}), }}")
    if kind == "negative-shape":
        return npy_header("{'descr': '<f4', 'fortran_order': False,"
                          " 'shape': (-4, 2), }")
    if kind == "bad-descr":
        descr = draw(st.sampled_from(["'bogus'", "'|O'", "42", "[('a', 'zz')]",
                                      "'<U99999999999'", "None"]))
        return npy_header(f"{{'descr': {descr}, 'fortran_order': False,"
                          f" 'shape': {shape!r}, }}", b"\x00" * 64)
    if kind == "short-body":
        data = npy_bytes(value)
        return data[:draw(st.integers(0, len(data) - 1))]
    if kind == "garbage":
        return draw(st.binary(max_size=100))
    if kind == "pickle":
        return pickle.dumps(value)
    if kind == "empty-member":
        return b""
    if kind == "header-only":
        return npy_header("{'descr': '<f4', 'fortran_order': False, 'shape': "
                          + repr(shape) + ", }")
    raise AssertionError(kind)


@st.composite
def npz_models(draw):
    """A zip of .npy members: (bytes, valid?)."""
    members, valid = [], True
    for name, value in PARAMS.items():
        kind, ok = draw(member_kinds, label=name)
        valid = valid and ok
        if kind != "missing":
            members.append((name + ".npy", member_bytes(kind, value, draw)))
    if draw(st.booleans(), label="extra member"):
        members.append((draw(st.sampled_from(["history_errs.npy", "x.npy",
                                              "../evil.npy", "Wemb"])),
                        draw(st.sampled_from([b"junk", npy_bytes(np.zeros(3)),
                                              npy_bytes(np.array([None]))]))))
    if draw(st.booleans(), label="shuffle"):
        members = draw(st.permutations(members))
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    return zip_bytes(members, method), valid


def test_npz_bad_members():
    """Missing members, wrong shapes and dtypes, garbage, object arrays."""

    @fuzz_settings(200)
    @given(npz_models())
    def run(model):
        raw, valid = model
        with tempfile.TemporaryDirectory() as tmp:
            read_params(write(tmp, "model.npz", raw), expect_ok=valid)

    with tempfile.TemporaryDirectory() as tmp:  # a known bug, every run
        strings = dict(PARAMS, b=np.array(["x", "y"]))
        read_params(write(tmp, "model.npz", npz_bytes(strings)), 
                    expect_ok=False)
    run()


def _patch_central_directory(raw, offset, value):
    """Set a 2-byte field of every central directory entry of zip `raw`."""
    data = bytearray(raw)
    start = data.find(b"PK\x01\x02")
    while start >= 0:
        data[start + offset:start + offset + 2] = struct.pack("<H", value)
        start = data.find(b"PK\x01\x02", start + 4)
    return bytes(data)


NOT_ZIPS = {
    "encrypted members": _patch_central_directory(NPZ, 8, 1),
    "unknown compression method": _patch_central_directory(NPZ, 10, 99),
    "stored read as lzma": _patch_central_directory(NPZ, 10, zipfile.ZIP_LZMA),
    "stored read as bzip2": _patch_central_directory(NPZ, 10, zipfile.ZIP_BZIP2),
    "empty": b"",
    "text": b"hello\n",
    "npy": npy_bytes(PARAMS["Wemb"]),
    "npy object": npy_bytes(np.array([None])),
    "pickle": pickle.dumps(dict(PARAMS)),
    "hostile pickle": b"cos\nsystem\n(S'true'\ntR.",
    "gzip": gzip.compress(NPZ),
    "zip magic only": b"PK\x03\x04",
    "empty zip": b"PK\x05\x06" + b"\x00" * 18,
    "npy magic only": b"\x93NUMPY",
}


def test_npz_not_a_zip():

    @fuzz_settings(40)
    @given(st.sampled_from(sorted(NOT_ZIPS)) | st.binary(max_size=64))
    def run(choice):
        raw = NOT_ZIPS[choice] if isinstance(choice, str) else choice
        with tempfile.TemporaryDirectory() as tmp:
            read_params(write(tmp, "model.npz", raw), expect_ok=False)

    for choice in sorted(NOT_ZIPS):
        with tempfile.TemporaryDirectory() as tmp:
            read_params(write(tmp, "model.npz", NOT_ZIPS[choice]), 
                        expect_ok=False)
    run()


def test_npz_path_is_a_folder():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.npz")
        os.mkdir(path)
        with pytest.raises(DataError) as info:
            lstm.load_params(path, fresh_params())
        check_message(info.value, path)


def test_npz_valid_loads():
    with tempfile.TemporaryDirectory() as tmp:
        for raw in [NPZ, NPZ_COMPRESSED] + NPZ_OTHERS:
            loaded = lstm.load_params(write(tmp, "model.npz", raw), fresh_params())
            for name, value in PARAMS.items():
                np.testing.assert_array_equal(loaded[name], value)


# ---------------------------------------------------------------------------
# Options JSON: lstm.load_options
# ---------------------------------------------------------------------------

FIELDS = {f.name: f.type for f in dataclasses.fields(lstm.Config)}
OPTIONS_JSON = json.dumps(dataclasses.asdict(lstm.Config()), indent=2,
                          sort_keys=True).encode("utf-8")


def _type_ok(kind, value):
    if kind in (int, "int"):
        return type(value) is int
    if kind in (float, "float"):
        return type(value) in (int, float)
    if kind in (bool, "bool"):
        return type(value) is bool
    if kind in (str, "str"):
        return type(value) is str
    raise AssertionError(kind)


def expected_config(raw):
    """The Config a correct load_options returns for `raw`, or None.

    Valid: UTF-8 JSON, an object, known keys only, values of the field's
    type (an int is fine for a float field, a bool is never a number).
    """
    try:
        values = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if type(values) is not dict or not set(values) <= set(FIELDS):
        return None
    if not all(_type_ok(FIELDS[k], v) for k, v in values.items()):
        return None
    try:
        return lstm.Config(**{k: float(v) if FIELDS[k] in (float, "float") else v
                              for k, v in values.items()})
    except OverflowError:  # an int too large for a float
        return None


def read_options(raw):
    """load_options on a file holding `raw`: DataError or the right Config."""
    COUNTS["lstm.load_options"] += 1
    expected = expected_config(raw)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(tmp, "model.json", raw)
        try:
            config = lstm.load_options(path)
        except DataError as err:
            check_message(err, path)
            assert expected is None, f"valid options refused: {err}"
            return
    assert expected is not None, f"bad options accepted: {config}"
    assert repr(config) == repr(expected)


json_keys = st.text(max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats()
    | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(json_keys, inner, max_size=3),
    max_leaves=6)

JSON_SNIPPETS = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x00",
                 b"NaN", b"-Infinity", b"1e999", b"[", b"{", b"}", b'"', b"\\u",
                 b"\\ud800", b"9" * 5000, b"true", b"null", b",", b"[1]", b'"x"',
                 b"{}", b'"lrate": 1,']


@fuzz_settings(150)
@given(mutations(OPTIONS_JSON, JSON_SNIPPETS, max_ops=3))
def test_options_mutated_bytes(raw):
    read_options(raw)


@fuzz_settings(120)
@given(st.dictionaries(st.sampled_from(sorted(FIELDS)), json_values,
                       min_size=1, max_size=3),
       st.dictionaries(json_keys, json_values, max_size=2))
def test_options_replaced_values(replaced, added):
    values = dict(dataclasses.asdict(lstm.Config()), **replaced)
    values.update(added)
    read_options(json.dumps(values).encode("utf-8"))


@fuzz_settings(40)
@given(json_values)
def test_options_not_an_object(value):
    read_options(json.dumps(value).encode("utf-8"))


@pytest.mark.parametrize("raw", [
    b"", b"[]", b"null", b"42", b'"x"', b"{", b'{"dim_proj": 1,}',
    b'{"dim_proj": "x"}', b'{"dim_proj": [1]}', b'{"dim_proj": 1.5}',
    b'{"dim_proj": true}', b'{"use_dropout": 1}', b'{"optimizer": null}',
    b'{"saveto": {}}', b'{"lrate": "1e-4"}', b'{"dim_proj": 12\xff}',
    b'{"dataset": "\xff"}', b'{"nope": 1}', b'{"dim_proj": 1, "dim_proj": 2}',
    b'{"lrate": NaN}', b'{"lrate": 1}', b'{"dim_proj": ' + b"9" * 5000 + b"}",
    OPTIONS_JSON.decode().encode("utf-16"), OPTIONS_JSON[:len(OPTIONS_JSON) // 2],
    b"\xef\xbb\xbf" + OPTIONS_JSON, b"[" * 100000, b'{"seed": 0, "a": ' + b"[" * 100000,
    b'{"a\\nb": 1, "\\r": 2}', b'{"lrate": 1' + b"0" * 400 + b"}",
], ids=lambda raw: repr(raw[:24]))
def test_options_odd_documents(raw):
    """Non-objects, wrong types, deep nesting, bad UTF-8, truncation."""
    read_options(raw)


def test_options_valid_loads():
    with tempfile.TemporaryDirectory() as tmp:
        path = write(tmp, "model.json", OPTIONS_JSON)
        assert lstm.load_options(path) == lstm.Config()


def test_options_path_is_a_folder():
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.json")
        os.mkdir(path)
        with pytest.raises(DataError) as info:
            lstm.load_options(path)
        check_message(info.value, path)


def test_count_inputs():
    """Runs last: the whole module fuzzed at least 1,000 inputs."""
    readers = ("imdb.load_pickles", "imdb.load_dataset_file", "imdb.load_dict",
               "lstm.load_params", "lstm.load_options")
    if not all(COUNTS[reader] for reader in readers):
        pytest.skip("only part of the module ran")
    assert sum(COUNTS.values()) >= 1000, COUNTS
