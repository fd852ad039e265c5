"""The workflow planner: the experiment grid of ``workflow/config/config.yaml``, expanded once.

The Snakefile (``workflow/rules/common.smk``) and ``python -m harness grid check`` both use
:mod:`harness.workflow.grid`. Importing this package does not import torch (the Snakefile imports
it at parse time; a dry run of the whole paper grid must stay fast).
"""
