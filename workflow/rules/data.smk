# Datasets: torchvision downloads (local mirrors first), embedded generators → HDF5.


rule download:
    output:
        h5="results/data/{dataset}.h5",
    params:
        options=dataset_options,
        cache_dir=config.get("cache_dir", "results/cache"),
    log:
        "results/logs/download/{dataset}.log",
    benchmark:
        "results/benchmarks/download/{dataset}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/download.py"
