"""Offline loaders, splits, checksums and the offline-download error."""

from __future__ import annotations

import hashlib
import http.server
import shutil
import threading
from functools import partial

import numpy as np
import pytest

from influence.data import (
    ADULT_MD5,
    Dataset,
    DatasetUnavailable,
    adult_files,
    download,
    load_dataset,
    make_splits,
)

SHAPES = {
    "adult": (45222, 104, 2),
    "mnist17": (1000, 784, 2),
    "mnist5k": (5000, 784, 10),
    "digits": (1797, 64, 10),
    "breast_cancer": (569, 30, 2),
    "mnist1d": (5000, 40, 10),
}


@pytest.mark.parametrize("name", list(SHAPES))
def test_offline_loaders_give_the_documented_shapes(name):
    ds = load_dataset(name)
    n, d, c = SHAPES[name]
    assert ds.X.shape == (n, d) and ds.n_classes == c and ds.name == name
    assert ds.X.dtype == np.float64 and ds.y.dtype == np.int64
    assert set(np.unique(ds.y)) == set(range(c))


def test_mnist_subsets_are_balanced_and_scaled():
    ds = load_dataset("mnist5k")
    assert np.bincount(ds.y).tolist() == [500] * 10 and 0 <= ds.X.min() and ds.X.max() <= 1
    b = load_dataset("mnist17")
    assert np.bincount(b.y).tolist() == [500, 500]
    # a "one" has far less ink than a "seven" on average
    assert b.X[b.y == 0].sum(1).mean() < b.X[b.y == 1].sum(1).mean()


def test_adult_preprocessing_follows_the_sgd_ie_code():
    ds = load_dataset("adult")
    cols = ds.meta["features"]
    fnlwgt = ds.X[:, cols.index("fnlwgt")]
    assert 9 < fnlwgt.mean() < 13  # log1p of weights around 1e5
    assert 0.2 < ds.y.mean() < 0.3  # about a quarter earn >50K
    onehot = [i for i, c in enumerate(cols) if c.startswith("workclass_")]
    np.testing.assert_array_equal(ds.X[:, onehot].sum(1), 1.0)


def test_adult_md5_mismatch_fails_clearly(tmp_path):
    src = adult_files()
    for name, path in src.items():
        shutil.copy(path, tmp_path / name)
    with open(tmp_path / "adult.test", "ab") as f:
        f.write(b"tampered\n")
    with pytest.raises(DatasetUnavailable, match="adult.test has md5 .* expected " + ADULT_MD5["adult.test"]):
        load_dataset("adult", directory=tmp_path)
    (tmp_path / "adult.data").unlink()
    with pytest.raises(DatasetUnavailable, match="adult.data is missing"):
        load_dataset("adult", directory=tmp_path)


def test_splits_are_disjoint_seeded_stratified_and_standardised_on_train():
    ds = load_dataset("breast_cancer")
    s = make_splits(ds, 200, 100, 100, seed=3)
    idx = [set(s[k].meta["indices"]) for k in ("train", "target", "test")]
    assert all(not (a & b) for a, b in [(idx[0], idx[1]), (idx[0], idx[2]), (idx[1], idx[2])])
    assert [len(s[k]) for k in ("train", "target", "test")] == [200, 100, 100]
    np.testing.assert_allclose(s["train"].X.mean(0), 0, atol=1e-12)
    assert abs(s["test"].X.mean()) > 1e-6  # test is standardised with train statistics, not its own
    frac = ds.y.mean()
    for k in ("train", "target", "test"):
        assert abs(s[k].y.mean() - frac) < 0.02
    again = make_splits(ds, 200, 100, 100, seed=3)
    np.testing.assert_array_equal(again["test"].X, s["test"].X)
    other = make_splits(ds, 200, 100, 100, seed=4)
    assert other["train"].meta["indices"] != s["train"].meta["indices"]


def test_bad_requests_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    ds = load_dataset("digits")
    with pytest.raises(ValueError, match="has 1797 samples"):
        make_splits(ds, 1000, 500, 500)
    with pytest.raises(ValueError, match="y has shape"):
        Dataset(np.zeros((3, 2)), np.zeros(4, dtype=int), 2)
    with pytest.raises(ValueError, match="labels must lie"):
        Dataset(np.zeros((3, 2)), np.array([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="NaN"):
        Dataset(np.full((2, 2), np.nan), np.array([0, 1]), 2)


def test_dataset_round_trips_through_npz(tmp_path):
    ds = load_dataset("digits").subset(np.arange(20))
    ds.save(tmp_path / "d.npz")
    back = Dataset.load(tmp_path / "d.npz")
    np.testing.assert_array_equal(back.X, ds.X)
    assert back.name == "digits" and back.n_classes == 10


@pytest.fixture
def local_server(tmp_path):
    """A tiny HTTP server on 127.0.0.1 serving tmp_path/'srv'."""
    root = tmp_path / "srv"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_checks_md5_and_caches(local_server, tmp_path):
    root, url = local_server
    payload = b"1,2,3\n" * 100
    (root / "f.csv").write_bytes(payload)
    md5 = hashlib.md5(payload).hexdigest()
    dest = download(f"{url}/f.csv", tmp_path / "cache" / "f.csv", md5, "toy")
    assert dest.read_bytes() == payload
    (root / "f.csv").unlink()  # cached: no second request needed
    assert download(f"{url}/f.csv", dest, md5, "toy") == dest
    (root / "g.csv").write_bytes(b"other")
    with pytest.raises(DatasetUnavailable, match="toy.*checksum mismatch"):
        download(f"{url}/g.csv", tmp_path / "cache" / "g.csv", md5, "toy")
    assert not (tmp_path / "cache" / "g.csv").exists()


def test_offline_download_names_the_dataset_and_the_network(tmp_path):
    # port 9 on loopback (discard) is closed here: the connection is refused like an offline machine's
    with pytest.raises(DatasetUnavailable, match="dataset 'toy'.*no network"):
        download("http://127.0.0.1:9/x.bin", tmp_path / "x.bin", None, "toy", timeout=5)
    assert not list(tmp_path.iterdir())


def test_online_only_datasets_fail_clearly_without_their_extra():
    pytest.importorskip("sklearn")
    try:
        import torchvision  # noqa: F401

        pytest.skip("torchvision is installed: the error path is not reachable")
    except ImportError:
        pass
    with pytest.raises(DatasetUnavailable, match="needs torchvision"):
        load_dataset("mnist")
