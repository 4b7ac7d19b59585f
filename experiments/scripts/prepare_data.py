"""Rule prepare_data: seeded train / target / test splits of one named data setting."""

from wfio import setup

from influence.data import load_dataset, make_splits

sm = snakemake  # noqa: F821  (injected by Snakemake's script directive)

log = setup(sm)
spec = dict(sm.params.spec)
seed = int(sm.wildcards.seed)
ds = load_dataset(spec["source"], **spec.get("loader", {}))
splits = make_splits(ds, int(spec["n_train"]), int(spec["n_target"]), int(spec["n_test"]), seed=seed,
                     stratify=bool(spec.get("stratify", True)))
for part in ("train", "target", "test"):
    splits[part].meta["setting"] = sm.wildcards.dataset
    splits[part].save(sm.output[part])
    log.info("%s: %d samples, %d features, %d classes", part, len(splits[part]), splits[part].n_features,
             splits[part].n_classes)
