# Clean vs. noisy-label temporal consistency on test and corrupted data (paper 1, Sec. 5, App. E):
# per-sample c(x; t − W, t) from the composite files, Welch tests (Table 1), KDE data, and the density
# figures (Figs. 7, 16, 17, and the per-run densities on the composite evaluation sets).

from featdyn.planning import (
    FIGURE_KINDS,
    consistency_figure_keys,
    consistency_keys,
)

PAIRS = config["pairs"]
STATS = config["stats"]
CONSISTENCY_KEYS = consistency_keys(config)

TARGETS += ["results/figures/consistency_kde.png"]
if PAIRS:
    TARGETS += ["results/stats/welch.tsv", "results/stats/table1.md"]
    TARGETS += expand("results/figures/consistency_{kind}_{pair}.png", kind=FIGURE_KINDS, pair=PAIRS)


rule consistency_stats:
    input:
        bands=[composite_file(run, e, d) for _, _, run, e, d in CONSISTENCY_KEYS],
    output:
        values="results/stats/consistency.tsv",
        kde="results/stats/consistency_kde.tsv",
        welch="results/stats/welch.tsv",
        table="results/stats/table1.md",
    log:
        "results/logs/stats/consistency.log",
    benchmark:
        "results/benchmarks/stats/consistency.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        files=CONSISTENCY_KEYS,
        window=STATS["window"],
        pairs=PAIRS,
    script:
        "../scripts/consistency_stats.py"


rule plot_consistency:
    input:
        bands=lambda wc: [
            composite_file(run, e, d)
            for _, _, run, e, d in consistency_figure_keys(config, wc.pair, wc.kind)
        ],
    output:
        report(
            "results/figures/consistency_{kind}_{pair}.png",
            caption="../report/consistency_pair.rst",
            category="5. Noisy labels and corrupted data",
            labels={"pair": "{pair}", "figure": "consistency densities ({kind})"},
        ),
    log:
        "results/logs/figures/consistency_{kind}_{pair}.log",
    benchmark:
        "results/benchmarks/figures/consistency_{kind}_{pair}.tsv"
    wildcard_constraints:
        kind="|".join(FIGURE_KINDS),
        pair="|".join(PAIRS) or "no-pairs",
    conda:
        "../../envs/featdyn.yaml"
    params:
        files=lambda wc: consistency_figure_keys(config, wc.pair, wc.kind),
        window=STATS["window"],
        title=lambda wc: (
            f"{PAIRS[wc.pair]['clean']} vs. {PAIRS[wc.pair]['noisy']}: c(x; t − {STATS['window']}, t), "
            f"depth {stage_labels(config, PAIRS[wc.pair]['clean'])[figure_depth(config, PAIRS[wc.pair]['clean'])]}"
            + (f", corruptions at severity {STATS['figure_severity']}" if wc.kind == "corruptions" else "")
        ),
    script:
        "../scripts/plot_consistency.py"


rule plot_consistency_kde:
    input:
        bands=composite_files(COMPOSITE_RUNS, COMPOSITE["eval_sets"], figure_only=True),
    output:
        report(
            "results/figures/consistency_kde.png",
            caption="../report/consistency_kde.rst",
            category="5. Noisy labels and corrupted data",
            labels={"figure": "consistency densities per run"},
        ),
    log:
        "results/logs/figures/consistency_kde.log",
    benchmark:
        "results/benchmarks/figures/consistency_kde.tsv"
    conda:
        "../../envs/featdyn.yaml"
    params:
        files=composite_keys(config, COMPOSITE_RUNS, COMPOSITE["eval_sets"], figure_only=True),
        window=STATS["window"],
        runs=figure_depth_labels(config, COMPOSITE_RUNS),
    script:
        "../scripts/plot_consistency_kde.py"
