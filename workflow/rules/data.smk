# Datasets: torchvision downloads (local mirrors first), embedded generators, files from outside → HDF5.


rule download:
    input:
        files=dataset_sources,
    output:
        h5="results/data/{dataset}.h5",
    log:
        "results/logs/download/{dataset}.log",
    benchmark:
        "results/benchmarks/download/{dataset}.tsv"
    wildcard_constraints:
        dataset=name_pattern(DATASETS),
    conda:
        "../../envs/featdyn.yaml"
    params:
        options=dataset_options,
        cache_dir=config["cache_dir"],
    script:
        "../scripts/download.py"
