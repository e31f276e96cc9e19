"""Hub ids: a cached model loads with no network; one that is not cached is refused at once."""

import socket
import time

import pytest

import workbench
from tests.tiny_models import save_tiny_byte_model
from workbench import ModelLoadError
from workbench.core import hub


def _cache_holding(root, repo_id):
    """A hub cache laid out as huggingface_hub writes it, holding one snapshot of ``repo_id``."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    save_tiny_byte_model(snapshot, "gpt_neox")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_a_cached_hub_model_loads_offline_from_its_snapshot(tmp_path, monkeypatch):
    snapshot = _cache_holding(tmp_path, "someone/tiny-neox")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    h = workbench.load("someone/tiny-neox", device="cpu")
    assert h.name == "someone/tiny-neox" and h.source == str(snapshot) and h.sites.family == "gpt_neox"


def test_an_uncached_hub_id_offline_is_refused_at_once_naming_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"^cannot load model 'someone/absent': not in the local .*HF_HUB_OFFLINE"):
        workbench.load("someone/absent")
    assert time.perf_counter() - start < 1


def test_an_unreachable_hub_is_one_try_not_a_minute_of_retries(tmp_path, monkeypatch):
    tries = []

    def refuse(address, timeout):
        tries.append((address, timeout))
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    with pytest.raises(ModelLoadError, match="huggingface.co cannot be reached .*set HF_HUB_OFFLINE=1"):
        workbench.load("someone/absent")
    assert tries == [(("huggingface.co", 443), 3.0)]


@pytest.mark.parametrize("name", ["a/b/c/", "two words", "-dash", "x" * 200])
def test_a_name_that_is_no_hub_id_is_refused_without_the_network(name, monkeypatch):
    monkeypatch.setattr(hub.socket, "create_connection", lambda *a, **k: pytest.fail("reached the network"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelLoadError, match="cannot load model"):
        workbench.load(name)
