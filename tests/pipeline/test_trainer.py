"""The Accelerate training loop: what trains, exact resume, divergence, output folder."""

from __future__ import annotations

import csv
import dataclasses
import json

import pytest
import torch

from uncertainty_adapters.checkpoint import load_tensors
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.models.factory import build_model
from uncertainty_adapters.integrations.pipeline.training.checkpoints import load_latest_checkpoint, recorded_split_seed
from uncertainty_adapters.integrations.pipeline.training.logs import FIELDS, CsvLog
from uncertainty_adapters.integrations.pipeline.training.loop import (
    TrainingDiverged,
    TrainJob,
    free_bits_of,
    train,
    train_val_split,
)
from uncertainty_adapters.integrations.pipeline.training.seeding import derive_seed, seed_everything_for
from uncertainty_adapters.integrations.sam import build_sam, sam_state_dict

from .conftest import SIZE, job, small_preset, straight_and_resumed


def test_training_moves_only_the_trainable_weights(tmp_path, backbone_file):
    train(job(tmp_path / "run", max_steps=1, epochs=1), backbone=backbone_file)
    model, _ = run_dir.load_run(tmp_path / "run")
    frozen = load_tensors(backbone_file)
    current = sam_state_dict(build_sam("demo", SIZE))  # keys of the SAM layout
    encoder = model.image_encoder.state_dict()
    for name in current:
        if name.startswith("image_encoder."):
            assert torch.equal(encoder[name[len("image_encoder."):]], frozen[name]), name
    for name, tensor in model.mask_decoder.state_dict().items():
        assert torch.equal(tensor, frozen[f"mask_decoder.{name}"]), name
    moved = [name for name, t in model.encoder.adapter_state_dict().items() if name.endswith("up.weight") and t.abs().sum() > 0]
    assert moved, "the zero-initialised up-projections should have moved after one step"


@pytest.mark.parametrize("first, total", [(3, 5), (5, 9)])  # resume mid-epoch, and across an epoch end
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, backbone_file, first, total):
    straight, resumed = straight_and_resumed(tmp_path, backbone_file, first, total)
    assert straight.progress == resumed.progress
    assert straight.trainable.keys() == resumed.trainable.keys()
    for name, tensor in straight.trainable.items():
        assert torch.equal(tensor, resumed.trainable[name]), name


def test_training_seeds_the_global_generator_once_not_per_batch(tmp_path, backbone_file):
    # the latent draws and prompts of a step come from explicit generators; the global one is
    # seeded once, for the initial weights
    train(job(tmp_path / "run", max_steps=3, checkpoint_every=1000), backbone=backbone_file)
    assert torch.initial_seed() == derive_seed(0)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, backbone_file, monkeypatch):
    from uncertainty_adapters.integrations.sam import UncertaintySam

    real_forward = UncertaintySam.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        output = real_forward(self, *args, **kwargs)
        calls["n"] += 1
        if self.training and calls["n"] >= 3:
            output.logits = output.logits * float("nan")
        return output

    monkeypatch.setattr(UncertaintySam, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match="the loss became nan"):
        train(job(tmp_path / "run", max_steps=6, checkpoint_every=2), backbone=backbone_file)
    latest = load_latest_checkpoint(tmp_path / "run" / "checkpoints")
    assert latest.progress.step == 2
    assert all(torch.isfinite(t).all() for t in latest.trainable.values())


