# Regression load curves: RMSE of the optimal affine regressor from each layer's features, for a seeded
# smooth target of the inputs (docs/definitions.md §9; paper 2, SM S5, Fig. S12).

from featdyn.planning import overlays
from featdyn.regression_load import RegressionSettings

REGRESSION = config["regression"]

TARGETS += ["results/stats/regression_load.tsv", "results/figures/regression/regression_load.png"]


rule regression_load:
    input:
        data=f"results/data/{REGRESSION['dataset']}.h5",
    output:
        h5="results/regression/regression_load.h5",
        table="results/stats/regression_load.tsv",
    log:
        "results/logs/regression/regression_load.log",
    benchmark:
        "results/benchmarks/regression/regression_load.tsv"
    conda:
        "../../envs/featdyn.yaml"
    threads: 1
    resources:
        gpu=GPU,
    params:
        trainings={
            name: job_settings(section, RegressionSettings)
            for name, section in overlays(REGRESSION, "trainings").items()
        },
        target=REGRESSION["target"],
        n_train=REGRESSION["n_train"],
        seed=REGRESSION["seed"],
        data_seed=SEED,
        device=DEVICE,
    script:
        "../scripts/regression_load.py"


rule plot_regression_load:
    input:
        h5="results/regression/regression_load.h5",
    output:
        report(
            "results/figures/regression/regression_load.png",
            caption="../report/regression_load.rst",
            category="6. Data separation (paper 2)",
            subcategory="regression loads",
            labels={"figure": "regression load curves, noisy vs lazy (SM Fig. S12)"},
        ),
    log:
        "results/logs/figures/regression_load.log",
    benchmark:
        "results/benchmarks/figures/regression_load.tsv"
    conda:
        "../../envs/featdyn.yaml"
    script:
        "../scripts/plot_regression_load.py"
