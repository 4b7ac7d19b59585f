"""What each workflow job costs: sizes → fitted seconds and MB → the ``runtime`` / ``mem_mb`` a rule requests.

A job runs one or more *members* (a batched job runs several: all seeds of a setting, all estimators of a run).
Every member has a **key** (what it runs: ``train``, ``estimate:acc_sgd_ie:mlp``, ``bounds:metagradient``, …), a
**work** (multiply-adds, up to a constant), a number of **steps** (optimiser steps or chunks of them: the
per-step Python and dispatch overhead) and a memory **size**, all from the job's wildcards and the configuration
(:func:`member`); n training samples, d features, p parameters, B the batch size, e epochs:

==============================  ==========================================  =====================  ==========
family (rules)                  work                                        steps                  size
==============================  ==========================================  =====================  ==========
``train``, ``cost_timing``      e · n · p                                   e · ⌈n/B⌉              n · d
``estimate`` (key: estimator    e · n · p; n · p for the estimators at      e · ⌈n/B⌉ (0 at θ_T)   n · p
and linear / mlp)               θ_T only (:data:`AT_THE_END`)
``loo``                         (n / shards) · e · n · p                    chunks · e · ⌈n/B⌉     n · p
``cleanse``, ``deletion``       retrainings · e · n · p                     retrainings · e ⌈n/B⌉  n · d
``curate`` (key: policy)        e · n · p of the E3 run                     e · ⌈n/B⌉              n · d
``text_run``, ``lm_run``,       tokens · L · d_model · (12 d_model + 2 T)   steps                  tokens
``lm_shapley`` (key: policy)    (:func:`transformer_flops`)
``cg_pruning_run``,             retrainings · e · n · p (CNN: multiply-     retrainings · e ⌈n/B⌉  n · p
``dvemb_run``, ``e11_sec71``    adds an image, :func:`_cnn_macs`); DVEmb
                                × (points + 1), E11 × Σ epochs · seeds
``loo_merge``, ``evaluate_*``,  n, n · n_target, n · d                      0                      the same
``prepare_data``,
``inject_noise``
everything else                 1 a member (its key: ``bounds:<check>``,    0                      0
                                ``notebook_html:<nb>``, …)
==============================  ==========================================  =====================  ==========

The model of a family (:func:`fit`): seconds = a + s · Σ steps + Σ b_key · work (start-up, per-step overhead,
arithmetic), MB = c + m · the largest member size (per key c for the one-unit families); non-negative, fitted by
least squares on *relative* residuals (a 2 s job off by 1 s weighs as much as a 2 h job off by 1 h) to the
``benchmark:`` files of finished runs (``s`` = wall seconds, ``max_rss`` = MB) and to the parts a job times itself
(:func:`parts`). Memory is an upper envelope: no measured job lies above its fit. A key never measured takes the
largest b of its family (:func:`plan` lists them). A request is the fit times :data:`TIME_SAFETY`, to the nearest
whole minute (Slurm's unit) but at least :data:`MIN_TIME_MARGIN` × the fit (times the attempt: a job retried after
running out of time asks for twice as long), and the fit times :data:`MEM_SAFETY` in MB. The model file
(``experiments/cost/model.json``) names its runs and machine;
``python -m replication.cost measure`` / ``fit`` / ``plan`` rebuild it and price a configuration.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
import platform
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import nnls

from influence.models import Model

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
MODEL_FILE = ROOT / "experiments" / "cost" / "model.json"
MEASUREMENTS = ROOT / "experiments" / "cost" / "measurements.csv"

#: request = fit × factor (time: × the attempt, so a job retried after running out of time asks for twice as long)
TIME_SAFETY = 1.5
MEM_SAFETY = 1.5
#: the least margin of a time request over the fit, after rounding to whole minutes
MIN_TIME_MARGIN = 1.2
#: Slurm's granularity: whole minutes; the smallest memory request (MB)
MIN_RUNTIME_MIN = 1
MIN_MEM_MB = 100

#: (features after preparation, classes) of every data source (checked against the prepared data by the tests)
DIMS: dict[str, tuple[int, int]] = {
    "adult": (104, 2), "mnist17": (784, 2), "digits": (64, 10), "mnist5k": (784, 10), "mnist1d": (40, 10),
    "20ng": (5000, 2), "breast_cancer": (30, 2), "mnist": (784, 10), "cifar10": (3072, 10),
}

#: rule → family (a batched rule ``<stage>_<group>`` belongs to the family of its stage)
_FAMILY_OF = {
    "curate_seeds": "curate", "lm_run_seeds": "lm_run", "text_run_seeds": "text_run",
}
#: families whose work grows with the run's sizes (the others: one unit a member)
SIZED = ("train", "cost_timing", "estimate", "loo", "cleanse", "deletion", "curate", "loo_merge",
         "evaluate_fidelity", "evaluate_detection", "prepare_data", "inject_noise")
#: the wildcards that name what a member of an unsized family runs (its key)
_KEY_WILDCARDS = {
    "bounds": ("check",), "dvemb_run": ("setting", "epochs"), "e11_sec71": ("dataset", "noise", "model"),
    "cg_pruning_run": ("dataset", "arch"), "peers_task": ("task",), "text_run": ("dataset", "policy"),
    "lm_run": ("stream", "policy"), "notebook_html": ("nb",),
}


#: estimators that work at the final θ only (no pass over the trajectory): work n · p, not epochs · n · p
#: (influence functions: CG with exact HVPs, each a pass over the n samples; iterations as measured)
AT_THE_END = ("influence_function", "cg_score", "loss", "el2n", "self_influence", "random")


def family_of(rule: str) -> str:
    """The family of a rule name: ``estimate_adult_clean_…`` → ``estimate``, ``curate_seeds`` → ``curate``."""
    if rule in _FAMILY_OF:
        return _FAMILY_OF[rule]
    for fam in sorted(SIZED, key=len, reverse=True):
        if rule == fam or rule.startswith(fam + "_"):
            return fam
    return rule


def n_params(d: int, classes: int, hidden: Iterable[int]) -> int:
    """Parameters of the ReLU MLP / logistic regression ``d → hidden… → out`` (:class:`influence.models.Model`)."""
    return Model(int(d), int(classes), tuple(int(h) for h in hidden)).n_params


def _data(config: Mapping, dataset: str) -> tuple[int, int, int, int]:
    spec = config["data"][dataset]
    d, classes = DIMS[spec["source"]]
    return int(spec["n_train"]), int(spec["n_target"]), d, classes


def _exp(config: Mapping, name: str) -> Mapping:
    return config.get("experiments", {}).get(name, {}) or {}


@dataclass(frozen=True)
class Member:
    """One unit of a job: what it runs (``key``), its work and memory size (see the module table)."""

    key: str
    work: float
    size: float
    steps: float = 0.0  # optimiser steps (or chunks of them) taken: the per-step Python and dispatch overhead


def member(family: str, wc: Mapping[str, Any], config: Mapping) -> Member:
    """The member of ``family`` with wildcards ``wc`` under ``config`` (module table)."""
    wc = {k: str(v) for k, v in wc.items()}
    if family in ("train", "cost_timing", "estimate", "loo", "cleanse", "deletion", "loo_merge",
                  "evaluate_fidelity", "evaluate_detection", "inject_noise", "prepare_data") and "dataset" in wc:
        n, n_target, d, classes = _data(config, wc["dataset"])
        if family == "prepare_data":
            return Member(family, float(n + n_target) * d, float(n + n_target) * d)
        if family == "inject_noise":
            return Member(family, float(n) * d, float(n) * d)
        if family in ("loo_merge", "evaluate_detection"):
            return Member(family, float(n), float(n))
        if family == "evaluate_fidelity":
            return Member(family, float(n) * n_target, float(n) * n_target)
        spec = config["models"][wc["model"]]
        p = n_params(d, classes, spec.get("hidden", []))
        epochs = float(wc["epochs"])
        one_run = epochs * n * p
        steps = epochs * math.ceil(n / int(spec.get("batch_size", 100)))
        if family in ("train", "cost_timing"):
            return Member(family, one_run, float(n) * d, steps)
        if family == "estimate":  # an estimator's cost differs between the closed forms and an MLP's autodiff
            kind = "mlp" if spec.get("hidden") else "linear"
            at_end = wc["estimator"] in AT_THE_END
            return Member(f"estimate:{wc['estimator']}:{kind}", float(n) * p if at_end else one_run, float(n) * p,
                          0.0 if at_end else steps)
        if family == "loo":
            points = math.ceil(n / int(config["loo"]["shards"]))
            chunks = math.ceil(points / int(config["loo"].get("chunk") or points))
            return Member(family, points * one_run, float(n) * p, chunks * steps)
        if family == "cleanse":
            k = len(_exp(config, "detection").get("cleanse_fractions", [1]))
            return Member(family, k * one_run, float(n) * d, k * steps)
        if family == "deletion":
            dl = _exp(config, "deletion")
            k = len(dl.get("ks", [])) + len(dl.get("keep_fractions", []))
            return Member(family, k * one_run, float(n) * d, k * steps)
    if family == "curate":
        n, _, d, classes = _data(config, wc["dataset"])
        run = _exp(config, "curation").get("run", {})
        p = n_params(d, classes, run.get("hidden", []))
        steps = float(run.get("epochs", 1)) * math.ceil(n / int(run.get("batch_size", 32)))
        return Member(f"curate:{wc.get('policy', '')}", float(run.get("epochs", 1)) * n * p, float(n) * d, steps)
    sized = _experiment_member(family, wc, config)
    if sized is not None:
        return sized
    names = _KEY_WILDCARDS.get(family, ())
    key = family + "".join(f":{wc[k]}" for k in names if k in wc)
    return Member(key, 1.0, 0.0)


def transformer_flops(tokens: float, context: int, d_model: int, n_layers: int) -> float:
    """Multiply-adds of a forward pass over ``tokens`` tokens: L · d · (12 d + 2 T) a token (projections and MLP,
    attention scores and values; Kaplan et al. 2020's count without the embedding)."""
    return float(tokens) * n_layers * d_model * (12 * d_model + 2 * context)


def _cnn_macs(width: int, side: int = 28) -> float:
    """Multiply-adds a 28×28 image of the two-conv CNN of E10/E12 (3×3 convs of ``width`` and 2·``width``
    channels, each followed by 2×2 pooling): an effective parameter count for the work formula."""
    return side * side * 9 * width + (side // 2) ** 2 * 9 * width * 2 * width


def _experiment_member(family: str, wc: Mapping[str, str], config: Mapping) -> Member | None:
    """Members of the experiment families whose sizes live in their own config block (E8-E12)."""
    if family == "text_run":
        e9 = _exp(config, "text")
        ds = next((d for d in e9.get("datasets", []) if d["name"] == wc.get("dataset")), None)
        if ds is None:
            return None
        m, run = e9["model"], e9["run"]
        tokens = float(ds["n_train"]) * float(run["epochs"]) * int(ds["max_len"])
        work = transformer_flops(tokens, int(ds["max_len"]), int(m["d_model"]), int(m["n_layers"]))
        steps = float(run["epochs"]) * math.ceil(int(ds["n_train"]) / int(run["batch_size"]))
        return Member(f"text_run:{wc['policy']}", work, float(ds["n_train"]) * int(ds["max_len"]), steps)
    if family in ("lm_run", "lm_shapley"):
        e8 = _exp(config, "lm")
        m, T = e8["model"], int(e8["model"]["context"])
        if family == "lm_run":
            tokens = float(e8["data"]["n_train"]) * float(e8["run"]["epochs"]) * T
            steps = tokens / T / int(e8["run"]["batch_size"])
            key = f"lm_run:{wc['policy']}"
        else:
            sh = e8["shapley"]
            tokens = float(sh["n_perm"]) * int(sh["n_steps"]) * (int(sh["batch_size"]) + int(sh["target_size"])) * T
            steps = float(sh["n_perm"]) * int(sh["n_steps"])
            key = "lm_shapley"
        work = transformer_flops(tokens, T, int(m["d_model"]), int(m["n_layers"]))
        return Member(key, work, float(e8["data"]["n_train"]) * T, steps)
    if family == "cg_pruning_run":
        e12 = _exp(config, "cg_pruning")
        ds = next((d for d in e12.get("datasets", []) if d["name"] == wc.get("dataset")), None)
        arch = str(wc.get("arch", ""))
        if ds is None or not arch:
            return None
        kind, p = ("cnn", _cnn_macs(int(arch.split("-w")[1]))) if arch.startswith("cnn") else (
            "mlp", n_params(784, 10, [int(h) for h in arch.split("-")[1:]]))
        retrains = 1 + len(e12["selections"]) * len(e12["directions"]) * sum(e12["keep_fractions"])
        runs = len(e12["seeds"]) * retrains * float(e12["run"]["epochs"])
        steps = runs * math.ceil(int(ds["n_train"]) / int(e12["run"].get("batch_size", 128)))
        return Member(f"cg_pruning_run:{kind}", runs * int(ds["n_train"]) * p, float(ds["n_train"]) * 784, steps)
    if family == "dvemb_run":
        e10 = _exp(config, "dvemb")
        name = wc.get("setting")
        st = dict(e10.get("settings", {}))
        if name != st.get("arch", "mlp"):
            st.update(((e10.get("variants") or {}).get(name) or {}).get("settings") or {})
        if not name:
            return None
        arch = st.get("arch", "mlp")
        p = _cnn_macs(16) if arch == "cnn" else n_params(784, 10, st.get("hidden", [128, 128]))
        n, points = int(st.get("n_train", 4000)), int(st.get("n_points", 100))
        steps = float(wc.get("epochs", 1)) * math.ceil(n / int(st.get("batch_size", 64)))
        return Member(f"dvemb_run:{arch}", float(wc.get("epochs", 1)) * n * (points + 1) * p, float(n) * p, steps)
    if family == "e11_sec71":
        e11 = _exp(config, "sec71")
        key = (wc.get("dataset"), wc.get("noise"), wc.get("model"))
        epochs, seeds = set(), set()
        for g in e11.get("grids", []):
            if key[0] in g["datasets"] and key[1] in g["noises"] and key[2] in g["models"]:
                epochs.update(int(x) for x in g["epochs"])
                seeds.update(int(x) for x in g["seeds"])
        size = (e11.get("sizes") or {}).get(key[0])
        if not epochs or size is None:
            return None
        d = DIMS["mnist" if key[0] == "mnist" else key[0]][0] if key[0] in DIMS else 784
        hidden = [] if key[2] == "logreg" else [8, 8]
        p = n_params(d, 2 if key[0] == "adult" else 10, hidden)
        n = int(size["n_train"])
        kind = "dnn" if hidden else "logreg"  # every epoch count and seed: a run and its estimators, each ~ epochs·n·p
        steps = float(sum(epochs)) * len(seeds) * math.ceil(n / int(e11.get("batch_size", 100)))
        return Member(f"e11_sec71:{kind}", float(sum(epochs)) * len(seeds) * n * p, float(n) * p, steps)
    return None


# ------------------------------------------------------------------------------------------------ the model
@dataclass
class CostModel:
    """Fitted seconds and MB per family (:func:`fit`); requests with the safety factors."""

    intercept_s: dict[str, float]
    slope_s: dict[str, float]  # per key
    step_s: dict[str, float]  # per family
    intercept_mb: dict[str, float]  # per family, and per key measured alone
    slope_mb: dict[str, float]  # per family, and per key measured alone
    meta: dict[str, Any] = field(default_factory=dict)
    time_safety: float = TIME_SAFETY
    mem_safety: float = MEM_SAFETY

    @classmethod
    def load(cls, path: str | os.PathLike = MODEL_FILE) -> CostModel:
        """The fitted model; an empty one (every rule requests its own fallback) where ``path`` is missing."""
        if not Path(path).exists():
            return cls({}, {}, {}, {}, {}, {"missing": str(path)})
        d = json.loads(Path(path).read_text())
        return cls(d["intercept_s"], d["slope_s"], d["step_s"], d["intercept_mb"], d["slope_mb"], d.get("meta", {}),
                   d.get("time_safety", TIME_SAFETY), d.get("mem_safety", MEM_SAFETY))

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta, "time_safety": self.time_safety, "mem_safety": self.mem_safety,
                "intercept_s": self.intercept_s, "slope_s": self.slope_s, "step_s": self.step_s,
                "intercept_mb": self.intercept_mb,
                "slope_mb": self.slope_mb}

    def known(self, family: str) -> bool:
        return family in self.intercept_s

    def slope(self, family: str, key: str) -> float:
        """b of a key; an unmeasured key takes its family's largest (0 for a family never measured)."""
        if key in self.slope_s:
            return self.slope_s[key]
        same = [v for k, v in self.slope_s.items() if k == family or k.startswith(family + ":")]
        return max(same, default=0.0)

    def seconds(self, family: str, members: list[Member]) -> float:
        """Fitted wall seconds of one job (a + s · Σ steps + Σ b_key · work)."""
        return (self.intercept_s.get(family, 0.0) + self.step_s.get(family, 0.0) * sum(m.steps for m in members)
                + sum(self.slope(family, m.key) * m.work for m in members))

    def megabytes(self, family: str, members: list[Member]) -> float:
        """Fitted peak resident MB of one job: the largest of its members' c + m · size (per key where the key was
        measured alone, else the family's envelope)."""
        c0, m0 = self.intercept_mb.get(family, 0.0), self.slope_mb.get(family, 0.0)
        return max((self.intercept_mb[m.key] + self.slope_mb[m.key] * m.size) if m.key in self.intercept_mb
                   else c0 + m0 * m.size for m in members)

    def runtime_min(self, family: str, members: list[Member], attempt: int = 1) -> int:
        """Minutes: the fit × the safety factor to the nearest minute, but at least :data:`MIN_TIME_MARGIN` × the
        fit (rounded up) and 1 minute; × the attempt."""
        fit = attempt * self.seconds(family, members)
        return max(MIN_RUNTIME_MIN, math.floor(self.time_safety * fit / 60 + 0.5),
                   math.ceil(MIN_TIME_MARGIN * fit / 60))

    def mem_mb(self, family: str, members: list[Member]) -> int:
        return max(MIN_MEM_MB, math.ceil(self.mem_safety * self.megabytes(family, members)))


# --------------------------------------------------------------------------- requests inside the Snakefile
class Requests:
    """What the rules call: ``resources: **COST.of("train")`` (per job) or ``COST.batch(...)`` (batched).

    A family the model does not know (a new rule) requests ``fallback`` (the rule's own guess) until it is
    measured and refitted. With ``$INFLUENCE_COST_DUMP`` set (``python -m replication.cost dump``) every request
    is appended to that file with its members, which is how a finished run's benchmark files get their sizes.
    """

    def __init__(self, config: Mapping, path: str | os.PathLike | None = None):
        self.config = config
        self.model = CostModel.load(path or MODEL_FILE)
        self.dump = os.environ.get("INFLUENCE_COST_DUMP")
        if self.dump:  # the configuration first: the sizes of the run's sidecars are computed from it
            with open(self.dump, "a") as f:
                f.write(json.dumps({"config": config}, default=str) + "\n")

    def _record(self, rule: str, family: str, wc: Mapping | None, members: list[Member]) -> None:
        if self.dump:
            with open(self.dump, "a") as f:
                f.write(json.dumps({"rule": rule, "family": family, "wildcards": dict(wc or {}),
                                    "members": [m.__dict__ for m in members]}) + "\n")

    def _resources(self, family: str, members: list[Member], fallback: tuple[int, int], attempt: int = 1,
                   wildcards: list[Mapping] = ()) -> dict[str, int]:
        if not self.model.known(family):
            out = {"mem_mb": fallback[0], "runtime": fallback[1] * attempt}
        else:
            out = {"mem_mb": self.model.mem_mb(family, members),
                   "runtime": self.model.runtime_min(family, members, attempt)}
        # an estimator's own mem_mb / runtime in the config replace the model's (largest / summed over a batch)
        specs = [(self.config.get("estimators") or {}).get(w["estimator"]) or {}
                 for w in wildcards if family == "estimate" and "estimator" in w]
        if specs and all(sp.get("mem_mb") for sp in specs):
            out["mem_mb"] = max(int(sp["mem_mb"]) for sp in specs)
        if specs and all(sp.get("runtime") for sp in specs):
            out["runtime"] = sum(int(sp["runtime"]) for sp in specs) * attempt
        return out

    def of(self, rule: str, fallback: tuple[int, int] = (4000, 60), count: int = 1) -> dict[str, Any]:
        """``mem_mb`` and ``runtime`` callables of a per-job rule: ``count`` members (seeds) of its wildcards'."""
        family = family_of(rule)

        def members(wc) -> list[Member]:
            ms = [member(family, dict(wc.items()), self.config)] * count
            self._record(rule, family, dict(wc.items()), ms)
            return ms

        def resources(wildcards, attempt: int = 1) -> dict[str, int]:
            return self._resources(family, members(wildcards), fallback, attempt, [dict(wildcards.items())])

        return {"mem_mb": lambda wildcards: resources(wildcards)["mem_mb"],
                "runtime": lambda wildcards, attempt: resources(wildcards, attempt)["runtime"]}

    def batch(self, rule: str, family: str, wildcards: list[Mapping], fallback: tuple[int, int] = (4000, 60)
              ) -> dict[str, Any]:
        """Requests of a batched rule running one member per wildcard set of ``wildcards``."""
        ms = [member(family, w, self.config) for w in wildcards]
        self._record(rule, family, None, ms)
        wcs = list(wildcards)
        return {"mem_mb": self._resources(family, ms, fallback, 1, wcs)["mem_mb"],
                "runtime": lambda wildcards, attempt: self._resources(family, ms, fallback, attempt, wcs)["runtime"]}


# -------------------------------------------------------------------------------------- measurements, fit
def _wc_text(wc: Mapping) -> str:
    return ", ".join(f"{k}={v}" for k, v in wc.items())


def read_benchmark(path: Path) -> dict[str, float] | None:
    """``s`` (wall seconds), ``cpu_time`` and ``max_rss`` (MB; NaN when Snakemake did not see the process)."""
    import csv

    with path.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return None
    r = rows[-1]

    def num(x: str) -> float:
        return float("nan") if x in ("-", "", "NA") else float(x)

    return {"s": num(r["s"]), "cpu_time": num(r.get("cpu_time", "nan")), "max_rss": num(r["max_rss"])}


def measurements(plan_text: str, dump_lines: Iterable[str], run: str, root: Path = ROOT) -> list[dict[str, Any]]:
    """One row per job of a dry run that has a benchmark file: its members (from the dump) and measurements."""
    from replication.cluster_plan import parse_plan

    recorded: dict[tuple[str, str], dict] = {}
    for line in dump_lines:
        d = json.loads(line)
        if "rule" in d:
            recorded[(d["rule"], _wc_text(d["wildcards"]))] = d
    rows = []
    for job in parse_plan(plan_text):
        if not job.benchmark:
            continue
        bench = root / job.benchmark
        rec = recorded.get((job.rule, job.wildcards))
        if rec is None or not bench.exists():
            continue
        m = read_benchmark(bench)
        if m is None:
            continue
        rows.append({"run": run, "rule": job.rule, "family": rec["family"], "benchmark": job.benchmark,
                     "threads": job.threads, "members": json.dumps(rec["members"]), **m})
    return rows


_SET = re.compile(r"(?P<dataset>[^/]+)/(?P<noise>[^/]+)/(?P<model>[^/]+)/ep(?P<epochs>\d+)/seed(?P<seed>\d+)")


def parts(results: Path, config: Mapping, run: str) -> list[dict[str, Any]]:
    """Rows for the parts a job times itself (its provenance sidecar: ``wall_s``, ``peak_rss_mb``): every
    estimator's scoring and every LOO shard. They have no interpreter start (the intercept's share), and they
    separate the estimators that one batched job runs together."""
    rows = []
    for f in sorted(results.glob("scores/*/*/*/ep*/seed*/*.json")):
        d = json.loads(f.read_text())
        if "wall_s" not in d or "setting" not in d:
            continue
        m = member("estimate", d["setting"], config)
        rows.append({"run": run, "rule": "part", "family": "estimate", "benchmark": str(f.relative_to(results)),
                     "threads": 1, "s": d["wall_s"], "cpu_time": float("nan"), "max_rss": d["peak_rss_mb"],
                     "members": json.dumps([m.__dict__])})
    for f in sorted(results.glob("loo/*/*/*/ep*/seed*/shard*.npz.json")):
        d = json.loads(f.read_text())
        hit = _SET.search(str(f.relative_to(results / "loo")))
        if "wall_s" not in d or hit is None:
            continue
        cfg = dict(config, loo=dict(config["loo"], shards=d.get("n_shards", config["loo"]["shards"])))
        m = member("loo", hit.groupdict(), cfg)
        rows.append({"run": run, "rule": "part", "family": "loo", "benchmark": str(f.relative_to(results)),
                     "threads": 1, "s": d["wall_s"], "cpu_time": float("nan"), "max_rss": d["peak_rss_mb"],
                     "members": json.dumps([m.__dict__])})
    return rows


def _upper_envelope(S: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(c, m) ≥ 0 of the line c + m·S above every point (S_i, y_i) whose largest ratio (c + m S_i) / y_i is least
    (a linear programme in c, m and that ratio): no measured job above its fit, and no job priced far above its
    own peak by another's."""
    from scipy.optimize import linprog

    if np.ptp(S) == 0:
        return np.array([float(y.max()), 0.0])
    scale = float(S.max())
    ones, s_ = np.ones_like(S), S / scale
    A_ub = np.vstack([np.stack([-ones, -s_, 0 * ones], axis=1),   # c + m S ≥ y
                      np.stack([ones, s_, -y], axis=1)])            # c + m S ≤ t y
    res = linprog([0.0, 0.0, 1.0], A_ub=A_ub, b_ub=np.r_[-y, 0 * y], bounds=[(0, None), (0, None), (1, None)])
    if not res.success:
        raise RuntimeError(f"memory envelope: {res.message}")
    return np.array([res.x[0], res.x[1] / scale]) * (1 + 1e-9)


def _nnls_relative(A: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Non-negative x minimising Σ ((A x)_i / t_i − 1)²."""
    w = 1.0 / np.maximum(t, 1e-3)
    scale = np.maximum(np.abs(A * w[:, None]).max(axis=0), 1e-300)
    x, _ = nnls((A * w[:, None]) / scale, np.ones_like(t))
    return x / scale


#: weight of the start-up prior against one job's relative residual (see :func:`fit`)
PRIOR_WEIGHT = 0.3


def _fit_seconds(rs: list[dict], members: list[list[Member]], start: float | None
                 ) -> tuple[float, float, dict[str, float]]:
    """Start-up a, per-step s and per-key b of one family (non-negative least squares on relative residuals); s = 0
    where the jobs have fewer than three different step counts."""
    keys = sorted({m.key for ms in members for m in ms})
    t = np.maximum(np.array([r["s"] for r in rs], dtype=float), 0.05)
    A = np.zeros((len(rs), 2 + len(keys)))
    A[:, 0] = [0.0 if r["rule"] == "part" else 1.0 for r in rs]  # a part has no interpreter start
    for i, ms in enumerate(members):
        for m in ms:
            A[i, 1] += m.steps
            A[i, 2 + keys.index(m.key)] += m.work
    if len({round(v, 6) for v in A[:, 1]}) < 3:  # too few step counts to tell the overhead from the work
        A[:, 1] = 0.0
    if start is not None:  # a pseudo-job of work 0 taking the start-up time, at PRIOR_WEIGHT of a job
        A = np.vstack([A, np.r_[PRIOR_WEIGHT, np.zeros(1 + len(keys))]])
        t = np.r_[t, PRIOR_WEIGHT * start]
    x = _nnls_relative(A, t)
    return float(x[0]), float(x[1]), {k: float(v) for k, v in zip(keys, x[2:], strict=True)}


def fit(rows: list[dict[str, Any]]) -> CostModel:
    """Fit every family's seconds (a + Σ b_key work) and MB (c + m size) on relative residuals (module doc).

    The start-up a is identified where a job's own parts are measured (estimators, LOO shards: the job's time minus
    its parts' is the start). Elsewhere, when every job of a key does the same work, a and b are confounded: there
    the median start-up of the identified families enters as a prior (a pseudo-job of weight
    :data:`PRIOR_WEIGHT`), so that the work, not the start, carries a job's growth to larger sizes.
    """
    by_family: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_family[r["family"]].append(r)
    members_of = {fam: [[Member(**m) for m in json.loads(r["members"])] for r in rs]
                  for fam, rs in by_family.items()}
    identified = [_fit_seconds(rs, members_of[fam], None)[0] for fam, rs in sorted(by_family.items())
                  if any(r["rule"] == "part" for r in rs)]
    start = float(np.median(identified)) if identified else None
    a_s, s_s, b_s, c_mb, m_mb = {}, {}, {}, {}, {}
    for fam, rs in sorted(by_family.items()):
        members = members_of[fam]
        has_parts = any(r["rule"] == "part" for r in rs)
        a_s[fam], s_s[fam], slopes = _fit_seconds(rs, members, None if has_parts else start)
        b_s.update(slopes)
        seen = [i for i, r in enumerate(rs) if np.isfinite(r["max_rss"]) and r["max_rss"] > 0]
        if seen:
            rss = np.array([rs[i]["max_rss"] for i in seen])
            S = np.array([max(m.size for m in members[i]) for i in seen])
            y = _upper_envelope(S, rss)
            c_mb[fam], m_mb[fam] = float(y[0]), float(y[1])
            # per key, from the jobs (and parts) that run that key alone: an estimator's memory is its own
            by_key: dict[str, list[int]] = defaultdict(list)
            for n_, i in enumerate(seen):
                keys = {m.key for m in members[i]}
                if len(keys) == 1:
                    by_key[keys.pop()].append(n_)
            for k, idx in by_key.items():
                if k != fam:
                    c_mb[k], m_mb[k] = (float(v) for v in _upper_envelope(S[idx], rss[idx]))
        else:
            c_mb[fam], m_mb[fam] = float(MIN_MEM_MB), 0.0
    runs = sorted({r["run"] for r in rows})
    meta = {"fitted": datetime.date.today().isoformat(), "runs": runs, "jobs": len(rows), "start_s": start,
            "machine": f"{os.cpu_count()} cores, {platform.machine()}, {platform.processor() or 'cpu'}"}
    return CostModel(a_s, b_s, s_s, c_mb, m_mb, meta)


def write_model(model: CostModel, path: Path = MODEL_FILE) -> None:
    """Write the model file atomically (sorted keys, so a refit on the same rows gives the same bytes)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(model.to_json(), indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def read_measurements(path: Path = MEASUREMENTS) -> list[dict[str, Any]]:
    import pandas as pd

    if not path.exists():
        return []
    return pd.read_csv(path).to_dict("records")


def write_measurements(rows: list[dict[str, Any]], path: Path = MEASUREMENTS) -> None:
    import pandas as pd

    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["run", "rule", "family", "benchmark", "threads", "s", "cpu_time", "max_rss", "members"]
    df = pd.DataFrame(rows, columns=cols).sort_values(["run", "benchmark"], kind="stable")
    tmp = path.with_suffix(".tmp")
    df.to_csv(tmp, index=False, float_format="%.4f")
    tmp.replace(path)


# ------------------------------------------------------------------------------------ dry runs of a config
def snakemake_dry_run(args: list[str], dump: Path | None = None, cores: int = 64, dag: bool = False) -> str:
    """Stdout + stderr of ``snakemake -n --forceall --cores`` (stdout of ``--dag``) with ``args``, from the
    repository."""
    import subprocess
    import sys

    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe) if exe.exists() else "snakemake", "--forceall", "--cores", str(cores), *args]
    cmd += ["--dag"] if dag else ["-n"]
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    env.pop("INFLUENCE_COST_DUMP", None)
    if dump is not None:
        env["INFLUENCE_COST_DUMP"] = str(dump)
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(res.stdout + res.stderr)[-3000:]}")
    return res.stdout if dag else res.stdout + res.stderr


def job_graph(dot: str) -> tuple[dict[int, str], list[tuple[int, int]]]:
    """Job ids → rules and the edges (input job, job) of Snakemake's ``--dag`` (Graphviz) output."""
    nodes = {int(i): r for i, r in re.findall(r'^\s*(\d+)\[label = "(\w+)', dot, re.M)}
    edges = [(int(u), int(v)) for u, v in re.findall(r"^\s*(\d+) -> (\d+)", dot, re.M)]
    return nodes, edges


@dataclass
class PlanCost:
    """A configuration's jobs with fitted and requested costs, and simulated wall times."""

    jobs: int
    submitted: int
    fitted_cpu_h: float
    requested_cpu_h: float
    by_family: dict[str, dict[str, float]]
    wall_h: dict[int, float]
    critical_path_h: float
    unmeasured: list[str]


def simulate_wall(durations: list[float], cpus: list[int], deps: list[list[int]], cores: int) -> float:
    """Seconds a list scheduler needs on ``cores`` cores: a job starts when its inputs are done and its CPUs are
    free; among ready jobs the one with the longest path to the end goes first (critical-path priority), and no
    job overtakes a first one that waits for CPUs (no backfilling: an upper bound on a real scheduler's)."""
    import heapq

    n = len(durations)
    children: list[list[int]] = [[] for _ in range(n)]
    waiting = [len(d) for d in deps]
    for j, ds in enumerate(deps):
        for i in ds:
            children[i].append(j)
    order, rank = _topological(deps, children), [0.0] * n
    for j in reversed(order):
        rank[j] = durations[j] + max((rank[c] for c in children[j]), default=0.0)
    ready = [(-rank[j], j) for j in range(n) if waiting[j] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, int]] = []
    free, now = cores, 0.0
    while ready or running:
        # start ready jobs in priority order while the first one's CPUs are free (no backfilling past it)
        while ready and min(cpus[ready[0][1]], cores) <= free:
            _, j = heapq.heappop(ready)
            free -= min(cpus[j], cores)
            heapq.heappush(running, (now + durations[j], j))
        now, j = heapq.heappop(running)
        free += min(cpus[j], cores)
        for c in children[j]:
            waiting[c] -= 1
            if waiting[c] == 0:
                heapq.heappush(ready, (-rank[c], c))
    return now


