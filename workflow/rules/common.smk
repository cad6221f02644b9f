# The effective config (presets composed by `extends`, schema defaults filled, checked before any job),
# the run table, and input functions shared by every stage. Planning logic lives in featdyn.planning.

from featdyn.config import effective_config, job_settings
from featdyn.costs import (
    composite_resources,
    continuation_resources,
    isotropy_resources,
    phase_cell_resources,
    separation_resources,
    train_resources,
)
from featdyn.data import parse_corrupted_set
from featdyn.planning import (
    analysed_runs,
    composite_file,
    composite_keys,
    dataset_files,
    figure_depth,
    figure_depth_labels,
    imported_runs,
    name_pattern,
    run_depths,
    stage_labels,
    trained_runs,
    wants_gpu,
)

# Replace what Snakemake read by the effective config, so scripts see it too (`snakemake.config`).
_effective = effective_config(config, workflow.overwrite_configfiles)
config.clear()
config.update(_effective)

RUNS = sorted(config["runs"])
TRAINED_RUNS = trained_runs(config)
IMPORTED_RUNS = imported_runs(config)
DATASETS = sorted(config["datasets"])
GPU = 1 if wants_gpu(config) else 0
SEED = config["seed"]
DEVICE = config["device"]


wildcard_constraints:
    run="[A-Za-z0-9_.-]+",
    dataset="[A-Za-z0-9_.-]+",
    depth=r"\d+",


def run_config(wildcards):
    return config["runs"][wildcards.run]


def recipe_config(wildcards):
    return config["recipes"][config["runs"][wildcards.run]["recipe"]]


def dataset_h5(wildcards):
    return f"results/data/{config['runs'][wildcards.run]['dataset']}.h5"


def corrupted_h5(wildcards):
    """The run's -c.h5 file for a corrupted evaluation set (`<corruption>-<severity>`), else nothing."""
    if parse_corrupted_set(wildcards.eval_set) is None:
        return []
    return f"results/data/{config['runs'][wildcards.run]['dataset']}-c.h5"


def dataset_sources(wildcards):
    return dataset_files(config, wildcards.dataset)


def dataset_options(wildcards):
    return {"mirror_dirs": config["mirror_dirs"], **config["datasets"][wildcards.dataset]}


def checkpoints_of(runs):
    return [f"results/runs/{run}/checkpoints.h5" for run in runs]


def composite_files(runs, eval_sets, figure_only=False):
    return [composite_file(*key) for key in composite_keys(config, runs, eval_sets, figure_only)]


def labels_of(runs):
    """Run → its stage labels (`3 (block1.2)`), for the figures that label depths by stage name."""
    return {run: stage_labels(config, run) for run in runs}


TARGETS = ["results/figures/training_curves.png"]
"""Every final output of the main job; each stage's .smk extends it with its figures and tables."""
