# Depth-wise interventions from a run's checkpoints (paper 1, App. F): continuations from epoch k with
# shallow stages frozen (Fig. 18), and retraining after re-initialising the deeper stages of the final
# network, scored by clean accuracy and unnormalised mCE on the corrupted test sets. The kill-safe per-epoch
# state of a continuation lives in results/runs/{run}/continue/.state/, outside the declared outputs.

from featdyn.planning import freeze_epoch

INTERVENTIONS = config["interventions"]
INTERVENTION_RUNS = analysed_runs(config, "interventions")
REINIT_KEYS = [(run, d) for run in INTERVENTION_RUNS for d in run_depths(config, "reinit", run)]
REINIT_SETTINGS = {key: INTERVENTIONS[key] for key in ("reinit_epochs", "reinit_seed")}
TABLE_SETTINGS = {key: INTERVENTIONS[key] for key in ("reinit_epochs", "batch_size")}

TARGETS += expand("results/figures/interventions/freeze_{run}.png", run=INTERVENTION_RUNS)
TARGETS += ["results/stats/reinit.tsv"] if REINIT_KEYS else []


rule continue_frozen:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        checkpoints="results/runs/{run}/continue/freeze_d{depth}/checkpoints.h5",
        metrics="results/runs/{run}/continue/freeze_d{depth}/metrics.tsv",
    log:
        "results/logs/interventions/freeze_{run}_d{depth}.log",
    benchmark:
        "results/benchmarks/interventions/freeze_{run}_d{depth}.tsv"
    wildcard_constraints:
        depth=r"\d+",
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
        runtime=lambda wc: continuation_resources(config, wc.run, "freeze")["runtime"],
        mem_mb=lambda wc: continuation_resources(config, wc.run, "freeze")["mem_mb"],
    params:
        run=run_config,
        recipe=recipe_config,
        from_epoch=lambda wc: freeze_epoch(config, wc.run),
        device=DEVICE,
        state_dir=lambda wc: f"results/runs/{wc.run}/continue/.state/freeze_d{wc.depth}",
    script:
        "../scripts/continue_frozen.py"


rule plot_freeze:
    input:
        original="results/runs/{run}/metrics.tsv",
        continuations=lambda wc: [
            f"results/runs/{wc.run}/continue/freeze_d{d}/metrics.tsv"
            for d in [0, *run_depths(config, "interventions", wc.run)]
        ],
    output:
        report(
            "results/figures/interventions/freeze_{run}.png",
            caption="../report/freeze.rst",
            category="3. Trajectories, drift and interventions",
            labels={"run": "{run}", "figure": "frozen shallow stages (Fig. 18)"},
        ),
    log:
        "results/logs/figures/freeze_{run}.log",
    benchmark:
        "results/benchmarks/figures/freeze_{run}.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        depths=lambda wc: [0, *run_depths(config, "interventions", wc.run)],
        from_epoch=lambda wc: freeze_epoch(config, wc.run),
        labels=lambda wc: stage_labels(config, wc.run),
    script:
        "../scripts/plot_freeze.py"


rule continue_reinit:
    input:
        checkpoints="results/runs/{run}/checkpoints.h5",
        data=dataset_h5,
    output:
        checkpoints="results/runs/{run}/continue/reinit_d{depth}/checkpoints.h5",
        metrics="results/runs/{run}/continue/reinit_d{depth}/metrics.tsv",
    log:
        "results/logs/interventions/reinit_{run}_d{depth}.log",
    benchmark:
        "results/benchmarks/interventions/reinit_{run}_d{depth}.tsv"
    wildcard_constraints:
        depth=r"\d+",
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
        runtime=lambda wc: continuation_resources(config, wc.run, "reinit")["runtime"],
        mem_mb=lambda wc: continuation_resources(config, wc.run, "reinit")["mem_mb"],
    params:
        run=run_config,
        recipe=recipe_config,
        settings=REINIT_SETTINGS,
        device=DEVICE,
        state_dir=lambda wc: f"results/runs/{wc.run}/continue/.state/reinit_d{wc.depth}",
    script:
        "../scripts/continue_reinit.py"


rule reinit_table:
    input:
        data=[f"results/data/{config['runs'][run]['dataset']}.h5" for run in INTERVENTION_RUNS],
        corrupted=[f"results/data/{config['runs'][run]['dataset']}-c.h5" for run in INTERVENTION_RUNS],
        baselines=checkpoints_of(INTERVENTION_RUNS),
        reinit=[f"results/runs/{run}/continue/reinit_d{d}/checkpoints.h5" for run, d in REINIT_KEYS],
    output:
        table=report(
            "results/stats/reinit.tsv",
            caption="../report/reinit.rst",
            category="3. Trajectories, drift and interventions",
            labels={"table": "re-initialised deep stages: clean accuracy and mCE (App. F.A)"},
        ),
        errors="results/stats/reinit_corruptions.tsv",
    log:
        "results/logs/interventions/reinit_table.log",
    benchmark:
        "results/benchmarks/interventions/reinit_table.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 2
    resources:
        gpu=GPU,
    params:
        runs=INTERVENTION_RUNS,
        depths=[[d for r, d in REINIT_KEYS if r == run] for run in INTERVENTION_RUNS],
        settings=TABLE_SETTINGS,
        device=DEVICE,
    script:
        "../scripts/reinit_table.py"
