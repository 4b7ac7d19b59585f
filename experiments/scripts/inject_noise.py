"""Rule inject_noise: corrupt the training split (labels or features); target and test stay clean."""

from wfio import setup

from influence.data import Dataset
from influence.io import save_npy
from replication.noise import apply_noise

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)

log = setup(sm)
spec = dict(sm.params.spec)
seed = int(sm.wildcards.seed)
kind, rate = spec.pop("kind"), float(spec.pop("rate", 0.0))
train = Dataset.load(sm.input.train)
noisy, mask = apply_noise(train, kind, rate, seed=1000 + seed, **spec)
noisy.save(sm.output.train)
save_npy(sm.output.mask, mask)
log.info("%s noise at rate %.3g: %d of %d samples corrupted", kind, rate, int(mask.sum()), len(mask))
