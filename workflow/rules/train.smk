# Training with a checkpoint every `save_every` epochs (kill-safe, resumable), and its figure.


rule train:
    input:
        data=dataset_h5,
    output:
        checkpoints="results/runs/{run}/checkpoints.h5",
        metrics="results/runs/{run}/metrics.tsv",
    params:
        run=run_config,
        recipe=recipe_config,
        device=config.get("device", "auto"),
        progress=config.get("progress", True),
        state_dir=lambda wc: f"results/runs/{wc.run}/.resume",
    threads: 2
    resources:
        gpu=GPU,
    log:
        "results/logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
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
    params:
        runs=RUNS,
    log:
        "results/logs/figures/training_curves.log",
    benchmark:
        "results/benchmarks/figures/training_curves.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_training_curves.py"
