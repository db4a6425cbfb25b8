"""What-if: a trained UA-SAM run's z drawn from a mixture of Gaussians instead of one Gaussian.

The prior-fit phase (integrations/pipeline/training/prior_fit.py) fits one Gaussian P(z|X) per
image to the posteriors of all its raters. Where the raters fall into groups (the bimodal
folder's two disc raters and two ring raters, `synthetic`'s lumpers who include a satellite and
splitters who do not), the one Gaussian that covers every group's posteriors puts much of its mass
between them, and z drawn there decodes to neither group's mask (docs/results.md, "An auxiliary
decoder that needs z").

This script changes nothing in training. It loads a trained run folder, fits a mixture prior net
with K components (the fitted prior net's trunk and head copied into each component, the
components' means then moved apart at random so they can separate) to the same raters' posteriors
by their likelihood (the cross-entropy term of KL(Q || P): -E_{z ~ Q(z|X,Y_r)} log P_mix(z|X),
averaged over the raters, as the prior fit averages its KL), and measures the run's samples with
both priors: diagnose_latent's measurements (GED, diversity against the raters', the modes'
shares, diversity where the raters agree and disagree) on the same test images, prompts and
noise draws. The mixture draws each sample's component from a generator of its own, so the shared
generator gives both arms the same prompts and the same standard normal noise eps:
z = mu + sigma * eps against z = mu_k + sigma_k * eps.

    python -m benchmarks.mixture_prior --run P-114 --out M-114                        # bimodal runs
    python -m benchmarks.mixture_prior --run runs/S-1 --out M-S1 --evaluate           # synthetic runs

A bimodal run's test part and modes come from the folder it trained on (``--modes``: the
``bimodal_modes.npz`` that ``diagnose_latent --data bimodal`` writes beside the folder; found
there by default). Result: OUT/mixture.json with ``gaussian`` and ``mixture`` entries, and the
fit's epochs; with ``--evaluate`` also ``evaluate``: both priors scored as ``ua-sam evaluate
--seed <the run's data seed>`` scores a run (metrics.json's prompts and draws, so the Gaussian's
figures are the run's metrics.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from uncertainty_adapters.latent_heads import ConvGaussianEncoder, DiagonalGaussian


class MixtureGaussian:
    """A mixture of K diagonal Gaussians per image: ``logits`` (B, K), ``mean`` and ``log_sigma``
    (B, K, C). Samples as `DiagonalGaussian` does (``rsample``), with each sample's component
    drawn from ``component_generator``."""

    def __init__(self, logits: torch.Tensor, means: torch.Tensor, log_sigma: torch.Tensor,
                 component_generator: torch.Generator | None = None) -> None:
        self.logits, self.means, self.log_sigma = logits, means, log_sigma
        self.component_generator = component_generator

    @property
    def weights(self) -> torch.Tensor:
        return self.logits.softmax(-1)

    @property
    def mean(self) -> torch.Tensor:
        """The mixture's mean, (B, C)."""
        return (self.weights[..., None] * self.means).sum(1)

    @property
    def sigma(self) -> torch.Tensor:
        """The mixture's marginal standard deviation per dimension, (B, C)."""
        second = (self.weights[..., None] * (self.log_sigma.exp() ** 2 + self.means ** 2)).sum(1)
        return (second - self.mean ** 2).clamp_min(1e-12).sqrt()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log P(z) for z (B, M, C): (B, M)."""
        z = z[:, :, None]  # (B, M, 1, C)
        means, log_sigma = self.means[:, None], self.log_sigma[:, None]  # (B, 1, K, C)
        per_dim = -0.5 * ((z - means) * torch.exp(-log_sigma)) ** 2 - log_sigma - 0.5 * math.log(2 * math.pi)
        return torch.logsumexp(self.logits.log_softmax(-1)[:, None] + per_dim.sum(-1), dim=-1)

    def rsample(self, num_samples: int | None = None, generator: torch.Generator | None = None,
                noise_scale: float = 1.0) -> torch.Tensor:
        """(B, C), or (B, n, C) for ``num_samples`` n: z = mu_k + sigma_k * eps, eps drawn from
        ``generator`` exactly as `DiagonalGaussian.rsample` draws it (same shape, same call)."""
        batch, k, c = self.means.shape
        n = 1 if num_samples is None else num_samples
        noise = torch.randn((batch, n, c) if num_samples is not None else (batch, c), generator=generator,
                            device=self.means.device, dtype=self.means.dtype)
        component = torch.multinomial(self.weights.float(), n, replacement=True, generator=self.component_generator)
        index = component[..., None].expand(-1, -1, c)
        means, sigma = self.means.gather(1, index), self.log_sigma.exp().gather(1, index)  # (B, n, C)
        z = means + noise_scale * sigma * noise.reshape(batch, n, c)
        return z if num_samples is not None else z[:, 0]


class MixturePriorNet(nn.Module):
    """K-component mixture prior over z from an image: a fitted `ConvGaussianEncoder`'s trunk
    (copied) and a 1 x 1 head to K (mean, log sigma) pairs and K weights. Each component starts as
    the fitted Gaussian, its mean moved by ``spread`` times the Gaussian's sigma in a random
    direction (the components must differ to separate); the weights start equal."""

    def __init__(self, fitted: ConvGaussianEncoder, components: int, spread: float = 0.5,
                 seed: int = 0) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture needs at least one component, got {components}")
        self.features = copy.deepcopy(fitted.features)
        c, k = fitted.latent_dim, components
        self.latent_dim, self.components, self.log_sigma_bound = c, k, fitted.log_sigma_bound
        source = fitted.to_gaussian
        self.head = nn.Conv2d(source.in_channels, k * 2 * c + k, kernel_size=1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            weight = source.weight.repeat(k, 1, 1, 1)
            bias = source.bias.repeat(k).clone()
            log_sigma_bias = source.bias[c:]
            sigma = torch.exp(self.log_sigma_bound * torch.tanh(log_sigma_bias / self.log_sigma_bound))
            for j in range(k):
                bias[j * 2 * c: j * 2 * c + c] += spread * sigma * torch.randn(c, generator=generator)
            self.head.weight.copy_(torch.cat([weight, torch.zeros(k, source.in_channels, 1, 1)]))
            self.head.bias.copy_(torch.cat([bias, torch.zeros(k)]))
        self.component_generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> MixtureGaussian:
        pooled = self.features(x).mean(dim=(2, 3), keepdim=True)
        params = self.head(pooled).flatten(1)
        c, k = self.latent_dim, self.components
        gaussians, logits = params[:, : k * 2 * c].reshape(-1, k, 2 * c), params[:, k * 2 * c:]
        mean, raw = gaussians.split(c, dim=-1)
        bound = self.log_sigma_bound
        return MixtureGaussian(logits, mean, bound * torch.tanh(raw / bound), self.component_generator)


def _rater_samples(table: DiagonalGaussian, index: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
    """``draws`` samples of each rater's posterior for the items ``index``: (B, R * draws, C)."""
    mean, sigma = table.mean[index], table.log_sigma[index].exp()  # (B, R, C)
    eps = torch.randn((*mean.shape[:2], draws, mean.shape[-1]), generator=generator)
    return (mean[:, :, None] + sigma[:, :, None] * eps).flatten(1, 2)


