"""Build the tokenized IMDB sentiment corpus (``imdb.pkl``) from raw reviews.

This re-creates the deeplearning.net LSTM tutorial's ``imdb_preprocess.py``
without its Perl dependency: reviews are tokenized (:func:`tokenize`) with
sacremoses, the Python port of the Moses ``tokenizer.perl -l en -q`` the
original piped them through, then lower-cased and split on white space.
:func:`build_dict` gives word ids by descending frequency over the training
split, starting at 2 (0 is padding, 1 is "unknown"); :func:`encode` (the
tutorial's ``grab_data``) turns texts into word ids; :func:`main` writes
the files.

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
tree, one text per line in one file per label, or a CSV file (read by
:mod:`sentiment.data.corpus`); see ``python imdb_preprocess.py --help``.

Examples
--------
>>> build_dataset("aclImdb_v1.tar.gz", "data")  # doctest: +SKIP
('data/imdb.pkl', 'data/imdb.dict.pkl.gz')

From the shell::

    python imdb_preprocess.py --out data/ \\
        --source ../shared/data/aclImdb_v1_labeled.tar.gz
"""

import argparse
import collections
import gzip
import json
import math
import multiprocessing
import os
import pickle
import sys
import urllib.error
import urllib.request

from tqdm import tqdm

import imdb
from sentiment.data import digests, moses
from sentiment.data.corpus import (DEFAULT_SEED, DEFAULT_TEST_PORTION, group_order,
                              needs_labels_file, read_csv_corpus,
                              read_folder_corpus, read_label_files,
                              split_lines)
from sentiment.common.errors import DataError, one_line
from sentiment.common.files import atomic_write

STANFORD_URL = "http://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
"""Where the Large Movie Review Dataset v1.0 is published."""

ARCHIVE_NAME = "aclImdb_v1.tar.gz"
"""Name of the Stanford archive, looked for (or downloaded) next to the dataset."""

SOURCE_ENV = "IMDB_SOURCE"
"""Environment variable naming the raw corpus to build the dataset from."""

PICKLE_PROTOCOL = 2
"""Pickle protocol of the outputs: the highest one Python 2 can read."""

PAD_ID = 0
"""Word id reserved for padding."""

UNKNOWN_ID = 1
"""Word id of words that are not in the dictionary."""

FIRST_WORD_ID = 2
"""Id of the most frequent word."""

LOCAL_COPY_HINT = "IMDB_SOURCE=../shared/data/aclImdb_v1_labeled.tar.gz"
"""Example of pointing at a local copy of the archive."""

_PROG = "imdb_preprocess.py"
_DOWNLOAD_BLOCK = 1 << 16


# ---------------------------------------------------------------------------
# Tokenizing and the dictionary
# ---------------------------------------------------------------------------

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
    moses_tokenizer = moses.tokenizer()
    words = []
    for line in split_lines(text):
        if line.strip():
            words.extend(moses_tokenizer.tokenize(line, escape=True, return_str=True)
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

    This is the tutorial's ``grab_data``, once the texts are tokenized.

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
                       for name in group_order(labels))
    return "%s: %d reviews (%s)" % (split, len(items), detail)


def _write_dataset(out_dir, name, x, y, n_train, dictionary, labels):
    """Write the dataset, its dictionary and (if needed) its label names.

    Parameters
    ----------
    out_dir : str
        Output folder, created if needed.
    name : str
        File stem of the outputs.
    x, y : list
        Word ids and label ids of every text, the training texts first.
    n_train : int
        Number of training texts.
    dictionary : dict of str to int
        ``word -> id``.
    labels : dict of str to int
        ``label name -> id``.

    Returns
    -------
    list of str
        The files written.
    """
    os.makedirs(out_dir, exist_ok=True)
    pkl_path = os.path.join(out_dir, name + ".pkl")
    dict_path = os.path.join(out_dir, name + ".dict.pkl.gz")
    labels_path = imdb.labels_path_for(pkl_path)
    atomic_write(pkl_path, lambda stream: _write_pickles(
        stream, [(x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])]))
    atomic_write(dict_path,
                 lambda stream: _write_gzip_pickle(stream, dictionary))
    written = [pkl_path, dict_path]
    if needs_labels_file(labels):
        content = (json.dumps(labels, indent=2, ensure_ascii=False)
                   + "\n").encode("utf-8")
        atomic_write(labels_path, lambda stream: stream.write(content))
        written.append(labels_path)
    elif os.path.exists(labels_path):
        os.remove(labels_path)  # stale: from an earlier corpus of this name
    return written


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
    written = _write_dataset(out_dir, name, x, y, n_train, dictionary,
                             corpus.labels)
    say("wrote " + ", ".join(written))
    say("%s: SHA-256 %s" % (written[0], digests.file_sha256(written[0])))
    return written[0], written[1]


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
# Downloading and building on demand
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
        If the download fails, or the Stanford archive has not its published
        SHA-256; the message tells how to use a local copy instead
        (``--source PATH`` or ``IMDB_SOURCE``).
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
        if url == STANFORD_URL:  # its published SHA-256, else not used
            digests.check_download(part, url)
        os.replace(part, dest)
    except (OSError, ValueError, urllib.error.URLError) as error:
        if os.path.exists(part):
            os.remove(part)
        reason = getattr(error, "reason", None) or error
        raise DataError(
            "%s: download failed (%s); point at a local copy with --source "
            "PATH or the IMDB_SOURCE environment variable, e.g. %s"
            % (url, one_line(reason), LOCAL_COPY_HINT)) from None
    return dest


