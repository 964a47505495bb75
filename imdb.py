"""Reading the preprocessed IMDB corpus.

This module re-creates ``imdb.py`` of the deeplearning.net tutorial
"LSTM Networks for Sentiment Analysis" for Python 3 and PyTensor:
:func:`prepare_data` pads a minibatch, :func:`load_data` reads the corpus
and splits off a validation set.

The corpus lives in two files written by ``imdb_preprocess.py`` (or by the
original Python 2 tutorial code), which also builds them when they are
missing (``imdb_preprocess.ensure_dataset``, the tutorial's download):

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

import itertools
import os

import numpy

from sentiment.common.errors import DataError
from sentiment.data.pickles import RestrictedUnpickler, load_pickles
from sentiment.common.wording import a_type, plural, show

__all__ = [
    "DataError",
    "RestrictedUnpickler",
    "prepare_data",
    "pad_sequences",
    "prepare_padded",
    "load_pickles",
    "load_dataset_file",
    "load_dict",
    "dataset_stem",
    "dict_path_for",
    "labels_path_for",
    "remove_unk",
    "load_data",
]


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
        raise ValueError(f"prepare_data: {plural(len(lengths), 'sequence')}"
                         f" but {plural(len(labels), 'label')}")
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
        raise ValueError(f"prepare_padded: {plural(len(seqs), 'sequence')}"
                         f" but {plural(len(labels), 'label')}")
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
# The dataset and dictionary files
# ---------------------------------------------------------------------------


def _check_word_ids(review, path, what):
    """Check that `review` holds ints (not bools) >= 0; `what` names it."""
    if set(map(type, review)) - {int}:
        for position, word in enumerate(review):
            if type(word) is not int:
                raise DataError(
                    f"{path}: {what} has {a_type(word)} word id at"
                    f" position {position}, expected an integer")
    if review and min(review) < 0:
        raise DataError(f"{path}: {what} has a negative word id"
                        f" {min(review)}")


def _check_split(split, path, name):
    """Validate one ``(x, y)`` pair read from a dataset file."""
    if type(split) not in (tuple, list) or len(split) != 2:
        size = f" of {len(split)}" if type(split) in (tuple, list) else ""
        raise DataError(f"{path}: {name}: expected a pair (reviews, labels),"
                        f" got {a_type(split)}{size}")
    x, y = split
    for part, value in (("x", x), ("y", y)):
        if type(value) not in (list, tuple):
            raise DataError(f"{path}: {name}: {part} should be a list, got"
                            f" {a_type(value)}")
    if len(x) != len(y):
        raise DataError(f"{path}: {name}: x has {plural(len(x), 'review')}"
                        f" but y has {plural(len(y), 'label')}")
    # Whole-set checks run in C; a failure is then located review by review.
    review_types = set(map(type, x))
    if review_types - {list, tuple}:
        for index, review in enumerate(x):
            if type(review) not in (list, tuple):
                raise DataError(f"{path}: {name} review {index} is"
                                f" {a_type(review)}, expected a list of"
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
                                f" {a_type(label)}, expected an integer")
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
                        f" {a_type(words)}")
    for word, index in words.items():
        if type(word) is not str:
            raise DataError(f"{path}: dictionary key {show(word)} is"
                            f" {a_type(word)}, expected a string")
        if type(index) is not int or index < 2:
            raise DataError(f"{path}: word {show(word)} has id"
                            f" {show(index)}, expected an integer >= 2")
    return words


def dataset_stem(dataset_path):
    """A dataset file's name without ``.pkl.gz``, ``.pkl`` (or ``.gz``).

    Parameters
    ----------
    dataset_path : str or os.PathLike
        E.g. ``data/imdb.pkl``.

    Returns
    -------
    str
        E.g. ``data/imdb``: the files that go with the dataset are named
        from it (:func:`dict_path_for`, :func:`labels_path_for`).
    """
    path = os.fspath(dataset_path)
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
    stem = dataset_stem(dataset_path)
    compressed = stem + ".dict.pkl.gz"
    plain = stem + ".dict.pkl"
    if not os.path.exists(compressed) and os.path.exists(plain):
        return plain
    return compressed


def load_dict_beside(dataset_path, required=False):
    """The word dictionary that goes with a dataset file (:func:`dict_path_for`),
    or None when there is none and it is not ``required``."""
    path = dict_path_for(dataset_path)
    if not required and not os.path.exists(path):
        return None
    return load_dict(path)


def labels_path_for(dataset_path):
    """Name the label names file that goes with a dataset file.

    ``imdb_preprocess.py`` writes it only for corpora whose labels are not
    ``pos``/``neg`` or integers: it maps each label name to its id.

    Parameters
    ----------
    dataset_path : str or os.PathLike
        E.g. ``data/imdb.pkl`` or ``data/imdb.pkl.gz``.

    Returns
    -------
    str
        ``data/imdb.labels.json``.
    """
    return dataset_stem(dataset_path) + ".labels.json"


# ---------------------------------------------------------------------------
# Train / valid / test sets
# ---------------------------------------------------------------------------


def _len_argsort(seq):
    """Indices that sort `seq` by length (stable)."""
    return sorted(range(len(seq)), key=lambda index: len(seq[index]))


def remove_unk(reviews, n_words):
    """Replace the word ids >= `n_words` by 1, the unknown word.

    Parameters
    ----------
    reviews : sequence of sequences of int
        Reviews as word ids.
    n_words : int
        Vocabulary size.

    Returns
    -------
    list of list of int
        New lists, one per review.
    """
    return [list(review) if not review or max(review) < n_words
            else [1 if word >= n_words else word for word in review]
            for review in reviews]


def _valid_split_order(n_samples, valid_block, seed):
    """A random order of the training reviews; the validation set is its tail.

    With `valid_block` N > 0, whole runs of N consecutive reviews are put
    in random order, so the tail is made of such runs.
    """
    rng = numpy.random.default_rng(seed)
    if not valid_block:
        return rng.permutation(n_samples)
    blocks = numpy.split(numpy.arange(n_samples),
                         range(valid_block, n_samples, valid_block))
    order = rng.permutation(len(blocks))
    return numpy.concatenate([blocks[b] for b in order])


def _sort_by_len(x, y):
    """The reviews `x` and their labels `y`, shortest review first (stable)."""
    order = _len_argsort(x)
    return [x[i] for i in order], [y[i] for i in order]


def load_data(path="data/imdb.pkl", n_words=100000, valid_portion=0.1,
              maxlen=None, sort_by_len=True, seed=123, valid_block=0):
    """Load the IMDB dataset and split off a validation set.

    Parameters
    ----------
    path : str or os.PathLike
        The dataset file (see :func:`load_dataset_file`).  It is not built
        here when missing: see ``imdb_preprocess.ensure_dataset``.
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
        If `n_words`, `valid_portion` or `valid_block` is out of range.
    """
    path = os.fspath(path)
    if n_words < 2:
        raise ValueError(f"n_words={n_words}: must be at least 2")
    if not 0 <= valid_portion <= 1:
        raise ValueError(f"valid_portion={valid_portion}: must be in [0, 1]")
    if valid_block < 0:
        raise ValueError(f"valid_block={valid_block}: must be 0 or more")
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
    sidx = _valid_split_order(n_samples, valid_block, seed)
    n_train = int(numpy.round(n_samples * (1. - valid_portion)))
    if n_train < 1:
        raise DataError(f"{path}: valid_portion={valid_portion} leaves no"
                        f" training review (out of {n_samples})")
    valid_x = remove_unk([train_x[s] for s in sidx[n_train:]], n_words)
    valid_y = [train_y[s] for s in sidx[n_train:]]
    train_x = remove_unk([train_x[s] for s in sidx[:n_train]], n_words)
    train_y = [train_y[s] for s in sidx[:n_train]]
    test_x = remove_unk(test_x, n_words)

    if sort_by_len:
        test_x, test_y = _sort_by_len(test_x, test_y)
        valid_x, valid_y = _sort_by_len(valid_x, valid_y)
        train_x, train_y = _sort_by_len(train_x, train_y)

    return (train_x, train_y), (valid_x, valid_y), (test_x, test_y)
