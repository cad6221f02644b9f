# Training with a checkpoint every `save_every` epochs (kill-safe, resumable), and its figure. Imported runs
# (`runs.<name>.checkpoints`) make the same two files in rule `import_run` (workflow/rules/import.smk).


rule train:
    input:
        data=dataset_h5,
    output:
        checkpoints="results/runs/{run}/checkpoints.h5",
        metrics="results/runs/{run}/metrics.tsv",
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    wildcard_constraints:
        run=name_pattern(TRAINED_RUNS),
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
        runtime=lambda wc: train_resources(config, wc.run)["runtime"],
        mem_mb=lambda wc: train_resources(config, wc.run)["mem_mb"],
    params:
        run=run_config,
        recipe=recipe_config,
        device=DEVICE,
        state_dir=lambda wc: f"results/runs/{wc.run}/.resume",
    script:
        "../scripts/train.py"


rule plot_training_curves:
    input:
        metrics=expand("results/runs/{run}/metrics.tsv", run=RUNS),
    output:
        report(
            "results/figures/training_curves.png",
            caption="../report/training_curves.rst",
            category="1. Training",
        ),
    log:
        "results/logs/figures/training_curves.log",
    benchmark:
        "results/benchmarks/figures/training_curves.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        runs=RUNS,
    script:
        "../scripts/plot_training_curves.py"
