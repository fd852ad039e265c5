"""Reporting: the workflow grid, result tables, figures and the comparison with published figures.

Importing this package does not import torch (the Snakefile imports :mod:`harness.report.grid` at
parse time); the modules that need models (``cka``, ``qualitative`` figures) import it themselves.
"""
