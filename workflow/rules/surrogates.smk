# Generalization surrogates (docs/definitions.md §12; beyond the papers): per run and split depth, MMD²
# and sliced W2 between the augmented (A_k) or plain (P_k) training features of each class and its test
# features (T_k), beside the class-wise gap of f^(t); tables of every row and of Spearman ρ, and figures.

from featdyn.planning import (
    surrogate_epochs,
    surrogate_figure_depth,
    surrogate_figure_window,
    surrogate_keys,
)
from featdyn.surrogates import SurrogateSettings

SURROGATES = config["surrogates"]
SURROGATE_RUNS = analysed_runs(config, "surrogates")
SURROGATE_KEYS = surrogate_keys(config)
SURROGATE_BANDWIDTH = SURROGATES["bandwidth_multipliers"][0]
"""The bandwidth multiplier the figures show (every one is in the tables)."""

if SURROGATE_RUNS:
    TARGETS += [
        "results/stats/surrogates.tsv",
        "results/stats/surrogates_spearman.tsv",
        "results/figures/surrogates/gap_vs_surrogates.png",
    ]
    TARGETS += expand("results/figures/surrogates/over_epochs_{run}.png", run=SURROGATE_RUNS)


rule surrogates:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        table="results/runs/{run}/surrogates/d{depth}.tsv",
    log:
        "results/logs/surrogates/{run}_d{depth}.log",
    benchmark:
        "results/benchmarks/surrogates/{run}_d{depth}.tsv"
    wildcard_constraints:
        depth=r"\d+",
    conda:
        "../../envs/featdyn.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        settings=job_settings(SURROGATES, SurrogateSettings),
        epochs=lambda wc: surrogate_epochs(config, wc.run),
        windows=SURROGATES["windows"],
        device=DEVICE,
    script:
        "../scripts/surrogates.py"


rule surrogate_tables:
    input:
        tables=[f"results/runs/{r}/surrogates/d{d}.tsv" for r, d in SURROGATE_KEYS],
    output:
        table="results/stats/surrogates.tsv",
        spearman="results/stats/surrogates_spearman.tsv",
    log:
        "results/logs/stats/surrogates.log",
    benchmark:
        "results/benchmarks/stats/surrogates.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/surrogate_tables.py"


rule plot_surrogate_gap:
    input:
        table="results/stats/surrogates.tsv",
        spearman="results/stats/surrogates_spearman.tsv",
    output:
        report(
            "results/figures/surrogates/gap_vs_surrogates.png",
            caption="../report/surrogate_gap.rst",
            category="8. Beyond the papers",
            subcategory="generalization surrogates",
            labels={"figure": "class-wise gap against MMD² and SW2"},
        ),
    log:
        "results/logs/figures/surrogate_gap.log",
    benchmark:
        "results/benchmarks/figures/surrogate_gap.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        depth=surrogate_figure_depth(config),
        window=surrogate_figure_window(config),
        bandwidth=SURROGATE_BANDWIDTH,
    script:
        "../scripts/plot_surrogate_gap.py"


rule plot_surrogate_epochs:
    input:
        table="results/stats/surrogates.tsv",
    output:
        report(
            "results/figures/surrogates/over_epochs_{run}.png",
            caption="../report/surrogate_epochs.rst",
            category="8. Beyond the papers",
            subcategory="generalization surrogates",
            labels={"run": "{run}", "figure": "surrogates over epochs, augmented vs. plain"},
        ),
    log:
        "results/logs/figures/surrogate_epochs_{run}.log",
    benchmark:
        "results/benchmarks/figures/surrogate_epochs_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        bandwidth=SURROGATE_BANDWIDTH,
    script:
        "../scripts/plot_surrogate_epochs.py"
