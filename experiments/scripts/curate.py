"""Rules curate / curate_seeds: online-curation runs (policy × dataset × seed) on cyclic label noise (E3).

``params.seeds``: the job's seeds (one for rule ``curate``; all of them with ``batch_seeds``), ``output`` their
files in the same order.
"""

from wfio import setup

from influence.io import save_json
from replication.tasks.common import noisy_splits
from replication.tasks.e3_curation import run_policy

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
wc = sm.wildcards
spec = sm.params.spec
run = dict(sm.params.run)
if "hidden" in run:
    run["hidden"] = tuple(run["hidden"])
probe = int(sm.params.probe_every) if wc.policy == "vanilla" else 0
for seed, path in zip(map(int, sm.params.seeds), sm.output, strict=True):
    splits = noisy_splits(spec["source"], n_train=int(spec["n_train"]), n_target=int(spec["n_target"]),
                          n_test=int(spec["n_test"]), noise="cyclic", noise_rate=float(sm.params.noise_rate),
                          seed=seed)
    out = run_policy(splits, wc.policy, seed=seed, probe_every=probe, **run)
    out.update(dataset=wc.dataset, source=spec["source"], noise_rate=float(sm.params.noise_rate))
    save_json(path, out)
    log.info("%s %s seed %s: final test accuracy %.4f", wc.dataset, wc.policy, seed, out["final_test_acc"])
