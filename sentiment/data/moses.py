"""The English Moses tokenizer of ``imdb_preprocess.tokenize``, built once per process.

sacremoses is imported, and the tokenizer built, on the first call of
:func:`tokenizer`, not on import.
"""

__all__ = ["make_tokenizer", "tokenizer"]

_TOKENIZER = None  # the process's sacremoses.MosesTokenizer, built lazily


def make_tokenizer():
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


def tokenizer():
    """Return this process's Moses tokenizer, building it on first use.

    Returns
    -------
    sacremoses.MosesTokenizer
        An English tokenizer (see `make_tokenizer`).
    """
    global _TOKENIZER
    if _TOKENIZER is None:
        _TOKENIZER = make_tokenizer()
    return _TOKENIZER

