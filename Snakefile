# featdyn: feature dynamics of deep networks, from datasets to the papers' figures.
# All logic lives in src/featdyn; rules live in workflow/rules (one file per stage).

from snakemake.utils import min_version

min_version("9.0")


# The default config; a preset given with --configfile replaces it instead of merging into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/import.smk"
include: "workflow/rules/composite.smk"
include: "workflow/rules/corrupt.smk"
include: "workflow/rules/consistency.smk"
include: "workflow/rules/isotropy.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/interventions.smk"
include: "workflow/rules/separation.smk"
include: "workflow/rules/mislabel.smk"
include: "workflow/rules/phase.smk"
include: "workflow/rules/springblock.smk"
include: "workflow/rules/surrogates.smk"
include: "workflow/rules/ensembles.smk"
include: "workflow/rules/linear_nets.smk"
include: "workflow/rules/guided.smk"
include: "workflow/rules/regression.smk"
include: "workflow/rules/claims.smk"


rule all:
    default_target: True
    input:
        TARGETS,
