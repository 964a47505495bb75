"""Errors a user sees: one line that names the file and the problem."""
import sys


class DataError(Exception):
    """A data or model file is missing, unreadable or malformed.

    The message is one line that names the file and the problem.
    """


def one_line(exc, limit=None):
    """The text of ``exc`` (an exception or a string) on one line.

    White space runs become one space; an exception with no message gives
    its type's name; with ``limit``, longer text is cut and ends in "...".
    """
    text = " ".join(str(exc).split())
    if not text and isinstance(exc, BaseException):
        text = type(exc).__name__
    if limit is not None and len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def report(prog, exc, file=None):
    """Print ``prog: error: <first line of exc>`` to standard error; return 2,
    the exit status of a command that failed on its input."""
    print("%s: error: %s" % (prog, str(exc).splitlines()[0] if str(exc) else
                             type(exc).__name__), file=file or sys.stderr)
    return 2
