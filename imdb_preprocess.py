"""Build the tokenized IMDB sentiment corpus (``imdb.pkl``) from raw reviews.

This re-creates the deeplearning.net LSTM tutorial's ``imdb_preprocess.py``
without its Perl dependency: reviews are tokenized with sacremoses, the
Python port of the Moses ``tokenizer.perl -l en -q`` the original piped
them through, then lower-cased and split on white space.  Word ids are
given by descending frequency over the training split, starting at 2
(0 is padding, 1 is "unknown").

Outputs, in ``out_dir``:

``<name>.pkl``
    Two pickles in sequence, ``(train_x, train_y)`` then
    ``(test_x, test_y)``; ``x`` is a list of lists of word ids and ``y``
    a list of label ids (IMDB: 1 = pos, 0 = neg, positive reviews first).
``<name>.dict.pkl.gz``
    A gzipped pickle of the dictionary ``word -> id``.
``<name>.labels.json``
    Only when label names other than ``pos``/``neg`` or integers are
    used: ``label name -> id``, to map predictions back.

Pickles use protocol 2 so Python 2 can read them, like the original's
``cPickle`` protocol -1.  Both files are written atomically and the same
input always gives byte-identical files.

Besides the aclImdb layout (a folder or the ``aclImdb_v1.tar.gz``
archive), custom corpora are accepted: any ``<split>/<label>/*.txt``
tree, one text per line in one file per label, or a CSV file; see
``python imdb_preprocess.py --help``.

Examples
--------
>>> build_dataset("aclImdb_v1.tar.gz", "data")  # doctest: +SKIP
('data/imdb.pkl', 'data/imdb.dict.pkl.gz')

From the shell::

    python imdb_preprocess.py --out data/ \
        --source ../shared/data/aclImdb_v1_labeled.tar.gz
"""

import argparse
import codecs
import collections
import csv
import dataclasses
import gzip
import io
import json
import math
import multiprocessing
import os
import pickle
import re
import sys
import tarfile
import urllib.error
import urllib.request
import zlib

import numpy
from tqdm import tqdm

from imdb import DataError, atomic_write

STANFORD_URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
"""Where the Large Movie Review Dataset v1.0 is published."""

PICKLE_PROTOCOL = 2
"""Pickle protocol of the outputs: the highest one Python 2 can read."""

PAD_ID = 0
"""Word id reserved for padding."""

UNKNOWN_ID = 1
"""Word id of words that are not in the dictionary."""

FIRST_WORD_ID = 2
"""Id of the most frequent word."""

SPLITS = ("train", "test")
"""Split folder names of the ``<split>/<label>/*.txt`` layout."""

UNLABELED_FOLDER = "unsup"
"""Label folder skipped in the folder layout (aclImdb's unlabeled reviews)."""

DEFAULT_TEST_PORTION = 0.2
"""Portion of each label held out as the test split of a custom corpus."""

DEFAULT_SEED = 123
"""Seed of the test hold-out of a custom corpus."""

LOCAL_COPY_HINT = "IMDB_SOURCE=../shared/data/aclImdb_v1_labeled.tar.gz"
"""Example of pointing at a local copy of the archive."""

_PROG = "imdb_preprocess.py"
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_DOWNLOAD_BLOCK = 1 << 16

_TOKENIZER = None  # the process's sacremoses.MosesTokenizer, built lazily


# ---------------------------------------------------------------------------
# Tokenizing and the dictionary
# ---------------------------------------------------------------------------

def _make_tokenizer():
    """Build an English Moses tokenizer with faster character-class tests.

    sacremoses' ``islower`` and ``isanyalpha`` rebuild a set of all
    lower-case (2,253) or alphabetic (10,862) characters on every call,
    which was over half of the tokenizing time on IMDB reviews.  The
    subclass builds those sets once; its results are the same.

    Returns
    -------
    sacremoses.MosesTokenizer
        An English tokenizer.
    """
    from sacremoses import MosesTokenizer

    class _Tokenizer(MosesTokenizer):
        """``MosesTokenizer`` whose character sets are built once."""

        def __init__(self, lang):
            super().__init__(lang=lang)
            self._lower = frozenset(self.IsLower)
            self._alpha = frozenset(self.IsAlpha)

        def islower(self, text):
            """Tell whether all characters of `text` are lower-case."""
            return self._lower.issuperset(text)

        def isanyalpha(self, text):
            """Tell whether any character of `text` is alphabetic."""
            return not self._alpha.isdisjoint(text)

    return _Tokenizer(lang="en")


def _moses():
    """Return this process's Moses tokenizer, building it on first use.

    Returns
    -------
    sacremoses.MosesTokenizer
        An English tokenizer (see `_make_tokenizer`).
    """
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = _make_tokenizer()
    return _TOKENIZER


