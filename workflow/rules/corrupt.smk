# Corrupted test sets → results/data/{dataset}-c.h5: the CIFAR-10/100-C releases (local mirror folders,
# else Zenodo) for CIFAR-10/100, locally generated corruptions of the test set for every other dataset.

import re

from featdyn.config import dataset_corruptions

CORRUPTIONS = config.get("corruptions") or {}


# `results/data/{dataset}.h5` would also match a -c.h5 file, with a dataset named "<dataset>-c".
ruleorder: corrupt > download


rule corrupt:
    input:
        clean="results/data/{dataset}.h5",
    output:
        h5="results/data/{dataset}-c.h5",
    params:
        names=lambda wc: dataset_corruptions(config, wc.dataset),
        severities=CORRUPTIONS.get("severities", [5]),
        seed=CORRUPTIONS.get("seed", 0),
        mirror_dirs=config.get("mirror_dirs", []),
        cache_dir=config.get("cache_dir", "results/cache"),
    wildcard_constraints:
        dataset="|".join(map(re.escape, DATASETS)),
    log:
        "results/logs/corrupt/{dataset}.log",
    benchmark:
        "results/benchmarks/corrupt/{dataset}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/corrupt.py"
