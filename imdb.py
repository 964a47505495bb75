"""Reading the preprocessed IMDB corpus.

This module re-creates ``imdb.py`` of the deeplearning.net tutorial
"LSTM Networks for Sentiment Analysis" for Python 3 and PyTensor.

The corpus lives in two files written by ``imdb_preprocess.py`` (or by the
original Python 2 tutorial code):

``imdb.pkl``
    Two pickles in sequence: the training set then the test set, each a
    pair ``(x, y)`` where ``x`` is a list of reviews (each a list of word
    ids) and ``y`` the list of labels (0 negative, 1 positive).
``imdb.dict.pkl.gz`` (originally ``imdb.dict.pkl``)
    One pickle: a dict mapping each word to its id.  Ids start at 2 because
    0 is padding and 1 stands for unknown words.

The files are read with :class:`RestrictedUnpickler`, which accepts plain
lists, tuples, dicts, numbers and strings only, so a doctored file cannot
run code.  Every problem with a file is reported as a :class:`DataError`
with a one-line message that names the file.

Nothing here keeps global state: the random split of :func:`load_data`
comes from an explicit seed.
"""

import gzip
import itertools
import os
import pickle
import secrets
import struct
import zlib

import numpy

__all__ = [
    "DataError",
    "RestrictedUnpickler",
    "prepare_data",
    "load_pickles",
    "load_dataset_file",
    "load_dict",
    "dict_path_for",
    "load_data",
    "ensure_dataset",
    "atomic_write",
]

#: Name of the Stanford archive looked for next to the dataset.
ARCHIVE_NAME = "aclImdb_v1.tar.gz"

#: Environment variable naming the raw corpus to build the dataset from.
SOURCE_ENV = "IMDB_SOURCE"

_GZIP_MAGIC = b"\x1f\x8b"

# Exceptions a malformed pickle or compressed stream can raise while being
# read; all of them become a DataError naming the file.
_READ_ERRORS = (
    pickle.UnpicklingError,
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    OverflowError,
    MemoryError,
    zlib.error,
    gzip.BadGzipFile,
    struct.error,
    UnicodeDecodeError,
)

# Types that hold no byte strings and no other objects: a container whose
# items are all of these needs no decoding.
_ATOM_TYPES = frozenset([int, float, complex, bool, str, type(None)])


class DataError(Exception):
    """A data or model file is missing, unreadable or malformed.

    The message is one line that names the file and the problem.
    """


def _one_line(text, limit=200):
    """Squeeze `text` onto one line of at most `limit` characters."""
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def _show(name, limit=60):
    """Show a name taken from a file: as-is if tame, else as a clipped repr."""
    if isinstance(name, str) and name.isprintable() and len(name) <= limit:
        return name
    text = repr(name)
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def _type_name(obj):
    """Name the type of `obj` for an error message ("a list", "an int")."""
    name = type(obj).__name__
    article = "an" if name[:1] in "aeiou" else "a"
    return f"{article} {name}"


def _plural(count, word):
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def atomic_write(path, write):
    """Call ``write(stream)`` on a new temporary file, then rename it to ``path``.

    The temporary file is created exclusively in the same folder, flushed
    and fsynced before the rename, so ``path`` always holds either its old
    content or the complete new file: a crash, a kill or an error during the
    write leaves it untouched (and the temporary file is removed, except
    after a kill). An ``OSError`` (full disk, no permission, a folder in the
    way) becomes a one-line :class:`DataError`; other exceptions from
    ``write`` propagate unchanged.
    """
    path = os.fspath(path)
    folder, base = os.path.split(os.path.abspath(path))
    temp = os.path.join(folder, ".%s.%d.%s.tmp" % (base, os.getpid(), secrets.token_hex(4)))
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except OSError as exc:
        raise DataError("%s: cannot write (%s); the previous file, if any, is kept"
                        % (path, exc.strerror or exc)) from None
    finally:
        if os.path.exists(temp):
            os.remove(temp)


# ---------------------------------------------------------------------------
# Minibatches
# ---------------------------------------------------------------------------


