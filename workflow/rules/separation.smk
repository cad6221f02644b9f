# Layer-wise data separation D_l (docs/definitions.md §9; paper 2) of every trained run over its saved epochs.

SEPARATION = config["separation"]
SEPARATION_RUNS = analysed_runs(config, "separation")

TARGETS += expand("results/figures/separation/load_curves_{run}.png", run=SEPARATION_RUNS)


rule separation:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        h5="results/runs/{run}/separation.h5",
    log:
        "results/logs/separation/{run}.log",
    benchmark:
        "results/benchmarks/separation/{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
        runtime=lambda wc: separation_resources(config, wc.run)["runtime"],
        mem_mb=lambda wc: separation_resources(config, wc.run)["mem_mb"],
    params:
        settings={key: value for key, value in SEPARATION.items() if key != "runs"},
        seed=SEED,
        device=DEVICE,
    script:
        "../scripts/separation.py"


rule plot_separation:
    input:
        h5="results/runs/{run}/separation.h5",
    output:
        report(
            "results/figures/separation/load_curves_{run}.png",
            caption="../report/separation.rst",
            category="6. Data separation (paper 2)",
            subcategory="load curves over training",
            labels={"run": "{run}", "figure": "load curves (Eq. 3, Fig. 4 left)"},
        ),
    log:
        "results/logs/figures/separation_{run}.log",
    benchmark:
        "results/benchmarks/figures/separation_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        labels=lambda wc: stage_labels(config, wc.run),
    script:
        "../scripts/plot_separation.py"
