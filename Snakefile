# featdyn: feature dynamics of deep networks, from datasets to the papers' figures.
# All logic lives in src/featdyn; rules live in workflow/rules (one file per stage).

from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/composite.smk"


rule all:
    input:
        TARGETS,
    default_target: True
