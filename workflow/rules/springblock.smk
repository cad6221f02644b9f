# Spring–block chain with asymmetric friction (docs/definitions.md §10; paper 2, Figs. 3-4, 5b, S13-S14):
# NumPy only, no GPU. Each job gets exactly the keys of section `springblock` it reads.

from featdyn.springblock import DYNAMICS_KEYS, LEFTWARD_KEYS, PHASE_KEYS, SECOND_ORDER_KEYS

SPRINGBLOCK = config["springblock"]
SPRINGBLOCK_CASES = SPRINGBLOCK["dynamics"]["cases"]

TARGETS += [
    "results/springblock/phase.tsv",
    "results/figures/springblock/phase.png",
    "results/figures/springblock/load_dynamics.png",
    "results/springblock/second_order.tsv",
    "results/figures/springblock/second_order.png",
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
        settings={key: SPRINGBLOCK[key] for key in PHASE_KEYS},
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
        settings={key: SPRINGBLOCK[key] for key in DYNAMICS_KEYS},
    script:
        "../scripts/springblock_dynamics.py"


rule plot_load_dynamics:
    input:
        springs="results/springblock/dynamics.h5",
        cells=[phase_cell_file(PHASE, "", c["axis"], c["level"], c["alpha"]) for c in SPRINGBLOCK_CASES],
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


rule springblock_second_order:
    output:
        tsv="results/springblock/second_order.tsv",
    log:
        "results/logs/springblock/second_order.log",
    benchmark:
        "results/benchmarks/springblock/second_order.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        settings={key: SPRINGBLOCK[key] for key in SECOND_ORDER_KEYS},
    script:
        "../scripts/springblock_second_order.py"


rule plot_springblock_second_order:
    input:
        first="results/springblock/phase.tsv",
        second="results/springblock/second_order.tsv",
    output:
        report(
            "results/figures/springblock/second_order.png",
            caption="../report/springblock_second_order.rst",
            category="7. Spring–block model (paper 2)",
            labels={"figure": "second-order chain beside the first-order one (SM Figs. S13, S14)"},
        ),
    log:
        "results/logs/figures/springblock_second_order.log",
    benchmark:
        "results/benchmarks/figures/springblock_second_order.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_springblock_second_order.py"


rule springblock_leftward:
    output:
        tsv="results/springblock/leftward.tsv",
    log:
        "results/logs/springblock/leftward.log",
    benchmark:
        "results/benchmarks/springblock/leftward.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        settings={key: SPRINGBLOCK[key] for key in LEFTWARD_KEYS},
    script:
        "../scripts/springblock_leftward.py"
