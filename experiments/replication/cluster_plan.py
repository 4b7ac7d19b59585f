"""What a cluster run requests: every job of a Snakemake dry run with its resources, and the totals.

    snakemake --profile experiments/profiles/slurm --configfile experiments/config/paper.yaml -n --cores 64 > plan.txt
    python -m replication.cluster_plan plan.txt [--benchmarks results/benchmarks]

(``--cores``: a dry run caps every job's threads at ``--cores``, 1 when it is not given, while a cluster run does
not; give at least the largest ``threads:`` of any rule, 2 here, or the plan undercounts those jobs' CPUs.)

A job asks Slurm for ``cpus`` CPUs (the ``cpus_per_task`` resource, else the rule's ``threads``, as the SLURM
executor plugin does) for ``runtime`` minutes, so the requested CPU-hours of a plan are
``sum_jobs cpus * runtime / 60``: what the scheduler reserves and an account is charged at most, an upper bound
on what the jobs use. ``--benchmarks`` adds what the jobs of a *finished* run used, from Snakemake's
``benchmark:`` files (``cpu_time`` column, seconds; rules without a benchmark file are not counted there).
Local rules (``localrule``) and target rules without outputs (``all``) run in the Snakemake process and request
nothing.
"""

from __future__ import annotations

import argparse
import csv
import logging
import re
import sys
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_JOB = re.compile(r"^(local)?rule (\w+):$")


@dataclass(frozen=True)
class PlannedJob:
    """One job of a dry run: its rule, wildcards and the resources it requests."""

    rule: str
    local: bool
    wildcards: str
    threads: int
    resources: dict[str, str]
    has_output: bool = True
    benchmark: str = ""
    jobid: int = -1

    @property
    def submitted(self) -> bool:
        """Whether the job goes to Slurm: not a local rule, and not a target rule that only collects inputs."""
        return not self.local and self.has_output

    @property
    def cpus(self) -> int:
        """CPUs requested: ``cpus_per_task`` if set, else the rule's threads (the SLURM plugin's choice)."""
        return int(self.resources.get("cpus_per_task", self.threads))

    @property
    def runtime_min(self) -> float:
        """Wall-time request in minutes (Snakemake's ``runtime`` resource); KeyError when the rule sets none."""
        return float(self.resources["runtime"])

    @property
    def cpu_hours(self) -> float:
        return self.cpus * self.runtime_min / 60 if self.submitted else 0.0


def _resources(line: str) -> dict[str, str]:
    """``tmpdir=/tmp, mem_mb=2000, mem=2 GB, runtime=10`` → a dict of strings."""
    out = {}
    for item in line.split(", "):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"cannot read the resource {item!r} in {line!r}")
        out[key.strip()] = value.strip()
    return out


def parse_plan(text: str) -> list[PlannedJob]:
    """The jobs of a ``snakemake -n`` output (Snakemake 9's job blocks: ``rule x:`` then indented fields)."""
    jobs: list[PlannedJob] = []
    block: dict | None = None

    def close() -> None:
        if block is not None:
            jobs.append(PlannedJob(block["rule"], block["local"], block.get("wildcards", ""),
                                   int(block.get("threads", 1)), block.get("resources", {}), "output" in block,
                                   block.get("benchmark", ""), int(block.get("jobid", -1))))

    for line in text.splitlines():
        m = _JOB.match(line)
        if m:
            close()
            block = {"rule": m.group(2), "local": bool(m.group(1))}
        elif block is not None and line.startswith("    ") and ": " in line:
            key, _, value = line.strip().partition(": ")
            if key == "resources":
                block["resources"] = _resources(value)
            elif key in ("threads", "wildcards", "output", "benchmark", "jobid"):
                block[key] = value
        elif block is not None and not line.startswith("    "):
            close()
            block = None
    close()
    return jobs


def job_stats_total(text: str) -> int:
    """The ``total`` of the dry run's "Job stats" table (what Snakemake itself counts)."""
    m = re.search(r"^total\s+(\d+)$", text, re.M)
    if not m:
        raise ValueError("no 'Job stats' total in the dry-run output (was it run with -n?)")
    return int(m.group(1))


def summarize(jobs: list[PlannedJob]) -> dict[str, dict[str, float]]:
    """Per rule: jobs, CPUs and runtime (minutes) per job (the largest), peak memory (MB) and CPU-hours."""
    out: dict[str, dict[str, float]] = {}
    for j in jobs:
        r = out.setdefault(j.rule, {"jobs": 0, "cpus": 0, "runtime_min": 0.0, "mem_mb": 0.0, "cpu_hours": 0.0,
                                    "submitted": j.submitted})
        r["jobs"] += 1
        if j.submitted:
            r["cpus"] = max(r["cpus"], j.cpus)
            r["runtime_min"] = max(r["runtime_min"], j.runtime_min)
            r["mem_mb"] = max(r["mem_mb"], float(j.resources.get("mem_mb", 0)))
            r["cpu_hours"] += j.cpu_hours
    return out


def measured_cpu_hours(benchmarks: Path) -> dict[str, float]:
    """CPU-hours used per rule folder of ``benchmarks/`` (sum of ``cpu_time`` over its .tsv files)."""
    out: dict[str, float] = defaultdict(float)
    for p in sorted(benchmarks.rglob("*.tsv")):
        rule = p.relative_to(benchmarks).parts[0].removesuffix(".tsv")
        with p.open() as f:
            for row in csv.DictReader(f, delimiter="\t"):
                out[rule] += float(row["cpu_time"]) / 3600
    return dict(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("plan", type=Path, help="the output of `snakemake ... -n` (stdout and stderr)")
    ap.add_argument("--benchmarks", type=Path, help="results/benchmarks of a finished run: CPU-hours used")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    text = a.plan.read_text()
    jobs = parse_plan(text)
    if len(jobs) != job_stats_total(text):
        raise SystemExit(f"read {len(jobs)} jobs but the plan counts {job_stats_total(text)}")
    stats = summarize(jobs)
    used = measured_cpu_hours(a.benchmarks) if a.benchmarks else {}
    log.info("%-24s %7s %5s %8s %8s %11s%s", "rule", "jobs", "cpus", "runtime", "mem_mb", "CPU-h req.",
             "  CPU-h used" if used else "")
    for rule, r in sorted(stats.items(), key=lambda kv: -kv[1]["cpu_hours"]):
        extra = f"  {used.get(rule, float('nan')):11.4f}" if used else ""
        if not r["submitted"]:
            log.info("%-24s %7d %5s %8s %8s %11s%s", rule, r["jobs"], "-", "-", "-", "not sent", extra)
        else:
            log.info("%-24s %7d %5d %8.0f %8.0f %11.1f%s", rule, r["jobs"], r["cpus"], r["runtime_min"], r["mem_mb"],
                     r["cpu_hours"], extra)
    remote = [j for j in jobs if j.submitted]
    log.info("total: %d jobs (%d submitted to Slurm), %.1f CPU-hours requested%s", len(jobs), len(remote),
             sum(j.cpu_hours for j in remote), f", {sum(used.values()):.4f} CPU-hours used" if used else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())
