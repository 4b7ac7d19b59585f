"""Rule bounds: run one theory check ``module:function`` from replication.bounds and store its Check record(s).

Positional arguments come from the check's ``args`` list (``traj``, ``train``, ``target``, ``test``, ``model``,
``theta0``, ``theta_final``), keyword arguments from ``kwargs``.
"""

import importlib

from wfio import setup

from influence.io import save_json
from replication.bounds import Check

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
spec = dict(sm.params.spec)
module, _, fname = spec["function"].partition(":")
if not module.startswith("replication.bounds"):
    raise ValueError(f"check {sm.wildcards.check!r}: function must live in replication.bounds, got {module!r}")
fn = getattr(importlib.import_module(module), fname)
available = {}
if "run" in sm.input.keys():
    from influence.data import Dataset
    from influence.train import Trajectory

    traj = Trajectory.load(sm.input.run)
    available = {"traj": traj, "model": traj.model, "theta0": traj.theta0, "theta_final": traj.final}
    for part in ("train", "target", "test"):
        available[part] = Dataset.load(sm.input[part])
args = []
for a in spec.get("args", []):
    if a not in available:
        raise ValueError(f"check {sm.wildcards.check!r}: argument {a!r} is not available; give the check a 'run:'")
    args.append(available[a])
result = fn(*args, **spec.get("kwargs", {}))
checks = result if isinstance(result, (list, tuple)) else [result]
for c in checks:
    if not isinstance(c, Check):
        raise TypeError(f"{spec['function']} returned {type(c).__name__}, expected replication.bounds.Check")
records = [{"check": sm.wildcards.check, "claims": spec.get("claims", []), **c.to_dict()} for c in checks]
save_json(sm.output[0], records)
for r in records:
    log.info("%s: %s (%s)", r["name"], "PASS" if r["passed"] else "FAIL", r["criterion"])