def prepare_data(seqs, labels, maxlen=None, dtype=None):
    """Pad a minibatch of sequences into a matrix and its mask.

    Parameters
    ----------
    seqs : sequence of sequences of int
        The reviews of the minibatch, each a sequence of word ids.
    labels : sequence
        One label per review.
    maxlen : int, optional
        If given, only the reviews strictly shorter than `maxlen` are kept,
        together with their labels.
    dtype : str or numpy.dtype, optional
        Type of the mask; ``pytensor.config.floatX`` when None.

    Returns
    -------
    x : numpy.ndarray of int64, shape (maxlen, n_samples)
        Word ids, one review per column, padded with zeros.  ``maxlen`` here
        is the length of the longest review kept.
    x_mask : numpy.ndarray, shape (maxlen, n_samples)
        1 where `x` holds a word, 0 in the padding.
    labels : list
        The labels of the reviews kept (`labels` itself when no review is
        dropped).

    If `maxlen` leaves no review, ``(None, None, None)`` is returned instead.

    Raises
    ------
    ValueError
        If `seqs` is empty, or `seqs` and `labels` differ in length.

    Notes
    -----
    The time axis comes first: ``x[t, i]`` is word ``t`` of review ``i``, as
    the recurrent scan iterates over the first axis.
    """
    lengths = [len(s) for s in seqs]
    if len(lengths) != len(labels):
        raise ValueError(f"prepare_data: {_plural(len(lengths), 'sequence')}"
                         f" but {_plural(len(labels), 'label')}")
    if maxlen is not None:
        new_seqs, new_labels, new_lengths = [], [], []
        for length, seq, label in zip(lengths, seqs, labels):
            if length < maxlen:
                new_seqs.append(seq)
                new_labels.append(label)
                new_lengths.append(length)
        lengths, labels, seqs = new_lengths, new_labels, new_seqs
        if len(lengths) < 1:
            return None, None, None
    if not lengths:
        raise ValueError("prepare_data: no sequences")

    if dtype is None:
        import pytensor  # imported here so that importing imdb stays light
        dtype = pytensor.config.floatX

    lengths = numpy.asarray(lengths, dtype="int64")
    n_samples = len(lengths)
    longest = int(lengths.max())
    # Swap the axes: x is (maxlen, n_samples), one review per column.
    x_mask = numpy.arange(longest)[:, None] < lengths[None, :]
    x = numpy.zeros((longest, n_samples), dtype="int64")
    # x.T is a (n_samples, maxlen) view of x; its boolean selection runs
    # review by review, in the order of the concatenated reviews.
    x.T[x_mask.T] = numpy.fromiter(itertools.chain.from_iterable(seqs),
                                   dtype="int64", count=int(lengths.sum()))
    return x, x_mask.astype(dtype), labels


def pad_sequences(sequences, maxlen, padding="pre", truncating="pre", value=0,
                  dtype="int64"):
    """Pad and truncate sequences to ``maxlen``, as Keras's ``pad_sequences``.

    Parameters
    ----------
    sequences : sequence of sequences of int
    maxlen : int
        The length of every output row (>= 1).
    padding : {"pre", "post"}
        Put the padding ``value`` before or after each sequence.
    truncating : {"pre", "post"}
        For a sequence longer than `maxlen`, cut its beginning ("pre": keep
        the last `maxlen` items) or its end ("post": keep the first).

    Returns
    -------
    numpy.ndarray, shape (n_sequences, maxlen)
        One sequence per row (Keras's layout; see :func:`prepare_padded`
        for the model's time-first layout).

    Examples
    --------
    >>> pad_sequences([[1, 2, 3], [4]], 2).tolist()
    [[2, 3], [0, 4]]
    >>> pad_sequences([[1, 2, 3], [4]], 4, padding="post", truncating="post").tolist()
    [[1, 2, 3, 0], [4, 0, 0, 0]]
    """
    for name, side in (("padding", padding), ("truncating", truncating)):
        if side not in ("pre", "post"):
            raise ValueError(f"pad_sequences: {name} must be 'pre' or 'post', not {side!r}")
    if int(maxlen) < 1:
        raise ValueError(f"pad_sequences: maxlen must be at least 1, not {maxlen!r}")
    out = numpy.full((len(sequences), maxlen), value, dtype=dtype)
    for row, seq in zip(out, sequences):
        seq = list(seq)
        seq = seq[-maxlen:] if truncating == "pre" else seq[:maxlen]
        if seq:
            if padding == "pre":
                row[maxlen - len(seq):] = seq
            else:
                row[:len(seq)] = seq
    return out


