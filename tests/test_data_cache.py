"""Dataset caches: no pickle from the cache folder is loaded unverified; corrupt and offline errors are clear.

The real 20 Newsgroups archive cannot be downloaded here, so these tests build a small archive with the
same layout (``20news-bydate-{train,test}/<newsgroup>/<number>``) and serve it from 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import http.server
import logging
import pickle
import shutil
import tarfile
import threading
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from influence.data import (
    CIFAR10_MD5,
    NG20_ARCHIVE,
    NG20_CATEGORIES,
    NG20_TEXTS,
    CorruptCache,
    DatasetUnavailable,
    _check_torchvision_cache,
    convert_20ng_archive,
    download,
    load_dataset,
    read_20ng_texts,
)

pytest.importorskip("sklearn")

GROUPS = (*NG20_CATEGORIES, "alt.atheism")  # one extra newsgroup that the loader must leave out


def _post(group: str, split: str, i: int) -> str:
    word = "clock" if "ibm" in group else ("apple" if "mac" in group else "faith")
    return (
        f"From: user{i}@example.org\nSubject: question {i}\nOrganization: {group}\nLines: 7\n\n"
        f"In article <{i}@news> someone writes:\n> an earlier post about {group}\n"
        f"my {word} {split} machine number {i} has a {word} problem\nsecond line {i} with caf\xe9 text\n\n"
        f"--\nsignature of user{i}\n"
    )


def make_archive(path: Path, per_group: int = 5) -> str:
    """A small 20news-bydate-like tar.gz at ``path`` (latin-1 text files); returns its sha256."""
    tree = path.parent / "tree"
    for split in ("train", "test"):
        for g, group in enumerate(GROUPS):
            folder = tree / f"20news-bydate-{split}" / group
            folder.mkdir(parents=True)
            for i in range(per_group):
                num = 50000 + 100 * g + 7 * i + (0 if split == "train" else 3)
                (folder / str(num)).write_bytes(_post(group, split, num).encode("latin1"))
    with tarfile.open(path, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(tree / f"20news-bydate-{split}", arcname=f"20news-bydate-{split}")
    shutil.rmtree(tree)
    return hashlib.sha256(path.read_bytes()).hexdigest()


class _Planted:
    """Unpickling this creates ``marker``: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def planted_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Planted(marker))


def test_the_planted_pickle_is_live(tmp_path):
    # positive control for the tests below: unpickling the payload does create the marker
    marker = tmp_path / "ran"
    pickle.loads(planted_pickle(marker)).close()
    assert marker.exists()


@pytest.fixture
def served(tmp_path):
    """An HTTP server on 127.0.0.1 serving a fake 20NG archive; yields (url, sha256, served file)."""
    root = tmp_path / "srv"
    root.mkdir()
    sha = make_archive(root / NG20_ARCHIVE)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{NG20_ARCHIVE}", sha, root / NG20_ARCHIVE
    server.shutdown()


def test_conversion_matches_fetch_20newsgroups(tmp_path, monkeypatch):
    """The JSON holds exactly what fetch_20newsgroups(subset='all', categories, remove) returns."""
    import sklearn.datasets._twenty_newsgroups as tng
    from sklearn.datasets import fetch_20newsgroups

    archive = tmp_path / "a" / NG20_ARCHIVE
    archive.parent.mkdir()
    make_archive(archive)

    def fake_fetch_remote(remote, dirname=None, **kw):  # instead of the download; sklearn deletes it after
        return shutil.copy(archive, Path(dirname) / remote.filename)

    monkeypatch.setattr(tng, "_fetch_remote", fake_fetch_remote)
    # a fresh data_home: sklearn builds its cache from the archive and returns it without unpickling
    ref = fetch_20newsgroups(data_home=str(tmp_path / "sk"), subset="all", categories=list(NG20_CATEGORIES),
                             remove=("headers", "footers", "quotes"))
    out = convert_20ng_archive(archive, tmp_path / "cache" / NG20_TEXTS)
    d = read_20ng_texts(out)
    assert d["data"] == ref.data
    assert d["target"] == ref.target.tolist() and d["target_names"] == ref.target_names
    home = str(tmp_path / "sk" / "20news_home") + "/"
    assert d["filenames"] == [f.removeprefix(home) for f in ref.filenames]
    assert len(d["data"]) == 2 * 2 * 5 and "writes:" not in "".join(d["data"])
    assert not list((tmp_path / "cache").glob(".20ng-*"))  # the extracted copy is removed


