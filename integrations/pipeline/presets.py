"""Named training settings (pinned names: ``demo``, ``paper-lidc``, ``paper-refuge2``).

The paper (section 3.2) fixes: SAM ViT-B, latent dimension 6, one point prompt, Adam at 1e-4,
StepLR decay, early stopping, and a majority vote of 4 (LIDC) or 3 (REFUGE2) samples. It does
not give batch size, epochs, decay step or patience; the values below are ours and are marked
as such. ``demo`` is the CPU-sized run of ``ua-sam demo``: the same method on a small
SAM-architecture backbone at 128 px with a larger learning rate so that it learns in minutes.

The paper does not give beta (the KL weight of Eq. 6) either. Ours is 1e-3 in every preset:
the reconstruction term is MONAI's DiceCE, a *mean* over pixels, while KL(Q||P) is a *sum* over
the C latent dimensions, so beta = 1 prices one nat of latent information like one nat on every
pixel at once.

``latent_lr``: the learning rate of the prior and posterior nets (None: ``lr``). The demo sets
it to its ``lr``, 1e-3, explicitly; presets whose lr is the paper's leave it unset.

``cmsm_activation`` / ``latent_placement``: every preset uses the library's defaults, the
official code's softmax CMSM and z entering each adapter's bottleneck (see
`uncertainty_adapters.UncertaintyAdapterConfig` and docs/results.md, "The latent path");
``--cmsm-activation relu --latent-placement residual`` trains the paper's forms.

``latent_prompt`` / ``free_bits``: outside the paper, and on in the demo only: z also enters SAM's
mask decoder as a dense prompt (integrations/sam/latent_prompt.py), and the KL of each latent
dimension below 0.5 nats is not penalised (``uncertainty_adapters.ElboLoss``); with them the
latent nets train at the adapters' rate (docs/results.md, "The demo's latent settings"). The
paper presets keep the paper's form (no latent prompt, plain ELBO); ``--latent-prompt --free-bits 0.5`` adds them,
``--no-latent-prompt --free-bits 0 --latent-lr 1e-4`` takes them off the demo.

``latent_prompt_start``: 'zero' in every preset (the latent prompt is the identity until trained);
'random' (``--latent-prompt-start random``) keeps PyTorch's default start of its last layer, so z
moves the masks, and the posterior gets a gradient, from the first step. Why no preset uses it:
docs/results.md, "How z reaches SAM's mask decoder".

``latent_activation``: the nonlinearity of UA-SAM's prior and posterior nets (`ua.LatentHeads`):
'leaky_relu' in the demo, the Probabilistic U-Net's 'relu' in the paper presets
(``--latent-activation`` sets either). It reaches UA-SAM only; the Probabilistic U-Net row keeps
ReLU whatever the preset says (it keeps its recipe). Why the demo uses LeakyReLU (six seeds on
`synthetic`, ten on a two-mode folder): docs/results.md, "Why the latent takes hold on some seeds
only".

``raters_per_image``: 'one' in every preset, the paper's draw of one random rater per image and
epoch; 'all' (``--raters-per-image all``) trains each image with all of its raters in the same
step, B / R images a step (training/rater_batches.py). Like ``free_bits`` it reaches UA-SAM with a
latent only. Why no preset uses it: docs/results.md, "Why the latent takes hold on some seeds
only".

``geco_kappa``: unset in every preset (a fixed beta). Set (``--geco-kappa``), UA-SAM with a latent
trains with GECO's constrained ELBO instead (`uncertainty_adapters.GecoBeta`): the KL's weight
starts at ``beta`` and adapts so that the training DiceCE reaches kappa. Why no preset uses it:
docs/results.md, "GECO in place of free bits".

``posterior_noise_warmup`` S: 0.25 in the demo, 0 in the paper presets (z carries the posterior's
full noise from the first step, as the paper). With S > 0, UA-SAM with a latent trains on
z = mu + t * sigma * eps, t rising linearly from 0 to 1 over the first S of the scheduled steps (the
KL is the posterior's own; validation and the prior fit see the posterior as it is; early stopping
waits until the warm-up ends); ``--posterior-noise-warmup 0`` takes it off the demo. Why the demo
uses it (six seeds on `synthetic`, fresh seeds of a two-mode folder): docs/results.md, "When the
latent takes off, the batch size, and the posterior's noise warmed up" and "The warm-up as the
demo's default".

``posterior_noise_cycles`` n: 1 in every preset (one warm-up, at the start). With n > 1 the
warm-up runs again at the start of each of n equal parts of the scheduled steps, z's noise falling
back to 0 there (cyclical annealing, Fu et al. 2019); each ramp must end before the next starts
(S <= 1 / n). Why no preset uses it: docs/results.md, "The posterior's noise warmed up twice, and
a run trained again".

``prior_fit_epochs``: epochs that fit the prior net alone to every rater's posterior after
training (uncertainty_adapters/prior_fit.py); 20 in the demo, 0 (the paper's joint training only) in the
paper presets.

``prior_components`` K: 4 in the demo, 1 (the Gaussian prior is sampled) in the paper presets.
K > 1 fits a mixture of K Gaussians to every rater's posterior after the Gaussian, in the same
phase and for as many epochs, and samples it instead (`uncertainty_adapters.mixture_prior`);
training and its KL are unchanged. Without a prior-fit phase (``prior_fit_epochs`` 0) there is
nothing to fit it in, and the Gaussian is sampled (`Preset.mixture_components`; the run logs a
warning). ``--prior-components 1`` takes it off the demo. Why the demo
uses it (Table 1's three seeds at 128 px, fresh seeds of a two-mode folder, by a rule written
before the runs): docs/results.md, "A mixture prior for the demo".

``prompt``: the demo clicks once on every connected component of the raters' majority, at
training and at evaluation alike ('component-points', `component_point_prompts`); the paper
presets keep the paper's single click ('point'). On data with one lesion per image the two
protocols coincide.

Why these values, with the measurements behind them: docs/results.md, "Measurements behind the
presets and defaults".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from uncertainty_adapters.integrations.pipeline.training.rater_batches import RATERS_PER_IMAGE
from uncertainty_adapters.integrations.sam.latent_prompt import STARTS as LATENT_PROMPT_STARTS


@dataclass
class Preset:
    """Every knob of a training run; `ua-sam train` options override single fields."""

    name: str
    sam: str = field(metadata={"help": "SAM architecture: vit_b, vit_l, vit_h or demo."})
    image_size: int = field(metadata={"help": "Encoder input side in pixels."})
    batch_size: int = field(metadata={"help": "Images per optimizer step and process."})
    epochs: int = field(metadata={"help": "Maximum number of epochs (early stopping may end sooner)."})
    lr: float = field(default=1e-4, metadata={"help": "Adam learning rate (paper: 1e-4)."})
    latent_lr: float | None = field(
        default=None,
        metadata={"help": "Adam learning rate of the prior and posterior nets (None: lr); see the module docstring."},
    )
    lr_step_epochs: int = field(default=10, metadata={"help": "StepLR: decay every this many epochs."})
    lr_gamma: float = field(default=0.5, metadata={"help": "StepLR decay factor."})
    beta: float = field(
        default=1e-3,
        metadata={"help": "Weight of KL(Q||P) in the ELBO (Eq. 6); the loss's DiceCE is a per-pixel mean, "
                          "hence the small default (see the module docstring)."},
    )
    kl_warmup: float = field(
        default=0.0,
        metadata={"help": "Share of the scheduled steps (epochs x steps an epoch, whatever --max-steps caps) over "
                          "which beta ramps linearly from 0 (KL annealing); "
                          "early stopping waits until it ends."},
    )
    posterior_noise_warmup: float = field(
        default=0.0,
        metadata={"help": "Share of the scheduled steps over which the posterior's noise on z ramps linearly from 0 "
                          "(z = mu + t * sigma * eps, t from 0 to 1; the KL is the posterior's own); 0: none. "
                          "UA-SAM's latent only; early stopping waits until it ends."},
    )
    posterior_noise_cycles: int = field(
        default=1,
        metadata={"help": "How many times the posterior-noise warm-up runs: ramps of posterior_noise_warmup's length "
                          "starting at steps 0, T / n, 2 T / n, ... of the T scheduled steps (cyclical annealing); "
                          "1: once, at the start."},
    )
    prior_fit_epochs: int = field(
        default=0,
        metadata={"help": "Epochs of the prior-fit phase after training: the prior net alone fitted to every "
                          "rater's posterior (prior_fit.py; 0: none, as the paper)."},
    )
    prior_fit_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate of the prior-fit phase."})
    prior_components: int = field(
        default=1,
        metadata={"help": "Components of UA-SAM's sampled prior: 1, the Gaussian prior net; K > 1, a mixture of K "
                          "Gaussians fitted in the prior-fit phase after the Gaussian and sampled instead of it "
                          "(without a prior-fit phase, prior_fit_epochs 0, the Gaussian is sampled)."},
    )
    latent_dim: int = field(default=6, metadata={"help": "Latent dimension C (paper: 6)."})
    interaction: str = field(default="cmsm", metadata={"help": "cmsm, concat, sample, position or none."})
    cmsm_activation: str = field(
        default="softmax", metadata={"help": "CMSM's modulation: relu (paper Eq. 2-3) or softmax (official code)."}
    )
    latent_placement: str = field(
        default="bottleneck",
        metadata={"help": "Where z's per-adapter feature enters: residual (paper) or bottleneck (see UncertaintyAdapterConfig)."},
    )
    free_bits: float = field(
        default=0.0, metadata={"help": "Free bits: nats per latent dimension the KL term does not penalise (0: none); UA-SAM's "
                                       "latent only (the Probabilistic U-Net keeps the plain ELBO)."}
    )
    geco_kappa: float | None = field(
        default=None,
        metadata={"help": "GECO: the KL weight adapts from beta so that the reconstruction loss (DiceCE) stays at or "
                          "below this target (uncertainty_adapters.GecoBeta; None: a fixed beta); UA-SAM's latent only."},
    )
    latent_prompt: bool = field(
        default=False,
        metadata={"help": "z also enters as a dense prompt of SAM's mask decoder (integrations/sam/latent_prompt.py); "
                          "not in the paper."},
    )
    latent_prompt_start: str = field(
        default="zero",
        metadata={"help": "How the latent prompt's last layer starts: zero (the identity until trained) or random "
                          "(PyTorch's default init, so z moves the masks and the posterior gets a gradient from the "
                          "first step); only with latent_prompt."},
    )
    latent_resolution: int = field(default=128, metadata={"help": "Side the prior/posterior nets see."})
    latent_activation: str = field(
        default="relu",
        metadata={"help": "Nonlinearity of UA-SAM's prior/posterior nets: relu (Prob. U-Net) or leaky_relu "
                          "(no unit can die; see the module docstring)."},
    )
    raters_per_image: str = field(
        default="one",
        metadata={"help": "Masks per image and step, UA-SAM with z only: one (paper: one rater drawn at random) or "
                          "all (B / R images a step, each with all R raters; training/rater_batches.py)."},
    )
    latent_filters: tuple[int, ...] = field(
        default=(32, 64, 128, 192), metadata={"help": "Filters per block of the prior/posterior nets (Prob. U-Net)."}
    )
    prompt: str = field(
        default="point",
        metadata={"help": "Prompt: point (paper: one click on the rater's mask), box, point+box, or component-points "
                          "(one click per lesion of the raters' majority, at training and evaluation)."},
    )
    box_jitter: float = field(default=0.1, metadata={"help": "Box prompts: max side shift, fraction of box size."})
    patience: int = field(default=5, metadata={"help": "Early stopping: epochs without validation improvement."})
    eval_samples: int = field(default=4, metadata={"help": "K samples per image for the majority-vote Dice (paper: 4 / 3)."})
    ged_samples: int = field(
        default=16,
        metadata={"help": "N samples per image for GED, HM-IoU, diversity, S_NCC, soft Dice and ECE (the field "
                          "reports 16 and 100)."},
    )
    val_fraction: float = field(default=0.1, metadata={"help": "Share of the train part held out for early stopping."})
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16 (Accelerate)."})
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps."})
    train_decoder: bool = field(default=False, metadata={"help": "Also train SAM's mask decoder (paper: no)."})
    gradient_checkpointing: bool = field(
        default=False,
        metadata={"help": "Recompute each encoder block in the backward pass instead of storing its activations: "
                          "less memory (vit_l / vit_h, large batches), about one more forward of time."},
    )
    compile: bool = field(
        default=False,
        metadata={"help": "torch.compile the image encoder with its adapters and, on one CUDA process without "
                          "gradient accumulation, record the whole training step as a CUDA graph (training/graphed_step.py)."},
    )
    attention: str = field(
        default="sdpa",
        metadata={"help": "SAM image-encoder attention: sdpa, fused, flex or segment-anything (sam/attention.py); "
                          "the paper presets use fused (benchmarks/RESULTS.md, section 9)."},
    )
    num_workers: int = field(default=0, metadata={"help": "DataLoader worker processes."})
    synthetic_cases: int = field(default=600, metadata={"help": "Cases in the synthetic data set."})
    log_every: int = field(default=10, metadata={"help": "Steps between log lines (and finiteness checks)."})
    checkpoint_every: int = field(default=100, metadata={"help": "Steps between resumable checkpoints."})

    def replace(self, **overrides: Any) -> "Preset":
        """A copy with the given fields changed; None values are ignored; unknown names refused."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown preset field(s) {unknown}; known: {sorted(known)}")
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def __post_init__(self) -> None:
        self.latent_filters = tuple(self.latent_filters)  # JSON gives lists back
        if self.latent_prompt_start not in LATENT_PROMPT_STARTS:
            raise ValueError(f"latent_prompt_start must be one of {LATENT_PROMPT_STARTS}, got {self.latent_prompt_start!r}")
        if self.latent_prompt_start != "zero" and not self.latent_prompt:
            raise ValueError(f"latent_prompt_start={self.latent_prompt_start!r} sets how the latent prompt starts, but "
                             f"this preset has no latent prompt: add --latent-prompt (or leave the start at zero)")
        if not 0.0 <= self.posterior_noise_warmup <= 1.0:
            raise ValueError(f"posterior_noise_warmup is a share of the scheduled steps, in [0, 1]; got "
                             f"{self.posterior_noise_warmup} (0: no warm-up)")
        if self.posterior_noise_cycles < 1:
            raise ValueError(f"posterior_noise_cycles counts the posterior-noise warm-ups and must be >= 1; got "
                             f"{self.posterior_noise_cycles} (1: one warm-up, at the start)")
        if self.posterior_noise_cycles > 1 and not (
                0 < self.posterior_noise_warmup <= 1 / self.posterior_noise_cycles):
            raise ValueError(f"posterior_noise_cycles={self.posterior_noise_cycles} repeats a warm-up of "
                             f"posterior_noise_warmup={self.posterior_noise_warmup} of the steps, which must lie in "
                             f"(0, 1 / {self.posterior_noise_cycles}] so that each ramp ends before the next starts; "
                             f"pass a --posterior-noise-warmup in that range, or --posterior-noise-cycles 1")
        if not isinstance(self.prior_components, int) or self.prior_components < 1:
            raise ValueError(f"prior_components counts the prior's Gaussians and must be a positive integer; got "
                             f"{self.prior_components!r} (1: the Gaussian prior)")
        if self.raters_per_image not in RATERS_PER_IMAGE:
            raise ValueError(f"raters_per_image must be one of {RATERS_PER_IMAGE}, got {self.raters_per_image!r}")
        if self.geco_kappa is not None:
            if not self.geco_kappa > 0:
                raise ValueError(f"geco_kappa is a reconstruction loss (DiceCE) to reach and must be > 0, got "
                                 f"{self.geco_kappa}; leave it unset for a fixed beta")
            if not 1e-6 <= self.beta <= 1:
                raise ValueError(f"geco_kappa starts the KL weight at beta and keeps it within [1e-6, 1]; got beta "
                                 f"{self.beta}: pass a --beta in that range (the preset's is 1e-3)")
            if self.kl_warmup > 0:
                raise ValueError(f"geco_kappa and kl_warmup={self.kl_warmup} both set the KL weight's course: GECO "
                                 f"adapts it from beta from the first step; pass --kl-warmup 0 with --geco-kappa")

    @property
    def mixture_components(self) -> int:
        """K of the prior UA-SAM's latent heads are built with and sample: ``prior_components``,
        or 1 (the Gaussian) without a prior-fit phase to fit a mixture in (``prior_fit_epochs`` 0)."""
        return self.prior_components if self.prior_fit_epochs >= 1 else 1

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Preset":
        """A preset as recorded (run.json, reproduce.json): fields it predates take their
        `LEGACY_VALUES`, the meaning they had before the field existed."""
        return cls(**with_legacy_values(data))


