"""SAE training with sae-lens, offline, at small size; the shipped SAEs load and are good."""

import json
import socket

import pytest
import torch

from locate.sae_splice import load_sae
from locate.sae_train import SHIPPED_SAES, SaeSettings, activations, evaluate_sae, sae_dir, train_sae

SMALL = SaeSettings(layer=1, d_sae=64, k=8, samples=65536, batch_size=512, lr=2e-3)


@pytest.fixture()
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_trains_offline_saves_and_loads_with_sae_lens(handle, tmp_path, no_network):
    from sae_lens import SAE

    texts = handle.world.training_sentences()[:400]
    sae = train_sae(handle, SMALL, texts, progress=False)
    again = train_sae(handle, SMALL, texts, progress=False)
    assert torch.equal(sae.W_dec, again.W_dec)  # deterministic given the seed
    sae.save_model(tmp_path / "sae")
    back = SAE.load_from_disk(tmp_path / "sae")
    x = activations(handle, SMALL.hook_name(), texts[:20])
    torch.testing.assert_close(back.encode(x), sae.encode(x))
    assert 0 < float((back.encode(x) > 0).float().sum(-1).mean()) < 4 * SMALL.k
    r = evaluate_sae(handle, sae, SMALL, texts[:50])
    assert 0.5 < r["fraction_variance_explained"] <= 1 and r["loss_zero_ablated"] > r["loss_spliced"]


@pytest.mark.parametrize("settings", SHIPPED_SAES, ids=lambda s: s.hook_name())
def test_shipped_saes_meet_their_report(handle, settings):
    report = json.loads((sae_dir(settings).parent / "report.json").read_text())[settings.hook_name()]
    assert report["fraction_variance_explained"] > 0.99 and abs(report["l0"] - settings.k) < 4
    assert report["dead_fraction"] < 0.3
    assert report["loss_spliced"] < report["loss_clean"] + 0.05 < report["loss_zero_ablated"]
    sae = load_sae(settings)
    texts = handle.world.heldout_text()[:60]
    x = activations(handle, settings.hook_name(), texts)
    with torch.no_grad():
        fve = 1 - float(((x - sae.decode(sae.encode(x))) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())
    assert fve > 0.99


def test_errors(handle):
    with pytest.raises(ValueError, match="layer 7 out of range"):
        train_sae(handle, SaeSettings(layer=7))
