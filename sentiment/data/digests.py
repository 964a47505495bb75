"""The data, checked: SHA-256 digests of the raw corpus and of the preprocessed one.

A downloaded Stanford archive must have its published digest (else it is not
used); a local archive or folder is used whatever its digest, with a line
saying whether it is a known copy. The preprocessed corpus (``imdb.pkl``) gets
a digest too, printed by ``imdb_preprocess.py`` and saved in each model's
options (``dataset_sha256``), so that a user whose numbers differ from the
README's can tell the data from the code.
"""
import hashlib
import os

from sentiment.common.errors import DataError

STANFORD_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
KNOWN_SOURCES = {
    STANFORD_SHA256: "the Stanford aclImdb_v1.tar.gz",
    "de04eaeef3dee6a47117aa951df177a32262e406c2b14c2c1502365bb14bcb52":
        "aclImdb v1.0, its labeled part (aclImdb_v1_labeled.tar.gz)",
}
_BLOCK = 1 << 20


def file_sha256(path):
    """The SHA-256 of the file ``path``, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(root):
    """The SHA-256 of a folder: each file's path (relative, ``/``-separated) and
    bytes, in the order of the sorted paths."""
    digest = hashlib.sha256()
    paths = []
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        paths += [os.path.join(folder, name) for name in files]
    for path in sorted(paths, key=lambda p: os.path.relpath(p, root).split(os.sep)):
        relative = "/".join(os.path.relpath(path, root).split(os.sep))
        digest.update(relative.encode("utf-8") + b"\0")
        digest.update(file_sha256(path).encode("ascii"))
    return digest.hexdigest()


def source_note(path):
    """One line on the raw corpus ``path`` (an archive or a folder): its
    digest, and whether it is a known copy of the dataset."""
    digest = folder_sha256(path) if os.path.isdir(path) else file_sha256(path)
    known = KNOWN_SOURCES.get(digest)
    return "%s: SHA-256 %s, %s" % (
        path, digest, known if known else "not a known copy of the IMDB dataset: used as it is")


def check_download(path, url):
    """Raise a one-line :class:`DataError` unless the archive downloaded from
    ``url`` to ``path`` has the published digest; the file is removed then."""
    digest = file_sha256(path)
    if digest != STANFORD_SHA256:
        os.remove(path)
        raise DataError("%s: the download has SHA-256 %s, not the published %s: not used "
                        "(a broken or changed file; point at a local copy with --source PATH "
                        "or IMDB_SOURCE)" % (url, digest, STANFORD_SHA256))
