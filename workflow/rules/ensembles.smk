# Temporal ensembles (docs/definitions.md §13; beyond the papers): per run, f^(t) beside the composite
# ensemble, the checkpoint ensemble and the weight average over windows W, on the test and corrupted sets.

from featdyn.ensembles import EnsembleSettings
from featdyn.planning import ensemble_corrupted_file, ensemble_epoch

ENSEMBLES = config["ensembles"]
ENSEMBLE_RUNS = analysed_runs(config, "ensembles")

if ENSEMBLE_RUNS:
    TARGETS += ["results/stats/ensembles.tsv"]
    TARGETS += expand("results/figures/ensembles/ensembles_{run}.png", run=ENSEMBLE_RUNS)


rule ensembles:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
        corrupted=lambda wc: ensemble_corrupted_file(config, wc.run),
    output:
        table="results/runs/{run}/ensembles.tsv",
    log:
        "results/logs/ensembles/{run}.log",
    benchmark:
        "results/benchmarks/ensembles/{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        settings=job_settings(ENSEMBLES, EnsembleSettings),
        epoch=lambda wc: ensemble_epoch(config, wc.run),
        eval_sets=ENSEMBLES["eval_sets"],
        device=DEVICE,
    script:
        "../scripts/ensembles.py"


rule ensemble_table:
    input:
        tables=expand("results/runs/{run}/ensembles.tsv", run=ENSEMBLE_RUNS),
    output:
        table="results/stats/ensembles.tsv",
    log:
        "results/logs/stats/ensembles.log",
    benchmark:
        "results/benchmarks/stats/ensembles.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/ensemble_table.py"


rule plot_ensembles:
    input:
        table="results/stats/ensembles.tsv",
    output:
        report(
            "results/figures/ensembles/ensembles_{run}.png",
            caption="../report/ensembles.rst",
            category="8. Beyond the papers",
            subcategory="temporal ensembles",
            labels={"run": "{run}", "figure": "temporal ensembles against the window"},
        ),
    log:
        "results/logs/figures/ensembles_{run}.log",
    benchmark:
        "results/benchmarks/figures/ensembles_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_ensembles.py"