def test_a_run_splits_by_its_split_seed_and_a_resumed_run_keeps_the_split_its_checkpoint_records(
        tmp_path, backbone_file):
    out = tmp_path / "run"
    train(dataclasses.replace(job(out, max_steps=1, checkpoint_every=1), split_seed=7), backbone=backbone_file)
    assert recorded_split_seed(out / "checkpoints", unrecorded=0) == 7
    train(dataclasses.replace(job(out, max_steps=2, checkpoint_every=1, resume=True), split_seed=8), backbone=backbone_file)
    assert run_dir.read_run_config(out)["split_seed"] == 7  # the checkpoint's, not the job's
    for state in (out / "checkpoints").glob("step-*/state.json"):  # as written before the split's seed was
        written = json.loads(state.read_text())
        written["states"]["__dict__"] = [entry for entry in written["states"]["__dict__"] if entry[0] != "split"]
        state.write_text(json.dumps(written))
    assert recorded_split_seed(out / "checkpoints", unrecorded=0) == 0  # split by the training seed, as it was
    assert recorded_split_seed(tmp_path / "none", unrecorded=0) is None
    train(dataclasses.replace(job(out, max_steps=3, checkpoint_every=1, resume=True), split_seed=8), backbone=backbone_file)
    assert run_dir.read_run_config(out)["split_seed"] == 0


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path, backbone_file):
    train(job(tmp_path / "run", max_steps=1), backbone=backbone_file)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train(job(tmp_path / "run", max_steps=1), backbone=backbone_file)


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path, backbone_file):
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        train(job(tmp_path / "empty", max_steps=1, resume=True), backbone=backbone_file)


def test_validation_split_is_seeded_disjoint_and_complete():
    train_idx, val_idx = train_val_split(50, 0.1, seed=3)
    assert len(val_idx) == 5 and not set(train_idx) & set(val_idx)
    assert sorted(train_idx + val_idx) == list(range(50))
    assert train_val_split(50, 0.1, seed=3) == (train_idx, val_idx)


def test_gradient_checkpointing_trains_the_same_weights(tmp_path, backbone_file):
    assert build_model(job(tmp_path / "x", gradient_checkpointing=True), backbone_file).encoder.is_gradient_checkpointing
    train(job(tmp_path / "plain", max_steps=2, checkpoint_every=1000), backbone=backbone_file)
    train(job(tmp_path / "ckpt", max_steps=2, checkpoint_every=1000, gradient_checkpointing=True), backbone=backbone_file)
    plain = load_latest_checkpoint(tmp_path / "plain" / "checkpoints").trainable
    recomputed = load_latest_checkpoint(tmp_path / "ckpt" / "checkpoints").trainable
    for name, tensor in plain.items():
        torch.testing.assert_close(recomputed[name], tensor, rtol=1e-4, atol=1e-6, msg=name)


def test_the_latent_heads_train_at_their_own_learning_rate(tmp_path, backbone_file):
    model = build_model(job(tmp_path / "x"), backbone_file)
    groups = model.optimizer_groups(small_preset(latent_lr=1e-4).latent_lr)
    assert [group.get("lr") for group in groups] == [None, 1e-4]  # None: Adam's lr, the preset's
    trainable_heads = {id(p) for p in model.latent_heads.parameters() if p.requires_grad}  # not a mixture prior's
    assert {id(p) for p in groups[1]["params"]} == trainable_heads
    assert len(model.optimizer_groups(dataclasses.replace(small_preset(), latent_lr=None).latent_lr)) == 1  # one lr for all

    train(job(tmp_path / "run", max_steps=1, latent_lr=0.0), backbone=backbone_file)
    trained = load_latest_checkpoint(tmp_path / "run" / "checkpoints").trainable
    seed_everything_for(0)  # as the trainer does before building its model
    initial = build_model(job(tmp_path / "x"), backbone_file).trainable_state_dict()
    heads = [name for name in trained if name.startswith("latent_heads.")]
    assert heads and all(torch.equal(trained[name], initial[name]) for name in heads)
    assert any(not torch.equal(trained[name], initial[name]) for name in trained if name not in heads)