def fit_mixture(heads, train, validation, components: int, epochs: int, lr: float, batch_size: int,
                seed: int, draws: int = 8) -> tuple[MixturePriorNet, list[dict[str, float]]]:
    """Fit a `MixturePriorNet` to every rater's posterior of ``train`` (the run's trained posterior
    net, frozen): minimise -log P_mix(z|X) over ``draws`` samples of each rater's posterior; keep the
    epoch with the lowest validation value (the same on fixed draws).

    Returns:
        the fitted net (eval mode) and one row per epoch (``epoch``, ``train_nll``, ``val_nll``; the
        first row, before any step, also the fitted Gaussian prior's ``gaussian_val_nll`` on the same
        draws), then ``{"kept_epoch": N}``.
    """
    from uncertainty_adapters.integrations.pipeline.training.prior_fit import _Indexed, rater_posteriors

    device = torch.device("cpu")
    train, validation = _Indexed(train), _Indexed(validation)
    table = rater_posteriors(heads, DataLoader(train, batch_size=batch_size), len(train), device)
    val_table = rater_posteriors(heads, DataLoader(validation, batch_size=batch_size), len(validation), device)
    mixture = MixturePriorNet(heads.prior_net, components, seed=seed)
    optimizer = torch.optim.Adam(mixture.parameters(), lr=lr)
    val_z = _rater_samples(val_table, torch.arange(len(validation)), draws, torch.Generator().manual_seed(seed + 1))
    val_images = torch.stack([validation[i]["image"] for i in range(len(validation))])

    def val_nll() -> float:
        with torch.no_grad():
            return float(-mixture(heads._resize(val_images)).log_prob(val_z).mean())

    with torch.no_grad():  # the fitted Gaussian's value of the same objective, on the same draws
        prior = heads.prior(val_images)
        gaussian = MixtureGaussian(torch.zeros(len(validation), 1), prior.mean[:, None], prior.log_sigma[:, None])
        gaussian_nll = float(-gaussian.log_prob(val_z).mean())
    best = (val_nll(), copy.deepcopy(mixture.state_dict()), 0)
    rows = [{"epoch": 0, "val_nll": best[0], "gaussian_val_nll": gaussian_nll}]
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(1, epochs + 1):
        total, count = 0.0, 0
        for batch in DataLoader(train, batch_size=batch_size, shuffle=True, generator=generator):
            z = _rater_samples(table, batch["index"], draws, generator)
            loss = -mixture(heads._resize(batch["image"])).log_prob(z).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
        rows.append({"epoch": epoch, "train_nll": total / count, "val_nll": val_nll()})
        if rows[-1]["val_nll"] < best[0]:
            best = (rows[-1]["val_nll"], copy.deepcopy(mixture.state_dict()), epoch)
    mixture.load_state_dict(best[1])
    rows.append({"kept_epoch": best[2]})
    return mixture.eval(), rows


