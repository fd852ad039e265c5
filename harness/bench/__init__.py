"""The cost of distillation, measured: step-time breakdown per method x pair (``cost``), the
three timed steps built from the engine's pieces (``step``), medians and peaks (``timing``),
the costs around training (``pipeline``) and the CSV/Markdown output (``table``).
CLI: ``python -m harness bench`` (``commands``)."""
from harness.bench.cost import COLUMNS, DEFAULT_METHODS, CostConfig, measure, run_cost
from harness.bench.pipeline import (accumulator_throughput, dry_run_seconds, eval_throughput,
                                    loader_throughput, training_consumption)
from harness.bench.step import DistillStep, Precision
from harness.bench.table import write_tables

__all__ = ["COLUMNS", "DEFAULT_METHODS", "CostConfig", "measure", "run_cost", "DistillStep",
           "Precision", "accumulator_throughput", "dry_run_seconds", "eval_throughput",
           "loader_throughput", "training_consumption", "write_tables"]