def test_the_validation_score_does_not_follow_the_epochs_rater_draw(tmp_path, backbone_file):
    from accelerate import Accelerator
    from torch.utils.data import DataLoader

    import uncertainty_adapters as ua
    from uncertainty_adapters.integrations.data import build_dataset
    from uncertainty_adapters.integrations.pipeline.training.loop import _validate

    preset = small_preset()
    model = build_model(job(tmp_path / "x"), backbone_file)
    data = build_dataset("synthetic", SIZE, split="train", seed=0, length=40)
    loader = DataLoader(data, batch_size=8)
    scores = []
    for epoch in (0, 1, 2):
        data.set_epoch(epoch)
        assert epoch == 0 or [data.rater_index(i) for i in range(len(data))] != draws
        draws = [data.rater_index(i) for i in range(len(data))]
        scores.append(_validate(model, loader, ua.ElboLoss(validate=False), preset, 0, Accelerator(cpu=True)).loss)
    assert scores[0] == scores[1] == scores[2]


def test_compile_compiles_the_encoder_in_place_and_keeps_the_checkpoint_names(tmp_path, backbone_file):
    eager = build_model(job(tmp_path / "x"), backbone_file)
    compiled = build_model(job(tmp_path / "y", compile=True), backbone_file)
    assert compiled.encoder._compiled_call_impl is not None and eager.encoder._compiled_call_impl is None
    assert compiled.trainable_state_dict().keys() == eager.trainable_state_dict().keys()


def test_the_presets_latent_forms_reach_the_adapters(tmp_path, backbone_file):
    model = build_model(job(tmp_path / "x", cmsm_activation="softmax", latent_placement="bottleneck"), backbone_file)
    assert (model.config.cmsm_activation, model.config.latent_placement) == ("softmax", "bottleneck")


def test_the_presets_latent_activation_reaches_ua_sams_heads_and_a_recorded_preset_without_it_meant_relu(
        tmp_path, backbone_file):
    from uncertainty_adapters.integrations.pipeline.presets import Preset

    model = build_model(job(tmp_path / "x", latent_activation="leaky_relu"), backbone_file)
    assert model.latent_heads.config["activation"] == "leaky_relu"
    assert isinstance(model.latent_heads.posterior_net.features[1], torch.nn.LeakyReLU)
    recorded = {k: v for k, v in job(tmp_path / "y", latent_activation="leaky_relu").preset.to_dict().items()
                if k != "latent_activation"}
    assert Preset.from_dict(recorded).latent_activation == "relu"
    baseline = build_model(dataclasses.replace(job(tmp_path / "z", latent_activation="leaky_relu"), model="prob-unet"), None)
    assert baseline.latent_heads.config["activation"] == "relu"  # the Probabilistic U-Net keeps its recipe


def test_the_presets_latent_prompt_start_reaches_the_prompt_and_a_recorded_preset_without_it_meant_zero(
        tmp_path, backbone_file):
    from uncertainty_adapters.integrations.pipeline.presets import Preset

    for start, any_weight in (("zero", False), ("random", True)):
        model = build_model(job(tmp_path / start, latent_prompt=True, latent_prompt_start=start), backbone_file)
        assert bool(model.latent_prompt.net[-1].weight.any()) is any_weight
    recorded = {k: v for k, v in job(tmp_path / "y", latent_prompt=True, latent_prompt_start="random").preset.to_dict().items()
                if k != "latent_prompt_start"}
    assert Preset.from_dict(recorded).latent_prompt_start == "zero"


def test_a_run_with_free_bits_trains_and_records_them(tmp_path, backbone_file):
    train(job(tmp_path / "run", max_steps=1, epochs=1, free_bits=0.5, prior_fit_epochs=0), backbone=backbone_file)
    meta = run_dir.read_run_config(tmp_path / "run")
    assert meta["preset"]["free_bits"] == 0.5 and meta["free_bits"] == 0.5


def test_a_run_with_the_latent_prompt_saves_and_reloads_it(tmp_path, backbone_file):
    train(job(tmp_path / "run", max_steps=2, epochs=1, latent_prompt=True, prior_fit_epochs=0), backbone=backbone_file)
    model, meta = run_dir.load_run(tmp_path / "run")
    saved = load_tensors(tmp_path / "run" / run_dir.LATENT_PROMPT)
    assert meta["latent_prompt"] is True and meta["preset"]["latent_prompt"] is True
    assert all(torch.equal(model.latent_prompt.state_dict()[name], tensor) for name, tensor in saved.items())
    assert model.latent_prompt.net[-1].weight.abs().sum() > 0  # it trained


