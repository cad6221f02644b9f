"""Fetch one dataset into results/data/{dataset}.h5."""

from featdyn.data import download_to
from featdyn.io import log_to

sm = snakemake  # noqa: F821
log_to(sm.log[0])
options = dict(sm.params.options)
download_to(options.pop("source"), options, sm.output.h5, cache_dir=sm.params.cache_dir)