def prepare_padded(seqs, labels, pad_to, padding="pre", truncating="pre", align=1,
                   dtype=None):
    """:func:`prepare_data` with Keras semantics: every review padded or
    truncated to ``pad_to`` tokens (:func:`pad_sequences`), time first.

    Time steps that are padding in every review of the minibatch are left
    out on the padded side, in multiples of ``align`` (the model's pooling
    size, so that its pooling windows stay where they were): as padding
    never changes the model's outputs, this gives the outputs of the full
    ``(pad_to, n_samples)`` matrix with less work.

    Returns
    -------
    x : numpy.ndarray of int64, shape (n_timesteps <= pad_to, n_samples)
    x_mask : numpy.ndarray, same shape, 1 on the (kept) words
    labels : the `labels`
    """
    if len(seqs) != len(labels):
        raise ValueError(f"prepare_padded: {_plural(len(seqs), 'sequence')}"
                         f" but {_plural(len(labels), 'label')}")
    if not len(seqs):
        raise ValueError("prepare_padded: no sequences")
    if dtype is None:
        import pytensor
        dtype = pytensor.config.floatX
    lengths = numpy.minimum([len(s) for s in seqs], pad_to)
    rows = pad_sequences(seqs, pad_to, padding, truncating)
    cols = numpy.arange(pad_to)
    if padding == "pre":
        mask = cols[None, :] >= (pad_to - lengths)[:, None]
    else:
        mask = cols[None, :] < lengths[:, None]
    unused = (pad_to - max(int(lengths.max()), 1)) // align * align
    keep = slice(unused, None) if padding == "pre" else slice(0, pad_to - unused)
    # Swap the axes: (n_samples, pad_to) -> (n_timesteps, n_samples).
    x = numpy.ascontiguousarray(rows[:, keep].T)
    return x, numpy.ascontiguousarray(mask[:, keep].T).astype(dtype), labels


# ---------------------------------------------------------------------------
# Reading pickles safely
# ---------------------------------------------------------------------------


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that builds plain data only and never runs code.

    Every global (class, function, module attribute) and every persistent
    id is refused, so the objects built are limited to lists, tuples, dicts,
    sets, numbers, strings and byte strings.  Python 2 ``str`` objects come
    back as ``bytes`` (``encoding="bytes"``); see :func:`load_pickles`,
    which decodes them.

    Parameters
    ----------
    file : binary file object
        Where to read the pickle from.
    path : str, optional
        Name of the file, for error messages.
    """

    def __init__(self, file, path="<pickle>"):
        super().__init__(file, encoding="bytes")
        self.path = os.fspath(path)

    def find_class(self, module, name):
        """Refuse every global.

        Raises
        ------
        DataError
            Always.
        """
        raise DataError(
            f"{self.path}: refused to unpickle {_show(module)}.{_show(name)}:"
            " only plain lists, tuples, dicts, numbers and strings are"
            " allowed")

    def persistent_load(self, pid):
        """Refuse every persistent id.

        Raises
        ------
        DataError
            Always.
        """
        raise DataError(
            f"{self.path}: refused to unpickle a persistent id: only plain"
            " lists, tuples, dicts, numbers and strings are allowed")


def _decode(data):
    """Decode a Python 2 byte string: UTF-8, else Latin-1."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _normalise(obj, path):
    """Return `obj` with every byte string, keys included, decoded to str.

    Containers holding nothing to decode are returned as they are (fast on
    long lists of ints); shared and self-referencing containers are built
    once.
    """
    done = {}

    def walk(item):
        kind = type(item)
        if kind is bytes:
            return _decode(item)
        if kind in _ATOM_TYPES:
            return item
        if kind in (list, tuple, set, frozenset):
            if not set(map(type, item)) - _ATOM_TYPES:
                return item
            key = id(item)
            if key in done:
                return done[key]
            if kind is list:
                new = done[key] = []
                new.extend(walk(value) for value in item)
                return new
            if kind is set:
                new = done[key] = set()
                new.update(walk(value) for value in item)
                return new
            new = done[key] = kind(walk(value) for value in item)
            return new
        if kind is dict:
            key = id(item)
            if key in done:
                return done[key]
            new = done[key] = {}
            for name, value in item.items():
                new[walk(name)] = walk(value)
            if len(new) != len(item):
                raise DataError(f"{path}: two dictionary keys decode to the"
                                " same string")
            return new
        return item  # bytearray (protocol 5): left alone

    return walk(obj)


