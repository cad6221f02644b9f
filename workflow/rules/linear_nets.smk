# Orthogonally initialised deep linear networks on orthogonal data (docs/definitions.md §9; paper 2,
# Fig. 5a and SM Fig. S11), shown beside the μ_r = 0 spring–block chain of Eq. 8 (Fig. 5b).

from featdyn.linear_nets import LinearNetSettings
from featdyn.planning import overlays

LINEAR = config["linear_nets"]

TARGETS += ["results/figures/linear_nets/fig5.png"]


rule linear_nets:
    output:
        h5="results/linear_nets/linear_nets.h5",
    log:
        "results/logs/linear_nets/linear_nets.log",
    benchmark:
        "results/benchmarks/linear_nets/linear_nets.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 1
    params:
        trainings={
            name: job_settings(section, LinearNetSettings)
            for name, section in overlays(LINEAR, "trainings").items()
        },
        seed=LINEAR["seed"],
    script:
        "../scripts/linear_nets.py"


rule plot_fig5:
    input:
        linear="results/linear_nets/linear_nets.h5",
        chain="results/springblock/leftward.tsv",
    output:
        report(
            "results/figures/linear_nets/fig5.png",
            caption="../report/fig5.rst",
            category="7. Spring–block model (paper 2)",
            labels={"figure": "linear networks beside the μ_r = 0 chain (Fig. 5)"},
        ),
    log:
        "results/logs/figures/fig5.log",
    benchmark:
        "results/benchmarks/figures/fig5.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_fig5.py"
