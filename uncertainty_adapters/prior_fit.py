"""Fitting the prior net to the trained posterior: a phase after training, for any backbone.

In the ELBO (Eq. 6) the prior net P(z|X) appears only in beta * KL(Q(z|X,Y) || P(z|X)), with Y
one rater's mask. Its best value for an image is therefore the Gaussian closest to the raters'
posteriors: narrow where every rater draws the same mask (their posteriors coincide), wide where
they disagree (their posteriors sit apart). Trained jointly with everything else, one random
rater per image per step and at the paper's 1e-4, the prior of a short run barely leaves its
initial state, so prior samples of an unambiguous image leave the region the decoder was trained
on and the masks differ (measured: docs/results.md, "Measurements behind the presets and
defaults").

This phase runs after the main training, on its best weights (`ua-sam train` runs it for
``prior_fit_epochs``; the any-ViT examples with ``--prior-fit-epochs``): everything but the prior net is
frozen, and the prior minimises the same KL term, averaged exactly over all raters of each image
(instead of one drawn rater), with Adam at ``prior_fit_lr``. The posteriors are computed once (the
posterior net is frozen), so an epoch costs one small conv-net forward and backward per image and
no ViT at all. The epoch with the lowest validation KL is kept.

With a mixture prior (``LatentHeads(prior_components=K)``, K > 1) the phase goes on with
`fit_mixture_prior` on the same posteriors: the mixture starts as K copies of the Gaussian just
fitted, means moved apart at random, and minimises -log P_mix(z|X) over draws z of every rater's
posterior (the KL to a mixture has no closed form; this is the same objective up to the
posteriors' entropy, which the prior cannot change). The epoch with the lowest validation value,
on fixed draws, is kept, and the heads sample the mixture from then on.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch.utils.data import DataLoader, Dataset

from .latent_heads import DiagonalGaussian, LatentHeads
from .mixture_prior import standard_normal
from .seeding import derive_seed

__all__ = ["MIXTURE_DRAWS", "MIXTURE_SPREAD", "fit_mixture_prior", "fit_prior", "prior_kl", "rater_posteriors"]

logger = logging.getLogger(__name__)

_PRIOR_STREAM = 0x7A4
_MIXTURE_STREAM = 0x7A5
#: Draws of each rater's posterior per image and step in the mixture's objective.
MIXTURE_DRAWS = 8
#: How far apart the mixture's components start, in the Gaussian prior's sigmas.
MIXTURE_SPREAD = 0.5


class _Indexed(Dataset):
    """Items of ``dataset`` with their position: ``index``, ``image``, ``masks`` (all raters)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        return {"index": index, "image": item["image"], "masks": item["masks"]}


@torch.no_grad()
def rater_posteriors(heads: LatentHeads, loader: DataLoader, size: int, device: torch.device) -> DiagonalGaussian:
    """Q(z|X, Y_r) of every item of ``loader`` (``index`` < ``size``) and every rater r.

    Returns:
        a `DiagonalGaussian` whose mean and log_sigma are (size, R, C), row i for item index i.
    """
    mean = log_sigma = None
    for batch in loader:
        images, raters = batch["image"].to(device), batch["masks"].to(device)
        gaussians = [heads.posterior(images, raters[:, r : r + 1]) for r in range(raters.shape[1])]
        if mean is None:
            mean = torch.zeros(size, raters.shape[1], heads.latent_dim, device=device)
            log_sigma = torch.zeros_like(mean)
        index = batch["index"].to(device)
        mean[index] = torch.stack([g.mean for g in gaussians], 1).float()
        log_sigma[index] = torch.stack([g.log_sigma for g in gaussians], 1).float()
    return DiagonalGaussian(mean, log_sigma)


def prior_kl(heads: LatentHeads, images: torch.Tensor, posteriors: DiagonalGaussian) -> torch.Tensor:
    """Mean over the R raters of KL(Q(z|X,Y_r) || P(z|X)) for each image: (B,).

    Args:
        images: (B, 3, H, W). posteriors: mean and log_sigma (B, R, C), fixed.
    """
    prior = heads.gaussian_prior(images)
    raters = posteriors.mean.shape[1]
    expanded = DiagonalGaussian(prior.mean.unsqueeze(1).expand(-1, raters, -1),
                                prior.log_sigma.unsqueeze(1).expand(-1, raters, -1))
    return posteriors.kl(expanded).mean(dim=1)


