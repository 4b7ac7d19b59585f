"""Rules text_run / text_run_seeds: E9 runs (text dataset × noise rate × curation policy × seed) of a from-scratch
transformer. ``params.seeds``: the job's seeds (one for rule ``text_run``; all with ``batch_seeds``), ``output``
their files in the same order."""

import torch  # noqa: F401  (imported before wfio.setup, which then fixes torch's thread count)
from wfio import setup

from influence.io import save_json
from replication.tasks.e9_text import noisy_text_splits, protocol_run, run_text_policy

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
wc = sm.wildcards
spec = dict(sm.params.spec)
rate = int(wc.rate) / 100
protocol = spec.get("protocol", "e9")
for seed, path in zip(map(int, sm.params.seeds), sm.output, strict=True):
    splits = noisy_text_splits(spec["name"], max_len=int(spec["max_len"]), vocab_size=int(spec["vocab_size"]),
                               n_train=int(spec["n_train"]), n_val=int(spec["n_val"]), n_test=int(spec["n_test"]),
                               noise_rate=rate, seed=seed, protocol=protocol)
    out = run_text_policy(splits, wc.policy, seed=seed, learned_margin=float(sm.params.learned_margin),
                          **dict(sm.params.model), **protocol_run(protocol, sm.params.run))
    meta = splits["meta"]
    out.update(dataset=wc.dataset, noise_rate=rate, protocol=protocol, n_classes=int(splits["n_classes"]),
               data={k: meta[k] for k in ("source", "sha256", "n", "max_len", "vocab_size", "truncated", "class_counts",
                                          "classes", "words", "n_scenes", "licence", "noise") if k in meta})
    save_json(path, out)
    log.info("%s noise %.2f %s seed %d: final test accuracy %.4f (majority %.4f, learned %s)", wc.dataset, rate,
             wc.policy, seed, out["final_test_acc"], out["majority_acc"], out["learned"])