def _open(path):
    """Open `path` for reading bytes, through gzip if it ends in ``.gz``."""
    if path.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def load_pickles(path, count=1, description=None, decode=True):
    """Read `count` pickles in sequence from a file, safely.

    Parameters
    ----------
    path : str or os.PathLike
        The file; read through gzip if its name ends in ``.gz``.
    count : int
        How many pickles to read.  Anything after them is ignored.
    description : str, optional
        What the pickles are, for the error message when there are too few
        (e.g. ``"train then test"``).
    decode : bool
        Decode byte strings (Python 2 ``str``), dictionary keys included,
        to str: UTF-8, else Latin-1.  Skipping it saves time on data that
        holds no strings.

    Returns
    -------
    list
        The `count` objects.

    Raises
    ------
    DataError
        If the file is missing or unreadable, is not valid gzip, holds a
        truncated or malformed pickle, holds fewer than `count` pickles, or
        asks for anything but plain data (see :class:`RestrictedUnpickler`).
    """
    path = os.fspath(path)
    what = f" ({description})" if description else ""
    objects = []
    try:
        with _open(path) as stream:
            for index in range(count):
                where = f"pickle {index + 1} of {count}"
                try:
                    if not stream.peek(1):
                        empty = " (empty file)" if index == 0 else ""
                        raise DataError(
                            f"{path}: expected {_plural(count, 'pickle')}"
                            f"{what}, found {index}{empty}")
                    obj = RestrictedUnpickler(stream, path).load()
                    objects.append(_normalise(obj, path) if decode else obj)
                except DataError:
                    raise
                except RecursionError:
                    raise DataError(f"{path}: {where} is nested too deeply"
                                    " to be a dataset") from None
                except (gzip.BadGzipFile, zlib.error) as err:
                    raise DataError(
                        f"{path}: not a valid gzip file ({_one_line(err)})"
                    ) from None
                except _READ_ERRORS as err:
                    if (not path.endswith(".gz") and index == 0
                            and _starts_with_gzip_magic(path)):
                        raise DataError(
                            f"{path}: the file is gzip-compressed but its"
                            " name does not end in .gz") from None
                    raise DataError(
                        f"{path}: truncated or corrupt data in {where}"
                        f" ({type(err).__name__}: {_one_line(err)})"
                    ) from None
                except OSError:
                    raise
                except Exception as err:  # anything else a bad pickle raises
                    raise DataError(
                        f"{path}: cannot read {where}"
                        f" ({type(err).__name__}: {_one_line(err)})"
                    ) from None
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except OSError as err:
        reason = err.strerror or _one_line(err)
        raise DataError(f"{path}: cannot read ({reason})") from None
    return objects


def _starts_with_gzip_magic(path):
    try:
        with open(path, "rb") as stream:
            return stream.read(2) == _GZIP_MAGIC
    except OSError:
        return False


# ---------------------------------------------------------------------------
# The dataset and dictionary files
# ---------------------------------------------------------------------------


