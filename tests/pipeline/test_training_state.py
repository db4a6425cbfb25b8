"""Resumable checkpoints: nested optimizer states survive safetensors + JSON; writes are atomic."""

from __future__ import annotations

import json
import os

import pytest
import torch

from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.pipeline.training.checkpoints import (
    Progress,
    flatten_state,
    load_latest_checkpoint,
    save_training_checkpoint,
    unflatten_state,
)


def _adam_state():
    param = torch.nn.Parameter(torch.randn(3, 2))
    optimizer = torch.optim.Adam([param], lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    param.grad = torch.randn(3, 2)
    optimizer.step()
    scheduler.step()
    return {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}


def test_flatten_then_unflatten_restores_an_adam_and_steplr_state():
    state = _adam_state()
    tensors = {}
    skeleton = json.loads(json.dumps(flatten_state(state, tensors)))
    restored = unflatten_state(skeleton, tensors)
    assert restored["scheduler"] == state["scheduler"]
    assert restored["optimizer"]["param_groups"] == state["optimizer"]["param_groups"]
    for key, value in state["optimizer"]["state"][0].items():
        assert torch.equal(restored["optimizer"]["state"][0][key], value)


def test_unsupported_objects_are_refused_by_path():
    with pytest.raises(TypeError, match="at .a.0"):
        flatten_state({"a": [object()]}, {})


def test_save_then_load_latest(tmp_path):
    trainable = {"w": torch.randn(4)}
    save_training_checkpoint(tmp_path, trainable, _adam_state(), Progress(epoch=1, step=5, batches_into_epoch=2))
    loaded = load_latest_checkpoint(tmp_path)
    assert loaded.progress == Progress(epoch=1, step=5, batches_into_epoch=2)
    assert torch.equal(loaded.trainable["w"], trainable["w"])
    assert loaded.path.name == "step-00000005"


def test_only_the_newest_checkpoints_are_kept(tmp_path):
    for step in (2, 4, 6):
        save_training_checkpoint(tmp_path, {"w": torch.ones(1) * step}, {}, Progress(step=step), keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest.json", "step-00000004", "step-00000006"]


def test_no_checkpoint_yet_is_none(tmp_path):
    assert load_latest_checkpoint(tmp_path) is None


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    save_training_checkpoint(tmp_path, {"w": torch.ones(1)}, {}, Progress(step=2))
    real_replace = os.replace

    def crash_on_directories(src, dst):
        if os.path.isdir(src):
            raise OSError("power cut")
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_directories)
    with pytest.raises(OSError, match="power cut"):
        save_training_checkpoint(tmp_path, {"w": torch.zeros(1)}, {}, Progress(step=4))
    monkeypatch.undo()
    loaded = load_latest_checkpoint(tmp_path)
    assert loaded.progress.step == 2 and torch.equal(loaded.trainable["w"], torch.ones(1))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_pointer_to_a_missing_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "latest.json").write_text(json.dumps({"checkpoint": "step-00000009", "step": 9}))
    with pytest.raises(CheckpointMismatchError, match="step-00000009, which does not exist"):
        load_latest_checkpoint(tmp_path)
