"""Shared fixtures: the real default model, loaded once per test process."""

import os

import pytest
import torch

# No test may reach the network; transformers and the hub honour these.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Under pytest-xdist two workers share two cores: one thread each avoids oversubscription.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def handle():
    import workbench

    return workbench.load("world", device="cpu")


@pytest.fixture(scope="session")
def world(handle):
    return handle.world