def _check_word_ids(review, path, what):
    """Check that `review` holds ints (not bools) >= 0; `what` names it."""
    if set(map(type, review)) - {int}:
        for position, word in enumerate(review):
            if type(word) is not int:
                raise DataError(
                    f"{path}: {what} has {_type_name(word)} word id at"
                    f" position {position}, expected an integer")
    if review and min(review) < 0:
        raise DataError(f"{path}: {what} has a negative word id"
                        f" {min(review)}")


def _check_split(split, path, name):
    """Validate one ``(x, y)`` pair read from a dataset file."""
    if type(split) not in (tuple, list) or len(split) != 2:
        size = f" of {len(split)}" if type(split) in (tuple, list) else ""
        raise DataError(f"{path}: {name}: expected a pair (reviews, labels),"
                        f" got {_type_name(split)}{size}")
    x, y = split
    for part, value in (("x", x), ("y", y)):
        if type(value) not in (list, tuple):
            raise DataError(f"{path}: {name}: {part} should be a list, got"
                            f" {_type_name(value)}")
    if len(x) != len(y):
        raise DataError(f"{path}: {name}: x has {_plural(len(x), 'review')}"
                        f" but y has {_plural(len(y), 'label')}")
    # Whole-set checks run in C; a failure is then located review by review.
    review_types = set(map(type, x))
    if review_types - {list, tuple}:
        for index, review in enumerate(x):
            if type(review) not in (list, tuple):
                raise DataError(f"{path}: {name} review {index} is"
                                f" {_type_name(review)}, expected a list of"
                                " word ids")
    words = itertools.chain.from_iterable
    if (set(map(type, words(x))) - {int}
            or min(words(x), default=0) < 0):
        for index, review in enumerate(x):
            _check_word_ids(review, path, f"{name} review {index}")
    if tuple in review_types:
        reviews = [list(review) for review in x]
    else:
        reviews = list(x)
    labels = list(y)
    if set(map(type, labels)) - {int}:
        for index, label in enumerate(labels):
            if type(label) is not int:
                raise DataError(f"{path}: {name} label {index} is"
                                f" {_type_name(label)}, expected an integer")
    if min(labels, default=0) < 0:
        index = next(i for i, label in enumerate(labels) if label < 0)
        raise DataError(f"{path}: {name} label {index} is negative"
                        f" ({labels[index]})")
    return reviews, labels


def load_dataset_file(path):
    """Read and check a dataset file (two pickles: train then test).

    Parameters
    ----------
    path : str or os.PathLike
        The ``.pkl`` (or ``.pkl.gz``) file.

    Returns
    -------
    train, test : tuple of (list of list of int, list of int)
        Reviews (lists of word ids >= 0) and their labels (ints >= 0).

    Raises
    ------
    DataError
        If the file cannot be read (see :func:`load_pickles`) or does not
        have that structure.
    """
    path = os.fspath(path)
    # No decoding: the dataset holds no strings (any would be refused below).
    train, test = load_pickles(path, 2, "train then test", decode=False)
    return _check_split(train, path, "train"), _check_split(test, path, "test")


def load_dict(path):
    """Read and check a word dictionary file.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.dict.pkl`` or ``.dict.pkl.gz`` file: one pickle of a dict
        from word to id (Python 2 byte-string words are decoded).

    Returns
    -------
    dict of str to int
        Word ids are ints >= 2 (0 is padding, 1 the unknown word).

    Raises
    ------
    DataError
        If the file cannot be read or is not such a dict.
    """
    path = os.fspath(path)
    (words,) = load_pickles(path, 1, "the word dictionary")
    if type(words) is not dict:
        raise DataError(f"{path}: expected a dict from word to id, got"
                        f" {_type_name(words)}")
    for word, index in words.items():
        if type(word) is not str:
            raise DataError(f"{path}: dictionary key {_show(word)} is"
                            f" {_type_name(word)}, expected a string")
        if type(index) is not int or index < 2:
            raise DataError(f"{path}: word {_show(word)} has id"
                            f" {_show(index)}, expected an integer >= 2")
    return words


