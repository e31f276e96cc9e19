"""Device names: parsed once for the CLI and the trainer, with one-line refusals."""

import pytest
import torch

from workbench.core.devices import parse_device


def test_names_this_machine_has():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("cpu:0").type == "cpu"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gpu", "'gpu' is not a device (cpu, cuda, cuda:1, mps)"),
        ("", "is not a device"),
        ("cuda:99", "cuda:99: this machine has"),
        ("tpu:0", "is not a device"),
    ],
)
def test_refusals_are_one_line(name, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        parse_device(name)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_mps_where_there_is_none():
    with pytest.raises(ValueError, match="MPS is not available here"):
        parse_device("mps")