#: What a preset recorded before a field existed (in run.json or reproduce.json) meant for it.
LEGACY_VALUES: dict[str, Any] = {"latent_prompt": False, "latent_activation": "relu", "raters_per_image": "one",
                                 "geco_kappa": None, "latent_prompt_start": "zero",
                                 "posterior_noise_warmup": 0.0, "posterior_noise_cycles": 1, "prior_components": 1}


def with_legacy_values(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded preset dict with the fields it predates filled in from `LEGACY_VALUES`."""
    return {**LEGACY_VALUES, **recorded}


#: How many times `ua-sam train` and `ua-sam demo` may train a run of each preset while its latent
#: has not taken hold (training/attempts.py; ``--attempts`` overrides; 1 for a preset not listed).
#: Not a `Preset` field: it sets how many runs are trained, not how one run trains, and
#: `ua-sam reproduce` trains every row once per seed, so that every row has the same budget.
#: Why the demo's is 3: docs/results.md, "The demo trains a lost run again".
ATTEMPTS: dict[str, int] = {"demo": 3}


PRESETS: dict[str, Preset] = {
    "demo": Preset(
        name="demo", sam="demo", image_size=128, batch_size=16, epochs=12, lr=1e-3, latent_lr=1e-3, latent_resolution=64,
        latent_filters=(16, 32, 64, 96), latent_prompt=True, free_bits=0.5, latent_activation="leaky_relu",
        posterior_noise_warmup=0.25, lr_step_epochs=8, lr_gamma=0.3, patience=4, eval_samples=4, prior_fit_epochs=20,
        prior_fit_lr=1e-3, prior_components=4, synthetic_cases=600, log_every=5, checkpoint_every=50,
        prompt="component-points",
    ),
    "paper-lidc": Preset(
        name="paper-lidc", sam="vit_b", image_size=1024, batch_size=2, epochs=50, lr=1e-4,
        lr_step_epochs=10, lr_gamma=0.5, patience=5, eval_samples=4, mixed_precision="bf16",
        checkpoint_every=1000, log_every=50, attention="fused",
    ),
    "paper-refuge2": Preset(
        name="paper-refuge2", sam="vit_b", image_size=1024, batch_size=2, epochs=100, lr=1e-4,
        lr_step_epochs=20, lr_gamma=0.5, patience=10, eval_samples=3, mixed_precision="bf16",
        checkpoint_every=200, log_every=20, attention="fused",
    ),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]
