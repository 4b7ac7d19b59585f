"""Rule lm_shapley: per-step Monte-Carlo Shapley values of a vanilla E8 run vs LAI, exact Ghost and flattened Ghost
(claim LAI-2 on the language model)."""

import torch  # noqa: F401  (imported before wfio.setup, which then fixes torch's thread count)
from wfio import setup

from influence.io import save_json
from replication.tasks.e8_lm import lm_step_shapley, load_lm_data

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
model, noise, sh = dict(sm.params.model), dict(sm.params.noise), dict(sm.params.shapley)
seed = int(sh["seed"])
context = int(model.pop("context"))
data = load_lm_data(context, seed=seed, noise_kind=noise["kind"], **dict(sm.params.data))
out = lm_step_shapley(data, seed=seed, noise_rate=float(noise["rate"]), noise_kind=noise["kind"], **model,
                      **dict(sm.params.run), n_steps=int(sh["n_steps"]), shapley_batch=int(sh["batch_size"]),
                      shapley_targets=int(sh["target_size"]), eta=float(sh["eta"]), n_perm=int(sh["n_perm"]),
                      chunk=int(sh["chunk"]))
out.update(dataset=sm.params.dataset, noise_kind=noise["kind"], noise_rate=float(noise["rate"]), data=data["meta"])
for r in out["rows"] + out["values"]:
    r["dataset"] = sm.params.dataset
save_json(sm.output[0], out)
log.info("E8 Shapley: %d steps, vanilla run learned %s", len(out["rows"]), out["learned"])
