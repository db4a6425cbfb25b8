"""Trainable and total parameters of every way to adapt SAM: full fine-tuning, mask decoder only,
plain adapters, LoRA (PEFT), UA-SAM.

    python -m benchmarks.param_count                  # a table
    python -m benchmarks.param_count --json           # [{"name", "trainable", "total", "breakdown"}]
    python -m benchmarks.param_count --variants vit_b

Rows, for each SAM variant v (vit_b, vit_l, vit_h):
    full-finetune-v     every SAM parameter trains
    mask-decoder-v      only SAM's mask decoder trains
    adapters-v          plain bottleneck adapters behind every encoder block (interaction="none",
                        the deterministic Adapter-SAM baseline of the paper)
    lora-rR-v           LoRA through PEFT on the qkv projection of every encoder block, rank
                        R = embed_dim / 8 (vit_b 96, vit_l 128, vit_h 160): the rank whose budget
                        matches the plain adapters' (within 0.5%)
    ua-sam-v            UA-SAM, the paper's configuration (latent_dim 6, CMSM, bottleneck 0.25,
                        latent heads of the Probabilistic U-Net); for vit_b named
                        ``ua-sam-vit_b-paper``, the paper's 8.08M row
Each variant is built once, on the meta device (shapes only: no memory, no time); the rows copy it.
"""

from __future__ import annotations

import argparse
import copy
import json

import torch
from torch import nn

import uncertainty_adapters as ua
from uncertainty_adapters.integrations.sam import SAM_SPECS, UncertaintySam, build_sam

PAPER_TRAINABLE = 8_080_000  # paper section 3.4 / Fig. 3b: "only 8.08M"
VARIANTS = ("vit_b", "vit_l", "vit_h")

# Breakdown order: the adapter parts behind the blocks, the latent heads, then SAM's parts.
GROUP_ORDER = ("adapters", "cmsm", "reconstruct_eq4", "recon", "condition", "prior", "posterior",
               "lora_A", "lora_B", "image_encoder", "prompt_encoder", "mask_decoder")


def _ua_group(name: str) -> str:
    """The UA-SAM part a parameter belongs to: adapters (down/up projections), cmsm (Eq. 1-3, 5),
    reconstruct_eq4 (Eq. 4's MLP, merged with W_up's f_i half), recon (Recon(z)), condition
    (p_0), prior, posterior, mask_decoder."""
    parts = name.split(".")
    if parts[:2] == ["encoder", "adapters"]:
        return {"down": "adapters", "up": "adapters", "interaction": "cmsm", "reconstruct": "reconstruct_eq4"}[parts[3]]
    prefixes = {"encoder.recon.": "recon", "encoder.condition.": "condition", "latent_heads.prior_net.": "prior",
                "latent_heads.posterior_net.": "posterior", "mask_decoder.": "mask_decoder"}
    return next(group for prefix, group in prefixes.items() if name.startswith(prefix))


def _row(name: str, model: nn.Module, group_of, note: str = "") -> dict[str, object]:
    """Count ``model``'s parameters (each once); group the trainable ones with ``group_of(name)``."""
    seen: set[int] = set()
    trainable = total = 0
    breakdown: dict[str, int] = {}
    for param_name, param in model.named_parameters():
        if id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
            group = group_of(param_name)
            breakdown[group] = breakdown.get(group, 0) + param.numel()
    order = {group: index for index, group in enumerate(GROUP_ORDER)}
    breakdown = dict(sorted(breakdown.items(), key=lambda item: order.get(item[0], len(order))))
    row: dict[str, object] = {"name": name, "trainable": trainable, "total": total, "breakdown": breakdown}
    if note:
        row["note"] = note
    return row


def lora_rank(variant: str) -> int:
    """The LoRA rank whose budget on the encoder's qkv matches the plain adapters': D / 8."""
    return SAM_SPECS[variant].encoder_embed_dim // 8


def rows_for(variant: str) -> list[dict[str, object]]:
    """The five rows of one SAM variant."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as error:
        raise SystemExit("the LoRA rows need PEFT: pip install 'uncertainty-adapters[peft]'") from error

    with torch.device("meta"):
        sam = build_sam(variant)
        rows = [_row(f"full-finetune-{variant}", sam.requires_grad_(True), lambda n: n.split(".")[0])]

        decoder_only = copy.deepcopy(sam).requires_grad_(False)
        decoder_only.mask_decoder.requires_grad_(True)
        rows.append(_row(f"mask-decoder-{variant}", decoder_only, lambda n: n.split(".")[0]))

        plain = UncertaintySam(copy.deepcopy(sam), ua.UncertaintyAdapterConfig(interaction="none"))
        rows.append(_row(f"adapters-{variant}", plain, _ua_group, "bottleneck 0.25, ReLU, interaction='none'"))

        rank = lora_rank(variant)
        lora = get_peft_model(copy.deepcopy(sam), LoraConfig(r=rank, lora_alpha=rank, target_modules=["qkv"]))
        rows.append(_row(f"lora-r{rank}-{variant}", lora, lambda n: "lora_A" if "lora_A" in n else "lora_B",
                         f"PEFT LoRA rank {rank} on image_encoder.blocks.*.attn.qkv"))

        uasam = UncertaintySam(copy.deepcopy(sam))
        name = "ua-sam-vit_b-paper" if variant == "vit_b" else f"ua-sam-{variant}"
        rows.append(_row(name, uasam, _ua_group, "latent_dim 6, CMSM, bottleneck 0.25, latent heads 32-64-128-192"))
    return rows


def format_table(rows: list[dict[str, object]]) -> str:
    lines = [f"{'name':24s} {'trainable':>13s} {'total':>13s} {'trainable %':>11s}  breakdown (trainable)"]
    for row in rows:
        share = 100 * row["trainable"] / row["total"]
        parts = ", ".join(f"{k} {v / 1e6:.3f}M" for k, v in row["breakdown"].items())
        lines.append(f"{row['name']:24s} {row['trainable']:>13,d} {row['total']:>13,d} {share:>10.3f}%  {parts}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print a JSON list of rows")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    args = parser.parse_args(argv)
    rows = [row for variant in args.variants for row in rows_for(variant)]
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(format_table(rows))
        paper = next((row for row in rows if row["name"] == "ua-sam-vit_b-paper"), None)
        if paper is not None:
            verdict = "<=" if paper["trainable"] <= PAPER_TRAINABLE else "> (over budget!)"
            print(f"\nua-sam-vit_b-paper trains {paper['trainable']:,d} {verdict} the paper's {PAPER_TRAINABLE:,d}")
    return rows


if __name__ == "__main__":
    main()
