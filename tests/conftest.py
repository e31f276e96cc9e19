"""Shared fixtures: the real default model, loaded once per test process."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property tests: the same examples on every CI run; HYPOTHESIS_PROFILE=thorough searches wider.
_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True, suppress_health_check=_QUIET)
settings.register_profile("thorough", max_examples=1000, deadline=None, suppress_health_check=_QUIET)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

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
