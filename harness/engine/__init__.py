"""Training and evaluation engine: ``train(config, out_dir)`` and ``evaluate(model, dataset)``."""
from harness.engine.evaluate import confusion_matrix, evaluate, scores_from_confusion
from harness.engine.loop import NonFiniteLossError, train

__all__ = ["train", "evaluate", "confusion_matrix", "scores_from_confusion", "NonFiniteLossError"]
