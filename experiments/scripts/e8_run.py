"""Rules lm_run / lm_run_seeds: E8 runs (curation policy × seed) of a char-level TinyGPT on Shakespeare with injected
noise, or the clean reference (vanilla on the stream without injected windows; its policy column reads
``vanilla_clean``). ``params.seeds``: the job's seeds (one for rule ``lm_run``; all with ``batch_seeds``), ``output``
their files in the same order."""

import torch  # noqa: F401  (imported before wfio.setup, which then fixes torch's thread count)
from wfio import setup

from influence.io import save_json
from replication.tasks.e8_lm import load_lm_data, run_lm_policy

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
wc = sm.wildcards
for seed, path in zip(map(int, sm.params.seeds), sm.output, strict=True):
    model, noise = dict(sm.params.model), dict(sm.params.noise)
    context = int(model.pop("context"))
    data = load_lm_data(context, seed=seed, noise_kind=noise["kind"], **dict(sm.params.data))
    rate = float(noise["rate"]) if wc.stream == "noisy" else 0.0
    out = run_lm_policy(data, wc.policy, seed=seed, noise_rate=rate, noise_kind=noise["kind"], **model,
                        **dict(sm.params.run))
    out.update(dataset=sm.params.dataset, data=data["meta"], stream=wc.stream)
    if wc.stream == "clean":
        out["policy"] = f"{wc.policy}_clean"
    save_json(path, out)
    log.info("E8 %s %s seed %d: final val loss %.4f (unigram %.4f, learned %s), injected dropped %.3f, clean dropped "
             "%.3f, %.1f ms/step", wc.stream, wc.policy, seed, out["final_val_loss"], out["unigram_val_loss"],
             out["learned"], out["noisy_dropped_fraction"], out["clean_dropped_fraction"],
             1000 * out["time_per_step_s"])
