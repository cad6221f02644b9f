# Noise × nonlinearity phase diagram of the deep BN MLP (docs/definitions.md §9; paper 2, Fig. 1 and SM S3),
# and its variants (`phase.variants`: depth, width, optimizer; SM Figs. S5-S7b), all with the same rules:
# the wildcard `variant` is "" for the sweep itself and `-<name>` for a variant. One job per cell (noise
# axis, level, α) trains every seed of the cell; one rule aggregates a sweep, one plots it. The train vs
# test (Fig. S4) and two-metric (Figs. S10-S11) figures, one job, read cells of the sweep itself.

from dataclasses import asdict

from featdyn.planning import (
    phase_cell_file,
    phase_cell_files,
    phase_cell_settings,
    phase_figure_cells,
    phase_grid,
    phase_variant,
    phase_variants,
)

PHASE = config["phase"]
PHASE_DATASET = PHASE["dataset"]  # resolved by featdyn.config.effective_config, fetched by `download`
PHASE_VARIANTS = phase_variants(PHASE)  # "" (the sweep itself), then "-<name>" per variant
PHASE_FIGURE_KEYS = phase_figure_cells(PHASE)  # (axis, level, α) of Figs. S4 and S10
PHASE_FIGURE_CELLS = [phase_cell_file(PHASE, "", *key) for key in PHASE_FIGURE_KEYS]

TARGETS += [
    *expand("results/stats/phase_diagram{variant}.tsv", variant=PHASE_VARIANTS),
    *expand("results/figures/phase/phase_diagram{variant}.png", variant=PHASE_VARIANTS),
    *expand("results/figures/phase/accuracy_vs_curvature{variant}.png", variant=PHASE_VARIANTS),
    "results/figures/phase/train_test_load_curves.png",
    "results/figures/separation/two_metrics.png",
]


wildcard_constraints:
    variant="(-[A-Za-z0-9_]+)?",


rule phase_cell:
    input:
        data=f"results/data/{PHASE_DATASET}.h5",
    output:
        h5="results/phase/cells{variant}/{cell}_a{alpha}.h5",
    log:
        "results/logs/phase{variant}/{cell}_a{alpha}.log",
    benchmark:
        "results/benchmarks/phase{variant}/{cell}_a{alpha}.tsv"
    wildcard_constraints:
        cell="base|(label_noise|lr|dropout|batch_size)-[0-9.e+-]+",
        alpha="[0-9.e+-]+",
    conda:
        "../../envs/featdyn.yaml"
    threads: PHASE["threads"]
    resources:
        gpu=GPU,
        runtime=phase_cell_resources(config)["runtime"],
        mem_mb=phase_cell_resources(config)["mem_mb"],
    params:
        settings=lambda wc: asdict(phase_cell_settings(PHASE, wc.variant, wc.cell)),
        seeds=lambda wc: phase_variant(PHASE, wc.variant)["seeds"],
        data_seed=SEED,
        device=DEVICE,
    script:
        "../scripts/phase_cell.py"


rule phase_diagram:
    input:
        cells=lambda wc: phase_cell_files(PHASE, wc.variant),
    output:
        table="results/stats/phase_diagram{variant}.tsv",
        seeds="results/stats/phase_seeds{variant}.tsv",
    log:
        "results/logs/stats/phase_diagram{variant}.log",
    benchmark:
        "results/benchmarks/stats/phase_diagram{variant}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        cell_keys=lambda wc: phase_grid(phase_variant(PHASE, wc.variant)),
        tolerance=PHASE["linear_tolerance"],
    script:
        "../scripts/phase_diagram.py"


rule plot_phase_diagram:
    input:
        table="results/stats/phase_diagram{variant}.tsv",
    output:
        diagram=report(
            "results/figures/phase/phase_diagram{variant}.png",
            caption="../report/phase_diagram.rst",
            category="6. Data separation (paper 2)",
            subcategory="phase diagram",
            labels={"figure": "noise × nonlinearity phase diagram (Fig. 1; S5-S7b)", "variant": "{variant}"},
        ),
        accuracy=report(
            "results/figures/phase/accuracy_vs_curvature{variant}.png",
            caption="../report/accuracy_vs_curvature.rst",
            category="6. Data separation (paper 2)",
            subcategory="phase diagram",
            labels={"figure": "test accuracy against curvature (Fig. 1 shading)", "variant": "{variant}"},
        ),
    log:
        "results/logs/figures/phase_diagram{variant}.log",
    benchmark:
        "results/benchmarks/figures/phase_diagram{variant}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_phase_diagram.py"


rule plot_separation_metrics:
    input:
        cells=PHASE_FIGURE_CELLS,
        linear="results/linear_nets/linear_nets.h5",
    output:
        train_test=report(
            "results/figures/phase/train_test_load_curves.png",
            caption="../report/train_test_load_curves.rst",
            category="6. Data separation (paper 2)",
            subcategory="phase diagram",
            labels={"figure": "train vs test load curves (SM Fig. S4)", "variant": ""},
        ),
        two_metrics=report(
            "results/figures/separation/two_metrics.png",
            caption="../report/two_metrics.rst",
            category="6. Data separation (paper 2)",
            subcategory="two separation metrics",
            labels={"figure": "D_l beside Tr(Σ_w Σ_b⁺) (SM Figs. S10-S11)"},
        ),
    log:
        "results/logs/figures/separation_metrics.log",
    benchmark:
        "results/benchmarks/figures/separation_metrics.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        cell_keys=PHASE_FIGURE_KEYS,
    script:
        "../scripts/plot_separation_metrics.py"
