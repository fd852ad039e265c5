# The experiment workflow: teachers, students, distillation grid, tables and figures.
#   snakemake --cores 2                                   # the built-in dataset (toycity), everything
#   snakemake --cores 2 --config scale=smoke              # the same grid in minutes (a few iterations)
#   snakemake --cores 8 results/table_cityscapes.csv      # a real dataset (set datasets.cityscapes.root)
#   snakemake -n results/table_voc.csv --config check_roots=false   # preview a grid without data
# (targets before --config: --config takes every KEY=VALUE word after it)
# The grid lives in workflow/config/config.yaml; every rule calls `python -m harness ...`.
from snakemake.utils import min_version, validate

min_version("9")


configfile: "workflow/config/config.yaml"


# Nested --config values arrive as strings; re-type them as config.yaml would, then validate.
from harness.workflow.grid import load_schema
from harness.workflow.overrides import coerce_config

coerce_config(config, load_schema())
validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/teachers.smk"
include: "workflow/rules/students.smk"
include: "workflow/rules/distill.smk"
include: "workflow/rules/eval.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        default_targets(),
