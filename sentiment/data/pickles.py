"""Reading pickles of plain data safely: no code runs, every problem is one line.

:class:`RestrictedUnpickler` builds lists, tuples, dicts, sets, numbers and
strings only; :func:`load_pickles` reads a sequence of such pickles from a
file (gzip-compressed if its name ends in ``.gz``), decodes the byte
strings of Python 2 pickles, and turns every problem into a
:class:`~sentiment.common.errors.DataError` whose message names the file.
"""
import gzip
import os
import pickle
import struct
import zlib

from sentiment.common.errors import DataError, one_line
from sentiment.common.wording import plural, show

__all__ = ["RestrictedUnpickler", "load_pickles"]

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

# Longest exception text quoted in a message.
_DETAIL_LIMIT = 200


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
            f"{self.path}: refused to unpickle {show(module)}.{show(name)}:"
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


def _starts_with_gzip_magic(path):
    """Tell whether the file `path` starts like a gzip file."""
    try:
        with open(path, "rb") as stream:
            return stream.read(2) == _GZIP_MAGIC
    except OSError:
        return False


def _cause(err):
    """``Type: message`` of an exception, on one line (the type alone if no message)."""
    text = one_line(str(err), limit=_DETAIL_LIMIT)
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _load_one(stream, path, index, count, description, decode):
    """Read pickle number ``index`` (from 0) of `count` from an open file.

    Returns
    -------
    object
        What the pickle holds, byte strings decoded if `decode`.

    Raises
    ------
    DataError
        If the file ends before it, or it is malformed, too deep or hostile.
    OSError
        If reading the file fails.
    """
    where = f"pickle {index + 1} of {count}"
    try:
        if not stream.peek(1):
            what = f" ({description})" if description else ""
            empty = " (empty file)" if index == 0 else ""
            raise DataError(f"{path}: expected {plural(count, 'pickle')}"
                            f"{what}, found {index}{empty}")
        obj = RestrictedUnpickler(stream, path).load()
        return _normalise(obj, path) if decode else obj
    except DataError:
        raise
    except RecursionError:
        raise DataError(f"{path}: {where} is nested too deeply to be a"
                        " dataset") from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: not a valid gzip file"
                        f" ({one_line(err, limit=_DETAIL_LIMIT)})") from None
    except _READ_ERRORS as err:
        if (not path.endswith(".gz") and index == 0
                and _starts_with_gzip_magic(path)):
            raise DataError(f"{path}: the file is gzip-compressed but its"
                            " name does not end in .gz") from None
        raise DataError(f"{path}: truncated or corrupt data in {where}"
                        f" ({_cause(err)})") from None
    except OSError:  # gzip.BadGzipFile, an OSError, is caught above
        raise
    except Exception as err:  # anything else a bad pickle raises
        raise DataError(f"{path}: cannot read {where} ({_cause(err)})") from None


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
    objects = []
    try:
        with _open(path) as stream:
            for index in range(count):
                objects.append(_load_one(stream, path, index, count,
                                         description, decode))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a file") from None
    except OSError as err:
        reason = err.strerror or one_line(err, limit=_DETAIL_LIMIT)
        raise DataError(f"{path}: cannot read ({reason})") from None
    return objects
