# SGD-noise anisotropy: one-step perturbations at checkpoints, sphericity tests, and their figures.

from featdyn.planning import isotropy_keys, memory_depths
from featdyn.sgd_noise import IsotropySettings

ISOTROPY = config["isotropy"]
ISOTROPY_RUNS = analysed_runs(config, "isotropy")
ISOTROPY_KEYS = isotropy_keys(config)
ISOTROPY_FIGURE_KEYS = isotropy_keys(config, figure_only=True)
MEMORY_EVAL_SET = config["composite"]["eval_sets"][0]

if ISOTROPY_RUNS:
    TARGETS += ["results/stats/isotropy.tsv", "results/figures/isotropy/spectrum.png"]
    TARGETS += expand(
        "results/figures/isotropy/{kind}_{run}.png", kind=["top_eigs", "anisotropy_memory"], run=ISOTROPY_RUNS
    )


rule isotropy:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        h5="results/runs/{run}/isotropy/e{epoch}_d{depth}.h5",
        row="results/runs/{run}/isotropy/e{epoch}_d{depth}.tsv",
    log:
        "results/logs/isotropy/{run}_e{epoch}_d{depth}.log",
    benchmark:
        "results/benchmarks/isotropy/{run}_e{epoch}_d{depth}.tsv"
    wildcard_constraints:
        epoch=r"\d+",
        depth=r"\d+",
    conda:
        "../../envs/featdyn.yaml"
    # One thread: M small batched steps; two such jobs side by side beat one two-threaded job, whose
    # threads spin-wait for each other on a busy machine (10x the CPU time measured on 2 shared cores).
    threads: 1
    resources:
        gpu=GPU,
        runtime=lambda wc: isotropy_resources(config, wc.run)["runtime"],
        mem_mb=lambda wc: isotropy_resources(config, wc.run)["mem_mb"],
    params:
        settings=job_settings(ISOTROPY, IsotropySettings),
        batch_size=lambda wc: recipe_config(wc)["batch_size"],
        cache_dir=f"{config['cache_dir']}/isotropy",
        device=DEVICE,
    script:
        "../scripts/isotropy.py"


rule isotropy_table:
    input:
        rows=[f"results/runs/{r}/isotropy/e{e}_d{d}.tsv" for r, e, d in ISOTROPY_KEYS],
    output:
        table="results/stats/isotropy.tsv",
    log:
        "results/logs/stats/isotropy.log",
    benchmark:
        "results/benchmarks/stats/isotropy.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/isotropy_table.py"


rule plot_isotropy_spectrum:
    input:
        results=[f"results/runs/{r}/isotropy/e{e}_d{d}.h5" for r, e, d in ISOTROPY_FIGURE_KEYS],
    output:
        report(
            "results/figures/isotropy/spectrum.png",
            caption="../report/isotropy_spectrum.rst",
            category="4. SGD-noise anisotropy",
            labels={"figure": "noise spectrum (Fig. 8)"},
        ),
    log:
        "results/logs/figures/isotropy_spectrum.log",
    benchmark:
        "results/benchmarks/figures/isotropy_spectrum.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        runs=[r for r, _, _ in ISOTROPY_FIGURE_KEYS],
        labels=labels_of(ISOTROPY_RUNS),
    script:
        "../scripts/plot_isotropy_spectrum.py"


rule plot_isotropy_top_eigs:
    input:
        table="results/stats/isotropy.tsv",
    output:
        report(
            "results/figures/isotropy/top_eigs_{run}.png",
            caption="../report/isotropy_top_eigs.rst",
            category="4. SGD-noise anisotropy",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "top-5 eigenvalue shares (Fig. 15)"},
        ),
    log:
        "results/logs/figures/isotropy_top_eigs_{run}.log",
    benchmark:
        "results/benchmarks/figures/isotropy_top_eigs_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        labels=lambda wc: stage_labels(config, wc.run),
    script:
        "../scripts/plot_isotropy_top_eigs.py"


rule plot_anisotropy_memory:
    input:
        table="results/stats/isotropy.tsv",
        bands=lambda wc: [
            f"results/runs/{wc.run}/composite/{MEMORY_EVAL_SET}_d{d}.h5"
            for d in memory_depths(config, wc.run)
        ],
    output:
        report(
            "results/figures/isotropy/anisotropy_memory_{run}.png",
            caption="../report/anisotropy_memory.rst",
            category="4. SGD-noise anisotropy",
            subcategory="{run}",
            labels={"run": "{run}", "figure": "anisotropy and memory window"},
        ),
    log:
        "results/logs/figures/anisotropy_memory_{run}.log",
    benchmark:
        "results/benchmarks/figures/anisotropy_memory_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        memory_depths=lambda wc: memory_depths(config, wc.run),
        eval_set=MEMORY_EVAL_SET,
        labels=lambda wc: stage_labels(config, wc.run),
    script:
        "../scripts/plot_anisotropy_memory.py"
