"""Reporting: result tables, figures and the comparison with published figures.

Importing this package does not import torch; the modules that need models (``cka``,
``qualitative`` figures) import it themselves.
"""
