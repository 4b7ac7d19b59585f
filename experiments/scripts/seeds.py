"""Rules <stage>_<setting> of ``batch_seeds``: one job runs a per-seed rule script for each of several runs.

``params.script`` is the script of the per-seed rule (train.py, loo.py, estimate.py, ...), ``params.jobs`` the
jobs it stands for, each with the ``input``, ``output``, ``params``, ``wildcards`` and ``log`` the per-seed rule
would give it. The script runs once per job in this interpreter (one Python and torch start-up instead of one per
seed), with a stand-in ``snakemake`` object of that job; it writes the same files, byte for byte. Each job logs
to its own log file and to this job's (wfio): a job's failure, traceback included, is in both.
"""

import runpy
from pathlib import Path

from snakemake.iocontainers import Namedlist
from wfio import close_job_log, setup

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm, batch=True)


class Job:
    """The parts of Snakemake's script object that the rule scripts read, for one per-seed job."""

    def __init__(self, spec, rule, threads):
        def nl(x):
            return Namedlist(fromdict=dict(x)) if isinstance(x, dict) else Namedlist(toclone=list(x))

        self.input, self.output = nl(spec["input"]), nl(spec["output"])
        self.params, self.wildcards = nl(spec["params"]), nl(spec["wildcards"])
        self.log = nl([spec["log"]] if spec.get("log") else [])
        self.rule, self.threads = rule, threads
        self.resources, self.config = sm.resources, sm.config


for i, spec in enumerate(sm.params.jobs, 1):
    log.info("job %d of %d: %s %s (log: %s)", i, len(sm.params.jobs), Path(sm.params.script).name,
             dict(spec["wildcards"]), spec.get("log"))
    runpy.run_path(sm.params.script, init_globals={"snakemake": Job(spec, sm.params.rule, sm.threads)},
                   run_name="__main__")
    close_job_log()
