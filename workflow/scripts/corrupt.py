"""Corrupted test sets of one dataset into results/data/{dataset}-c.h5."""

from featdyn.corrupted_sets import build_corrupted_file
from featdyn.io import log_to

sm = snakemake  # noqa: F821
log_to(sm.log[0])
names, severities, seed = list(sm.params.names), list(sm.params.severities), int(sm.params.seed)
build_corrupted_file(
    sm.input.clean,
    sm.output.h5,
    names,
    severities,
    seed,
    mirror_dirs=sm.params.mirror_dirs,
    cache_dir=sm.params.cache_dir,
    provenance={"dataset": sm.wildcards.dataset, "names": names, "severities": severities, "seed": seed},
)
print(f"wrote {len(names) * len(severities)} corrupted test sets to {sm.output.h5}")
