"""`ua-sam train` and `ua-sam reproduce` override preset fields through one table of flags."""

from __future__ import annotations

import dataclasses

import pytest

from uncertainty_adapters.integrations.cli import build_parser
from uncertainty_adapters.integrations.pipeline.commands import _preset_from
from uncertainty_adapters.integrations.pipeline.preset_options import (
    REPRODUCE_OPTIONS,
    TRAINING_OPTIONS,
    preset_overrides,
)
from uncertainty_adapters.integrations.pipeline.presets import Preset, get_preset


@pytest.mark.parametrize("fields", [TRAINING_OPTIONS, REPRODUCE_OPTIONS])
def test_every_option_names_a_preset_field(fields):
    assert set(fields) <= {field.name for field in dataclasses.fields(Preset)}


def test_train_flags_reach_the_preset_and_leave_the_rest_alone():
    args = build_parser().parse_args(
        ["train", "--data", "synthetic", "--preset", "demo", "--out", "x",
         "--latent-lr", "2e-4", "--samples", "3", "--train-decoder", "--interaction", "concat"]
    )
    preset, demo = _preset_from(args, "demo"), get_preset("demo")
    assert (preset.latent_lr, preset.eval_samples, preset.train_decoder, preset.interaction) == (2e-4, 3, True, "concat")
    changed = {"latent_lr", "eval_samples", "train_decoder", "interaction"}
    assert all(getattr(preset, f.name) == getattr(demo, f.name) for f in dataclasses.fields(Preset) if f.name not in changed)


def test_reproduce_flags_are_read_back_alike():
    args = build_parser().parse_args(
        ["reproduce", "--data", "synthetic", "--preset", "demo", "--out", "x", "--latent-lr", "5e-5", "--epochs", "2"]
    )
    overrides = preset_overrides(args, REPRODUCE_OPTIONS)
    assert overrides["latent_lr"] == 5e-5 and overrides["epochs"] == 2
    assert all(value is None for name, value in overrides.items() if name not in {"latent_lr", "epochs"})


def test_the_attention_kind_and_compile_reach_the_preset():
    args = build_parser().parse_args(
        ["train", "--data", "synthetic", "--preset", "paper-lidc", "--out", "x", "--attention", "flex", "--compile"]
    )
    preset = _preset_from(args, "paper-lidc")
    assert (preset.attention, preset.compile) == ("flex", True)


def test_the_paper_presets_keep_the_relative_position_term_in_a_fused_kernel_and_the_demo_uses_sdpa():
    assert [get_preset(name).attention for name in ("paper-lidc", "paper-refuge2", "demo")] == ["fused", "fused", "sdpa"]


@pytest.mark.parametrize("command", [
    ["evaluate", "--checkpoint", "d", "--data", "synthetic", "--compile"],
    ["predict", "--checkpoint", "d", "--image", "i.png", "--point", "1,2", "--out", "o", "--compile"],
])
def test_evaluate_and_predict_take_compile(command):
    assert build_parser().parse_args(command).compile is True


def test_the_latent_form_flags_reach_the_preset():
    args = build_parser().parse_args(
        ["train", "--data", "synthetic", "--preset", "demo", "--out", "x", "--cmsm-activation", "relu",
         "--latent-placement", "residual", "--free-bits", "0.25"]
    )
    preset = _preset_from(args, "demo")
    assert (preset.cmsm_activation, preset.latent_placement, preset.free_bits) == ("relu", "residual", 0.25)


@pytest.mark.parametrize("flag, expected", [([], True), (["--latent-prompt"], True), (["--no-latent-prompt"], False)])
def test_the_latent_prompt_the_demo_turns_on_can_be_turned_off(flag, expected):
    args = build_parser().parse_args(["train", "--data", "synthetic", "--preset", "demo", "--out", "x", *flag])
    assert _preset_from(args, "demo").latent_prompt is expected
    assert _preset_from(args, "paper-lidc").latent_prompt is (expected and bool(flag))  # the paper presets: off


@pytest.mark.parametrize("command", ["train", "reproduce"])
def test_the_latent_prompts_start_is_one_flag_away_and_an_unknown_one_is_refused(command, capsys):
    head = ["train", "--data", "synthetic", "--preset", "demo", "--out", "x"] if command == "train" else \
        ["reproduce", "--data", "synthetic", "--preset", "demo", "--out", "x"]
    args = build_parser().parse_args([*head, "--latent-prompt-start", "random"])
    assert preset_overrides(args, REPRODUCE_OPTIONS)["latent_prompt_start"] == "random"
    assert get_preset("paper-lidc").latent_prompt_start == "zero"
    with pytest.raises(SystemExit):
        build_parser().parse_args([*head, "--latent-prompt-start", "ones"])
    assert "invalid choice: 'ones'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="add --latent-prompt"):  # the paper presets have no latent prompt
        get_preset("paper-lidc").replace(latent_prompt_start="random")
    assert get_preset("paper-lidc").replace(latent_prompt=True, latent_prompt_start="random").latent_prompt_start == "random"


def test_the_demo_trains_leaky_relu_latent_nets_the_paper_presets_relu_and_either_is_one_flag_away():
    args = build_parser().parse_args(["train", "--data", "synthetic", "--preset", "demo", "--out", "x"])
    assert [_preset_from(args, name).latent_activation for name in ("demo", "paper-lidc", "paper-refuge2")] == [
        "leaky_relu", "relu", "relu"]
    args = build_parser().parse_args(
        ["train", "--data", "synthetic", "--preset", "demo", "--out", "x", "--latent-activation", "relu"])
    assert _preset_from(args, "demo").latent_activation == "relu"
    args = build_parser().parse_args(
        ["train", "--data", "synthetic", "--preset", "paper-lidc", "--out", "x", "--latent-activation", "leaky_relu"])
    assert _preset_from(args, "paper-lidc").latent_activation == "leaky_relu"


def test_every_preset_draws_one_rater_per_image_and_all_raters_is_one_flag_away():
    args = build_parser().parse_args(["train", "--data", "synthetic", "--preset", "demo", "--out", "x"])
    assert [_preset_from(args, name).raters_per_image for name in ("demo", "paper-lidc")] == ["one", "one"]
    args = build_parser().parse_args(
        ["train", "--data", "synthetic", "--preset", "demo", "--out", "x", "--raters-per-image", "all"])
    assert _preset_from(args, "demo").raters_per_image == "all"
