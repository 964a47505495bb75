"""Writing files atomically, and ``.npz`` archives with no pickles in or out."""
import lzma
import os
import secrets
import zipfile
import zlib

import numpy as np

from sentiment.common.errors import DataError, one_line

# What reading a damaged or hostile .npz can raise.
NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
              RuntimeError, NotImplementedError, MemoryError, OverflowError)


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


def savez(fileobj, arrays):
    """``numpy.savez`` with fixed zip timestamps: same arrays, same bytes."""
    with zipfile.ZipFile(fileobj, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, value in arrays.items():
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value),
                                          allow_pickle=False)


def read_npz(path, what, keys=None):
    """The arrays of the ``.npz`` file ``path`` (those named in ``keys``, if given).

    Nothing is unpickled. ``what`` names the kind of file in the one-line
    :class:`DataError` raised when it is missing or unreadable, e.g.
    ``nope.npz: no such model file``.
    """
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if not magic.startswith(b"PK"):  # a zip file: .npz
            raise ValueError("a single .npy array, not an .npz archive"
                             if magic.startswith(b"\x93NUM") else "not an .npz (zip) archive")
        archive = np.load(path, allow_pickle=False)
        with archive:
            return {k: archive[k] for k in archive.files if keys is None or k in keys}
    except FileNotFoundError:
        raise DataError("%s: no such %s file" % (path, what)) from None
    except IsADirectoryError:
        raise DataError("%s: a folder, not a %s file" % (path, what)) from None
    except NPZ_ERRORS as exc:
        raise DataError("%s: not a readable .npz %s (%s)" % (path, what, one_line(exc))) from None
