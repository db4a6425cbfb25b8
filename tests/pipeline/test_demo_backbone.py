"""The demo backbone: shipped with the package (with the record of how it was made), else
pretrained once, cached under a key of its settings, then reused."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict

import pytest
import torch
from safetensors.torch import save_file

from uncertainty_adapters.checkpoint import CheckpointMismatchError
from uncertainty_adapters.integrations.cli import main
from uncertainty_adapters.integrations.pipeline.backbone import demo as demo_backbone
from uncertainty_adapters.integrations.pipeline.backbone.demo import (
    PretrainSettings,
    ensure_demo_backbone,
    held_out_iou,
)
from uncertainty_adapters.integrations.pipeline.backbone.shipped import (
    SHIPPED_WEIGHTS,
    shipped_demo_backbone,
    shipped_record,
)
from uncertainty_adapters.integrations.pipeline.output_dir import OutputFolderError
from uncertainty_adapters.integrations.sam import build_sam, get_sam_spec, load_sam_weights

TINY = PretrainSettings(image_size=64, steps=2, batch_size=2, targets=2)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory):
    """A cache holding the TINY pretraining, and what the first call returned."""
    cache = tmp_path_factory.mktemp("cache")
    return cache, ensure_demo_backbone(cache_dir=cache, cpu=True, settings=TINY)


def test_first_call_pretrains_and_records_the_held_out_iou(tiny_cache):
    _, (path, facts) = tiny_cache
    assert path.is_file() and facts["cached"] is False and facts["source"] == "pretrained now"
    assert 0.0 <= facts["held_out_iou"] <= 1.0


def test_second_call_uses_the_cache(tiny_cache, monkeypatch):
    cache, (path, _) = tiny_cache

    def must_not_run(*args, **kwargs):
        raise AssertionError("pretraining ran again although the weights are cached")

    monkeypatch.setattr(demo_backbone, "pretrain", must_not_run)
    again, facts = ensure_demo_backbone(cache_dir=cache, cpu=True, settings=TINY)
    assert again == path and facts["cached"] is True and facts["source"] == "cache"


def test_cached_weights_load_into_the_demo_architecture(tiny_cache):
    _, (path, _) = tiny_cache
    load_sam_weights(build_sam("demo", image_size=64), path)


def test_other_settings_get_another_cache_entry():
    assert TINY.key() != PretrainSettings(image_size=64, steps=3, batch_size=2, targets=2).key()


def test_the_recipe_before_the_shipped_weights_keeps_its_cache_key():
    old = PretrainSettings(steps=400, batch_size=16, targets=1, lr=5e-4, warmup=0.1, grad_clip=0.0)
    fields = dict(spec="demo", image_size=128, steps=400, batch_size=16, lr=5e-4, weight_decay=0.01, seed=0,
                  data="crisp-shapes-v1")
    blob = json.dumps({**fields, "arch": get_sam_spec("demo").to_dict()}, sort_keys=True)
    assert old.key() == hashlib.sha256(blob.encode()).hexdigest()[:16]


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("UA_CACHE_DIR", str(tmp_path / "cache"))
    assert demo_backbone.default_cache_dir() == tmp_path / "cache"


def test_a_file_under_the_cache_name_that_ua_sam_did_not_write_is_never_replaced(tmp_path, monkeypatch):
    weights = tmp_path / f"sam-{TINY.spec}-{TINY.image_size}px-{TINY.key()}.safetensors"
    weights.write_bytes(b"someone else's file")
    monkeypatch.setattr(demo_backbone, "pretrain", lambda *args: pytest.fail("pretraining started"))
    with pytest.raises(OutputFolderError, match="not a demo backbone that ua-sam cached"):
        ensure_demo_backbone(cache_dir=tmp_path, cpu=True, settings=TINY)
    assert weights.read_bytes() == b"someone else's file"


def test_cached_weights_without_their_facts_are_pretrained_again(tmp_path, monkeypatch):
    weights = tmp_path / f"sam-{TINY.spec}-{TINY.image_size}px-{TINY.key()}.safetensors"
    save_file({"image_encoder.x": torch.zeros(1)}, weights, metadata={"layout": "segment-anything"})
    calls = []
    monkeypatch.setattr(demo_backbone, "pretrain", lambda settings, path, device: calls.append(path) or {"held_out_iou": 0.5})
    path, facts = ensure_demo_backbone(cache_dir=tmp_path, cpu=True, settings=TINY)
    assert calls == [weights] and path == weights and facts["cached"] is False


@pytest.mark.parametrize(
    "field, value", [("steps", 0), ("targets", 0), ("lr", 0.0), ("warmup", 1.0), ("data", "x"), ("init", "abc")]
)
def test_impossible_settings_are_refused_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        PretrainSettings(**{field: value})


def test_the_package_ships_the_demo_backbone_with_its_record():
    record = shipped_record()
    assert SHIPPED_WEIGHTS.is_file() and record is not None
    assert record["command"].startswith("ua-sam pretrain-backbone ")
    for key in ("settings", "held_out_iou", "seconds", "torch", "device", "dtype", "sha256", "iou_by_step"):
        assert key in record, key


def test_the_demo_uses_the_shipped_weights_without_pretraining(tmp_path, monkeypatch):
    def must_not_run(*args, **kwargs):
        raise AssertionError("pretraining ran although the package ships the weights")

    monkeypatch.setattr(demo_backbone, "pretrain", must_not_run)
    path, facts = ensure_demo_backbone(cache_dir=tmp_path, cpu=True)
    assert path == SHIPPED_WEIGHTS and facts["source"] == "shipped"
    assert facts["held_out_iou"] == shipped_record()["held_out_iou"]
    assert not any(tmp_path.iterdir()), "nothing is written to the cache"


def test_settings_other_than_the_shipped_ones_do_not_use_them():
    assert shipped_demo_backbone(asdict(TINY)) is None


def test_the_record_states_the_held_out_iou_of_the_shipped_weights():
    record = shipped_record()
    settings = PretrainSettings(**record["settings"])
    sam = build_sam(settings.spec, image_size=settings.image_size)
    load_sam_weights(sam, SHIPPED_WEIGHTS)
    measured = held_out_iou(sam, settings, torch.device("cpu"), cases=record["held_out_cases"])
    assert measured == pytest.approx(record["held_out_iou"], abs=0.005)


def test_the_shipped_weights_run_at_other_image_sizes():
    sam = build_sam("demo", image_size=64)
    load_sam_weights(sam, SHIPPED_WEIGHTS)


def test_damaged_shipped_weights_are_refused_naming_the_fix(tmp_path):
    weights = tmp_path / SHIPPED_WEIGHTS.name
    shutil.copy(SHIPPED_WEIGHTS, weights)
    shutil.copy(SHIPPED_WEIGHTS.with_suffix(".json"), weights.with_suffix(".json"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointMismatchError, match="reinstall|regenerate"):
        shipped_demo_backbone(shipped_record()["settings"], weights)


def test_pretrain_backbone_writes_the_weights_and_their_record(tmp_path):
    out = tmp_path / "w.safetensors"
    argv = ["pretrain-backbone", "--out", str(out), "--steps", "2", "--batch-size", "2", "--targets", "2",
            "--image-size", "64", "--device", "cpu", "--eval-every", "1"]
    assert main(argv) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["command"] == "ua-sam " + " ".join(argv)
    assert record["settings"] == asdict(PretrainSettings(image_size=64, steps=2, batch_size=2, targets=2))
    assert [step for step, _ in record["iou_by_step"]] == [1, 2] and record["dtype"] == "float16"
    assert record["device"] == "cpu" and record["torch"] == torch.__version__
    load_sam_weights(build_sam("demo", image_size=64), out)


def test_pretrain_backbone_does_not_overwrite_without_being_asked(tmp_path, capsys):
    out = tmp_path / "w.safetensors"
    out.write_bytes(b"precious")
    assert main(["pretrain-backbone", "--out", str(out), "--steps", "2"]) == 2
    assert "--overwrite" in capsys.readouterr().err and out.read_bytes() == b"precious"


def test_a_demo_preset_run_records_the_shipped_backbone_in_run_json(tmp_path):
    out = tmp_path / "run"
    assert main(["train", "--data", "synthetic", "--preset", "demo", "--out", str(out), "--max-steps", "1",
                 "--image-size", "64", "--synthetic-cases", "24", "--batch-size", "4", "--samples", "1",
                 "--prior-fit-epochs", "0", "--cpu", "--cache-dir", str(tmp_path / "cache")]) == 0
    source = json.loads((out / "run.json").read_text())["backbone_source"]
    assert source["source"] == "shipped" and source["held_out_iou"] == shipped_record()["held_out_iou"]
    assert source["command"] == shipped_record()["command"]


def _pretrain_tiny(out, *extra):
    argv = ["pretrain-backbone", "--out", str(out), "--steps", "2", "--batch-size", "2", "--targets", "2",
            "--image-size", "64", "--device", "cpu", *extra]
    assert main(argv) == 0
    return json.loads(out.with_suffix(".json").read_text())


@pytest.fixture(scope="module")
def first_stage(tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1") / "first.safetensors"
    return out, _pretrain_tiny(out)


def test_a_second_stage_starts_from_the_earlier_weights_and_records_the_chain(first_stage, tmp_path):
    first, first_record = first_stage
    # At a vanishing learning rate the continued weights are the earlier ones, bit for bit.
    record = _pretrain_tiny(tmp_path / "second.safetensors", "--init", str(first), "--seed", "1", "--lr", "1e-12")
    assert record["sha256"] == first_record["sha256"]
    assert record["settings"]["init"] == first_record["sha256"] == record["init"]["sha256"]
    assert record["init"]["record"]["command"] == first_record["command"]
    assert PretrainSettings(**record["settings"]).key() != PretrainSettings(**first_record["settings"]).key()


def test_a_recipe_refuses_starting_weights_other_than_the_ones_it_names(first_stage, tmp_path):
    first, _ = first_stage
    named = PretrainSettings(image_size=64, steps=2, batch_size=2, targets=2, init="0" * 64)
    with pytest.raises(ValueError, match="SHA-256"):
        demo_backbone.pretrain(named, tmp_path / "x.safetensors", torch.device("cpu"), init=first)
    with pytest.raises(ValueError, match="--init"):
        ensure_demo_backbone(cache_dir=tmp_path, cpu=True, settings=named)
    assert not (tmp_path / "x.safetensors").exists()


def test_init_must_be_an_existing_weights_file_other_than_out(first_stage, tmp_path, capsys):
    first, _ = first_stage
    assert main(["pretrain-backbone", "--out", str(tmp_path / "a.safetensors"), "--init", str(tmp_path / "no.safetensors")]) == 2
    assert "--init must name an existing .safetensors file" in capsys.readouterr().err
    assert main(["pretrain-backbone", "--out", str(first), "--init", str(first), "--overwrite"]) == 2
    assert "--init and --out are the same file" in capsys.readouterr().err


def test_a_record_written_before_init_existed_still_names_the_same_recipe(tmp_path):
    weights = tmp_path / SHIPPED_WEIGHTS.name
    shutil.copy(SHIPPED_WEIGHTS, weights)
    before_init = {name: value for name, value in asdict(TINY).items() if name != "init"}
    weights.with_suffix(".json").write_text(json.dumps({**shipped_record(), "settings": before_init}))
    assert shipped_demo_backbone(asdict(TINY), weights) is not None
    assert shipped_demo_backbone({**asdict(TINY), "init": "0" * 64}, weights) is None
