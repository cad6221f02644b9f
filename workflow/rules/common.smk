# Config validation, the run table, and input functions shared by every stage.

from snakemake.utils import validate

from featdyn.config import analysed_runs, check_config, wants_gpu
from featdyn.data import parse_corrupted_set

validate(config, "../schemas/config.schema.yaml")
check_config(config)

RUNS = sorted(config["runs"])
DATASETS = sorted(config["datasets"])
GPU = 1 if wants_gpu(config) else 0


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


def dataset_options(wildcards):
    return {"mirror_dirs": config.get("mirror_dirs", []), **config["datasets"][wildcards.dataset]}


def checkpoints_of(runs):
    return [f"results/runs/{run}/checkpoints.h5" for run in runs]


def composite_keys(runs, eval_sets, depths=None):
    """(run, eval set, depth) of every composite file, in a fixed order."""
    depths = depths or config["composite"]["depths"]
    return [(r, e, d) for r in runs for e in eval_sets for d in depths]


def composite_files(runs, eval_sets, depths=None):
    return [f"results/runs/{r}/composite/{e}_d{d}.h5" for r, e, d in composite_keys(runs, eval_sets, depths)]


def figure_depth():
    depths = config["composite"]["depths"]
    return config["composite"].get("figure_depth", depths[len(depths) // 2])


TARGETS = ["results/figures/training_curves.png"]
"""Every final output of the main job; each stage's .smk extends it with its figures and tables."""
