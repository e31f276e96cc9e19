"""A world training run stopped part-way and resumed ends bitwise where an uninterrupted one does."""

from dataclasses import asdict

import pytest
import torch
from safetensors.torch import load_file

from workbench.core.world.facts import make_world
from workbench.core.world.train import TrainSettings, train
from workbench.core.world.train_progress import ProgressMismatch, load_progress, progress_path

TINY = dict(d_model=32, n_layers=1, n_heads=2, d_mlp=64, epochs=2, seq_len=64, batch_size=64)


@pytest.fixture(scope="module")
def world():
    return make_world(n_people=100)


@pytest.fixture(scope="module")
def straight(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    report = train(TrainSettings(**TINY), out, world, progress=False)
    return out, report


def test_a_stopped_run_resumes_to_the_same_weights(world, straight, tmp_path):
    out, report = straight
    first = train(TrainSettings(**TINY), tmp_path, world, progress=False, steps_this_run=5)
    assert first == {"finished": False, "step": 5, "steps": report["steps"], "progress": str(progress_path(tmp_path))}
    assert not (tmp_path / "model.safetensors").exists()
    # a second sitting crosses the epoch boundary, a third finishes
    second = train(TrainSettings(**TINY), tmp_path, world, progress=False, steps_this_run=report["steps"] // 2)
    assert second["step"] == 5 + report["steps"] // 2
    done = train(TrainSettings(**TINY), tmp_path, world, progress=False)
    assert done["steps"] == report["steps"] and done["final_train_loss"] == report["final_train_loss"]
    assert not progress_path(tmp_path).exists()
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_ctrl_c_stops_after_its_step_and_the_run_resumes_to_the_same_weights(world, straight, tmp_path, monkeypatch):
    import signal

    import workbench.core.world.train as module

    out, report = straight
    real, steps = module.train_step, []

    def step_then_interrupt(*a):
        steps.append(1)
        if len(steps) == 3:  # mid-step, as a user's Ctrl-C would land
            signal.raise_signal(signal.SIGINT)
        return real(*a)

    monkeypatch.setattr(module, "train_step", step_then_interrupt)
    before = signal.getsignal(signal.SIGINT)  # ignored, not the default, in a background job
    stopped = train(TrainSettings(**TINY), tmp_path, world, progress=False)
    assert stopped == {"finished": False, "step": 3, "steps": report["steps"], "progress": str(progress_path(tmp_path))}
    assert signal.getsignal(signal.SIGINT) == before  # the user's Ctrl-C is theirs again
    monkeypatch.setattr(module, "train_step", real)
    done = train(TrainSettings(**TINY), tmp_path, world, progress=False)
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert done["final_train_loss"] == report["final_train_loss"] and all(torch.equal(a[k], b[k]) for k in a)


def test_a_saved_state_from_other_settings_is_refused(world, tmp_path):
    train(TrainSettings(**TINY), tmp_path, world, progress=False, steps_this_run=2)
    with pytest.raises(ProgressMismatch, match="lr: 0.005, not 0.001"):
        train(TrainSettings(**TINY, lr=1e-3), tmp_path, world, progress=False)


def test_a_run_saved_before_a_new_setting_existed_resumes_when_it_is_left_at_its_default(world, straight, tmp_path):
    out, report = straight
    train(TrainSettings(**TINY), tmp_path, world, progress=False, steps_this_run=2)
    state = torch.load(progress_path(tmp_path), weights_only=False)
    # as a run saved before these settings existed
    for added in ("vocab_size", "statement_share", "registers_per_person", "profiles_per_person"):
        del state["settings"][added]
    torch.save(state, progress_path(tmp_path))
    new_value = asdict(TrainSettings(**TINY)) | {"vocab_size": 1024}
    with pytest.raises(ProgressMismatch, match="vocab_size: None, not 1024"):
        load_progress(tmp_path, new_value, None, None, None, defaults=asdict(TrainSettings()))  # refused first
    done = train(TrainSettings(**TINY), tmp_path, world, progress=False)
    assert done["final_train_loss"] == report["final_train_loss"]


def test_checkpoints_are_written_while_training(world, tmp_path, monkeypatch):
    saved = []
    import workbench.core.world.train as module

    real = module.save_progress
    monkeypatch.setattr(module, "save_progress", lambda *a: saved.append(a[-1].step) or real(*a))
    train(TrainSettings(**TINY), tmp_path, world, progress=False, checkpoint_seconds=0.0)
    assert saved and saved == sorted(saved) and not progress_path(tmp_path).exists()


def test_a_v2_world_model_trains_on_its_documents_and_loads_back(tmp_path):
    import workbench
    from workbench.core.world.train_corpus import training_sequences, world_tokenizer

    settings = TrainSettings(**{**TINY, "epochs": 1, "seq_len": 128}, world_version=2, n_people=100)
    report = train(settings, tmp_path, progress=False)
    w = make_world(n_people=100, version=2)
    seqs = training_sequences(w, world_tokenizer(w), None, 127, 4, 1)
    assert len(seqs) > len(w.training_statements()) and max(map(len, seqs)) <= 127
    h = workbench.load(str(tmp_path))
    assert h.world.version == 2 and len(h.world.people) == 100 and len(h.tokenizer) == len(world_tokenizer(w))
    assert report["eval"]["all"]["trained_phrasings"]["accuracy"] >= 0.0
    assert h.score(h.world.facts()[:12]).prob.isfinite().all()


def test_settings_and_world_of_different_versions_are_refused(tmp_path):
    with pytest.raises(ValueError, match="settings ask for a v2 world, got a v1 one"):
        train(TrainSettings(**TINY, world_version=2), tmp_path, make_world(n_people=100), progress=False)
    lists = ({"registers_per_person": 2}, {"profiles_per_person": 1})
    for v2_only in ({"vocab_size": 1024}, {"statement_share": 0.5}, *lists):
        with pytest.raises(ValueError, match="are v2 settings"):
            train(TrainSettings(**TINY, **v2_only), tmp_path, make_world(n_people=100), progress=False)


def test_a_v2_world_trains_under_the_bpe_size_its_settings_name(tmp_path):
    import workbench

    settings = TrainSettings(**{**TINY, "epochs": 1, "seq_len": 128}, world_version=2, n_people=100, vocab_size=1024)
    report = train(settings, tmp_path, progress=False)
    assert set(report["eval"]) == {"all", "heldout_loss"}  # every person stated bare: one group
    h = workbench.load(str(tmp_path))
    assert len(h.tokenizer) == 1024 and h.model.get_input_embeddings().weight.shape[0] == 1024
    name = list(h.world.people)[0]
    assert len(h.tokenizer(" " + name, add_special_tokens=False).input_ids) > 2  # split finer than at 1,536


def test_a_run_names_its_device_and_refuses_one_it_cannot_train_on(world, straight, tmp_path):
    assert straight[1]["device"] == "cpu"
    bad = ["gpu", "meta"] + ([] if torch.cuda.is_available() else ["cuda"])
    for device in bad:
        with pytest.raises(ValueError) as e:
            train(TrainSettings(**TINY), tmp_path, world, progress=False, device=device)
        assert device in str(e.value) and "\n" not in str(e.value)
    assert not progress_path(tmp_path).exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpu_run_starts_from_the_cpu_weights_and_learns_as_the_cpu_run_does(world, straight, tmp_path):
    cpu, report = straight
    gpu = train(TrainSettings(**TINY), tmp_path, world, progress=False, device="cuda")
    assert gpu["device"].startswith("cuda") and gpu["steps"] == report["steps"]
    assert gpu["final_train_loss"] == pytest.approx(report["final_train_loss"], rel=0.05)
    a, b = load_file(cpu / "model.safetensors"), load_file(tmp_path / "model.safetensors")
    assert a.keys() == b.keys() and all(b[k].device.type == "cpu" for k in b)


def test_people_left_out_of_the_statements_are_met_only_in_biographies_and_scored_apart(tmp_path):
    from workbench.core.world.train_corpus import statement_people, training_sequences, world_tokenizer

    w = make_world(n_people=100, version=2)
    tok = world_tokenizer(w)
    stated = statement_people(w, 0.5)
    full, half = (training_sequences(w, tok, None, 127, 4, 1, share) for share in (1.0, 0.5))
    assert len(full) - len(half) == len(w.training_statements()) // 2
    assert statement_people(w, 0.5) == stated  # the same people every time
    v2 = dict(world_version=2, n_people=100, statement_share=0.5)
    settings = TrainSettings(**{**TINY, "epochs": 1, "seq_len": 128}, **v2)
    report = train(settings, tmp_path, w, progress=False)
    groups = report["eval"]
    assert {"all", "with_statements", "biographies_only"} <= set(groups)
    n = {g: groups[g]["trained_phrasings"]["n"] for g in ("all", "with_statements", "biographies_only")}
    assert n["with_statements"] == n["biographies_only"] == n["all"] // 2
    with pytest.raises(ValueError, match=r"statement_share must lie in \[0, 1\]"):
        statement_people(w, 1.5)
