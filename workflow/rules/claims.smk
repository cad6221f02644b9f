# Paper 1 claim by claim: every stage's tables and files read into one Markdown page, each claim with
# its numbers and whether its stated criterion holds (featdyn.claims).

CLAIM_BAND_KEYS = composite_keys(config, COMPOSITE_RUNS, COMPOSITE["eval_sets"])
CLAIM_FREEZE_KEYS = [
    (run, d) for run in INTERVENTION_RUNS for d in [0, *run_depths(config, "interventions", run)]
]

TARGETS += ["results/stats/claims.md"] if COMPOSITE_RUNS else []


rule claims:
    input:
        metrics=expand("results/runs/{run}/metrics.tsv", run=COMPOSITE_RUNS),
        bands=[composite_file(*key) for key in CLAIM_BAND_KEYS],
        welch=["results/stats/welch.tsv"] if PAIRS else [],
        isotropy=["results/stats/isotropy.tsv"] if ISOTROPY_RUNS else [],
        drift=expand("results/runs/{run}/dynamics/drift.h5", run=DRIFT_RUNS),
        freeze=[f"results/runs/{run}/continue/freeze_d{d}/metrics.tsv" for run, d in CLAIM_FREEZE_KEYS],
        data=[f"results/data/{config['runs'][run]['dataset']}.h5" for run in INTERVENTION_RUNS],
        reinit=["results/stats/reinit.tsv"] if REINIT_KEYS else [],
    output:
        report(
            "results/stats/claims.md",
            caption="../report/claims.rst",
            category="0. Paper 1, claim by claim",
            labels={"table": "claims, criteria and verdicts"},
        ),
    log:
        "results/logs/stats/claims.log",
    benchmark:
        "results/benchmarks/stats/claims.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        runs=COMPOSITE_RUNS,
        memory_eval_set=MEMORY_EVAL_SET,
        band_keys=CLAIM_BAND_KEYS,
        drift_runs=DRIFT_RUNS,
        freeze_keys=CLAIM_FREEZE_KEYS,
        intervention_runs=INTERVENTION_RUNS,
    script:
        "../scripts/claims.py"
