# Feature dynamics (paper 1, Sec. 4.2, 4.5, App. B): 2-D feature trajectories over the final
# classification regions (Fig. 6), PCA perturbation (Fig. 14), parameter and feature drift (Fig. 11).

from featdyn.planning import trajectory_runs

DYNAMICS = config["dynamics"]
DRIFT_RUNS = analysed_runs(config, "dynamics")
TRAJECTORIES = DYNAMICS["trajectories"]
TRAJECTORY_RUNS = trajectory_runs(config)
PCA = DYNAMICS["pca"]
PCA_RUNS = analysed_runs(config, "dynamics", "pca")
DRIFT_SETTINGS = {key: DYNAMICS[key] for key in ("drift_subset", "memory_budget_mb")}
DYNAMICS_BATCH = DYNAMICS["batch_size"]

TARGETS += expand("results/figures/dynamics/trajectories_{run}.png", run=TRAJECTORY_RUNS)
TARGETS += expand("results/figures/dynamics/pca_perturbation_{run}.png", run=PCA_RUNS)
TARGETS += ["results/figures/dynamics/drift.png"] if DRIFT_RUNS else []


rule trajectories:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        h5="results/runs/{run}/dynamics/trajectories.h5",
    log:
        "results/logs/dynamics/trajectories_{run}.log",
    benchmark:
        "results/benchmarks/dynamics/trajectories_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
    params:
        settings={key: TRAJECTORIES[key] for key in ("depth", "subset", "resolution")},
        batch_size=DYNAMICS_BATCH,
        seed=SEED,
        device=DEVICE,
    script:
        "../scripts/trajectories.py"


rule plot_trajectories:
    input:
        h5="results/runs/{run}/dynamics/trajectories.h5",
    output:
        report(
            "results/figures/dynamics/trajectories_{run}.png",
            caption="../report/trajectories.rst",
            category="3. Trajectories, drift and interventions",
            labels={"run": "{run}", "figure": "feature trajectories (Fig. 6)"},
        ),
    log:
        "results/logs/figures/trajectories_{run}.log",
    benchmark:
        "results/benchmarks/figures/trajectories_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        lines=TRAJECTORIES["figure_lines"],
        seed=SEED,
    script:
        "../scripts/plot_trajectories.py"


rule pca_perturbation:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        h5="results/runs/{run}/dynamics/pca_d{depth}.h5",
    log:
        "results/logs/dynamics/pca_{run}_d{depth}.log",
    benchmark:
        "results/benchmarks/dynamics/pca_{run}_d{depth}.tsv"
    wildcard_constraints:
        depth=r"\d+",
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
    params:
        settings={key: value for key, value in PCA.items() if key not in ("runs", "depth")},
        batch_size=DYNAMICS_BATCH,
        seed=SEED,
        device=DEVICE,
    script:
        "../scripts/pca_perturbation.py"


rule plot_pca_perturbation:
    input:
        h5=lambda wc: f"results/runs/{wc.run}/dynamics/pca_d{PCA['depth']}.h5",
    output:
        report(
            "results/figures/dynamics/pca_perturbation_{run}.png",
            caption="../report/pca_perturbation.rst",
            category="3. Trajectories, drift and interventions",
            labels={"run": "{run}", "figure": "PCA perturbation (Fig. 14)"},
        ),
    log:
        "results/logs/figures/pca_perturbation_{run}.log",
    benchmark:
        "results/benchmarks/figures/pca_perturbation_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        seed=SEED,
    script:
        "../scripts/plot_pca_perturbation.py"


rule drift:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        h5="results/runs/{run}/dynamics/drift.h5",
    log:
        "results/logs/dynamics/drift_{run}.log",
    benchmark:
        "results/benchmarks/dynamics/drift_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
    params:
        settings=lambda wc: {**DRIFT_SETTINGS, "depths": run_depths(config, "dynamics", wc.run)},
        seed=SEED,
        device=DEVICE,
    script:
        "../scripts/drift.py"


rule plot_drift:
    input:
        drift=expand("results/runs/{run}/dynamics/drift.h5", run=DRIFT_RUNS),
    output:
        report(
            "results/figures/dynamics/drift.png",
            caption="../report/drift.rst",
            category="3. Trajectories, drift and interventions",
            labels={"figure": "parameter and feature drift (Fig. 11)"},
        ),
    log:
        "results/logs/figures/drift.log",
    benchmark:
        "results/benchmarks/figures/drift.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        runs=DRIFT_RUNS,
        labels=labels_of(DRIFT_RUNS),
    script:
        "../scripts/plot_drift.py"
