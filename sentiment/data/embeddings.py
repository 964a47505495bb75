"""Pre-trained word vectors for the embedding matrix ``Wemb``.

Reads word2vec / fastText ``.vec`` text (a ``count dim`` header line, then
``word v1 ... vdim`` lines) and GloVe text (no header), plain or gzipped
(recognised by the magic bytes, not the extension).  Files are streamed
and only dictionary words' vectors are kept, so a 2-million-word fastText
file needs little memory.  Every problem with a file is a one-line
:class:`~sentiment.common.errors.DataError` that names the file.
"""

import gzip
import os
import zlib

import numpy

from sentiment.common.errors import DataError, one_line

__all__ = ["load_vectors", "apply_vectors", "describe"]

_GZIP_MAGIC = b"\x1f\x8b"


def _is_number(text, kind=float):
    try:
        kind(text)
    except ValueError:
        return False
    return True


def _show(text, limit=40):
    """A field of the file for a message: quoted, escaped, clipped."""
    text = repr(text)
    return text if len(text) <= limit else text[:limit - 4] + "...'"


def _values(count):
    return f"{count} value" if count == 1 else f"{count} values"


def _lines(path):
    """Yield ``(line number, text)`` for each line of a UTF-8 file, gzip or not."""
    try:
        raw = open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such embeddings file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with raw:
        zipped = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        number = 0
        try:
            for number, line in enumerate(gzip.GzipFile(fileobj=raw) if zipped else raw, 1):
                try:  # line 1 may start with a byte-order mark
                    text = line.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError:
                    raise DataError(f"{path}: not UTF-8 text (line {number})") from None
                yield number, text
        except (OSError, EOFError, zlib.error) as exc:
            problem = "corrupt or truncated gzip file" if zipped else "cannot read"
            raise DataError(f"{path}: {problem} after line {number} ({one_line(exc)})") from None


def _split(text, fields, dim):
    """Return ``(word, value fields)``, or ``(None, count)`` if the line has
    ``count`` values instead of `dim`."""
    if len(fields) == dim + 1:  # the usual case: a one-token word
        return fields[0], fields[1:]
    if len(fields) < dim + 1:
        return None, len(fields) - 1
    if _is_number(fields[-dim - 1]):  # more than dim numbers
        count = dim + 1
        while count < len(fields) - 1 and _is_number(fields[-count - 1]):
            count += 1
        return None, count
    return text.rsplit(None, dim)[0].strip(), fields[-dim:]  # a word with spaces


def _parse(path, number, values, dim):
    """The float32 vector of a line's value fields."""
    try:
        with numpy.errstate(over="ignore"):  # too large for float32: caught below
            vector = numpy.fromiter(map(float, values), dtype=numpy.float32, count=dim)
    except ValueError:
        bad = next((v for v in values if not _is_number(v)), values[0])
        raise DataError(f"{path}: line {number}: {_show(bad)} is not a number") from None
    finite = numpy.isfinite(vector)
    if not finite.all():
        bad = values[int(numpy.argmin(finite))]
        raise DataError(f"{path}: line {number}: {_show(bad)} is not a finite number")
    return vector


def _header_format(path, number, fields, dim):
    """The format told by the first non-blank line: ``"word2vec"`` if it is a
    ``count dim`` header (of the model's `dim`), else ``"glove"``."""
    if len(fields) == 2 and all(_is_number(f, int) for f in fields):
        declared = int(fields[1])
        if declared != dim:
            raise DataError(
                f"{path}: line {number} declares dimension {declared}, the model's"
                f" embedding dimension is {dim} (use --dim-emb {declared})")
        return "word2vec"
    return "glove"


def _count_error(path, number, count, dim, file_words, fmt):
    """The error for vector line `number` (the `file_words`-th) holding `count`
    values instead of `dim`."""
    if file_words == 1 and fmt == "glove":
        return DataError(
            f"{path}: the vectors have dimension {count}, the model's embedding"
            f" dimension is {dim} (use --dim-emb {count})")
    reason = "the header declares" if file_words == 1 else "the file's first vector has"
    return DataError(f"{path}: line {number} has {_values(count)}, expected {dim}"
                     f" ({reason} {dim})")


def _scan(path, wanted, dim):
    """Read the file, keeping the vectors of the `wanted` words (word -> id).

    Returns
    -------
    exact, folded : dict of int to numpy.ndarray
        Id -> vector, from exact matches and from lower-cased matches of ids
        with no exact match.
    fmt : str or None
        ``"word2vec"`` or ``"glove"``; None for a blank file.
    file_words : int
        Vector lines read.
    """
    exact, folded = {}, {}
    fmt, file_words = None, 0
    for number, text in _lines(path):
        fields = text.split()
        if not fields:
            continue
        if fmt is None:
            fmt = _header_format(path, number, fields, dim)
            if fmt == "word2vec":
                continue
        file_words += 1
        word, values = _split(text, fields, dim)
        if word is None:
            raise _count_error(path, number, values, dim, file_words, fmt)
        i = wanted.get(word)
        if i is not None:
            if i not in exact:
                exact[i] = _parse(path, number, values, dim)
                folded.pop(i, None)
            continue
        i = wanted.get(word.lower())
        if i is not None and i not in exact and i not in folded:
            folded[i] = _parse(path, number, values, dim)
    return exact, folded, fmt, file_words


