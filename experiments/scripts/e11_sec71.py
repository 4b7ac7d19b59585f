"""Rule e11_sec71: one (dataset, noise, model) part of E11 (the ACC-SGD-IE authors' Sec. 7.1 protocol,
replication.tasks.e11_sec71): every epoch count x seed of the config, one CSV row per run x estimator."""

import time

import pandas as pd
import torch  # noqa: F401  (imported before wfio.setup, which then fixes torch's thread count)
from wfio import setup

from influence.io import save_csv
from replication.tasks.e11_sec71 import MODELS, RESULT_COLUMNS, load_sec71, sec71_run

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)
wc = sm.wildcards
cfg = sm.params.cfg
t0 = time.process_time()
data = load_sec71(wc.dataset)
sizes = dict(cfg["sizes"][wc.dataset])
models = {**MODELS, **(cfg.get("models") or {})}
alphas: dict = {}
rows = []
for epochs in map(int, sm.params.epochs):
    for seed in map(int, sm.params.seeds):
        rows += sec71_run(wc.dataset, wc.noise, wc.model, epochs, seed, data=data, sizes=sizes,
                          sigma=float(cfg["feature_sigma"]), rate=float(cfg["label_rate"]),
                          batch_size=int(cfg["batch_size"]), models=models, alpha_cache=alphas)
save_csv(sm.output[0], pd.DataFrame(rows, columns=RESULT_COLUMNS))
log.info("E11 %s/%s/%s: %d rows, %.1f CPU-s", wc.dataset, wc.noise, wc.model, len(rows), time.process_time() - t0)
