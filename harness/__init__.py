"""Reference harness for knowledge distillation in semantic segmentation between
heterogeneous architectures (CNN <-> Transformer), centred on HeteroAKD (AAAI 2025)."""

__version__ = "0.1.0"

IGNORE_INDEX = 255
