"""The data, checked: the downloaded archive's published digest, notes on local
copies, and the preprocessed corpus's digest in each model's options."""
import hashlib
import os

import pytest

import imdb_preprocess as prep
import lstm
from conftest import synthetic_corpus, write_corpus
from sentiment.data import digests
from sentiment.common.errors import DataError


def test_a_download_without_the_published_digest_is_refused_and_not_kept(tmp_path, monkeypatch):
    src = tmp_path / "served.tar.gz"
    src.write_bytes(b"not the archive" * 1000)
    monkeypatch.setattr(prep, "STANFORD_URL", src.as_uri())
    dest = tmp_path / "out" / "aclImdb_v1.tar.gz"
    dest.parent.mkdir()
    with pytest.raises(DataError) as info:
        prep.download_archive(str(dest), src.as_uri(), progress=False)
    message = str(info.value)
    assert message.startswith(src.as_uri() + ": the download has SHA-256 ")
    assert digests.STANFORD_SHA256 in message and "not used" in message and "\n" not in message
    assert os.listdir(dest.parent) == []  # neither the file nor its .part
    # The same bytes with the published digest are kept.
    monkeypatch.setattr(digests, "STANFORD_SHA256", digests.file_sha256(src))
    assert prep.download_archive(str(dest), src.as_uri(), progress=False) == str(dest)
    assert dest.read_bytes() == src.read_bytes()


def test_other_urls_are_not_held_to_the_stanford_digest(tmp_path):
    src = tmp_path / "mirror.tar.gz"
    src.write_bytes(b"a mirror")
    dest = tmp_path / "dest.tar.gz"
    assert prep.download_archive(str(dest), src.as_uri(), progress=False) == str(dest)


def test_source_notes_say_whether_a_local_copy_is_known(tmp_path, monkeypatch):
    archive = tmp_path / "copy.tar.gz"
    archive.write_bytes(b"some archive")
    digest = hashlib.sha256(b"some archive").hexdigest()
    assert digests.source_note(str(archive)) == (
        "%s: SHA-256 %s, not a known copy of the IMDB dataset: used as it is" % (archive, digest))
    monkeypatch.setitem(digests.KNOWN_SOURCES, digest, "a known copy")
    assert digests.source_note(str(archive)).endswith(", a known copy")


def test_a_folder_digest_covers_names_and_bytes(tmp_path):
    root = tmp_path / "aclImdb"
    (root / "train" / "pos").mkdir(parents=True)
    (root / "train" / "pos" / "1_9.txt").write_text("good")
    (root / "train" / "neg").mkdir()
    (root / "train" / "neg" / "2_1.txt").write_text("bad")
    first = digests.folder_sha256(str(root))
    assert digests.folder_sha256(str(root)) == first
    (root / "train" / "neg" / "2_1.txt").write_text("bad!")
    second = digests.folder_sha256(str(root))
    assert second != first
    os.rename(root / "train" / "neg" / "2_1.txt", root / "train" / "neg" / "3_1.txt")
    assert digests.folder_sha256(str(root)) not in (first, second)
    assert digests.source_note(str(root)).startswith("%s: SHA-256 " % root)


def test_preprocessing_prints_and_training_saves_the_corpus_digest(tmp_path, capsys):
    pos, neg = tmp_path / "pos.txt", tmp_path / "neg.txt"
    pos.write_text("a good film\nvery good\ngreat acting\n" * 4)
    neg.write_text("a bad film\nvery bad\nawful acting\n" * 4)
    assert prep.main(["--pos", str(pos), "--neg", str(neg), "--out", str(tmp_path / "d"),
                      "--test-portion", "0.25", "--quiet"]) == 0
    path = tmp_path / "corpus.pkl"
    write_corpus(path, *synthetic_corpus(60, 20, seed=1))
    result = lstm.train_lstm(lstm.Config(dataset=str(path), saveto=str(tmp_path / "m.npz"),
                                         dim_proj=4, n_words=60, max_epochs=1, maxlen=0))
    assert result["status"] == "ok"
    options = lstm.load_options(str(tmp_path / "m.npz"))
    assert options.dataset_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prep.main(["--pos", str(pos), "--neg", str(neg), "--out", str(tmp_path / "d"),
                      "--test-portion", "0.25"]) == 0
    out = capsys.readouterr().out
    pkl = os.path.join(str(tmp_path / "d"), "imdb.pkl")
    assert "%s: SHA-256 %s" % (pkl, digests.file_sha256(pkl)) in out