def test_20ng_downloads_once_converts_and_never_unpickles_the_cache(served, tmp_path, caplog):
    url, sha, served_file = served
    cache = tmp_path / "cache"
    (cache / "20ng").mkdir(parents=True)
    marker = tmp_path / "pwned"
    # what fetch_20newsgroups(data_home=cache/20ng) would unpickle: a zlib-compressed pickle
    (cache / "20ng" / "20news-bydate_py3.pkz").write_bytes(zlib.compress(planted_pickle(marker)))
    with caplog.at_level(logging.WARNING, logger="influence.data"):
        ds = load_dataset("20ng", cache_dir=cache, url=url, sha256=sha)
    assert not marker.exists()
    assert "never loaded" in caplog.text and "20news-bydate_py3.pkz" in caplog.text
    assert ds.name == "20ng" and ds.n_classes == 2 and len(ds) == 20
    assert np.bincount(ds.y).tolist() == [10, 10]  # 1 = comp.sys.mac.hardware
    assert (cache / "20ng" / NG20_ARCHIVE).exists() and (cache / "20ng" / NG20_TEXTS).exists()
    served_file.unlink()  # no network needed any more: the JSON is read
    again = load_dataset("20ng", cache_dir=cache, url=url, sha256=sha)
    np.testing.assert_array_equal(again.X, ds.X)
    np.testing.assert_array_equal(again.y, ds.y)
    (cache / "20ng" / NG20_TEXTS).unlink()  # rebuilt from the cached archive, offline
    np.testing.assert_array_equal(load_dataset("20ng", cache_dir=cache, url=url, sha256=sha).X, ds.X)
    assert not marker.exists()


@pytest.fixture
def converted(tmp_path):
    archive = tmp_path / "a" / NG20_ARCHIVE
    archive.parent.mkdir()
    make_archive(archive)
    cache = tmp_path / "cache"
    convert_20ng_archive(archive, cache / "20ng" / NG20_TEXTS)
    return cache, cache / "20ng" / NG20_TEXTS


OFFLINE_URL = "http://127.0.0.1:9/" + NG20_ARCHIVE  # port 9 on loopback is closed: refused like offline


@pytest.mark.parametrize("with_checksum", [False, True])
def test_a_pickle_planted_as_the_converted_cache_is_refused_unexecuted(converted, tmp_path, with_checksum):
    cache, texts = converted
    marker = tmp_path / "pwned"
    payload = planted_pickle(marker)
    texts.write_bytes(payload)
    side = texts.with_name(texts.name + ".sha256")
    if with_checksum:  # even with a matching checksum file it is parsed as JSON only
        side.write_text(hashlib.sha256(payload).hexdigest() + "  " + texts.name + "\n")
    else:
        side.unlink()
    with pytest.raises(CorruptCache, match=r"corrupt cache file .*20ng-ibm-mac\.json.*Delete it") as e:
        load_dataset("20ng", cache_dir=cache, url=OFFLINE_URL, timeout=5)
    assert "could not download" not in str(e.value)
    assert ("not the JSON" if with_checksum else "checksum file") in str(e.value)
    assert not marker.exists()


