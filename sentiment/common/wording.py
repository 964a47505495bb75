"""Wording of error messages about what a data file holds."""


def show(value, limit=60):
    """A value taken from a file, fit for a one-line message.

    Parameters
    ----------
    value : object
        E.g. a dictionary key or a module name read from a pickle.
    limit : int
        Longest text returned.

    Returns
    -------
    str
        `value` itself if it is a short printable string, else its
        ``repr``, cut to `limit` characters (ending in "...").
    """
    if isinstance(value, str) and value.isprintable() and len(value) <= limit:
        return value
    text = repr(value)
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return text


def a_type(obj):
    """The type of `obj` with its article, e.g. "a list", "an int"."""
    name = type(obj).__name__
    article = "an" if name[:1] in "aeiou" else "a"
    return f"{article} {name}"


def plural(count, word):
    """`count` and `word`, with an "s" unless `count` is 1 ("2 labels")."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