def _topological(deps: list[list[int]], children: list[list[int]]) -> list[int]:
    indeg = [len(d) for d in deps]
    stack = [j for j, k in enumerate(indeg) if k == 0]
    out = []
    while stack:
        j = stack.pop()
        out.append(j)
        for c in children[j]:
            indeg[c] -= 1
            if indeg[c] == 0:
                stack.append(c)
    if len(out) != len(deps):
        raise ValueError("the job graph has a cycle")
    return out


def plan(args: list[str], model: CostModel | None = None, cores: Iterable[int] = (64, 512)) -> PlanCost:
    """Price a configuration (``args``: snakemake arguments such as ``--configfile``) with the fitted model."""
    from replication.cluster_plan import parse_plan

    model = model or CostModel.load()
    dump = Path(os.environ.get("TMPDIR", "/tmp")) / f"cost_dump_{os.getpid()}.jsonl"
    dump.unlink(missing_ok=True)
    text = snakemake_dry_run(args, dump)
    lines = dump.read_text().splitlines() if dump.exists() else []
    dump.unlink(missing_ok=True)
    recorded = {}
    for line in lines:
        d = json.loads(line)
        if "rule" in d:
            recorded[(d["rule"], _wc_text(d["wildcards"]))] = d
    rules_by_id, edges = job_graph(snakemake_dry_run(args, dag=True))
    jobs = parse_plan(text)
    index = {j.jobid: k for k, j in enumerate(jobs)}
    if set(rules_by_id) != set(index) or any(jobs[index[i]].rule != r for i, r in rules_by_id.items()):
        raise RuntimeError("the dry run and the job graph list different jobs")
    deps: list[list[int]] = [[] for _ in jobs]
    for u, v in edges:
        deps[index[v]].append(index[u])
    durations, cpus = [], []
    by_family: dict[str, dict[str, float]] = defaultdict(lambda: {"jobs": 0, "fitted_cpu_h": 0.0,
                                                                  "requested_cpu_h": 0.0})
    unmeasured: set[str] = set()
    for j in jobs:
        rec = recorded.get((j.rule, j.wildcards))
        fam = rec["family"] if rec else family_of(j.rule)
        ms = [Member(**m) for m in rec["members"]] if rec else [Member(fam, 1.0, 0.0)]
        secs = model.seconds(fam, ms) if j.submitted else 0.0
        if j.submitted and (not model.known(fam) or any(m.key not in model.slope_s for m in ms)):
            unmeasured.update(m.key for m in ms if m.key not in model.slope_s)
        durations.append(secs)
        cpus.append(j.cpus if j.submitted else 0)
        f = by_family[fam]
        f["jobs"] += 1
        f["fitted_cpu_h"] += j.cpus * secs / 3600 if j.submitted else 0.0
        f["requested_cpu_h"] += j.cpu_hours
    walls = {c: simulate_wall(durations, [max(1, k) for k in cpus], deps, c) / 3600 for c in cores}
    critical = simulate_wall(durations, [1] * len(jobs), deps, len(jobs)) / 3600
    return PlanCost(len(jobs), sum(j.submitted for j in jobs), sum(f["fitted_cpu_h"] for f in by_family.values()),
                    sum(j.cpu_hours for j in jobs), dict(by_family), walls, critical, sorted(unmeasured))


