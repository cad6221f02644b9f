# Feature dynamics (paper 1, Sec. 4.2, 4.5, App. B): 2-D feature trajectories over the final
# classification regions (Fig. 6), PCA perturbation (Fig. 14), parameter and feature drift (Fig. 11).

DYNAMICS = config.get("dynamics") or {}
DRIFT_RUNS = analysed_runs(config, "dynamics") if DYNAMICS else []
TRAJECTORIES = DYNAMICS.get("trajectories") or {}
PCA = DYNAMICS.get("pca") or {}
DRIFT_SETTINGS = {k: DYNAMICS[k] for k in ("depths", "drift_subset", "memory_budget_mb") if k in DYNAMICS}
DYNAMICS_BATCH = DYNAMICS.get("batch_size", 512)

TARGETS += expand("results/figures/dynamics/trajectories_{run}.png", run=TRAJECTORIES.get("runs", []))
TARGETS += expand("results/figures/dynamics/pca_perturbation_{run}.png", run=PCA.get("runs", []))
TARGETS += ["results/figures/dynamics/drift.png"] if DRIFT_RUNS else []


rule trajectories:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        h5="results/runs/{run}/dynamics/trajectories.h5",
    params:
        settings=TRAJECTORIES,
        batch_size=DYNAMICS_BATCH,
        seed=config.get("seed", 0),
        device=config.get("device", "auto"),
    threads: 2
    resources:
        gpu=GPU,
    log:
        "results/logs/dynamics/trajectories_{run}.log",
    benchmark:
        "results/benchmarks/dynamics/trajectories_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
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
    params:
        lines=TRAJECTORIES.get("figure_lines", 300),
        seed=config.get("seed", 0),
    log:
        "results/logs/figures/trajectories_{run}.log",
    benchmark:
        "results/benchmarks/figures/trajectories_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_trajectories.py"


rule pca_perturbation:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        h5="results/runs/{run}/dynamics/pca_d{depth}.h5",
    params:
        settings=PCA,
        batch_size=DYNAMICS_BATCH,
        seed=config.get("seed", 0),
        device=config.get("device", "auto"),
    wildcard_constraints:
        depth=r"\d+",
    threads: 2
    resources:
        gpu=GPU,
    log:
        "results/logs/dynamics/pca_{run}_d{depth}.log",
    benchmark:
        "results/benchmarks/dynamics/pca_{run}_d{depth}.tsv"
    conda:
        "../../envs/featdyn.yaml"
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
    params:
        seed=config.get("seed", 0),
    log:
        "results/logs/figures/pca_perturbation_{run}.log",
    benchmark:
        "results/benchmarks/figures/pca_perturbation_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_pca_perturbation.py"


rule drift:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        h5="results/runs/{run}/dynamics/drift.h5",
    params:
        settings=DRIFT_SETTINGS,
        seed=config.get("seed", 0),
        device=config.get("device", "auto"),
    threads: 2
    resources:
        gpu=GPU,
    log:
        "results/logs/dynamics/drift_{run}.log",
    benchmark:
        "results/benchmarks/dynamics/drift_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
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
    params:
        runs=DRIFT_RUNS,
    log:
        "results/logs/figures/drift.log",
    benchmark:
        "results/benchmarks/figures/drift.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_drift.py"
