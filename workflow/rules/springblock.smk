# Spring–block chain with asymmetric friction (docs/definitions.md §10; paper 2, Figs. 3-4): NumPy only, no GPU.

SPRINGBLOCK = config["springblock"]
SPRINGBLOCK_CASES = SPRINGBLOCK["dynamics"]["cases"]

TARGETS += [
    "results/springblock/phase.tsv",
    "results/figures/springblock/phase.png",
    "results/figures/springblock/load_dynamics.png",
]


rule springblock_phase:
    output:
        tsv="results/springblock/phase.tsv",
    log:
        "results/logs/springblock/phase.log",
    benchmark:
        "results/benchmarks/springblock/phase.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        settings={key: value for key, value in SPRINGBLOCK.items() if key != "dynamics"},
    script:
        "../scripts/springblock_phase.py"


rule plot_springblock_phase:
    input:
        tsv="results/springblock/phase.tsv",
    output:
        report(
            "results/figures/springblock/phase.png",
            caption="../report/springblock_phase.rst",
            category="7. Spring–block model (paper 2)",
            labels={"figure": "spring–block phase diagram (Fig. 3)"},
        ),
    log:
        "results/logs/figures/springblock_phase.log",
    benchmark:
        "results/benchmarks/figures/springblock_phase.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_springblock_phase.py"


rule springblock_dynamics:
    output:
        h5="results/springblock/dynamics.h5",
    log:
        "results/logs/springblock/dynamics.log",
    benchmark:
        "results/benchmarks/springblock/dynamics.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        settings={key: value for key, value in SPRINGBLOCK.items() if key != "phase"},
    script:
        "../scripts/springblock_dynamics.py"


rule plot_load_dynamics:
    input:
        springs="results/springblock/dynamics.h5",
        cells=[
            PHASE_CELL.format(stem=cell_file_stem(PHASE_SETTINGS, c["axis"], c["level"], c["alpha"]))
            for c in SPRINGBLOCK_CASES
        ],
    output:
        report(
            "results/figures/springblock/load_dynamics.png",
            caption="../report/load_dynamics.rst",
            category="7. Spring–block model (paper 2)",
            labels={"figure": "load-curve dynamics, DNN vs. spring–block (Fig. 4)"},
        ),
    log:
        "results/logs/figures/load_dynamics.log",
    benchmark:
        "results/benchmarks/figures/load_dynamics.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        cases=SPRINGBLOCK_CASES,
    script:
        "../scripts/plot_load_dynamics.py"
