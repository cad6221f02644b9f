# Runs trained outside featdyn: their per-epoch checkpoint files → the same checkpoints.h5 and metrics.tsv
# that rule `train` writes (metrics from evaluating each imported checkpoint), so every analysis reads
# them unchanged. The files were checked (found, readable, fitting the model) before any job ran.

from featdyn.planning import imported_files


rule import_run:
    input:
        data=dataset_h5,
        files=lambda wc: imported_files(config, wc.run),
    output:
        checkpoints="results/runs/{run}/checkpoints.h5",
        metrics="results/runs/{run}/metrics.tsv",
    log:
        "results/logs/import/{run}.log",
    benchmark:
        "results/benchmarks/import/{run}.tsv"
    wildcard_constraints:
        run=name_pattern(IMPORTED_RUNS),
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
    params:
        run=run_config,
        recipe=lambda wc: recipe_config(wc) if "recipe" in run_config(wc) else None,
        device=DEVICE,
    script:
        "../scripts/import_run.py"
