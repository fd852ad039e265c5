"""The cost of distillation, measured: step-time breakdown per method x pair (``cost``), the
timed steps over the engine's training step (``step``), medians and peaks (``timing``),
the costs around training (``pipeline``) and the CSV/Markdown output (``table``).
CLI: ``python -m harness bench`` (``commands``)."""
from harness.bench.cost import COLUMNS, DEFAULT_METHODS, CostConfig, measure, run_cost
from harness.bench.pipeline import (
                                    accumulator_throughput,
                                    dry_run_seconds,
                                    eval_throughput,
                                    loader_throughput,
                                    training_consumption,
)
from harness.bench.step import DistillStep
from harness.bench.table import write_tables

__all__ = ["COLUMNS", "DEFAULT_METHODS", "CostConfig", "measure", "run_cost", "DistillStep",
           "accumulator_throughput", "dry_run_seconds", "eval_throughput",
           "loader_throughput", "training_consumption", "write_tables"]