def _lines(text):
    """Split text at ``\\n``, ``\\r\\n`` and ``\\r`` (and nothing else).

    Parameters
    ----------
    text : str
        Any text.

    Returns
    -------
    list of str
        Its lines, without line ends.
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def tokenize(text):
    """Tokenize text the way the tutorial did, as a list of words.

    Each line goes through the Moses tokenizer (``tokenizer.perl -l en
    -q``: XML escaping on, so ``&`` becomes ``&amp;`` and ``"`` becomes
    ``&quot;``; aggressive dash splitting off), then is lower-cased and
    split on white space.  Moses works on lines, so the words of a
    multi-line text are those of its lines, in order.

    This is the one tokenizer of the project: use it for any raw text
    that is to be looked up in a dictionary built here.

    Parameters
    ----------
    text : str
        Raw text, e.g. one review.

    Returns
    -------
    list of str
        The words; empty for blank text.

    Examples
    --------
    >>> words = tokenize("I don't like Tom & Jerry.\\nIt's <b>bad</b>!")
    >>> words  # doctest: +NORMALIZE_WHITESPACE
    ['i', 'don', '&apos;t', 'like', 'tom', '&amp;', 'jerry', '.', 'it',
     '&apos;s', '&lt;', 'b', '&gt;', 'bad', '&lt;', '/', 'b', '&gt;', '!']
    """
    moses = _moses()
    words = []
    for line in _lines(text):
        if line.strip():
            words.extend(moses.tokenize(line, escape=True, return_str=True)
                         .lower().split())
    return words


def word_counts(token_lists):
    """Count the words of some token lists.

    Parameters
    ----------
    token_lists : iterable of sequence of str
        Tokenized texts.

    Returns
    -------
    collections.Counter
        ``word -> number of occurrences``; ``sum(c.values())`` is the
        total word count and ``len(c)`` the number of unique words.
    """
    counts = collections.Counter()
    for tokens in token_lists:
        counts.update(tokens)
    return counts


def dict_from_counts(counts):
    """Number words by descending count, from ``FIRST_WORD_ID`` (2) up.

    Words of equal count are ordered by their code points (plain ``str``
    order).  The original sorted with ``numpy.argsort`` over the keys of
    a Python 2 ``dict``, so its order among equal counts was arbitrary;
    this rule makes the ids reproducible.

    Parameters
    ----------
    counts : mapping of str to int
        ``word -> count``, e.g. from `word_counts`.

    Returns
    -------
    dict of str to int
        ``word -> id``, in id order.
    """
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {word: FIRST_WORD_ID + rank
            for rank, (word, _) in enumerate(ranked)}


def build_dict(token_lists):
    """Build the dictionary ``word -> id`` of some token lists.

    Only the given texts are counted (the tutorial counts the training
    split only).  Ids start at 2 by descending count; ties are broken by
    the words' code point order (the original's order among equal counts
    was arbitrary).  For the total and unique word counts use
    `word_counts` and `dict_from_counts`, which this function combines.

    Parameters
    ----------
    token_lists : iterable of sequence of str
        Tokenized texts.

    Returns
    -------
    dict of str to int
        ``word -> id``, in id order.

    Examples
    --------
    >>> build_dict([["b", "a"], ["a", "c", "b"], ["a"]])
    {'a': 2, 'b': 3, 'c': 4}
    """
    return dict_from_counts(word_counts(token_lists))


def encode(token_lists, dictionary):
    """Replace words by their ids, unknown words by ``UNKNOWN_ID`` (1).

    Parameters
    ----------
    token_lists : iterable of sequence of str
        Tokenized texts.
    dictionary : mapping of str to int
        ``word -> id``, e.g. from `build_dict`.

    Returns
    -------
    list of list of int
        One list of ids per text.

    Examples
    --------
    >>> encode([["a", "zzz"], []], {"a": 2})
    [[2, 1], []]
    """
    get = dictionary.get
    return [[get(word, UNKNOWN_ID) for word in tokens]
            for tokens in token_lists]


def _tokenize_chunk(texts):
    """Tokenize texts, each as one space-joined string (a pool task).

    Parameters
    ----------
    texts : list of str
        Raw texts.

    Returns
    -------
    list of str
        ``" ".join(tokenize(text))`` per text: cheaper to send between
        processes than lists of words.
    """
    return [" ".join(tokenize(text)) for text in texts]


def tokenize_all(texts, workers=None, progress=True):
    """Tokenize many texts, in parallel, keeping their order.

    Parameters
    ----------
    texts : list of str
        Raw texts.
    workers : int, optional
        Number of processes; ``None`` means ``os.cpu_count()``, 1 works
        in this process.
    progress : bool, optional
        Show a progress bar on stderr.

    Returns
    -------
    list of str
        Per text, its words joined by single spaces (``.split()`` gives
        the `tokenize` result back).
    """
    workers = max(1, workers or os.cpu_count() or 1)
    size = max(1, min(200, math.ceil(len(texts) / (4 * workers))))
    chunks = [texts[i:i + size] for i in range(0, len(texts), size)]
    joined = []
    with tqdm(total=len(texts), desc="tokenizing", unit="text",
              file=sys.stderr, disable=not progress) as bar:
        if workers == 1 or len(chunks) < 2:
            results = map(_tokenize_chunk, chunks)
            _collect(results, joined, bar)
        else:
            with multiprocessing.Pool(min(workers, len(chunks))) as pool:
                _collect(pool.imap(_tokenize_chunk, chunks), joined, bar)
    return joined


def _collect(results, joined, bar):
    """Append chunk results to a list, advancing a progress bar.

    Parameters
    ----------
    results : iterable of list of str
        Tokenized chunks, in order.
    joined : list of str
        Receives the texts of every chunk.
    bar : tqdm.tqdm
        Advanced by the size of each chunk.
    """
    for chunk in results:
        joined.extend(chunk)
        bar.update(len(chunk))


# ---------------------------------------------------------------------------
# Labels
# ---------------------------------------------------------------------------

def label_ids(names):
    """Give label names their ids.

    ``pos`` and ``neg`` are 1 and 0 as in the tutorial.  Otherwise, when
    every name is a non-negative integer, the integer is the id; else
    the names are sorted and numbered 0 to K-1.

    Parameters
    ----------
    names : iterable of str
        Label names (repeats allowed).

    Returns
    -------
    dict of str to int
        ``name -> id``, in id order.

    Raises
    ------
    DataError
        If two integer names mean the same id (e.g. ``1`` and ``01``).
    """
    unique = sorted(set(names))
    if set(unique) <= {"pos", "neg"}:
        mapping = {name: int(name == "pos") for name in unique}
    elif all(re.fullmatch(r"[0-9]+", name) for name in unique):
        mapping = {name: int(name) for name in unique}
        if len(set(mapping.values())) < len(mapping):
            raise DataError("labels %s: two names mean the same integer id"
                            % ", ".join(unique))
    else:
        mapping = {name: i for i, name in enumerate(unique)}
    return dict(sorted(mapping.items(), key=lambda item: item[1]))


def _needs_labels_file(mapping):
    """Tell whether label ids need ``<name>.labels.json`` to be read back.

    Parameters
    ----------
    mapping : dict of str to int
        From `label_ids`.

    Returns
    -------
    bool
        False for pos/neg and integer names, True otherwise.
    """
    return not all(name in ("pos", "neg") or name == str(ident)
                   for name, ident in mapping.items())


def _group_order(mapping):
    """Order labels for the output: pos then neg, else by ascending id.

    Parameters
    ----------
    mapping : dict of str to int
        From `label_ids`.

    Returns
    -------
    list of str
        Label names in output order.
    """
    if set(mapping) <= {"pos", "neg"}:
        return [name for name in ("pos", "neg") if name in mapping]
    return sorted(mapping, key=mapping.get)


# ---------------------------------------------------------------------------
# Corpora
# ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Corpus:
    """Raw labeled texts of a training and a test split.

    Attributes
    ----------
    train : list of (str, str)
        ``(text, label name)`` pairs, in output order.
    test : list of (str, str)
        Same for the test split.
    labels : dict of str to int
        ``label name -> id``.
    origin : str
        What the texts were read from, for messages.
    """

    train: list
    test: list
    labels: dict
    origin: str


def _check_encoding(encoding):
    """Fail early on an unknown encoding name.

    Parameters
    ----------
    encoding : str
        A codec name.

    Raises
    ------
    DataError
        If Python does not know it.
    """
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise DataError("--encoding %s: unknown encoding" % encoding) from None


def _decode(data, where, encoding):
    """Decode bytes, naming the file on failure; drop a byte order mark.

    Parameters
    ----------
    data : bytes
        File contents.
    where : str
        The file, for the error message.
    encoding : str
        Codec name.

    Returns
    -------
    str
        The text.

    Raises
    ------
    DataError
        If the bytes are not valid in that encoding.
    """
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        raise DataError(
            "%s: not valid %s (byte 0x%02x at position %d); pass --encoding, "
            "e.g. --encoding latin-1"
            % (where, encoding, error.object[error.start], error.start)
        ) from None
    return text[1:] if text.startswith("\ufeff") else text


def _read_bytes(path):
    """Read a file, turning OS errors into a one-line `DataError`.

    Parameters
    ----------
    path : str
        The file.

    Returns
    -------
    bytes
        Its contents.
    """
    try:
        with open(path, "rb") as stream:
            return stream.read()
    except OSError as error:
        raise DataError("%s: %s" % (path, error.strerror or error)) from None


def natural_key(name):
    """Sort key putting ``2_7.txt`` before ``10_3.txt``.

    Digit runs compare as numbers, the rest as text; the name itself
    breaks remaining ties (``01`` vs ``1``).

    Parameters
    ----------
    name : str
        A file name.

    Returns
    -------
    tuple
        The key.
    """
    parts = re.split(r"([0-9]+)", name)
    return (tuple(int(part) if i % 2 else part
                  for i, part in enumerate(parts)), name)


def _is_archive(path):
    """Tell whether a path names a tar archive by its suffix.

    Parameters
    ----------
    path : str
        A file name.

    Returns
    -------
    bool
        True for ``.tar.gz``, ``.tgz`` and ``.tar``.
    """
    return path.lower().endswith(_ARCHIVE_SUFFIXES)


def _folder_files(root):
    """List the review files of a ``<split>/<label>/*.txt`` folder.

    Parameters
    ----------
    root : str
        The folder holding ``train/`` and ``test/``.

    Returns
    -------
    dict
        ``(split, label) -> list of file paths`` in natural name order;
        labels with no ``.txt`` file are left out.
    """
    files = {}
    for split in SPLITS:
        split_dir = os.path.join(root, split)
        for label in sorted(os.listdir(split_dir)):
            label_dir = os.path.join(split_dir, label)
            if label == UNLABELED_FOLDER or not os.path.isdir(label_dir):
                continue
            names = sorted((name for name in os.listdir(label_dir)
                            if name.endswith(".txt")), key=natural_key)
            if names:
                files[split, label] = [os.path.join(label_dir, name)
                                       for name in names]
    return files


def _read_folder(root, encoding):
    """Read a ``<split>/<label>/*.txt`` folder tree.

    Parameters
    ----------
    root : str
        The folder holding ``train/`` and ``test/``.
    encoding : str
        Codec of the files.

    Returns
    -------
    dict
        ``(split, label) -> list of texts``, files in natural order.
    """
    return {key: [_decode(_read_bytes(path), path, encoding)
                  for path in paths]
            for key, paths in _folder_files(root).items()}


def _archive_key(member_name):
    """Locate a review file inside an archive.

    Parameters
    ----------
    member_name : str
        A member path such as ``aclImdb/train/pos/0_9.txt``.

    Returns
    -------
    tuple or None
        ``(prefix, split, label, file name)``, or None for any other
        member (README, ``*.feat``, ``urls_*.txt``, ``unsup/``...).
    """
    parts = [part for part in member_name.split("/") if part not in ("", ".")]
    if (len(parts) < 3 or parts[-3] not in SPLITS
            or parts[-2] == UNLABELED_FOLDER
            or not parts[-1].endswith(".txt")):
        return None
    return "/".join(parts[:-3]), parts[-3], parts[-2], parts[-1]


def _read_archive(path, encoding):
    """Read the review files of a tar archive, streaming, in memory.

    Parameters
    ----------
    path : str
        A ``.tar.gz``, ``.tgz`` or ``.tar`` file with the
        ``[prefix/]<split>/<label>/*.txt`` layout.
    encoding : str
        Codec of the review files.

    Returns
    -------
    dict
        ``(split, label) -> list of texts``, files in natural order.

    Raises
    ------
    DataError
        If the archive is unreadable or holds several corpora.
    """
    found = collections.defaultdict(list)
    prefixes = set()
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                key = _archive_key(member.name) if member.isfile() else None
                if key is None:
                    continue
                prefix, split, label, name = key
                prefixes.add(prefix)
                data = archive.extractfile(member).read()
                found[split, label].append(
                    (natural_key(name), member.name, data))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise DataError("%s: unreadable archive (%s)"
                        % (path, error)) from None
    if len(prefixes) > 1:
        raise DataError("%s: several corpora (%s); unpack it and point "
                        "--source at one"
                        % (path, ", ".join(sorted(prefixes))))
    texts = {}
    for key in sorted(found):
        members = sorted(found[key])
        texts[key] = [_decode(data, "%s:%s" % (path, name), encoding)
                      for _, name, data in members]
    return texts


def _find_root(source):
    """Find the folder holding ``train/`` and ``test/`` under a source.

    Parameters
    ----------
    source : str
        An ``aclImdb``-like folder or a folder containing ``aclImdb/``.

    Returns
    -------
    str
        The folder.

    Raises
    ------
    DataError
        If neither layout is found.
    """
    for root in (source, os.path.join(source, "aclImdb")):
        if all(os.path.isdir(os.path.join(root, split)) for split in SPLITS):
            return root
    raise DataError(
        "%s: no train/ and test/ folders (expected the aclImdb layout "
        "<split>/<label>/*.txt, a folder containing aclImdb/, or a .tar.gz "
        "archive)" % source)


def read_folder_corpus(source, encoding="utf-8"):
    """Read an aclImdb-layout corpus from a folder or a tar archive.

    The layout is ``<split>/<label>/*.txt`` with splits ``train`` and
    ``test``, one review per file (all its lines are used; aclImdb
    reviews are one line each).  Label folders ``pos``/``neg`` are 1/0;
    other names follow `label_ids`.  A label folder named ``unsup``
    (aclImdb's unlabeled reviews) and any other file are ignored.
    Files are read in natural order of their names (``<id>_<rating>.txt``
    by id).  Archives are streamed into memory, never extracted.

    Parameters
    ----------
    source : str
        An ``aclImdb`` folder, a folder containing ``aclImdb/``, or a
        ``.tar.gz``/``.tgz``/``.tar`` archive of that layout.
    encoding : str, optional
        Codec of the review files.

    Returns
    -------
    Corpus
        The texts, positive reviews first.

    Raises
    ------
    DataError
        If the source is missing, of another layout, or has no texts in
        one of the splits, or a file cannot be decoded.
    """
    source = os.fspath(source)
    _check_encoding(encoding)
    if os.path.isdir(source):
        origin = _find_root(source)
        texts = _read_folder(origin, encoding)
    elif os.path.isfile(source) and _is_archive(source):
        origin = source
        texts = _read_archive(source, encoding)
    elif os.path.exists(source):
        raise DataError("%s: not a folder or a .tar.gz archive" % source)
    else:
        raise DataError("%s: no such file or folder; pass --source PATH to "
                        "the aclImdb folder or archive" % source)
    for split in SPLITS:
        if not any(key[0] == split for key in texts):
            raise DataError("%s: no %s/<label>/*.txt files" % (origin, split))
    labels = label_ids(label for _, label in texts)
    order = _group_order(labels)
    splits = [[(text, label) for label in order
               for text in texts.get((split, label), ())]
              for split in SPLITS]
    return Corpus(splits[0], splits[1], labels, origin)


def _parse_lines(path, encoding):
    """Read a one-text-per-line file; blank lines are skipped.

    Parameters
    ----------
    path : str
        The file.
    encoding : str
        Its codec.

    Returns
    -------
    list of str
        The texts.

    Raises
    ------
    DataError
        If the file is unreadable, undecodable or has no text.
    """
    text = _decode(_read_bytes(path), path, encoding)
    texts = [line for line in _lines(text) if line.strip()]
    if not texts:
        raise DataError("%s: no texts (expected one text per line)" % path)
    return texts


def hold_out(items, portion, seed):
    """Split labeled texts into training and test, stratified by label.

    From each label, ``round(n * portion)`` texts chosen at random (but
    at least one is left for training) go to the test split.  Labels
    are drawn from in order of first appearance with one
    ``numpy.random.default_rng(seed)``, so the split depends only on the
    input and the seed.  Both parts keep the input order.

    Parameters
    ----------
    items : list of (str, str)
        ``(text, label name)`` pairs.
    portion : float
        Fraction to hold out, in (0, 1).
    seed : int
        Seed of the random generator.

    Returns
    -------
    train, test : list of (str, str)
        The two parts.
    """
    rng = numpy.random.default_rng(seed)
    positions = collections.defaultdict(list)
    for i, (_, label) in enumerate(items):
        positions[label].append(i)
    held = set()
    for indices in positions.values():
        count = len(indices)
        n_test = min(count - 1, int(math.floor(count * portion + 0.5)))
        chosen = rng.permutation(count)[:n_test]
        held.update(indices[j] for j in chosen)
    train = [item for i, item in enumerate(items) if i not in held]
    test = [item for i, item in enumerate(items) if i in held]
    return train, test


def _make_corpus(train, test, origin, test_portion, seed):
    """Label, order and (if needed) hold out texts into a `Corpus`.

    Parameters
    ----------
    train : list of (str, str)
        Training ``(text, label name)`` pairs.
    test : list of (str, str)
        Test pairs; when empty, a stratified hold-out of ``train``.
    origin : str
        What the texts came from, for messages.
    test_portion : float
        Hold-out fraction.
    seed : int
        Hold-out seed.

    Returns
    -------
    Corpus
        The corpus, each split grouped by label (pos first, else by id).

    Raises
    ------
    DataError
        If a split ends up empty.
    """
    if not train:
        raise DataError("%s: no training texts" % origin)
    if not test:
        train, test = hold_out(train, test_portion, seed)
        if not test:
            raise DataError(
                "%s: holding out %g of %d texts leaves no test texts; add "
                "texts, raise --test-portion or give test files"
                % (origin, test_portion, len(train)))
    labels = label_ids(label for _, label in train + test)
    order = {name: i for i, name in enumerate(_group_order(labels))}
    train = sorted(train, key=lambda item: order[item[1]])
    test = sorted(test, key=lambda item: order[item[1]])
    return Corpus(train, test, labels, origin)


def read_label_files(train_files, test_files=(), encoding="utf-8",
                     test_portion=DEFAULT_TEST_PORTION, seed=DEFAULT_SEED):
    """Read a corpus of one-text-per-line files, one file per label.

    Parameters
    ----------
    train_files : sequence of (str, str)
        ``(label name, path)`` pairs; a label may have several files.
        Names follow `label_ids` (pos/neg, integers, or any names).
    test_files : sequence of (str, str), optional
        Same for the test split.  When empty, the test split is held
        out of the training texts, see `hold_out`.
    encoding : str, optional
        Codec of the files.
    test_portion : float, optional
        Hold-out fraction when there are no test files.
    seed : int, optional
        Hold-out seed.

    Returns
    -------
    Corpus
        The corpus.

    Raises
    ------
    DataError
        If a file is missing, undecodable or has no text.
    """
    _check_encoding(encoding)
    train = [(text, label) for label, path in train_files
             for text in _parse_lines(path, encoding)]
    test = [(text, label) for label, path in test_files
            for text in _parse_lines(path, encoding)]
    origin = ", ".join(path for _, path in train_files)
    return _make_corpus(train, test, origin, test_portion, seed)


def _csv_delimiter(path, delimiter):
    """Choose the CSV delimiter: explicit, else tab for ``.tsv``, else comma.

    Parameters
    ----------
    path : str
        The CSV file.
    delimiter : str or None
        Explicit delimiter; ``\\t`` may be written as a backslash-t.

    Returns
    -------
    str
        One character.
    """
    if delimiter is not None:
        return "\t" if delimiter in ("\\t", "tab") else delimiter
    return "\t" if path.lower().endswith(".tsv") else ","


def _read_csv(path, text_column, label_column, delimiter, encoding):
    """Read ``(text, label)`` pairs from a CSV file with a header row.

    Parameters
    ----------
    path : str
        The file.
    text_column, label_column : str
        Header names of the two columns.
    delimiter : str or None
        See `_csv_delimiter`.
    encoding : str
        Codec of the file.

    Returns
    -------
    list of (str, str)
        The rows' texts and labels (label white space stripped).

    Raises
    ------
    DataError
        If a column is missing, a row is short or has no label, the
        file is not valid CSV, or has no rows.
    """
    text = _decode(_read_bytes(path), path, encoding)
    reader = csv.reader(io.StringIO(text, newline=""),
                        delimiter=_csv_delimiter(path, delimiter))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError("%s: empty file (a header row is required)" % path)
        columns = {}
        for flag, name in (("--text-column", text_column),
                           ("--label-column", label_column)):
            if name not in header:
                raise DataError("%s: no column %r (columns: %s); pass %s"
                                % (path, name, ", ".join(header), flag))
            columns[flag] = header.index(name)
        t_col, l_col = columns["--text-column"], columns["--label-column"]
        rows = []
        for row in reader:
            if not row:
                continue
            if len(row) <= max(t_col, l_col):
                raise DataError("%s: line %d: %d fields, expected %d"
                                % (path, reader.line_num, len(row),
                                   len(header)))
            label = row[l_col].strip()
            if not label:
                raise DataError("%s: line %d: empty label in column %r"
                                % (path, reader.line_num, label_column))
            rows.append((row[t_col], label))
    except csv.Error as error:
        raise DataError("%s: line %d: %s"
                        % (path, reader.line_num, error)) from None
    if not rows:
        raise DataError("%s: no rows after the header" % path)
    return rows


def read_csv_corpus(path, text_column="text", label_column="label",
                    test_path=None, delimiter=None, encoding="utf-8",
                    test_portion=DEFAULT_TEST_PORTION, seed=DEFAULT_SEED):
    """Read a corpus from a CSV (or TSV) file with a header row.

    Parameters
    ----------
    path : str
        Training file.
    text_column, label_column : str, optional
        Header names of the text and label columns.
    test_path : str, optional
        Test file with the same columns; when None the test split is
        held out of the training rows, see `hold_out`.
    delimiter : str, optional
        Field delimiter; default tab for ``.tsv`` files, else comma.
    encoding : str, optional
        Codec of the files.
    test_portion : float, optional
        Hold-out fraction when there is no test file.
    seed : int, optional
        Hold-out seed.

    Returns
    -------
    Corpus
        The corpus.

    Raises
    ------
    DataError
        See `_read_csv`.
    """
    _check_encoding(encoding)
    train = _read_csv(path, text_column, label_column, delimiter, encoding)
    test = []
    if test_path is not None:
        test = _read_csv(test_path, text_column, label_column, delimiter,
                         encoding)
    return _make_corpus(train, test, path, test_portion, seed)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

def _write_pickles(stream, parts):
    """Pickle objects one after another into a stream.

    Parameters
    ----------
    stream : file
        Binary stream.
    parts : sequence
        Objects to pickle in sequence.
    """
    for part in parts:
        pickle.dump(part, stream, protocol=PICKLE_PROTOCOL)


def _write_gzip_pickle(stream, obj):
    """Write a gzipped pickle with a fixed header (no name, time 0).

    Parameters
    ----------
    stream : file
        Binary stream.
    obj : object
        What to pickle.
    """
    with gzip.GzipFile(filename="", mode="wb", fileobj=stream,
                       mtime=0) as packed:
        pickle.dump(obj, packed, protocol=PICKLE_PROTOCOL)


def _label_summary(split, items, labels):
    """Describe a split, e.g. ``train: 25000 reviews (12500 pos, ...)``.

    Parameters
    ----------
    split : str
        Split name.
    items : list of (str, str)
        Its ``(text, label name)`` pairs.
    labels : dict of str to int
        Label names in output order.

    Returns
    -------
    str
        One line.
    """
    counts = collections.Counter(label for _, label in items)
    detail = ", ".join("%d %s" % (counts[name], name)
                       for name in _group_order(labels))
    return "%s: %d reviews (%s)" % (split, len(items), detail)


def write_corpus(corpus, out_dir, name="imdb", workers=None, progress=True,
                 verbose=True):
    """Tokenize a corpus and write the dataset files.

    Parameters
    ----------
    corpus : Corpus
        Texts to write.
    out_dir : str
        Output folder, created if needed.
    name : str, optional
        File stem of the outputs.
    workers : int, optional
        Tokenizing processes; default ``os.cpu_count()``.
    progress : bool, optional
        Show a progress bar on stderr.
    verbose : bool, optional
        Print the label mapping, split sizes, the tutorial's
        ``<total> total words <unique> unique words`` line and the file
        names to stdout.

    Returns
    -------
    pkl_path, dict_path : str
        ``<out_dir>/<name>.pkl`` and ``<out_dir>/<name>.dict.pkl.gz``.
    """
    out_dir = os.fspath(out_dir)
    say = print if verbose else (lambda *args, **kwargs: None)
    say("labels: " + ", ".join("%s=%d" % item
                               for item in corpus.labels.items()))
    say(_label_summary("train", corpus.train, corpus.labels))
    say(_label_summary("test", corpus.test, corpus.labels))
    texts = [text for text, _ in corpus.train + corpus.test]
    joined = tokenize_all(texts, workers=workers, progress=progress)
    n_train = len(corpus.train)
    counts = word_counts(line.split() for line in joined[:n_train])
    dictionary = dict_from_counts(counts)
    say("%d total words %d unique words" % (sum(counts.values()), len(counts)))
    x = encode((line.split() for line in joined), dictionary)
    y = [corpus.labels[label] for _, label in corpus.train + corpus.test]
    os.makedirs(out_dir, exist_ok=True)
    pkl_path = os.path.join(out_dir, name + ".pkl")
    dict_path = os.path.join(out_dir, name + ".dict.pkl.gz")
    labels_path = os.path.join(out_dir, name + ".labels.json")
    atomic_write(pkl_path, lambda stream: _write_pickles(
        stream, [(x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])]))
    atomic_write(dict_path,
                  lambda stream: _write_gzip_pickle(stream, dictionary))
    written = [pkl_path, dict_path]
    if _needs_labels_file(corpus.labels):
        content = (json.dumps(corpus.labels, indent=2, ensure_ascii=False)
                   + "\n").encode("utf-8")
        atomic_write(labels_path, lambda stream: stream.write(content))
        written.append(labels_path)
    elif os.path.exists(labels_path):
        os.remove(labels_path)  # stale: from an earlier corpus of this name
    say("wrote " + ", ".join(written))
    return pkl_path, dict_path


def build_dataset(source, out_dir, name="imdb", encoding="utf-8",
                  workers=None, progress=True, verbose=None):
    """Build ``<name>.pkl`` and ``<name>.dict.pkl.gz`` from aclImdb reviews.

    Parameters
    ----------
    source : str or os.PathLike
        An ``aclImdb`` folder, a folder containing ``aclImdb/``, a
        ``.tar.gz``/``.tgz`` archive of that layout (such as the
        Stanford ``aclImdb_v1.tar.gz``), or any ``<split>/<label>/*.txt``
        tree, see `read_folder_corpus`.
    out_dir : str or os.PathLike
        Output folder, created if needed.
    name : str, optional
        File stem of the outputs.
    encoding : str, optional
        Codec of the review files.
    workers : int, optional
        Tokenizing processes; default ``os.cpu_count()``.
    progress : bool, optional
        Show a progress bar on stderr.
    verbose : bool, optional
        Print the summary to stdout; default: same as ``progress``.

    Returns
    -------
    pkl_path, dict_path : str
        Paths of the two files written.

    Raises
    ------
    DataError
        If the source is missing, of another layout, empty, or has a
        file that cannot be decoded.
    """
    corpus = read_folder_corpus(source, encoding=encoding)
    return write_corpus(corpus, out_dir, name=name, workers=workers,
                        progress=progress,
                        verbose=progress if verbose is None else verbose)


# ---------------------------------------------------------------------------
# Downloading
# ---------------------------------------------------------------------------

def download_archive(dest, url=STANFORD_URL, progress=True):
    """Download a file (by default the aclImdb archive) to ``dest``.

    The data go to ``dest + ".part"``, renamed to ``dest`` once
    complete, so ``dest`` never holds a partial download.

    Parameters
    ----------
    dest : str or os.PathLike
        Where to save the file; its folder must exist.
    url : str, optional
        What to download.
    progress : bool, optional
        Show a progress bar on stderr.

    Returns
    -------
    str
        ``dest``.

    Raises
    ------
    DataError
        If the download fails; the message tells how to use a local
        copy instead (``--source PATH`` or ``IMDB_SOURCE``).
    """
    dest = os.fspath(dest)
    part = dest + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            with open(part, "wb") as out, tqdm(
                    total=total, desc="downloading", unit="B",
                    unit_scale=True, file=sys.stderr,
                    disable=not progress) as bar:
                for block in iter(lambda: response.read(_DOWNLOAD_BLOCK), b""):
                    out.write(block)
                    done += len(block)
                    bar.update(len(block))
        if total is not None and done < total:
            raise OSError("got %d of %d bytes" % (done, total))
        os.replace(part, dest)
    except (OSError, ValueError, urllib.error.URLError) as error:
        if os.path.exists(part):
            os.remove(part)
        reason = getattr(error, "reason", None) or error
        raise DataError(
            "%s: download failed (%s); point at a local copy with --source "
            "PATH or the IMDB_SOURCE environment variable, e.g. %s"
            % (url, reason, LOCAL_COPY_HINT)) from None
    return dest


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------

def _label_file(value):
    """Parse a ``NAME=FILE`` option value.

    Parameters
    ----------
    value : str
        The option value.

    Returns
    -------
    tuple of (str, str)
        ``(label name, path)``.
    """
    name, sep, path = value.partition("=")
    if not sep or not name.strip() or not path:
        raise argparse.ArgumentTypeError(
            "expected NAME=FILE, e.g. pos=reviews/pos.txt, got %r" % value)
    return name.strip(), path


def _portion(value):
    """Parse a fraction strictly between 0 and 1.

    Parameters
    ----------
    value : str
        The option value.

    Returns
    -------
    float
        The fraction.
    """
    try:
        portion = float(value)
    except ValueError:
        portion = math.nan
    if not 0 < portion < 1:
        raise argparse.ArgumentTypeError(
            "expected a number between 0 and 1, got %r" % value)
    return portion


def _positive_int(value):
    """Parse a positive integer.

    Parameters
    ----------
    value : str
        The option value.

    Returns
    -------
    int
        The number.
    """
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(
            "expected a positive integer, got %r" % value)
    return int(value)


def build_parser():
    """Build the command-line parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser of `main`.
    """
    parser = argparse.ArgumentParser(
        prog=_PROG,
        description="Tokenize movie reviews (or any labeled texts) with the "
                    "Moses tokenizer and write <out>/<name>.pkl (two pickles: "
                    "(train_x, train_y) then (test_x, test_y)) and "
                    "<out>/<name>.dict.pkl.gz (word -> id, ids by descending "
                    "count over the training split, from 2; 0 = padding, "
                    "1 = unknown), as the deeplearning.net LSTM tutorial did.",
        epilog="Sources, one kind per run: --source (aclImdb layout), "
               "--pos/--neg/--label-file (one text per line, one file per "
               "label) or --csv. Without any, $IMDB_SOURCE is used, else the "
               "Stanford archive is downloaded to <out>/aclImdb_v1.tar.gz. "
               "Label names pos/neg map to 1/0, all-integer names to "
               "themselves, other names are sorted and numbered 0..K-1 and "
               "also written to <out>/<name>.labels.json.")
    data = parser.add_argument_group("aclImdb layout")
    data.add_argument(
        "--source", metavar="PATH",
        help="an aclImdb folder, a folder containing aclImdb/, a .tar.gz "
             "archive of that layout, or any <split>/<label>/*.txt tree with "
             "splits train and test (default: $IMDB_SOURCE, else download)")
    data.add_argument(
        "--url", default=STANFORD_URL,
        help="where to download the archive when no source is given "
             "(default: %(default)s)")
    lines = parser.add_argument_group("one text per line, one file per label")
    lines.add_argument("--pos", metavar="FILE",
                       help="positive texts (same as --label-file pos=FILE)")
    lines.add_argument("--neg", metavar="FILE",
                       help="negative texts (same as --label-file neg=FILE)")
    lines.add_argument(
        "--label-file", metavar="NAME=FILE", type=_label_file, action="append",
        default=[], help="texts of label NAME (an integer id, pos/neg, or any "
                         "name); repeatable")
    lines.add_argument("--test-pos", metavar="FILE",
                       help="positive test texts")
    lines.add_argument("--test-neg", metavar="FILE",
                       help="negative test texts")
    lines.add_argument(
        "--test-label-file", metavar="NAME=FILE", type=_label_file,
        action="append", default=[], help="test texts of label NAME; "
                                          "repeatable")
    table = parser.add_argument_group("CSV")
    table.add_argument("--csv", metavar="FILE",
                       help="training texts, one row each, with a header row "
                            "(tab-separated if the name ends in .tsv)")
    table.add_argument("--test-csv", metavar="FILE",
                       help="test texts with the same columns")
    table.add_argument("--text-column", metavar="NAME", default="text",
                       help="header of the text column (default: %(default)s)")
    table.add_argument("--label-column", metavar="NAME", default="label",
                       help="header of the label column "
                            "(default: %(default)s)")
    table.add_argument("--delimiter", metavar="CHAR",
                       help="field delimiter, \\t for tab (default: tab for "
                            ".tsv, else comma)")
    split = parser.add_argument_group("test hold-out (no test files given)")
    split.add_argument(
        "--test-portion", metavar="P", type=_portion,
        default=DEFAULT_TEST_PORTION,
        help="fraction of each label's texts held out as the test split, "
             "stratified by label (default: %(default)s, the usual 80/20 "
             "split, which keeps most of a small corpus for training; IMDB's "
             "own 25k/25k is 0.5)")
    split.add_argument("--seed", metavar="N", type=int, default=DEFAULT_SEED,
                       help="seed of the hold-out (numpy default_rng; "
                            "default: %(default)s)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", metavar="DIR", default="data",
                     help="output folder, created if needed "
                          "(default: %(default)s)")
    out.add_argument("--name", default="imdb",
                     help="file stem of the outputs (default: %(default)s)")
    out.add_argument("--encoding", metavar="NAME", default="utf-8",
                     help="encoding of all text input (default: %(default)s)")
    out.add_argument("--workers", metavar="N", type=_positive_int,
                     help="tokenizing processes (default: the number of "
                          "CPUs, %d here)" % (os.cpu_count() or 1))
    out.add_argument("--quiet", action="store_true",
                     help="no progress bars and no summary")
    return parser


def _train_test_files(args):
    """Collect the ``(label, path)`` pairs of the label-file options.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options.

    Returns
    -------
    train, test : list of (str, str)
        Training and test label files.
    """
    train = [(label, path) for label, path in (("pos", args.pos),
                                               ("neg", args.neg)) if path]
    test = [(label, path) for label, path in (("pos", args.test_pos),
                                              ("neg", args.test_neg)) if path]
    return train + args.label_file, test + args.test_label_file


def _read_corpus(args, parser):
    """Read the corpus the options name, downloading aclImdb if needed.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options.
    parser : argparse.ArgumentParser
        For usage errors.

    Returns
    -------
    Corpus
        The corpus.
    """
    train_files, test_files = _train_test_files(args)
    kinds = [kind for kind, given in (("--source", args.source),
                                      ("label files", train_files),
                                      ("--csv", args.csv)) if given]
    if len(kinds) > 1:
        parser.error("give one source: %s" % " or ".join(kinds))
    if test_files and not train_files:
        parser.error("test label files need training ones "
                     "(--pos/--neg/--label-file)")
    if args.test_csv and not args.csv:
        parser.error("--test-csv needs --csv")
    if train_files:
        return read_label_files(train_files, test_files, args.encoding,
                                args.test_portion, args.seed)
    if args.csv:
        return read_csv_corpus(args.csv, args.text_column, args.label_column,
                               args.test_csv, args.delimiter, args.encoding,
                               args.test_portion, args.seed)
    source = args.source or os.environ.get("IMDB_SOURCE")
    if not source:
        source = os.path.join(args.out, os.path.basename(args.url) or
                              "aclImdb_v1.tar.gz")
        if not os.path.exists(source):
            os.makedirs(args.out, exist_ok=True)
            download_archive(source, args.url, progress=not args.quiet)
    return read_folder_corpus(source, args.encoding)


def main(argv=None):
    """Run the command line.

    Parameters
    ----------
    argv : list of str, optional
        Arguments; default ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 2 on a data error (printed as one line
        ``imdb_preprocess.py: error: ...`` on stderr).  Usage errors
        exit through argparse with status 2.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        corpus = _read_corpus(args, parser)
        write_corpus(corpus, args.out, name=args.name, workers=args.workers,
                     progress=not args.quiet, verbose=not args.quiet)
    except DataError as error:
        message = str(error)
    except OSError as error:
        message = ("%s: %s" % (error.filename, error.strerror)
                   if error.filename else str(error))
    else:
        return 0
    print("%s: error: %s" % (_PROG, " ".join(message.split("\n"))),
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
