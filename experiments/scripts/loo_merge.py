"""Rule loo_merge: concatenate the LOO shards of one run."""

from wfio import setup

from influence.loo import LOOResult, merge_loo

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)

log = setup(sm)
merged = merge_loo([LOOResult.load(p) for p in sm.input])
merged.save(sm.output[0])
log.info("merged %d shards: %d samples", len(sm.input), len(merged.indices))
