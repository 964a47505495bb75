"""Reading a raw labeled corpus: the texts and labels ``imdb_preprocess.py`` tokenizes.

Three layouts are read into a :class:`Corpus` (training and test texts
with their label names, and the label ids):

* the aclImdb layout ``<split>/<label>/*.txt``, a folder or a tar archive
  (:func:`read_folder_corpus`);
* one text per line, one file per label (:func:`read_label_files`);
* a CSV or TSV file with a header row (:func:`read_csv_corpus`).

Without test files, the test split is held out of the training texts,
stratified by label (:func:`hold_out`).  Every problem with an input is a
one-line :class:`~sentiment.common.errors.DataError` that names the file.
"""
import codecs
import collections
import csv
import dataclasses
import io
import math
import os
import re
import tarfile
import zlib

import numpy

from sentiment.common.errors import DataError, one_line

__all__ = ["Corpus", "SPLITS", "UNLABELED_FOLDER", "DEFAULT_TEST_PORTION",
           "DEFAULT_SEED", "split_lines", "label_ids", "needs_labels_file",
           "group_order", "natural_key", "read_folder_corpus",
           "read_label_files", "read_csv_corpus", "hold_out"]

SPLITS = ("train", "test")
"""Split folder names of the ``<split>/<label>/*.txt`` layout."""

UNLABELED_FOLDER = "unsup"
"""Label folder skipped in the folder layout (aclImdb's unlabeled reviews)."""

DEFAULT_TEST_PORTION = 0.2
"""Portion of each label held out as the test split of a custom corpus."""

DEFAULT_SEED = 123
"""Seed of the test hold-out of a custom corpus."""

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


def split_lines(text):
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


def needs_labels_file(mapping):
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


def group_order(mapping):
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
        raise DataError("%s: %s" % (path, error.strerror or one_line(error))) from None


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
                        % (path, one_line(error))) from None
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
    order = group_order(labels)
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
    texts = [line for line in split_lines(text) if line.strip()]
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
    order = {name: i for i, name in enumerate(group_order(labels))}
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
                        % (path, reader.line_num, one_line(error))) from None
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
