"""Rule loo_merge: concatenate the LOO shards of one run (``loo.npz``), and their provenance sidecars
(``loo.npz.json``: total wall time, peak memory, the shards' own records)."""

from wfio import setup

from influence.io import read_json, save_json
from influence.loo_result import LOOResult, merge_loo, merge_provenance

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)

log = setup(sm)
merged = merge_loo([LOOResult.load(p) for p in sm.input.shards])
merged.save(sm.output.loo)
record = merge_provenance([read_json(p) for p in sm.input.provenance])
save_json(sm.output.provenance, record)
log.info("merged %d shards: %d samples, %.2f s of LOO in all", len(sm.input.shards), len(merged.indices),
         record["wall_s"])
