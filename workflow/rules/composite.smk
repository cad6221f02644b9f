# Composite networks over epoch pairs, temporal consistency, memory window, and their figures.

COMPOSITE = config["composite"]
COMPOSITE_RUNS = analysed_runs(config, "composite")
COMPOSITE_JOB_KEYS = (
    "train_subset",
    "window",
    "stride",
    "reference_epochs",
    "threshold",
    "batch_size",
    "memory_budget_mb",
    "precision",
    "strategy",
)
"""The keys of section `composite` one composite job reads (not runs, depths, eval sets, figure keys)."""

TARGETS += ["results/figures/memory_window.png"]
TARGETS += expand(
    "results/figures/composite/{run}/memory_{eval_set}.png",
    run=COMPOSITE_RUNS,
    eval_set=COMPOSITE["eval_sets"],
)
TARGETS += expand(
    "results/figures/{kind}_{eval_set}.png",
    kind=["forgetting", "transferability"],
    eval_set=COMPOSITE["eval_sets"],
)


rule composite:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
        corrupted=corrupted_h5,
    output:
        h5="results/runs/{run}/composite/{eval_set}_d{depth}.h5",
    log:
        "results/logs/composite/{run}_{eval_set}_d{depth}.log",
    benchmark:
        "results/benchmarks/composite/{run}_{eval_set}_d{depth}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
        runtime=lambda wc: composite_resources(config, wc.run, wc.eval_set)["runtime"],
        mem_mb=lambda wc: composite_resources(config, wc.run, wc.eval_set)["mem_mb"],
    params:
        settings={key: COMPOSITE[key] for key in COMPOSITE_JOB_KEYS},
        seed=SEED,
        device=DEVICE,
    script:
        "../scripts/composite.py"


rule plot_memory:
    input:
        bands=lambda wc: composite_files([wc.run], [wc.eval_set]),
    output:
        report(
            "results/figures/composite/{run}/memory_{eval_set}.png",
            caption="../report/memory.rst",
            category="2. Memory and forgetting",
            subcategory="{run}",
            labels={"run": "{run}", "eval set": "{eval_set}", "figure": "memory heatmaps (Fig. 2)"},
        ),
    log:
        "results/logs/figures/memory_{run}_{eval_set}.log",
    benchmark:
        "results/benchmarks/figures/memory_{run}_{eval_set}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        depths=lambda wc: run_depths(config, "composite", wc.run),
        labels=lambda wc: stage_labels(config, wc.run),
    script:
        "../scripts/plot_memory.py"


rule plot_memory_window:
    input:
        bands=composite_files(COMPOSITE_RUNS, COMPOSITE["eval_sets"]),
    output:
        report(
            "results/figures/memory_window.png",
            caption="../report/memory_window.rst",
            category="2. Memory and forgetting",
            labels={"figure": "memory window (Fig. 3)"},
        ),
    log:
        "results/logs/figures/memory_window.log",
    benchmark:
        "results/benchmarks/figures/memory_window.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        band_keys=composite_keys(config, COMPOSITE_RUNS, COMPOSITE["eval_sets"]),
        threshold=COMPOSITE["threshold"],
        labels=labels_of(COMPOSITE_RUNS),
    script:
        "../scripts/plot_memory_window.py"


rule plot_gap_decay:
    input:
        bands=lambda wc: composite_files(COMPOSITE_RUNS, [wc.eval_set], figure_only=True),
    output:
        report(
            "results/figures/{kind}_{eval_set}.png",
            caption="../report/gap_decay.rst",
            category="2. Memory and forgetting",
            labels={"figure": "{kind}", "eval set": "{eval_set}"},
        ),
    log:
        "results/logs/figures/{kind}_{eval_set}.log",
    benchmark:
        "results/benchmarks/figures/{kind}_{eval_set}.tsv"
    wildcard_constraints:
        kind="forgetting|transferability",
    conda:
        "../../envs/featdyn.yaml"
    params:
        runs=figure_depth_labels(config, COMPOSITE_RUNS),
    script:
        "../scripts/plot_gap_decay.py"
