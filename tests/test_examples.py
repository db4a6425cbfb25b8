"""The any-ViT examples run end to end in --quick mode and print the paper's metrics."""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
METRIC_ROW = re.compile(r"^(all|ambiguous|unambiguous)\s+(\d+)((?:\s+-?\d+\.\d{3}){5})$", re.M)


@pytest.fixture(scope="module")
def examples_on_path():
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


def _run(module_name: str, argv: list[str], capsys) -> tuple[dict, str]:
    report = importlib.import_module(module_name).main(argv)
    return report, capsys.readouterr().out


def _assert_metrics_printed(report: dict, printed: str) -> None:
    assert "test metrics, K = 3 samples per image" in printed
    rows = {match.group(1): [float(v) for v in match.group(3).split()] for match in METRIC_ROW.finditer(printed)}
    assert set(rows) == {"all", "ambiguous", "unambiguous"}
    for subset, (dice, ged, hm_iou, diversity, rater_diversity) in rows.items():
        assert 0 <= dice <= 1 and ged >= 0 and 0 <= hm_iou <= 1 and 0 <= diversity <= 1
        assert report[subset]["diversity"] == pytest.approx(diversity, abs=1e-3)
    assert rows["ambiguous"][4] > 0 and rows["unambiguous"][4] == 0  # the raters disagree where they should
    assert "backbone unchanged by training: True" in printed


@pytest.fixture(scope="module")
def timm_quick_run(examples_on_path, tmp_path_factory):
    """One --quick run of the timm example that keeps its pretrained backbone."""
    weights = tmp_path_factory.mktemp("timm") / "vit.safetensors"
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        report = importlib.import_module("timm_vit_segmentation").main(["--quick", "--save-backbone", str(weights)])
    return report, capture.getvalue(), weights


def test_timm_example_quick_pretrains_then_prints_metrics(timm_quick_run):
    report, printed, weights = timm_quick_run
    _assert_metrics_printed(report, printed)
    assert "pretrained here for 3 steps on crisp colour shapes" in printed
    assert weights.is_file()


def test_timm_example_quick_with_weights_skips_pretraining(timm_quick_run, capsys):
    weights = timm_quick_run[2]
    report, printed = _run("timm_vit_segmentation", ["--quick", "--weights", str(weights)], capsys)
    _assert_metrics_printed(report, printed)
    assert f"backbone weights: {weights} (no pretraining stage)" in printed


def test_transformers_example_quick_prints_metrics_and_attentions(examples_on_path, capsys, tmp_path):
    adapters = tmp_path / "adapters"
    report, printed = _run("transformers_vit", ["--quick", "--save-adapters", str(adapters)], capsys)
    _assert_metrics_printed(report, printed)
    assert "transformers ViTModel" in printed
    assert "output_hidden_states after injection: 3 tensors with batch [2, 6, 6]" in printed
    assert "output_attentions after injection: 2 maps of shape (6, 2, 17, 17)" in printed
    assert {"adapter_config.json", "adapter_model.safetensors", "latent_heads.safetensors"} == {
        path.name for path in adapters.iterdir()}
    assert (tmp_path / "adapters-head.safetensors").is_file()


def test_transformers_example_quick_runs_dinov2_pretrained_on_majority_masks(examples_on_path, capsys):
    argv = ["--quick", "--arch", "dinov2", "--pretrain", "majority", "--steps", "2"]
    report, printed = _run("transformers_vit", argv, capsys)
    _assert_metrics_printed(report, printed)
    assert "transformers Dinov2Model" in printed
    assert "on the raters' majority masks of the synthetic training split" in printed


def test_the_examples_warm_up_the_posteriors_noise_over_the_share_of_steps_asked(
        timm_quick_run, examples_on_path, capsys, monkeypatch):
    import uncertainty_adapters as ua

    seen = []
    forward = ua.LatentHeads.forward

    def spy(self, x, y=None, posterior_noise=1.0):
        if y is not None:
            seen.append(posterior_noise)
        return forward(self, x, y, posterior_noise=posterior_noise)

    monkeypatch.setattr(ua.LatentHeads, "forward", spy)
    argv = ["--quick", "--weights", str(timm_quick_run[2])]
    _, printed = _run("timm_vit_segmentation", argv + ["--posterior-noise-warmup", "0.5"], capsys)
    assert seen == [0.0, 0.5, 1.0, 1.0]  # 4 steps, t = step / 2 up to 1
    assert "the posterior's noise on z warmed up over the first 50%" in printed
    seen.clear()
    _run("timm_vit_segmentation", argv, capsys)
    assert seen == [1.0] * 4  # the default: the posterior's full noise from the first step


def test_the_examples_fit_the_prior_and_a_mixture_after_training_and_save_them(
        timm_quick_run, examples_on_path, capsys, tmp_path):
    import uncertainty_adapters as ua

    adapters = tmp_path / "adapters"
    argv = ["--quick", "--weights", str(timm_quick_run[2]), "--prior-fit-epochs", "2", "--prior-components", "3",
            "--save-adapters", str(adapters)]
    report, printed = _run("timm_vit_segmentation", argv, capsys)
    _assert_metrics_printed(report, printed)
    assert "fitted the prior to every rater's posterior for 2 epochs" in printed
    assert "then a mixture of 3 Gaussians" in printed
    heads = ua.load_latent_heads(adapters)
    assert heads.config["prior_components"] == 3 and heads.samples_mixture


def test_a_mixture_without_a_prior_fit_phase_is_refused_with_the_fix(examples_on_path, capsys):
    with pytest.raises(SystemExit, match="give --prior-fit-epochs N too"):
        _run("timm_vit_segmentation", ["--quick", "--prior-components", "3"], capsys)
