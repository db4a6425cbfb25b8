"""What-if runs of `benchmarks.diagnose_latent`: one change to how UA-SAM's latent trains, for one run.

Each option below changes one thing the library does to UA-SAM's latent, in this process only
(what each was meant to test, and what it measured: docs/results.md, "Why the latent takes hold
on some seeds only"), and then trains and measures exactly as
``python -m benchmarks.diagnose_latent`` does with the arguments after ``--``; the result JSON
gets a ``what_if`` entry naming the change, so it compares with the plain runs' figures
(diversity against the raters', GED, the KL trace, the posterior's spread)::

    python -m benchmarks.latent_takeoff --posterior-sigma 0.4 -- --out D --data bimodal --variant demo-relu --seed 3

The changes (any combination):

- ``--posterior-sigma S``: the posterior net starts at sigma S instead of ``init_sigma`` (the
  prior is unchanged): less noise on z while the decoder learns to read it;
- ``--posterior-gain G``: the mean half of the posterior net's last layer starts G times larger,
  so the rater's mask moves z G times further at first;
- ``--total-free-bits``: free bits floor the KL summed over the C latent dimensions at
  C * free_bits, instead of each dimension at free_bits, so that one dimension may carry the
  whole decision unpenalised;
- ``--all-raters``: each step trains on the first B / R images of its batch of B, each with all
  R of its raters (the same number of masks per step; an epoch sees 1 / R of the images).

These are experiments, not library options. Two changes measured beside them are library
options instead: LeakyReLU in the prior and posterior nets (``LatentHeads(activation=
"leaky_relu")``, the demo preset's; ``--variant demo-relu`` trains ReLU), and all raters per step,
drawn by a sampler rather than cut from a batch of B (the preset field
``raters_per_image="all"``, integrations/pipeline/training/rater_batches.py; ``--variant
demo-all-raters``). Each run needs a fresh ``--out``: a run folder already there would be
measured as it is, without the change.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any, Iterator
from unittest import mock

import torch
from torch import nn


def scale_posterior_mean(heads: nn.Module, gain: float) -> None:
    """Multiply the mean half of the posterior net's last layer (its weights) by ``gain``."""
    encoder = heads.posterior_net
    with torch.no_grad():
        encoder.to_gaussian.weight[: encoder.latent_dim] *= gain


def total_free_bits_kl_terms(loss, kl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`ElboLoss.kl_terms` with the floor on the total: max(C * free_bits, sum_d mean_b KL_bd)."""
    if kl.dim() == 2:
        total = kl.mean(0).sum()
        floor = loss.free_bits * kl.shape[1]
        return (total.clamp_min(floor) if floor > 0 else total), total
    kl = kl.mean()
    return kl, kl


def all_raters_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """The first B / R images of ``batch`` (B images, R raters each), each repeated once per
    rater, with ``mask`` the raters' masks in turn: B (image, rater) pairs again
    (`rater_batches.with_every_rater` on the batch's first B / R images)."""
    from uncertainty_adapters.integrations.pipeline.training.rater_batches import with_every_rater

    size, raters = batch["masks"].shape[:2]
    keep = max(1, size // raters)
    head = {key: value[:keep] if (torch.is_tensor(value) and value.dim() >= 1 and value.shape[0] == size)
            or (isinstance(value, (list, tuple)) and len(value) == size) else value
            for key, value in batch.items()}
    return with_every_rater(head)


@contextlib.contextmanager
def what_if(options: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Apply the changes ``options`` asks for while the block runs; yields their record."""
    import accelerate

    from uncertainty_adapters import latent_heads, losses

    record: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        changes = []
        if options.posterior_sigma is not None:
            record["posterior_sigma"] = options.posterior_sigma
            changes.append(lambda heads: heads.posterior_net.set_initial_sigma(options.posterior_sigma))
        if options.posterior_gain is not None:
            record["posterior_gain"] = options.posterior_gain
            changes.append(lambda heads: scale_posterior_mean(heads, options.posterior_gain))
        if changes:
            original_init = latent_heads.LatentHeads.__init__

            def init(self, *args, **kwargs):
                original_init(self, *args, **kwargs)
                for change in changes:
                    change(self)

            stack.enter_context(mock.patch.object(latent_heads.LatentHeads, "__init__", init))
        if options.total_free_bits:
            record["total_free_bits"] = True
            stack.enter_context(mock.patch.object(losses.ElboLoss, "kl_terms", total_free_bits_kl_terms))
        if options.all_raters:
            record["all_raters"] = True
            original_skip = accelerate.Accelerator.skip_first_batches

            def skip_first_batches(self, loader, num_batches=0):
                for batch in original_skip(self, loader, num_batches):
                    yield all_raters_batch(batch)

            stack.enter_context(mock.patch.object(accelerate.Accelerator, "skip_first_batches", skip_first_batches))
        yield record


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        usage="python -m benchmarks.latent_takeoff [changes] -- DIAGNOSE_LATENT_ARGS",
    )
    parser.add_argument("--posterior-sigma", type=float, metavar="S", help="the posterior net starts at sigma S")
    parser.add_argument("--posterior-gain", type=float, metavar="G", help="the posterior's mean output starts G times larger")
    parser.add_argument("--total-free-bits", action="store_true", help="floor the total KL at C * free_bits, not each dimension")
    parser.add_argument("--all-raters", action="store_true", help="B / R images with all R raters each per step")
    return parser


def main(argv: list[str] | None = None) -> int:
    from benchmarks import diagnose_latent

    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--") if "--" in argv else len(argv)
    options = build_parser().parse_args(argv[:split])  # --help ends here
    if split == len(argv):
        build_parser().error("give diagnose_latent's arguments after --, e.g. -- --out D --data bimodal --variant demo")
    args = diagnose_latent.build_parser().parse_args(argv[split + 1:])
    if args.run or args.summarize or args.full_finetune:
        raise SystemExit("latent_takeoff trains a variant: --run, --summarize and --full-finetune are diagnose_latent's own")
    name = f"{args.data}-{args.variant}"
    if (Path(args.out) / "runs" / name).exists():
        raise SystemExit(
            f"{Path(args.out) / 'runs' / name} exists: it would be measured as it is, without the change; "
            f"give each what-if run a fresh --out"
        )
    if not any(value not in (None, False) for value in vars(options).values()):
        build_parser().error("name at least one change (see --help)")
    with what_if(options) as record:
        result = diagnose_latent.run(args)
    result["what_if"] = record
    (Path(args.out) / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