def _raw_source(path, source, download):
    """Choose the raw corpus to build the dataset `path` from.

    Returns
    -------
    source, origin : str
        The corpus, and how it was chosen (for the message when it is
        missing): ``source=...``, ``IMDB_SOURCE=...``, the archive's path or
        ``downloaded ...``.
    """
    out_dir = os.path.dirname(path) or "."
    archive = os.path.join(out_dir, ARCHIVE_NAME)
    env_source = os.environ.get(SOURCE_ENV)
    if source is not None:
        source = os.fspath(source)
        return source, f"source={source}"
    if env_source:
        return env_source, f"{SOURCE_ENV}={env_source}"
    if os.path.exists(archive):
        return archive, archive
    if not download:
        raise DataError(
            f"{path}: no such file, and no raw corpus to build it from"
            f" (download=False): pass source=, set {SOURCE_ENV} or put"
            f" {ARCHIVE_NAME} in {out_dir}")
    os.makedirs(out_dir, exist_ok=True)
    print(f"{path} not found: downloading the IMDB archive to {archive}",
          flush=True)
    source = download_archive(archive) or archive
    return source, f"downloaded {source}"


def ensure_dataset(path="data/imdb.pkl", source=None, download=True):
    """Return `path`, building the dataset file first if it is missing.

    The raw corpus is, in order of precedence: `source`; the environment
    variable ``IMDB_SOURCE``; ``aclImdb_v1.tar.gz`` next to `path`; else
    (if `download`) the Stanford archive, downloaded next to `path`.  It is
    turned into ``<name>.pkl`` and ``<name>.dict.pkl.gz`` next to `path` by
    :func:`build_dataset`.

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
    source, origin = _raw_source(path, source, download)
    source = os.fspath(source)
    if not os.path.exists(source):
        raise DataError(f"{origin}: no such file or folder")
    out_dir = os.path.dirname(path) or "."
    os.makedirs(out_dir, exist_ok=True)
    print(f"{path} not found: building it from {source}", flush=True)
    print(digests.source_note(source), flush=True)
    build_dataset(source, out_dir=out_dir,
                  name=os.path.basename(imdb.dataset_stem(path)))
    if not os.path.exists(path):
        raise DataError(f"{path}: still missing after building it from"
                        f" {source}")
    return path


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


def _add_source_options(parser):
    """Add the options of the aclImdb layout to the parser."""
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


def _add_label_file_options(parser):
    """Add the options of one-text-per-line files to the parser."""
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


def _add_csv_options(parser):
    """Add the options of CSV files to the parser."""
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


def _add_hold_out_options(parser):
    """Add the options of the test hold-out to the parser."""
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


def _add_output_options(parser):
    """Add the output options to the parser."""
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
    _add_source_options(parser)
    _add_label_file_options(parser)
    _add_csv_options(parser)
    _add_hold_out_options(parser)
    _add_output_options(parser)
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
    source = args.source or os.environ.get(SOURCE_ENV)
    if not source:
        source = os.path.join(args.out, os.path.basename(args.url) or
                              ARCHIVE_NAME)
        if not os.path.exists(source):
            os.makedirs(args.out, exist_ok=True)
            download_archive(source, args.url, progress=not args.quiet)
    if not args.quiet and os.path.exists(source):
        print(digests.source_note(source))
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