# ------------------------------------------------------------------------------------------------- the CLI
def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m replication.cost", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("measure", help="add a finished run's benchmark files (with their sizes) to the measurements")
    d.add_argument("--run", required=True, help="a name for the run (its rows are replaced)")
    d.add_argument("snakemake_args", nargs=argparse.REMAINDER,
                   help="after --: the run's snakemake arguments (--configfile …, --config results=…)")
    sub.add_parser("fit", help="fit the model file from the measurements (all runs but the '*-check' ones)")
    p = sub.add_parser("plan", help="price a configuration: jobs, CPU-hours, wall time on --cores")
    p.add_argument("--cores", type=int, nargs="+", default=[64, 512])
    p.add_argument("--out", type=Path, help="also write the prediction as JSON (experiments/cost/paper_plan.json)")
    p.add_argument("snakemake_args", nargs=argparse.REMAINDER, help="after --: snakemake arguments")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    sm_args = [x for x in getattr(a, "snakemake_args", []) if x != "--"]
    if a.cmd == "measure":
        dump = Path(os.environ.get("TMPDIR", "/tmp")) / f"cost_dump_{os.getpid()}.jsonl"
        dump.unlink(missing_ok=True)
        text = snakemake_dry_run(sm_args, dump)
        lines = dump.read_text().splitlines()
        new = measurements(text, lines, a.run)
        config = next(json.loads(x)["config"] for x in lines if x.startswith('{"config"'))
        new += parts(ROOT / config["results"], config, a.run)
        dump.unlink(missing_ok=True)
        rows = [r for r in read_measurements() if r["run"] != a.run] + new
        write_measurements(rows)
        log.info("%s: %d jobs with benchmark files; %d rows in %s", a.run, len(new), len(rows), MEASUREMENTS)
    elif a.cmd == "fit":
        model = fit([r for r in read_measurements() if not str(r["run"]).endswith("-check")])
        write_model(model)
        log.info("fitted %d families on %d jobs → %s", len(model.intercept_s), model.meta["jobs"], MODEL_FILE)
    else:
        pc = plan(sm_args, cores=a.cores)
        log.info("%-22s %7s %12s %14s", "family", "jobs", "fitted CPU-h", "requested CPU-h")
        for fam, f in sorted(pc.by_family.items(), key=lambda kv: -kv[1]["fitted_cpu_h"]):
            log.info("%-22s %7d %12.1f %14.1f", fam, f["jobs"], f["fitted_cpu_h"], f["requested_cpu_h"])
        log.info("total: %d jobs (%d submitted), %.1f CPU-hours fitted, %.1f requested", pc.jobs, pc.submitted,
                 pc.fitted_cpu_h, pc.requested_cpu_h)
        for c, w in pc.wall_h.items():
            log.info("wall on %d cores: %.1f h (critical path %.2f h)", c, w, pc.critical_path_h)
        if pc.unmeasured:
            log.info("not measured (largest b of the family used): %s", ", ".join(pc.unmeasured))
        if a.out:
            model = CostModel.load()
            out = {"args": sm_args, "model_fitted": model.meta.get("fitted"), "model_runs": model.meta.get("runs"),
                   "jobs": pc.jobs, "submitted": pc.submitted, "fitted_cpu_h": round(pc.fitted_cpu_h, 1),
                   "requested_cpu_h": round(pc.requested_cpu_h, 1),
                   "wall_h": {str(c): round(w, 2) for c, w in pc.wall_h.items()},
                   "critical_path_h": round(pc.critical_path_h, 2), "unmeasured": pc.unmeasured,
                   "by_family": {f: {k: round(v, 2) for k, v in d.items()} for f, d in sorted(pc.by_family.items())}}
            tmp = a.out.with_suffix(".tmp")
            tmp.write_text(json.dumps(out, indent=1) + "\n")
            tmp.replace(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