def test_a_corrupt_converted_cache_says_corrupt_and_to_delete_it(converted):
    cache, texts = converted
    raw = bytearray(texts.read_bytes())
    raw[len(raw) // 2] ^= 1
    texts.write_bytes(bytes(raw))
    with pytest.raises(CorruptCache, match="corrupt cache file") as e:
        load_dataset("20ng", cache_dir=cache, url=OFFLINE_URL, timeout=5)
    msg = str(e.value)
    assert str(texts) in msg and "checksum mismatch" in msg and "Delete it" in msg
    assert "could not download" not in msg


def test_a_corrupt_cached_archive_says_corrupt_without_downloading(tmp_path):
    cache = tmp_path / "cache"
    (cache / "20ng").mkdir(parents=True)
    archive = cache / "20ng" / NG20_ARCHIVE
    archive.write_bytes(b"truncated")
    with pytest.raises(CorruptCache, match="corrupt cache file") as e:
        load_dataset("20ng", cache_dir=cache, url=OFFLINE_URL, timeout=5)
    assert str(archive) in str(e.value) and "sha256" in str(e.value) and "could not download" not in str(e.value)
    assert archive.read_bytes() == b"truncated"  # never overwritten silently
    # right checksum but not a readable archive: corrupt as well
    sha = hashlib.sha256(b"truncated").hexdigest()
    with pytest.raises(CorruptCache, match=r"corrupt cache file .*20news-bydate\.tar\.gz.*cannot read"):
        load_dataset("20ng", cache_dir=cache, url=OFFLINE_URL, sha256=sha, timeout=5)


def test_20ng_offline_message_names_the_cache_path(tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(DatasetUnavailable, match="dataset '20ng': could not download") as e:
        load_dataset("20ng", cache_dir=cache, url=OFFLINE_URL, timeout=5)
    msg = str(e.value)
    assert "no network" in msg and "corrupt" not in msg and not isinstance(e.value, CorruptCache)
    assert str(cache / "20ng" / NG20_ARCHIVE) in msg  # where the archive may be placed by hand
    assert str(cache / "20ng" / NG20_TEXTS) in msg and "INFLUENCE_DATA" in msg
    assert not (cache / "20ng" / NG20_ARCHIVE).exists()


def test_20ng_offline_message_uses_influence_data(tmp_path, monkeypatch):
    monkeypatch.setenv("INFLUENCE_DATA", str(tmp_path / "env-cache"))
    with pytest.raises(DatasetUnavailable) as e:
        load_dataset("20ng", url=OFFLINE_URL, timeout=5)
    assert str(tmp_path / "env-cache" / "20ng" / NG20_ARCHIVE) in str(e.value)


def test_download_refuses_a_corrupt_cached_file(tmp_path):
    dest = tmp_path / "f.bin"
    dest.write_bytes(b"bad")
    want = hashlib.md5(b"good").hexdigest()
    with pytest.raises(CorruptCache, match=r"'toy': corrupt cache file .*f\.bin.*md5 .* expected " + want):
        download("http://127.0.0.1:9/f.bin", dest, want, "toy", timeout=5)
    assert dest.read_bytes() == b"bad"
    good = tmp_path / "g.bin"
    good.write_bytes(b"good")
    assert download("http://127.0.0.1:9/g.bin", good, None, "toy", sha256=hashlib.sha256(b"good").hexdigest()) == good


def test_cifar10_batches_are_md5_checked_before_any_unpickling(tmp_path):
    root = tmp_path / "cifar10"
    _check_torchvision_cache("cifar10", root)  # nothing cached yet: fine (torchvision downloads)
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    batch.parent.mkdir(parents=True)
    marker = tmp_path / "pwned"
    batch.write_bytes(planted_pickle(marker))
    with pytest.raises(CorruptCache, match=r"'cifar10': corrupt cache file .*data_batch_1.*"
                                                 + CIFAR10_MD5["data_batch_1"] + ".*Delete it"):
        _check_torchvision_cache("cifar10", root)
    assert not marker.exists()


def test_mnist_legacy_pickled_cache_is_refused(tmp_path):
    root = tmp_path / "mnist"
    _check_torchvision_cache("mnist", root)
    processed = root / "MNIST" / "processed"
    processed.mkdir(parents=True)
    (processed / "training.pt").write_bytes(planted_pickle(tmp_path / "pwned"))
    with pytest.raises(DatasetUnavailable, match=r"refusing to load .*training\.pt.*Delete the folder"):
        _check_torchvision_cache("mnist", root)
    assert not (tmp_path / "pwned").exists()
