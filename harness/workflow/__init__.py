"""The workflow planner: the experiment grid of ``workflow/config/config.yaml``, expanded once.

The Snakefile (``workflow/rules/common.smk``) and ``python -m harness grid check`` both use
:mod:`harness.workflow.grid` and :mod:`harness.workflow.rules` (every job's command line);
:mod:`harness.workflow.gpus` gives the jobs their GPU slots, and ``python -m harness grid plan``
(:mod:`harness.workflow.plan`, :mod:`harness.workflow.step_times`) prices the grid before it runs.
Importing this package does not import torch (the Snakefile imports it at parse time; a dry run
of the whole paper grid must stay fast).
"""
