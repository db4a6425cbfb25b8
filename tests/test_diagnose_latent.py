"""benchmarks/diagnose_latent.py: its self-made bimodal folder and its mode measurements."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from benchmarks import diagnose_latent
from uncertainty_adapters.integrations.data import build_dataset


def test_the_bimodal_folder_loads_and_half_its_raters_fill_the_centre(tmp_path):
    folder = diagnose_latent.write_bimodal(tmp_path, cases=6, size=32, seed=0)
    data = build_dataset(f"folder:{folder}", 32, split="all")
    modes = np.load(tmp_path / "bimodal_modes.npz")
    ambiguous = [item for item in data if modes[item["case_id"]].any()]
    assert ambiguous, "some cases should be ring-or-disc cases"
    for item in ambiguous:
        centre = torch.from_numpy(modes[item["case_id"]])
        marks = diagnose_latent._covers(item["masks"] > 0.5, centre)
        assert marks.tolist() == [True, True, False, False]


def test_a_mask_marks_a_region_when_it_covers_half_of_it():
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[0, :] = True
    masks = torch.zeros(3, 4, 4, dtype=torch.bool)
    masks[1, 0, :2] = True
    masks[2, 0, :1] = True
    assert diagnose_latent._covers(masks, region).tolist() == [False, True, False]


def test_a_variant_keeps_the_latent_settings_it_was_measured_with_and_demo_is_the_preset():
    from uncertainty_adapters.integrations.pipeline.presets import get_preset

    demo = get_preset("demo")
    plain = demo.replace(**diagnose_latent.VARIANTS["softmax-bottleneck"])
    assert (plain.latent_prompt, plain.free_bits, plain.latent_lr) == (False, 0.0, 1e-4)
    assert demo.replace(**diagnose_latent.VARIANTS["demo"]) == demo
    assert demo.replace(**diagnose_latent.VARIANTS["demo-noise-warmup"]) == demo  # the demo's default now
    before = demo.replace(**diagnose_latent.VARIANTS["demo-no-noise-warmup"])  # what `--variant demo` was
    assert before == demo.replace(posterior_noise_warmup=0.0)
    assert before.replace(**diagnose_latent.VARIANTS["demo-leaky"]) == before.replace(latent_activation="leaky_relu")
    assert demo.replace(**diagnose_latent.VARIANTS["demo-relu"]) == before.replace(latent_activation="relu")
    assert demo.replace(**diagnose_latent.VARIANTS["demo-all-raters"]) == before.replace(raters_per_image="all")
    assert (demo.replace(**diagnose_latent.VARIANTS["demo-all-raters-no-prior-fit"])
            == before.replace(raters_per_image="all", prior_fit_epochs=0))
    geco = demo.replace(**diagnose_latent.VARIANTS["demo-geco"])
    assert (geco.geco_kappa, geco.free_bits) == (0.14, 0.0)  # GECO in place of free bits, the rest as measured
    assert dataclasses.replace(geco, geco_kappa=None, free_bits=demo.free_bits) == before
    assert demo.replace(**diagnose_latent.VARIANTS["demo-beta0"]) == before.replace(beta=0.0)
    assert demo.replace(**diagnose_latent.VARIANTS["demo-batch-8"]) == before.replace(batch_size=8)
    assert demo.replace(**diagnose_latent.VARIANTS["demo-batch-32"]) == before.replace(batch_size=32)
    assert demo.replace(**diagnose_latent.VARIANTS["demo-noise-warmup-0.5"]) == demo.replace(posterior_noise_warmup=0.5)
    assert (demo.replace(**diagnose_latent.VARIANTS["demo-noise-warmup-prompt-random"])
            == demo.replace(latent_prompt_start="random"))
    assert demo.replace(**diagnose_latent.VARIANTS["demo-lr-flat"]) == demo.replace(lr_step_epochs=demo.epochs)
    assert (demo.replace(**diagnose_latent.VARIANTS["demo-noise-cycles-2"])
            == demo.replace(posterior_noise_cycles=2))  # the demo's warm-up again from half the steps
    measured_before = [name for name in diagnose_latent.VARIANTS if name.startswith("demo-")
                       and not name.startswith(("demo-noise-warmup", "demo-noise-cycles")) and name != "demo-lr-flat"]
    assert all(demo.replace(**diagnose_latent.VARIANTS[name]).posterior_noise_warmup == 0.0 for name in measured_before)
    assert plain.raters_per_image == "one" and plain.latent_activation == "relu"


def test_silent_posterior_channels_are_counted_per_layer_and_a_switched_off_layer_counts_whole():
    import uncertainty_adapters as ua

    torch.manual_seed(0)
    heads = ua.LatentHeads(in_channels=3, latent_dim=4, num_filters=(8, 8), convs_per_block=1, resolution=16)
    item = {"image": torch.rand(3, 16, 16), "masks": (torch.rand(2, 16, 16) > 0.5).float(),
            "majority": torch.zeros(1, 16, 16), "case_id": "c"}
    data = [item] * 3
    with torch.no_grad():
        heads.posterior_net.features[-2].bias.fill_(-1e3)  # the last convolution: never above zero
    shares = diagnose_latent.posterior_silent_channels(heads, data, torch.device("cpu"))
    assert len(shares) == 2 and shares[-1] == 1.0 and shares[0] < 1.0
    assert diagnose_latent.posterior_silent_channels(None, data, torch.device("cpu")) is None


def test_a_trained_run_folder_of_any_model_is_measured_without_training(tmp_path):
    import argparse

    from uncertainty_adapters.integrations.pipeline.presets import get_preset
    from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob, train, train_val_split

    preset = get_preset("demo").replace(image_size=64, batch_size=4, epochs=1, synthetic_cases=24,
                                        latent_resolution=32, latent_filters=(8, 16), prior_fit_epochs=0)
    run = tmp_path / "reproduction" / "seed-0"
    train(TrainJob(preset=preset, data="synthetic", out=run, max_steps=1, cpu=True, model="prob-unet"))
    args = argparse.Namespace(run=str(run), out=str(tmp_path / "diag"), samples=2)
    result = diagnose_latent.measure_run(args)
    assert result["model"] == "prob-unet" and "oracle_ged" not in result  # sampled only: no UA-SAM latent path
    assert set(result["ged"]) == {"all", "disagree", "agree"}
    assert all(0.0 <= mode["samples"] <= 1.0 for mode in result["modes"].values())
    assert (tmp_path / "diag" / "synthetic-run-reproduction-seed-0.json").is_file()
    assert result["agree_cases"]["cases"] == result["images"] - result["ambiguous_images"] == 1
    assert all(0.0 <= share <= 1.0 for share in result["posterior_silent_channels"])  # one per posterior layer

    on_train = diagnose_latent.measure_run(argparse.Namespace(**{**vars(args), "split": "train", "test_cases": None}))
    train_part = build_dataset("synthetic", 64, split="train", seed=0, length=24)
    trained_on, validated_on = train_val_split(len(train_part), preset.val_fraction, 0)
    assert on_train["split"] == "train" and on_train["images"] == len(trained_on) == len(train_part) - len(validated_on)
    assert (tmp_path / "diag" / "synthetic-run-reproduction-seed-0-train.json").is_file()


def test_the_agree_case_errors_count_each_way_and_a_shift_shows_as_a_centroid_offset():
    truth = torch.zeros(16, 16, dtype=torch.bool)
    truth[4:8, 4:8] = True  # 16 pixels
    shifted = torch.roll(truth, shifts=2, dims=1)  # two columns right: 8 pixels gained, 8 missed
    cases: dict[str, list[float]] = {}
    diagnose_latent._agree_case_errors(torch.stack([shifted, shifted, truth]), truth, cases)  # majority: shifted
    diagnose_latent._agree_case_errors(truth[None], truth, cases)  # exact
    summary = diagnose_latent._summarize_agree_cases(cases)
    assert summary["cases"] == 2 and summary["raters_area_px"] == 16.0
    assert summary["false_positive_px"] == 4.0 and summary["false_negative_px"] == 4.0  # 8 and 0, averaged
    assert summary["missed_share_of_area"] == 0.5 and summary["area_ratio"] == 1.0  # (16 / 16 + 0) / 2
    assert summary["centroid_offset_px"] == {"mean": [0.0, 1.0], "std": [0.0, 1.0]}


def test_the_resolution_floor_is_zero_at_full_size_and_grows_as_the_masks_pass_through_fewer_pixels():
    data = build_dataset("synthetic", 64, split="test", seed=0, length=40)
    full, coarse, coarser = (diagnose_latent.resolution_floor(data, side) for side in (64, 16, 8))
    assert full == 0.0 and 0.0 < coarse < coarser < 2.0  # GED with d = 1 - IoU, one sample: 2 (1 - IoU)


def test_the_full_finetune_reference_trains_every_encoder_weight_and_refuses_to_reuse_a_folder(tmp_path):

    from uncertainty_adapters.integrations.pipeline.models.factory import build_model
    from uncertainty_adapters.integrations.pipeline.presets import get_preset
    from uncertainty_adapters.integrations.pipeline.training.loop import TrainJob
    from uncertainty_adapters.integrations.pipeline.training.seeding import seed_everything_for

    preset = get_preset("demo").replace(image_size=64, batch_size=2, epochs=1, synthetic_cases=24, interaction="none",
                                        prior_fit_epochs=0)
    job = TrainJob(preset=preset, data="synthetic", out=tmp_path / "run", max_steps=2, cpu=True)
    seed_everything_for(job.seed)
    start = build_model(job, None).encoder.state_dict()  # what the trainer starts from (it seeds the same way)

    model = diagnose_latent._train_full_finetune(job, None)
    base = {name for name, p in model.encoder.named_parameters() if "adapters" not in name and "condition" not in name}
    assert base and all(p.requires_grad for p in model.encoder.parameters())
    trained = model.encoder.state_dict()
    attention = [name for name in base if name.endswith("qkv.weight")]  # one per block: SAM's encoder itself
    assert attention and all(not torch.equal(trained[name], start[name]) for name in attention)

    # the weights the trainer saves (checkpoints, best epoch) and restores are the encoder's too
    from uncertainty_adapters.integrations.pipeline.training.checkpoints import load_latest_checkpoint

    saved = load_latest_checkpoint(job.out / "checkpoints").trainable
    assert all(torch.equal(saved[f"encoder.{name}"], trained[name]) for name in attention)

    with pytest.raises(SystemExit, match="exists"):
        diagnose_latent._train_full_finetune(job, None)


def test_the_probabilistic_unet_trains_on_the_same_folder_with_its_table_1_recipe(tmp_path):
    args = ["--out", str(tmp_path), "--data", "bimodal", "--quick", "--cases", "12", "--image-size", "32",
            "--test-cases", "2", "--samples", "2", "--max-steps", "1"]
    with pytest.raises(SystemExit, match="leave --variant at demo"):
        diagnose_latent.main([*args, "--variant", "demo-relu", "--model", "prob-unet"])
    with pytest.raises(SystemExit, match="has none"):
        diagnose_latent.main([*args, "--variant", "demo", "--model", "prob-unet", "--full-finetune"])
    assert not any(tmp_path.iterdir())  # refused before anything is written
    diagnose_latent.main([*args, "--variant", "demo", "--model", "prob-unet"])
    result = json.loads((tmp_path / "bimodal-prob-unet.json").read_text())
    meta = json.loads((tmp_path / "runs" / "bimodal-prob-unet" / "run.json").read_text())
    assert result["model"] == meta["model"] == "prob-unet" and meta["preset"]["interaction"] == "none"
    assert result["ged"]["all"] >= 0 and "posterior_spread_prior_sigmas" not in result  # UA-SAM's own measurements only