def test_a_run_folder_without_the_latent_prompt_key_loads_without_one(tmp_path, backbone_file):
    train(job(tmp_path / "run", max_steps=1, epochs=1, prior_fit_epochs=0), backbone=backbone_file)
    config = tmp_path / "run" / run_dir.RUN_CONFIG
    meta = run_dir.read_run_config(tmp_path / "run")
    meta.pop("latent_prompt")
    config.write_text(json.dumps(meta))
    model, _ = run_dir.load_run(tmp_path / "run")
    assert model.latent_prompt is None


def test_free_bits_apply_to_ua_sams_latent_only(tmp_path):
    def free_bits(**kwargs):
        model = kwargs.pop("model", "ua-sam")
        return free_bits_of(TrainJob(preset=small_preset(free_bits=0.5, **kwargs), data="synthetic",
                                     out=tmp_path, model=model))

    assert free_bits(interaction="cmsm") == free_bits(interaction="concat") == free_bits(interaction="sample") == 0.5
    assert free_bits(interaction="none") == free_bits(interaction="position") == 0.0  # no KL to floor
    assert free_bits(model="prob-unet") == 0.0  # the baseline keeps its recipe, the plain ELBO


def test_an_adapter_sam_trains_under_a_preset_with_free_bits(tmp_path, backbone_file):
    train(job(tmp_path / "run", max_steps=1, epochs=1, interaction="none", free_bits=0.5), backbone=backbone_file)
    assert run_dir.read_run_config(tmp_path / "run")["free_bits"] == 0.0  # recorded as trained, not as asked


def test_an_adapter_sam_ignores_the_latent_options(tmp_path, backbone_file):
    # without a latent, free bits, the latent prompt and the latent nets' rate change nothing
    plain = {"interaction": "none", "free_bits": 0.0, "latent_prompt": False, "latent_lr": 1e-4}
    options = {"interaction": "none", "free_bits": 0.5, "latent_prompt": True, "latent_lr": 1e-3}
    for name, settings in (("plain", plain), ("options", options)):
        train(job(tmp_path / name, max_steps=2, epochs=1, prior_fit_epochs=0, **settings), backbone=backbone_file)
    first = load_latest_checkpoint(tmp_path / "plain" / "checkpoints").trainable
    second = load_latest_checkpoint(tmp_path / "options" / "checkpoints").trainable
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_each_epoch_logs_how_far_apart_the_posterior_puts_the_validation_raters(tmp_path, backbone_file):
    for name, interaction in (("latent", "cmsm"), ("plain", "none")):
        train(job(tmp_path / name, epochs=1, interaction=interaction, prior_fit_epochs=0), backbone=backbone_file)
    with open(tmp_path / "latent" / "train_log.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["val_loss"]]
    assert len(rows) == 1 and float(rows[0]["val_rater_spread"]) > 0  # prior sigmas; 0 = not taken hold
    with open(tmp_path / "plain" / "train_log.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["val_loss"]]
    assert len(rows) == 1 and rows[0]["val_rater_spread"] == ""  # no latent, nothing to spread


def test_a_log_resumed_under_other_columns_keeps_its_own(tmp_path):
    path = tmp_path / "train_log.csv"
    old = [name for name in FIELDS if name != "val_rater_spread"]  # a run from before the column
    path.write_text(",".join(old) + "\n1,0,0.5" + "," * (len(old) - 3) + "\n")
    CsvLog(path, enabled=True).write({"step": 2, "epoch": 1, "val_loss": 0.4, "val_rater_spread": 0.3})
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == old and all(len(row) == len(old) for row in rows)
    assert rows[2][old.index("val_loss")] == "0.4"
    fresh = tmp_path / "fresh.csv"
    CsvLog(fresh, enabled=True).write({"step": 1, "val_rater_spread": 0.3})
    assert fresh.read_text().splitlines()[0].split(",") == list(FIELDS)