def _evaluate(model, test, preset, seed: int) -> dict[str, Any]:
    """The metrics.json figures of ``model`` on ``test``, drawn as `ua-sam evaluate --seed seed` draws them."""
    from uncertainty_adapters.integrations.pipeline.evaluation.scoring import evaluate

    summary = evaluate(model, test, num_samples=preset.eval_samples, batch_size=8, prompt=preset.prompt, seed=seed,
                       keep_examples=0, ged_samples=preset.ged_samples).summary()
    return {key: summary[key] for key in ("dice", "ged", "hm_iou", "diversity", "s_ncc", "soft_dice", "ece")}


def _summary(result: dict[str, Any]) -> dict[str, Any]:
    keep = ("ged", "diversity", "rater_diversity", "oracle_ged", "oracle_diversity", "modes", "images")
    return {key: result[key] for key in keep if key in result}


def main(argv: list[str] | None = None) -> int:
    from benchmarks import diagnose_latent
    from uncertainty_adapters.integrations.data import build_dataset
    from uncertainty_adapters.integrations.pipeline.presets import Preset
    from uncertainty_adapters.integrations.pipeline.run_dir import load_run
    from uncertainty_adapters.integrations.pipeline.training.loop import train_val_split

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a trained UA-SAM run folder (ua-sam train's --out)")
    parser.add_argument("--out", required=True)
    parser.add_argument("--components", type=int, default=4, help="K (default 4: one per rater of the data here)")
    parser.add_argument("--samples", type=int, default=16, help="prior samples per test image")
    parser.add_argument("--modes", help="bimodal_modes.npz of a bimodal folder (default: beside the folder)")
    parser.add_argument("--evaluate", action="store_true",
                        help="also score both priors as `ua-sam evaluate --seed <the run's data seed>` does (metrics.json's draws)")
    args = parser.parse_args(argv)

    torch.set_grad_enabled(True)
    model, meta = load_run(args.run)
    heads = model.latent_heads
    if heads is None:
        raise SystemExit(f"{args.run} has no latent heads: nothing to sample")
    preset = Preset.from_dict(meta["preset"])
    seed = meta.get("data_seed", meta.get("seed", 0))
    spec = meta["data"]
    kwargs = {"length": preset.synthetic_cases} if spec == "synthetic" else {}
    kwargs.update(meta.get("dataset_kwargs") or {})
    train_part = build_dataset(spec, preset.image_size, split="train", seed=seed, **kwargs)
    train_idx, val_idx = train_val_split(len(train_part), preset.val_fraction,
                                         meta["split_seed"] if meta.get("split_seed") is not None else meta.get("seed", 0))
    train, validation = torch.utils.data.Subset(train_part, train_idx), torch.utils.data.Subset(train_part, val_idx)
    test = build_dataset(spec, preset.image_size, split="test", seed=seed, **kwargs)
    if spec == "synthetic":
        regions = diagnose_latent._synthetic_regions(test, preset.image_size)
    else:
        folder = Path(spec.split(":", 1)[1])
        saved = np.load(args.modes or folder.parent / "bimodal_modes.npz")

        def regions(index: int, case_id: str) -> dict[str, torch.Tensor]:
            centre = torch.from_numpy(saved[case_id])
            return {"centre": centre} if centre.any() else {}

    for p in heads.parameters():
        p.requires_grad_(False)
    mixture, rows = fit_mixture(heads, train, validation, args.components, preset.prior_fit_epochs,
                                preset.prior_fit_lr, preset.batch_size, seed)
    device = torch.device("cpu")
    data = "synthetic" if spec == "synthetic" else "bimodal"
    result: dict[str, Any] = {"run": str(args.run), "seed": seed, "components": args.components,
                              "fit": rows, "gaussian_val_nll": rows[0]["gaussian_val_nll"]}
    with torch.no_grad():
        result["gaussian"] = _summary(diagnose_latent.diagnose(model, test, data, device, args.samples, regions,
                                                               zfit_cases=0, prompt=preset.prompt))
        mixture.component_generator = torch.Generator().manual_seed(seed + 2)
        with mock.patch.object(heads, "prior", lambda x: mixture(heads._resize(x))):
            result["mixture"] = _summary(diagnose_latent.diagnose(model, test, data, device, args.samples, regions,
                                                                  zfit_cases=0, prompt=preset.prompt))
        if args.evaluate:
            result["evaluate"] = {"gaussian": _evaluate(model, test, preset, seed)}
            with mock.patch.object(heads, "prior", lambda x: mixture(heads._resize(x))):
                mixture.component_generator = torch.Generator().manual_seed(seed + 2)
                result["evaluate"]["mixture"] = _evaluate(model, test, preset, seed)
        images = torch.stack([test[i]["image"] for i in range(len(test))])
        weights = mixture(heads._resize(images)).weights
        result["component_weights"] = {"mean_max": float(weights.max(-1).values.mean()),
                                       "effective_components": float((1 / (weights ** 2).sum(-1)).mean())}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "mixture.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("gaussian", "mixture", "component_weights", "gaussian_val_nll")}, indent=1))
    print("kept epoch", rows[-1], "val nll", min(r.get("val_nll", 1e9) for r in rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
