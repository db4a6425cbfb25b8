"""The prior-fit phase: the prior net alone, fitted to every rater's posterior after training."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from torch.utils.data import Dataset

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.pipeline import run_dir
from uncertainty_adapters.integrations.pipeline.training.loop import train
from uncertainty_adapters.prior_fit import fit_prior, prior_kl
from uncertainty_adapters.latent_heads import DiagonalGaussian

from .conftest import job


class _Lesions(Dataset):
    """Bright squares; in odd items the 3 raters disagree (nested outlines), in even ones they
    agree. The image shows which: a blurred square where they disagree."""

    def __init__(self, n: int = 24, size: int = 32) -> None:
        self.n, self.size = n, size

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        s = self.size
        yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
        distance = torch.maximum((yy - s / 2).abs(), (xx - s / 2).abs())
        ambiguous = index % 2 == 1
        radius = [6, 9, 12] if ambiguous else [9, 9, 9]
        masks = torch.stack([(distance < r).float() for r in radius])
        image = (distance < 9).float() if not ambiguous else torch.sigmoid((12 - distance) / 3.0)
        return {"image": image.expand(3, s, s).clone(), "masks": masks}


def _heads(seed: int = 0) -> ua.LatentHeads:
    torch.manual_seed(seed)
    return ua.LatentHeads(in_channels=3, latent_dim=2, num_filters=(8, 16), convs_per_block=1, resolution=32)


def _mean_kl(heads: ua.LatentHeads, data: Dataset) -> float:
    items = [data[i] for i in range(len(data))]
    images, masks = torch.stack([i["image"] for i in items]), torch.stack([i["masks"] for i in items])
    with torch.no_grad():
        posts = [heads.posterior(images, masks[:, r : r + 1]) for r in range(masks.shape[1])]
        table = DiagonalGaussian(torch.stack([p.mean for p in posts], 1), torch.stack([p.log_sigma for p in posts], 1))
        return float(prior_kl(heads, images, table).mean())


def test_only_the_prior_net_moves_and_its_kl_to_the_raters_posteriors_falls():
    heads, data = _heads(), _Lesions()
    with torch.no_grad():  # a posterior that tells the raters apart, as after training
        for p in heads.posterior_net.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    before = {name: t.clone() for name, t in heads.state_dict().items()}
    kl_before = _mean_kl(heads, data)

    rows = fit_prior(heads, data, None, epochs=20, lr=1e-2, batch_size=8, seed=0, device=torch.device("cpu"))

    after = heads.state_dict()
    assert all(torch.equal(after[n], before[n]) for n in before if n.startswith("posterior_net."))
    assert any(not torch.equal(after[n], before[n]) for n in before if n.startswith("prior_net."))
    assert _mean_kl(heads, data) < 0.5 * kl_before
    assert [row["prior_fit_epoch"] for row in rows] == list(range(1, 21))


def test_the_kept_prior_is_the_epoch_of_lowest_validation_kl_and_reruns_identically():
    data, validation = _Lesions(16), _Lesions(8)
    runs = []
    for _ in range(2):
        heads = _heads()
        rows = fit_prior(heads, data, validation, epochs=4, lr=5e-2, batch_size=4, seed=3, device=torch.device("cpu"))
        runs.append((heads.prior_net.state_dict(), rows))
        assert _mean_kl(heads, validation) == pytest.approx(min(row["val_prior_kl"] for row in rows), rel=1e-5)
    (first, rows_a), (second, rows_b) = runs
    assert rows_a == rows_b
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_zero_epochs_is_refused():
    with pytest.raises(ValueError, match="epochs >= 1"):
        fit_prior(_heads(), _Lesions(4), None, epochs=0, lr=1e-3, batch_size=2, seed=0, device=torch.device("cpu"))


def test_training_with_prior_fit_epochs_logs_the_phase_and_saves_the_fitted_prior(tmp_path, backbone_file):
    # the Gaussian prior alone (the demo's mixture prior: test_mixture_prior_fit.py)
    train(job(tmp_path / "plain", epochs=1, prior_fit_epochs=0, prior_components=1), backbone=backbone_file)
    train(job(tmp_path / "fitted", epochs=1, prior_fit_epochs=2, prior_components=1), backbone=backbone_file)
    plain, _ = run_dir.load_run(tmp_path / "plain")
    fitted, meta = run_dir.load_run(tmp_path / "fitted")

    assert [row["prior_fit_epoch"] for row in meta["prior_fit"]] == [1, 2]
    with open(tmp_path / "fitted" / "train_log.csv") as handle:
        logged = [row for row in csv.DictReader(handle) if row["prior_fit_epoch"]]
    assert [int(row["prior_fit_epoch"]) for row in logged] == [1, 2] and all(row["val_prior_kl"] for row in logged)
    # Same main training (same seed); the phase changed the prior net and nothing else.
    for name, tensor in plain.trainable_state_dict().items():
        moved = not torch.equal(tensor, fitted.trainable_state_dict()[name])
        assert moved == name.startswith("latent_heads.prior_net."), name
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["prior_fit"] == []
