# Datasets: torchvision downloads (local mirrors first), embedded generators → HDF5.


rule download:
    output:
        h5="results/data/{dataset}.h5",
    log:
        "results/logs/download/{dataset}.log",
    benchmark:
        "results/benchmarks/download/{dataset}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        options=dataset_options,
        cache_dir=config["cache_dir"],
    script:
        "../scripts/download.py"
