# Noise × nonlinearity phase diagram of the deep BN MLP (docs/definitions.md §9; paper 2, Fig. 1 and SM S3).
# One job per cell (noise axis, level, α) trains every seed of the cell; one rule aggregates.

from dataclasses import asdict

from featdyn.phase import CellSettings, cell_file_stem, cell_settings
from featdyn.planning import phase_grid

PHASE = config["phase"]
PHASE_SETTINGS = CellSettings(**job_settings(PHASE, CellSettings))
PHASE_DATASET = PHASE["dataset"]  # resolved by featdyn.config.effective_config, fetched by `download`
PHASE_KEYS = phase_grid(PHASE)
PHASE_CELL = "results/phase/cells/{stem}.h5"  # levels equal to the base recipe share one `base` cell

TARGETS += [
    "results/stats/phase_diagram.tsv",
    "results/figures/phase/phase_diagram.png",
    "results/figures/phase/accuracy_vs_curvature.png",
]


rule phase_cell:
    input:
        data=f"results/data/{PHASE_DATASET}.h5",
    output:
        h5="results/phase/cells/{cell}_a{alpha}.h5",
    log:
        "results/logs/phase/{cell}_a{alpha}.log",
    benchmark:
        "results/benchmarks/phase/{cell}_a{alpha}.tsv"
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
        settings=lambda wc: asdict(cell_settings(PHASE_SETTINGS, wc.cell)),
        seeds=PHASE["seeds"],
        data_seed=SEED,
        device=DEVICE,
    script:
        "../scripts/phase_cell.py"


rule phase_diagram:
    input:
        cells=[PHASE_CELL.format(stem=cell_file_stem(PHASE_SETTINGS, *key)) for key in PHASE_KEYS],
    output:
        table="results/stats/phase_diagram.tsv",
        seeds="results/stats/phase_seeds.tsv",
    log:
        "results/logs/stats/phase_diagram.log",
    benchmark:
        "results/benchmarks/stats/phase_diagram.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        cell_keys=PHASE_KEYS,
        tolerance=PHASE["linear_tolerance"],
    script:
        "../scripts/phase_diagram.py"


rule plot_phase_diagram:
    input:
        table="results/stats/phase_diagram.tsv",
    output:
        diagram=report(
            "results/figures/phase/phase_diagram.png",
            caption="../report/phase_diagram.rst",
            category="6. Data separation (paper 2)",
            subcategory="phase diagram",
            labels={"figure": "noise × nonlinearity phase diagram (Fig. 1)"},
        ),
        accuracy=report(
            "results/figures/phase/accuracy_vs_curvature.png",
            caption="../report/accuracy_vs_curvature.rst",
            category="6. Data separation (paper 2)",
            subcategory="phase diagram",
            labels={"figure": "test accuracy against curvature (Fig. 1 shading)"},
        ),
    log:
        "results/logs/figures/phase_diagram.log",
    benchmark:
        "results/benchmarks/figures/phase_diagram.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_phase_diagram.py"
