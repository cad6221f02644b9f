# Corrupted test sets → results/data/{dataset}-c.h5: the CIFAR-10/100-C releases (local mirror folders,
# else Zenodo) for CIFAR-10/100, locally generated corruptions of the test set for every other dataset.

import re

from featdyn.planning import dataset_corruptions

CORRUPTIONS = config["corruptions"]


# `results/data/{dataset}.h5` would also match a -c.h5 file, with a dataset named "<dataset>-c".
ruleorder: corrupt > download


rule corrupt:
    input:
        clean="results/data/{dataset}.h5",
    output:
        h5="results/data/{dataset}-c.h5",
    log:
        "results/logs/corrupt/{dataset}.log",
    benchmark:
        "results/benchmarks/corrupt/{dataset}.tsv"
    wildcard_constraints:
        dataset="|".join(map(re.escape, DATASETS)),
    conda:
        "../../envs/featdyn.yaml"
    params:
        names=lambda wc: dataset_corruptions(config, wc.dataset),
        severities=CORRUPTIONS["severities"],
        seed=CORRUPTIONS["seed"],
        mirror_dirs=config["mirror_dirs"],
        cache_dir=config["cache_dir"],
    script:
        "../scripts/corrupt.py"
