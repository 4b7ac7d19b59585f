"""Rules table_E*: concatenate per-setting tables (and provenance records) into one table per experiment."""

import json

import numpy as np
import pandas as pd
from wfio import setup, write_csv

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)
log = setup(sm)


def concat(paths):
    frames = [pd.read_csv(p) for p in paths]
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


if sm.rule == "table_E6":
    records = []
    for p in dict.fromkeys(sm.input.provenance):
        r = json.load(open(p))
        r.update({f"setting_{k}": v for k, v in r.pop("setting", {}).items()})
        r["kind"] = "estimator"
        records.append(r)
    for p in sm.input.loo:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            n_loo = len(z["indices"])
        parts = p.split("/")
        setting = dict(zip(["dataset", "noise", "model", "epochs", "seed"], parts[-6:-1], strict=True))
        records.append({"estimator": "trajectory_loo", "kind": "ground_truth", "wall_s": meta.get("wall_s"),
                        "peak_rss_mb": meta.get("peak_rss_mb"), "n_loo": n_loo, "n_train": n_loo,
                        **{f"setting_{k}": v for k, v in setting.items()}})
    table = pd.DataFrame([{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in records])
    for col in ("setting_epochs", "setting_seed"):
        if col in table:
            table[col] = table[col].astype(str).str.replace(r"^(ep|seed)", "", regex=True).astype(int)
    write_csv(sm.output[0], table)
else:
    for key, out in sm.output.items():
        table = concat(sm.input[key])
        write_csv(out, table)
        log.info("%s: %d rows", out, len(table))