def _stem(path):
    """Strip ``.pkl.gz``, ``.pkl`` (or ``.gz``) from `path`."""
    for suffix in (".pkl.gz", ".pkl", ".gz"):
        if path.endswith(suffix):
            return path[:-len(suffix)]
    return path


def dict_path_for(dataset_path):
    """Name the word dictionary that goes with a dataset file.

    Parameters
    ----------
    dataset_path : str or os.PathLike
        E.g. ``data/imdb.pkl`` or ``data/imdb.pkl.gz``.

    Returns
    -------
    str
        ``data/imdb.dict.pkl.gz``; or ``data/imdb.dict.pkl`` (the original
        tutorial's name) if that one exists and the ``.gz`` does not.
    """
    stem = _stem(os.fspath(dataset_path))
    compressed = stem + ".dict.pkl.gz"
    plain = stem + ".dict.pkl"
    if not os.path.exists(compressed) and os.path.exists(plain):
        return plain
    return compressed


# ---------------------------------------------------------------------------
# Train / valid / test sets
# ---------------------------------------------------------------------------


def _len_argsort(seq):
    """Indices that sort `seq` by length (stable)."""
    return sorted(range(len(seq)), key=lambda index: len(seq[index]))


def _remove_unk(reviews, n_words):
    """Replace word ids >= `n_words` by 1 (unknown); returns new lists."""
    return [list(review) if not review or max(review) < n_words
            else [1 if word >= n_words else word for word in review]
            for review in reviews]


def load_data(path="data/imdb.pkl", n_words=100000, valid_portion=0.1,
              maxlen=None, sort_by_len=True, seed=123, valid_block=0):
    """Load the IMDB dataset and split off a validation set.

    Parameters
    ----------
    path : str or os.PathLike
        The dataset file (see :func:`load_dataset_file`).  It is not built
        here when missing: see :func:`ensure_dataset`.
    n_words : int
        Vocabulary size: word ids >= `n_words` become 1 (unknown).
    valid_portion : float
        Share of the training set held out for validation, in [0, 1].
    maxlen : int, optional
        If given (and not 0, as in the original), only the training reviews
        strictly shorter than `maxlen` are kept.  The test set is never
        filtered.
    sort_by_len : bool
        Sort each set by review length (stable), which makes minibatches
        of similar lengths and speeds up evaluation.
    seed : int, numpy.random.Generator or None
        Seed of the random train / validation split (passed to
        ``numpy.random.default_rng``).
    valid_block : int
        0 (the original): the validation set is random reviews. N > 0: it is
        made of random runs of N consecutive reviews (in the file's order),
        so groups of neighbouring reviews stay on one side. In aclImdb the
        reviews of one movie have consecutive ids (and the test set's movies
        are not the training set's): with random reviews the validation error
        is optimistic, as the model has seen other reviews of the same movies.

    Returns
    -------
    train, valid, test : tuple of (list of list of int, list of int)
        Reviews and labels of each set.

    Raises
    ------
    DataError
        If the file cannot be read or is malformed, or no training review
        is left after filtering and splitting.
    ValueError
        If `n_words` or `valid_portion` is out of range.
    """
    path = os.fspath(path)
    if n_words < 2:
        raise ValueError(f"n_words={n_words}: must be at least 2")
    if not 0 <= valid_portion <= 1:
        raise ValueError(f"valid_portion={valid_portion}: must be in [0, 1]")
    (train_x, train_y), (test_x, test_y) = load_dataset_file(path)

    if maxlen:
        kept = [index for index, review in enumerate(train_x)
                if len(review) < maxlen]
        train_x = [train_x[index] for index in kept]
        train_y = [train_y[index] for index in kept]
        if not train_x:
            raise DataError(f"{path}: no training review is shorter than"
                            f" maxlen={maxlen}")

    n_samples = len(train_x)
    if valid_block < 0:
        raise ValueError(f"valid_block={valid_block}: must be 0 or more")
    if valid_block:  # whole blocks in random order; valid is the tail
        blocks = numpy.arange(n_samples)
        blocks = numpy.split(blocks, range(valid_block, n_samples, valid_block))
        order = numpy.random.default_rng(seed).permutation(len(blocks))
        sidx = numpy.concatenate([blocks[b] for b in order])
    else:
        sidx = numpy.random.default_rng(seed).permutation(n_samples)
    n_train = int(numpy.round(n_samples * (1. - valid_portion)))
    if n_train < 1:
        raise DataError(f"{path}: valid_portion={valid_portion} leaves no"
                        f" training review (out of {n_samples})")
    valid_x = [train_x[s] for s in sidx[n_train:]]
    valid_y = [train_y[s] for s in sidx[n_train:]]
    train_x = [train_x[s] for s in sidx[:n_train]]
    train_y = [train_y[s] for s in sidx[:n_train]]

    train_x = _remove_unk(train_x, n_words)
    valid_x = _remove_unk(valid_x, n_words)
    test_x = _remove_unk(test_x, n_words)

    if sort_by_len:
        order = _len_argsort(test_x)
        test_x = [test_x[i] for i in order]
        test_y = [test_y[i] for i in order]
        order = _len_argsort(valid_x)
        valid_x = [valid_x[i] for i in order]
        valid_y = [valid_y[i] for i in order]
        order = _len_argsort(train_x)
        train_x = [train_x[i] for i in order]
        train_y = [train_y[i] for i in order]

    return (train_x, train_y), (valid_x, valid_y), (test_x, test_y)


