# Mislabelled training samples (docs/definitions.md §14): per-sample training-dynamics scores from a run's
# stored checkpoints (loss, confidence, variability, AUM, forgetting events, given-label temporal
# consistency), their AUROC / AP against the labels that are truly wrong, and retrains without the most
# suspect samples and without the truly mislabelled ones. The kill-safe per-epoch state of a retrain
# lives in results/runs/{run}/mislabel/.state/, outside the declared outputs.

from featdyn.mislabel import RETRAIN_VARIANTS, ScoreSettings
from featdyn.planning import (
    mislabel_reference_epochs,
    mislabel_runs,
    mislabel_scores_file,
    retrain_dir,
    retrain_epochs,
    retrain_runs,
    retrain_settings,
)

MISLABEL = config["mislabel"]
MISLABEL_RUNS = mislabel_runs(config)
RETRAIN_RUNS = retrain_runs(config)
EVALUATION_KEYS = ("n_boot", "level", "seed")
"""The keys of section `mislabel` the evaluation job reads."""

if MISLABEL_RUNS:
    TARGETS += ["results/stats/mislabel.tsv", "results/figures/mislabel/detection.png"]
    TARGETS += expand("results/figures/mislabel/curves_{run}.png", run=MISLABEL_RUNS)
if RETRAIN_RUNS:
    TARGETS += ["results/stats/mislabel_retrain.tsv"]
    TARGETS += expand("results/figures/mislabel/retrain_{run}.png", run=RETRAIN_RUNS)


rule mislabel_scores:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        table="results/runs/{run}/mislabel/scores.tsv",
    log:
        "results/logs/mislabel/scores_{run}.log",
    benchmark:
        "results/benchmarks/mislabel/scores_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
    params:
        settings=lambda wc: {
            **job_settings(MISLABEL, ScoreSettings),
            "reference_epochs": mislabel_reference_epochs(config, wc.run),
        },
        device=DEVICE,
    script:
        "../scripts/mislabel_scores.py"


rule mislabel_evaluation:
    input:
        scores=[mislabel_scores_file(run) for run in MISLABEL_RUNS],
    output:
        table=report(
            "results/stats/mislabel.tsv",
            caption="../report/mislabel_table.rst",
            category="5. Noisy labels and corrupted data",
            subcategory="mislabelled samples",
            labels={"table": "AUROC / AP of the mislabel scores"},
        ),
        curves="results/stats/mislabel_curves.tsv",
    log:
        "results/logs/mislabel/evaluation.log",
    benchmark:
        "results/benchmarks/mislabel/evaluation.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        runs=MISLABEL_RUNS,
        noise={
            run: {
                "rate": config["runs"][run]["label_noise"],
                "kind": config["runs"][run]["label_noise_kind"],
            }
            for run in MISLABEL_RUNS
        },
        settings={key: MISLABEL[key] for key in EVALUATION_KEYS},
    script:
        "../scripts/mislabel_evaluation.py"


rule plot_mislabel_curves:
    input:
        curves="results/stats/mislabel_curves.tsv",
        table="results/stats/mislabel.tsv",
    output:
        report(
            "results/figures/mislabel/curves_{run}.png",
            caption="../report/mislabel_curves.rst",
            category="5. Noisy labels and corrupted data",
            subcategory="mislabelled samples",
            labels={"run": "{run}", "figure": "ROC and precision-recall curves"},
        ),
    log:
        "results/logs/figures/mislabel_curves_{run}.log",
    benchmark:
        "results/benchmarks/figures/mislabel_curves_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        scores=MISLABEL["figure_scores"],
    script:
        "../scripts/plot_mislabel_curves.py"


rule plot_mislabel_detection:
    input:
        table="results/stats/mislabel.tsv",
    output:
        report(
            "results/figures/mislabel/detection.png",
            caption="../report/mislabel_detection.rst",
            category="5. Noisy labels and corrupted data",
            subcategory="mislabelled samples",
            labels={"figure": "AUROC and AP with bootstrap intervals"},
        ),
    log:
        "results/logs/figures/mislabel_detection.log",
    benchmark:
        "results/benchmarks/figures/mislabel_detection.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_mislabel_detection.py"


rule mislabel_retrain:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
        scores="results/runs/{run}/mislabel/scores.tsv",
    output:
        checkpoints="results/runs/{run}/mislabel/{variant}/checkpoints.h5",
        metrics="results/runs/{run}/mislabel/{variant}/metrics.tsv",
    log:
        "results/logs/mislabel/retrain_{run}_{variant}.log",
    benchmark:
        "results/benchmarks/mislabel/retrain_{run}_{variant}.tsv"
    wildcard_constraints:
        variant="|".join(RETRAIN_VARIANTS),
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
        runtime=lambda wc: train_resources(config, wc.run, retrain_epochs(config, wc.run))["runtime"],
        mem_mb=lambda wc: train_resources(config, wc.run, retrain_epochs(config, wc.run))["mem_mb"],
    params:
        run=run_config,
        recipe=recipe_config,
        settings=lambda wc: retrain_settings(config, wc.run, wc.variant),
        device=DEVICE,
        state_dir=lambda wc: f"results/runs/{wc.run}/mislabel/.state/{wc.variant}",
    script:
        "../scripts/mislabel_retrain.py"


rule mislabel_retrain_table:
    input:
        originals=checkpoints_of(RETRAIN_RUNS),
        retrained=[
            f"{retrain_dir(run, variant)}/checkpoints.h5"
            for run in RETRAIN_RUNS
            for variant in RETRAIN_VARIANTS
        ],
    output:
        table=report(
            "results/stats/mislabel_retrain.tsv",
            caption="../report/mislabel_retrain_table.rst",
            category="5. Noisy labels and corrupted data",
            subcategory="mislabelled samples",
            labels={"table": "test accuracy without suspect samples"},
        ),
    log:
        "results/logs/mislabel/retrain_table.log",
    benchmark:
        "results/benchmarks/mislabel/retrain_table.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        runs=RETRAIN_RUNS,
        score=MISLABEL["retrain"]["score"],
    script:
        "../scripts/mislabel_retrain_table.py"


rule plot_mislabel_retrain:
    input:
        table="results/stats/mislabel_retrain.tsv",
        original="results/runs/{run}/metrics.tsv",
        retrained=expand("results/runs/{{run}}/mislabel/{variant}/metrics.tsv", variant=RETRAIN_VARIANTS),
    output:
        report(
            "results/figures/mislabel/retrain_{run}.png",
            caption="../report/mislabel_retrain.rst",
            category="5. Noisy labels and corrupted data",
            subcategory="mislabelled samples",
            labels={"run": "{run}", "figure": "retraining without suspect samples"},
        ),
    log:
        "results/logs/figures/mislabel_retrain_{run}.log",
    benchmark:
        "results/benchmarks/figures/mislabel_retrain_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        variants=RETRAIN_VARIANTS,
    script:
        "../scripts/plot_mislabel_retrain.py"