def load_vectors(path, word_to_id, n_words, dim):
    """Pre-trained word vectors for the dictionary's first `n_words` ids.

    Parameters
    ----------
    path : str or path-like
        A word2vec / fastText ``.vec`` or GloVe text file, maybe gzipped.
    word_to_id : dict
        Maps each (lower-case) word to its id; ids below 2 (padding and
        unknown) and from `n_words` on are ignored.
    n_words : int
        Vocabulary size of the model.
    dim : int
        Embedding dimension of the model; the file's must be the same.

    Returns
    -------
    ids : numpy.ndarray
        int64 ``(k,)``: the ids in ``[2, n_words)`` found, ascending.
    vectors : numpy.ndarray
        float32 ``(k, dim)``: row ``j`` is the vector of ``ids[j]``.
    info : dict
        ``found`` (k), ``wanted`` (dictionary words with
        ``2 <= id < n_words``), ``coverage`` (``found / wanted``, 0.0 when
        nothing is wanted), ``file_words`` (vector lines read), ``dim`` and
        ``format`` (``"word2vec"`` or ``"glove"``).

    Raises
    ------
    DataError
        If the file is missing, unreadable, not UTF-8, corrupt gzip, empty,
        of another dimension than `dim` or ragged, or a used line holds a
        value that is not a finite number.

    Notes
    -----
    The first non-blank line is a word2vec header if it is two integers.
    The last `dim` fields of a line are the values, the rest is the word
    (GloVe 840B has words with spaces).  Exact matches win; a dictionary
    word with no exact match anywhere in the file takes the first word
    whose lower-case form it is ("The" for "the").  Among duplicates the
    first wins.  Every line's field count is checked, but values are
    parsed only on the lines used.
    """
    path = os.fspath(path)
    if dim < 1:
        raise ValueError(f"load_vectors: dim must be positive, not {dim}")
    wanted = {word: i for word, i in word_to_id.items() if 2 <= i < n_words}
    exact, folded, fmt, file_words = _scan(path, wanted, dim)
    if fmt is None:
        raise DataError(f"{path}: empty file")
    if file_words == 0:
        raise DataError(f"{path}: no vectors after the header")
    exact.update(folded)  # folded holds only ids without an exact match
    ids = numpy.array(sorted(exact), dtype=numpy.int64)
    vectors = numpy.empty((len(ids), dim), dtype=numpy.float32)
    for row, i in enumerate(ids):
        vectors[row] = exact[i]
    info = dict(found=len(ids), wanted=len(wanted),
                coverage=len(ids) / len(wanted) if wanted else 0.0,
                file_words=file_words, dim=dim, format=fmt)
    return ids, vectors, info


def apply_vectors(Wemb, ids, vectors):
    """Return a copy of `Wemb` with rows `ids` replaced by `vectors`.

    Parameters
    ----------
    Wemb : numpy.ndarray
        ``(n_words, dim)`` embedding matrix; it is left unchanged.
    ids, vectors : array_like
        ``(k,)`` row ids and ``(k, dim)`` rows, as from :func:`load_vectors`.

    Returns
    -------
    numpy.ndarray
        The new matrix, of the shape and dtype of `Wemb`.

    Raises
    ------
    ValueError
        If the shapes disagree or an id is outside ``[0, n_words)``.
    """
    out = numpy.array(Wemb, copy=True)
    ids = numpy.asarray(ids, dtype=numpy.int64).reshape(-1)
    vectors = numpy.asarray(vectors)
    if out.ndim != 2 or vectors.shape != (len(ids), out.shape[1]):
        raise ValueError(f"apply_vectors: {vectors.shape} vectors for {len(ids)} ids"
                         f" do not fit Wemb of shape {out.shape}")
    if len(ids) and (ids.min() < 0 or ids.max() >= len(out)):
        raise ValueError(f"apply_vectors: ids must be in [0, {len(out)})")
    out[ids] = vectors
    return out


def describe(info, path):
    """One line telling how many words `path` covered, from :func:`load_vectors`'s info.

    Examples
    --------
    >>> describe(dict(format="word2vec", found=8123, wanted=9998, coverage=0.8125), "vecs.vec")
    'embeddings vecs.vec (word2vec): 8,123 of 9,998 words found (81.2%)'
    """
    return (f"embeddings {os.fspath(path)} ({info['format']}): {info['found']:,} of"
            f" {info['wanted']:,} words found ({info['coverage']:.1%})")