def fit_prior(
    heads: LatentHeads,
    train: Dataset,
    validation: Dataset | None,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    num_workers: int = 0,
    log: Callable[[dict[str, Any]], None] = lambda row: None,
) -> list[dict[str, Any]]:
    """Train ``heads.prior_net`` alone on the mean KL to every rater's posterior (see the module
    docstring); keep the epoch of lowest validation KL (the last one when there is no validation).
    Heads with a mixture prior then fit it (`fit_mixture_prior`) for as many epochs at ``lr``.

    Args:
        heads: trained latent heads; only the prior net's weights change.
        train, validation: multi-rater items (``image`` (3, S, S), ``masks`` (R, S, S)).
        epochs: passes over ``train``. lr: Adam's learning rate.
        seed: seeds the shuffling, so that a rerun (e.g. after ``--resume``) repeats exactly.
        log: called with each epoch's row (``prior_fit_epoch``, ``prior_kl``, ``val_prior_kl``;
            the mixture's: ``mixture_fit_epoch``, ``mixture_nll``, ``val_mixture_nll``).

    Returns:
        the rows passed to ``log``.

    Example:
        >>> heads = LatentHeads(in_channels=3, latent_dim=2, num_filters=(4, 8), resolution=16, prior_components=2)
        >>> items = [{"image": torch.rand(3, 16, 16), "masks": (torch.rand(4, 16, 16) > 0.5).float()}
        ...          for _ in range(4)]                       # 4 images, 4 raters each
        >>> rows = fit_prior(heads, items, None, epochs=2, lr=1e-3, batch_size=2, seed=0, device=torch.device("cpu"))
        >>> [sorted(row)[0] for row in rows], heads.samples_mixture   # 2 Gaussian epochs, then 2 of the mixture
        (['prior_fit_epoch', 'prior_fit_epoch', 'mixture_fit_epoch', 'mixture_fit_epoch'], True)
    """
    if epochs < 1:
        raise ValueError(f"prior fitting needs epochs >= 1, got {epochs}")
    given = (train, validation)
    train, validation = _Indexed(train), (_Indexed(validation) if validation is not None and len(validation) else None)
    table, val_table = _posterior_tables(heads, train, validation, batch_size, device, num_workers)
    val_loader = None
    if validation is not None:
        val_loader = DataLoader(validation, batch_size=batch_size, num_workers=num_workers)
    optimizer = torch.optim.Adam(heads.prior_net.parameters(), lr=lr)
    best: tuple[float, dict[str, torch.Tensor]] | None = None
    rows = []
    for epoch in range(epochs):
        shuffled = DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=num_workers,
                              generator=torch.Generator().manual_seed(derive_seed(seed, _PRIOR_STREAM, epoch)))
        total, count = 0.0, 0
        for batch in shuffled:
            index = batch["index"].to(device)
            posteriors = DiagonalGaussian(table.mean[index], table.log_sigma[index])
            loss = prior_kl(heads, batch["image"].to(device), posteriors).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + float(loss.detach()), count + 1
        row: dict[str, Any] = {"prior_fit_epoch": epoch + 1, "prior_kl": total / max(count, 1)}
        if val_loader is not None:
            row["val_prior_kl"] = _validation_kl(heads, val_loader, val_table, device)
        score = row.get("val_prior_kl", -epoch)
        if best is None or score < best[0]:
            best = (score, {k: v.detach().clone() for k, v in heads.prior_net.state_dict().items()})
        logger.info("prior fit epoch %d: KL %.4f%s", epoch + 1, row["prior_kl"],
                    f", validation {row['val_prior_kl']:.4f}" if "val_prior_kl" in row else "")
        log(row)
        rows.append(row)
    heads.prior_net.load_state_dict(best[1])
    if heads.mixture_net is not None:
        rows += fit_mixture_prior(heads, *given, epochs, lr, batch_size, seed, device, num_workers, log,
                                  tables=(table, val_table))
    return rows


def _posterior_tables(heads: LatentHeads, train: _Indexed, validation: _Indexed | None, batch_size: int,
                      device: torch.device, num_workers: int) -> tuple[DiagonalGaussian, DiagonalGaussian | None]:
    """`rater_posteriors` of ``train`` and of ``validation`` (None without)."""
    def table(items: _Indexed) -> DiagonalGaussian:
        return rater_posteriors(heads, DataLoader(items, batch_size=batch_size, num_workers=num_workers), len(items), device)

    return table(train), (table(validation) if validation is not None else None)


def _rater_draws(table: DiagonalGaussian, index: torch.Tensor, draws: int,
                 generator: torch.Generator) -> torch.Tensor:
    """``draws`` samples of each rater's posterior of the items ``index``: (B, R * draws, C)."""
    mean, sigma = table.mean[index], table.log_sigma[index].exp()  # (B, R, C)
    noise = standard_normal((*mean.shape[:2], draws, mean.shape[-1]), generator, mean)
    return (mean[:, :, None] + sigma[:, :, None] * noise).flatten(1, 2)


