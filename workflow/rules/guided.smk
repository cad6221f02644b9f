# Guiding the shape-keeping CNN by its load curve (docs/definitions.md §9; paper 2, SM S2, Fig. S2): Adam
# until the training loss nearly converges, then one continuation per dropout rate from that state.

from featdyn.guided import GuidedSettings

GUIDED = config["guided"]

TARGETS += ["results/stats/guided.tsv", "results/figures/guided/guided_cnn.png"]


rule guided:
    input:
        data=f"results/data/{GUIDED['dataset']}.h5",
    output:
        h5="results/guided/guided.h5",
        table="results/stats/guided.tsv",
    log:
        "results/logs/guided/guided.log",
    benchmark:
        "results/benchmarks/guided/guided.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: GUIDED["threads"]
    resources:
        gpu=GPU,
    params:
        settings=job_settings(GUIDED, GuidedSettings),
        seeds=GUIDED["seeds"],
        n_train=GUIDED["n_train"],
        data_seed=SEED,
        device=DEVICE,
    script:
        "../scripts/guided.py"


rule plot_guided:
    input:
        h5="results/guided/guided.h5",
    output:
        report(
            "results/figures/guided/guided_cnn.png",
            caption="../report/guided.rst",
            category="6. Data separation (paper 2)",
            subcategory="guiding training by the load curve",
            labels={"figure": "CNN load curves and accuracy per phase (SM Fig. S2)"},
        ),
    log:
        "results/logs/figures/guided.log",
    benchmark:
        "results/benchmarks/figures/guided.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_guided.py"
