"""Fixtures shared by several test files."""
from __future__ import annotations

import pytest

from harness.data import prepare_dataset


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory):
    """A tiny toycity (16 train + 4 val images of 32 x 64), generated once per test session and
    only read by the tests."""
    root = tmp_path_factory.mktemp("toycity")
    prepare_dataset("toycity", root, num_train=16, num_val=4, height=32, width=64)
    return root