def fit_mixture_prior(
    heads: LatentHeads,
    train: Dataset,
    validation: Dataset | None,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    device: torch.device,
    num_workers: int = 0,
    log: Callable[[dict[str, Any]], None] = lambda row: None,
    tables: tuple[DiagonalGaussian, DiagonalGaussian | None] | None = None,
) -> list[dict[str, Any]]:
    """Fit ``heads.mixture_net`` to every rater's posterior (module docstring) and mark it fitted.

    Args:
        heads: latent heads with ``prior_components`` > 1 and a fitted Gaussian prior net (the
            mixture starts from it); only the mixture's weights change.
        train, validation: multi-rater items, as `fit_prior`'s (validation None or empty: none).
        epochs, lr, batch_size: the prior-fit phase's. seed: seeds the start, shuffling and draws.
        log: called with each epoch's row (``mixture_fit_epoch``, ``mixture_nll``, ``val_mixture_nll``).
        tables: every rater's posterior of ``train`` and ``validation`` when already computed
            (`rater_posteriors`, as `fit_prior` has them); computed here when None.

    Returns:
        the rows passed to ``log``. The epoch of lowest validation value is kept (epoch 0, the
        start, included); without validation the last.

    Example:
        >>> heads = LatentHeads(in_channels=3, latent_dim=2, num_filters=(4, 8), resolution=16, prior_components=3)
        >>> items = [{"image": torch.rand(3, 16, 16), "masks": (torch.rand(2, 16, 16) > 0.5).float()}
        ...          for _ in range(4)]
        >>> rows = fit_mixture_prior(heads, items, items[:2], epochs=1, lr=1e-3, batch_size=2, seed=0,
        ...                          device=torch.device("cpu"))
        >>> sorted(rows[0]), heads.sample(torch.rand(5, 3, 16, 16), 4).shape   # 4 z per image, from the mixture
        (['mixture_fit_epoch', 'mixture_nll', 'val_mixture_nll'], torch.Size([5, 4, 2]))
    """
    mixture = heads.mixture_net
    if mixture is None:
        raise ValueError("fit_mixture_prior needs LatentHeads(prior_components=K) with K > 1")
    if epochs < 1:
        raise ValueError(f"prior fitting needs epochs >= 1, got {epochs}")
    train, validation = _Indexed(train), (_Indexed(validation) if validation is not None and len(validation) else None)
    table, val_table = tables if tables is not None else _posterior_tables(heads, train, validation, batch_size,
                                                                            device, num_workers)
    mixture.start_from(heads.prior_net, MIXTURE_SPREAD, torch.Generator().manual_seed(derive_seed(seed, _MIXTURE_STREAM, 0)))
    mixture.requires_grad_(True)
    val_z = None
    if val_table is not None:  # fixed draws, so that epochs are compared on the same z
        generator = torch.Generator().manual_seed(derive_seed(seed, _MIXTURE_STREAM, 1))
        val_z = _rater_draws(val_table, torch.arange(len(validation), device=device), MIXTURE_DRAWS, generator)

    def nll(images: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -heads.mixture_prior(images).log_prob(z).mean()

    @torch.no_grad()
    def validate() -> float | None:
        if val_z is None:
            return None
        total = 0.0
        for batch in DataLoader(validation, batch_size=batch_size, num_workers=num_workers):
            index = batch["index"].to(device)
            total += float(nll(batch["image"].to(device), val_z[index])) * len(index)
        return total / len(validation)

    optimizer = torch.optim.Adam(mixture.parameters(), lr=lr)
    start = validate()
    best = (start, {k: v.detach().clone() for k, v in mixture.state_dict().items()})
    rows = []
    try:
        for epoch in range(epochs):
            generator = torch.Generator().manual_seed(derive_seed(seed, _MIXTURE_STREAM, 2 + epoch))
            shuffled = DataLoader(train, batch_size=batch_size, shuffle=True, num_workers=num_workers, generator=generator)
            total, count = 0.0, 0
            for batch in shuffled:
                z = _rater_draws(table, batch["index"].to(device), MIXTURE_DRAWS, generator)
                loss = nll(batch["image"].to(device), z)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total, count = total + float(loss.detach()), count + 1
            row: dict[str, Any] = {"mixture_fit_epoch": epoch + 1, "mixture_nll": total / max(count, 1)}
            value = validate()
            if value is not None:
                row["val_mixture_nll"] = value
            if value is None or value < best[0]:
                best = (value, {k: v.detach().clone() for k, v in mixture.state_dict().items()})
            logger.info("mixture prior fit epoch %d: -log P %.4f%s", epoch + 1, row["mixture_nll"],
                        "" if value is None else f", validation {value:.4f}")
            log(row)
            rows.append(row)
    finally:
        mixture.requires_grad_(False)
    mixture.load_state_dict(best[1])
    heads.mark_mixture_fitted()
    return rows


@torch.no_grad()
def _validation_kl(heads: LatentHeads, loader: DataLoader, table: DiagonalGaussian, device: torch.device) -> float:
    total, count = 0.0, 0
    for batch in loader:
        index = batch["index"].to(device)
        kl = prior_kl(heads, batch["image"].to(device), DiagonalGaussian(table.mean[index], table.log_sigma[index]))
        total, count = total + float(kl.sum()), count + kl.shape[0]
    return total / max(count, 1)
