"""`PretrainSettings`: everything that shapes the demo backbone's pretrained weights (and so their
cache key), apart from the code that pretrains them (backbone/demo.py), so that the command line
states the defaults without importing the training stack."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass

from uncertainty_adapters.integrations.sam.spec import get_sam_spec

HELD_OUT_SEED = 10_007
HELD_OUT_CASES = 128


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that shapes the pretrained weights (and so the cache key).

    The defaults are ``ua-sam pretrain-backbone``'s recipe (the record of the shipped weights
    states the settings they were made with): batches of ``batch_size`` images, each
    encoded once and decoded for ``targets`` objects of it (SAM's own training decodes several
    prompts per encoded image), AdamW with a one-cycle schedule (``warmup``: share of the steps
    with a rising learning rate) and gradient clipping (``grad_clip=0``: none).

    ``init`` is the SHA-256 of the weights (SAM's layout, e.g. an earlier pretraining's output)
    that training starts from, so a second stage that continues an earlier one (with another
    ``seed``: other images) is a recipe of its own; "" starts from SAM's random initialisation.
    """

    spec: str = "demo"
    image_size: int = 128
    steps: int = 2500
    batch_size: int = 32
    targets: int = 4
    lr: float = 1e-3
    warmup: float = 0.05
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    data: str = "crisp-shapes-v1"
    init: str = ""

    def __post_init__(self) -> None:
        for name in ("image_size", "steps", "batch_size", "targets"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"PretrainSettings.{name} must be a positive integer, got {value!r}")
        if not self.lr > 0 or not 0 < self.warmup < 1 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError(
                f"PretrainSettings needs lr > 0, 0 < warmup < 1, weight_decay >= 0 and grad_clip >= 0 "
                f"(0: no clipping), got lr={self.lr}, warmup={self.warmup}, "
                f"weight_decay={self.weight_decay}, grad_clip={self.grad_clip}"
            )
        if self.data != "crisp-shapes-v1":
            raise ValueError(f"PretrainSettings.data: the only pretraining data is 'crisp-shapes-v1', got {self.data!r}")
        if self.init and not re.fullmatch(r"[0-9a-f]{64}", self.init):
            raise ValueError(
                f"PretrainSettings.init is the SHA-256 (64 lowercase hex digits) of the weights training "
                f"starts from, or '' for SAM's random initialisation; got {self.init!r}"
            )

    def key(self) -> str:
        blob = json.dumps({**_key_fields(self), "arch": get_sam_spec(self.spec).to_dict()}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


LEGACY_VALUES = {"targets": 1, "warmup": 0.1, "grad_clip": 0.0, "init": ""}
"""The fields added after the first recipe, at the values that leave that recipe unchanged: what a
record written before a field existed means by its absence."""


def settings_from_record(recorded: dict) -> PretrainSettings:
    """The `PretrainSettings` a record's ``settings`` dict names, the fields it predates at
    `LEGACY_VALUES`."""
    return PretrainSettings(**{**LEGACY_VALUES, **recorded})


def _key_fields(settings: PretrainSettings) -> dict:
    """The settings as a dict, without the new fields at their no-op values, so that the cache
    keys of weights made before those fields existed stay the same."""
    fields = asdict(settings)
    for name, no_op in LEGACY_VALUES.items():
        if fields[name] == no_op:
            del fields[name]
    return fields
