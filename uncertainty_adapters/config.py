"""Configuration of the uncertainty-aware adapters (UA-SAM, section 2).

`UncertaintyAdapterConfig` holds every choice that shapes the injected modules. Its defaults
are the paper's (latent dimension 6, bottleneck ratio 0.25, the CMSM interaction), it is
validated on construction, and it round-trips through JSON so that a saved adapter can be
rebuilt exactly (`adapter_config.json`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The valid values of ``UncertaintyAdapterConfig.interaction`` (paper Table 2): "cmsm" (the
#: method), "concat" (WMS), "sample" (z only), "position" (p only), "none" (plain adapters).
INTERACTIONS = ("cmsm", "concat", "sample", "position", "none")
ACTIVATIONS = ("relu", "gelu")
#: The valid values of ``UncertaintyAdapterConfig.cmsm_activation``: "relu" (paper Eq. 2-3) or
#: "softmax" (the official code's row softmax of the scaled outer product).
CMSM_ACTIVATIONS = ("relu", "softmax")
#: The valid values of ``UncertaintyAdapterConfig.latent_placement``: where W_f f_i enters.
LATENT_PLACEMENTS = ("residual", "bottleneck")

#: What a config dict saved before a field existed means for that field: the behaviour of the
#: version that wrote it. `UncertaintyAdapterConfig.from_dict` fills missing keys from here, so
#: an old adapter_config.json rebuilds the adapters it was saved from.
LEGACY_VALUES = {"cmsm_activation": "relu", "latent_placement": "residual"}

# Interactions that read the latent sample z, and those that carry the position variant p.
USES_SAMPLE = frozenset({"cmsm", "concat", "sample"})
USES_POSITION = frozenset({"cmsm", "concat", "position"})


@dataclass
class UncertaintyAdapterConfig:
    """What to inject behind each transformer block, and how z enters.

    The defaults are the paper's except for the z path (``cmsm_activation="softmax"``,
    ``latent_placement="bottleneck"``; docs/results.md, "The latent path", says why); the paper's
    own forms are ``cmsm_activation="relu", latent_placement="residual"``.

    Args (the full help text of each field is in its ``dataclasses.fields(...)[i].metadata``):
        latent_dim: C, the width of the latent sample z (paper: 6).
        bottleneck_ratio: adapter bottleneck width as a fraction of the embedding width D (0.25).
        interaction: how z enters each adapter, one of `INTERACTIONS`: "cmsm" (default),
            "concat", "sample", "position", "none".
        mlp_hidden_dim: hidden width of the small MLPs on p and z (64).
        activation: "relu" (paper) or "gelu", after the down-projection.
        embed_dim: D; None reads it from the backbone's first block when injecting.
        cmsm_activation: the nonlinearity of CMSM's modulation (Eq. 2-3), one of
            `CMSM_ACTIVATIONS`: "relu" (paper) or "softmax" (official code; never all zero).
        latent_placement: where each adapter's per-sample feature W_f f_i enters, one of
            `LATENT_PLACEMENTS`: "residual" (paper: added to the adapter's output, the same
            vector at every token) or "bottleneck" (added to W_down x before the activation,
            so that z acts on each token differently).

    A dict without ``cmsm_activation`` or ``latent_placement`` (written before they existed)
    means `LEGACY_VALUES` for them in `from_dict`, not the current defaults.

    Raises:
        ValueError: a field is out of range or unknown; the message names it and the valid values.

    Example:
        >>> cfg = UncertaintyAdapterConfig(latent_dim=6, interaction="cmsm")
        >>> cfg.bottleneck_dim(768), cfg.uses_sample, cfg.uses_position
        (192, True, True)
        >>> UncertaintyAdapterConfig.from_dict(cfg.to_dict()) == cfg
        True
    """

    latent_dim: int = field(
        default=6,
        metadata={"help": "Dimension C of the latent sample z (paper: 6, chosen in Fig. 3a)."},
    )
    bottleneck_ratio: float = field(
        default=0.25,
        metadata={
            "help": "Width of the adapter bottleneck (down-projection) as a fraction of the "
            "embedding width (paper: 0.25)."
        },
    )
    interaction: str = field(
        default="cmsm",
        metadata={
            "help": "How z enters each adapter (paper Table 2): 'cmsm' (condition modifies "
            "sample, the method), 'concat' (WMS: z concatenated with p), 'sample' (z only), "
            "'position' (p only), 'none' (plain adapters, deterministic)."
        },
    )
    mlp_hidden_dim: int = field(
        default=64,
        metadata={
            "help": "Hidden width of the small MLPs that map p and z (Eq. 1, 4, 5) and of "
            "the Recon(z) MLP after the last block."
        },
    )
    activation: str = field(
        default="relu",
        metadata={"help": "Activation after the down-projection: 'relu' (paper) or 'gelu'."},
    )
    embed_dim: int | None = field(
        default=None,
        metadata={
            "help": "Width of the transformer block outputs. None: read from the first "
            "LayerNorm of the first block when injecting."
        },
    )

    cmsm_activation: str = field(
        default="softmax",
        metadata={
            "help": "Nonlinearity of CMSM's modulation A (Eq. 2-3): 'relu' (paper: A = ReLU(q k^T), "
            "f = ReLU(z') * w12(p'), exactly zero whenever the per-sample scalars are <= 0) or "
            "'softmax' (official code: A = softmax(q k^T / sqrt(C)) over each row, f = z' * w12(p'))."
        },
    )
    latent_placement: str = field(
        default="bottleneck",
        metadata={
            "help": "Where each adapter's per-sample feature W_f f_i (from z and p) enters: "
            "'residual' (paper: out = x + W_up act(W_down x) + W_f f_i, one vector for every "
            "token) or 'bottleneck' (out = x + W_up act(W_down x + W_f f_i): through the "
            "activation, so z changes each token differently)."
        },
    )

    def __post_init__(self) -> None:
        _check_positive_int("latent_dim", self.latent_dim)
        _check_positive_int("mlp_hidden_dim", self.mlp_hidden_dim)
        if self.embed_dim is not None:
            _check_positive_int("embed_dim", self.embed_dim)
        if isinstance(self.bottleneck_ratio, bool) or not isinstance(self.bottleneck_ratio, (int, float)):
            raise ValueError(
                f"bottleneck_ratio must be a number in (0, 1], got {self.bottleneck_ratio!r}"
            )
        if not 0.0 < float(self.bottleneck_ratio) <= 1.0:
            raise ValueError(
                f"bottleneck_ratio must lie in (0, 1] (paper: 0.25), got {self.bottleneck_ratio}"
            )
        self.bottleneck_ratio = float(self.bottleneck_ratio)
        if self.interaction not in INTERACTIONS:
            raise ValueError(
                f"interaction must be one of {', '.join(repr(i) for i in INTERACTIONS)}, "
                f"got {self.interaction!r}"
            )
        for name, valid in (("cmsm_activation", CMSM_ACTIVATIONS), ("latent_placement", LATENT_PLACEMENTS)):
            if getattr(self, name) not in valid:
                raise ValueError(
                    f"{name} must be one of {', '.join(repr(v) for v in valid)}, got {getattr(self, name)!r}"
                )
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {', '.join(repr(a) for a in ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )

    @property
    def uses_sample(self) -> bool:
        """Whether the adapters read the latent sample z (False for 'position' and 'none')."""
        return self.interaction in USES_SAMPLE

    @property
    def uses_position(self) -> bool:
        """Whether the adapters carry the position variant chain p_i -> p_{i+1}."""
        return self.interaction in USES_POSITION

    def bottleneck_dim(self, embed_dim: int) -> int:
        """Bottleneck width for blocks of width ``embed_dim`` (at least 1)."""
        return max(1, int(embed_dim * self.bottleneck_ratio))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain, JSON-ready dict (what adapter_config.json stores)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "UncertaintyAdapterConfig":
        """Build from a dict, refusing keys this version does not know (names them). Keys of
        `LEGACY_VALUES` that ``data`` lacks take their legacy value (the dict predates them)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown UncertaintyAdapterConfig field(s) {unknown}; known fields: {sorted(known)}"
            )
        return cls(**{**LEGACY_VALUES, **data})

    def to_json(self, path: str | Path | None = None) -> str:
        """The config as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, sort_keys=True)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> "UncertaintyAdapterConfig":
        """Parse JSON text, or read it from a file path."""
        text = str(text_or_path)
        if not text.lstrip().startswith("{"):
            text = Path(text_or_path).read_text()
        return cls.from_dict(json.loads(text))


def _check_positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