# ---------------------------------------------------------------------------
# Building the dataset
# ---------------------------------------------------------------------------


def ensure_dataset(path="data/imdb.pkl", source=None, download=True):
    """Return `path`, building the dataset file first if it is missing.

    The raw corpus is, in order of precedence: `source`; the environment
    variable ``IMDB_SOURCE``; ``aclImdb_v1.tar.gz`` next to `path`; else
    (if `download`) the Stanford archive, downloaded next to `path`.  It is
    turned into ``<name>.pkl`` and ``<name>.dict.pkl.gz`` next to `path` by
    ``imdb_preprocess.build_dataset``.

    Parameters
    ----------
    path : str or os.PathLike
        The dataset file, e.g. ``data/imdb.pkl``.
    source : str or os.PathLike, optional
        Raw corpus (archive or unpacked folder) to build from.
    download : bool
        Whether downloading the archive is allowed as a last resort.

    Returns
    -------
    str
        `path`.

    Raises
    ------
    DataError
        If the chosen source does not exist, no source is found and
        `download` is False, or building does not produce `path`.
    """
    path = os.fspath(path)
    if os.path.exists(path):
        return path
    import imdb_preprocess  # imported here: it imports this module

    out_dir = os.path.dirname(path) or "."
    name = os.path.basename(_stem(path))
    archive = os.path.join(out_dir, ARCHIVE_NAME)
    env_source = os.environ.get(SOURCE_ENV)
    if source is not None:
        source = os.fspath(source)
        origin = f"source={source}"
    elif env_source:
        source = env_source
        origin = f"{SOURCE_ENV}={source}"
    elif os.path.exists(archive):
        source = archive
        origin = archive
    elif download:
        os.makedirs(out_dir, exist_ok=True)
        print(f"{path} not found: downloading the IMDB archive to {archive}",
              flush=True)
        source = imdb_preprocess.download_archive(archive) or archive
        origin = f"downloaded {source}"
    else:
        raise DataError(
            f"{path}: no such file, and no raw corpus to build it from"
            f" (download=False): pass source=, set {SOURCE_ENV} or put"
            f" {ARCHIVE_NAME} in {out_dir}")
    source = os.fspath(source)
    if not os.path.exists(source):
        raise DataError(f"{origin}: no such file or folder")

    os.makedirs(out_dir, exist_ok=True)
    print(f"{path} not found: building it from {source}", flush=True)
    imdb_preprocess.build_dataset(source, out_dir=out_dir, name=name)
    if not os.path.exists(path):
        raise DataError(f"{path}: still missing after building it from"
                        f" {source}")
    return path
