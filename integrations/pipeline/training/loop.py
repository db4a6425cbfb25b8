"""Training UA-SAM with Accelerate: one script for the CPU, one GPU and many (``accelerate launch``).
The same loop trains the Probabilistic U-Net baseline (``TrainJob.model = "prob-unet"``).

The loop is the paper's (section 3.2): a rater mask drawn at random per image and epoch (or,
with ``raters_per_image="all"``, every rater's mask of fewer images a step: rater_batches.py), one
point prompt sampled from it (or, with ``prompt="component-points"``, one point per lesion of the
raters' majority: `prompt_source`), z ~ Q(z|X,Y), loss = DiceCE + beta * KL(Q||P) (Eq. 6), Adam,
StepLR per epoch, early stopping on the validation loss. Around it: mixed precision and gradient
accumulation from Accelerate, a tqdm bar, CSV (and TensorBoard, when installed) logs, atomic
resumable checkpoints of the trainable weights, exact resume, and a stop with a clear message
when the loss turns NaN/inf (the last good checkpoint stays).

Data: the spec's train part is split again into train and validation by a seeded rule (the
last ``val_fraction`` of a seeded permutation); the test part is only used at the end.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

import uncertainty_adapters as ua
from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.config import USES_SAMPLE
from uncertainty_adapters.integrations.data import build_dataset, dataset_kwargs_for
from uncertainty_adapters.integrations.pipeline import output_dir, run_dir
from uncertainty_adapters.integrations.pipeline.models.factory import MODEL_LABELS, MODELS, build_model
from uncertainty_adapters.integrations.pipeline.models.protocol import TrainableSegmenter
from uncertainty_adapters.integrations.pipeline.presets import Preset
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME
from uncertainty_adapters.integrations.pipeline.training.checkpoints import (
    Progress,
    load_latest_checkpoint,
    recorded_split_seed,
    save_training_checkpoint,
)
from uncertainty_adapters.integrations.pipeline.training.graphed_step import GraphedTrainStep, capturable_adam
from uncertainty_adapters.integrations.pipeline.training.latent_hold import (
    idle_latent_message,
    measure_sample_diversity,
    sample_share_of,
)
from uncertainty_adapters.integrations.pipeline.training.logs import CsvLog, tensorboard_writer
from uncertainty_adapters.prior_fit import fit_prior
from uncertainty_adapters.integrations.pipeline.training.rater_batches import (
    all_raters_sampler,
    images_per_step,
    with_every_rater,
)
from uncertainty_adapters.integrations.pipeline.training.seeding import derive_seed, generator_for, seed_everything_for
from uncertainty_adapters.integrations.pipeline.training.throughput import Throughput
from uncertainty_adapters.integrations.sam.prompts import make_prompts
from uncertainty_adapters.losses import ElboTerms

logger = logging.getLogger(LOGGER_NAME)

_TRAIN_STREAM, _VAL_STREAM, _SPLIT_STREAM = 0x7A1, 0x7A2, 0x7A3
BEST_WEIGHTS = "best_trainable.safetensors"
LOG_CSV = "train_log.csv"
RUN_RECORDS = (run_dir.RUN_CONFIG, "checkpoints")  # a run folder written before output_dir's marker


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainJob:
    """One training run: the preset plus what the command line adds.

    ``model`` picks what trains: "ua-sam" (the preset's SAM with adapters of the preset's
    interaction) or "prob-unet" (the Probabilistic U-Net baseline, from scratch, no backbone).
    ``data_seed`` seeds the data set (synthetic cases, rater draw) when it should differ from
    ``seed`` (which seeds everything else), e.g. for ensemble members trained on one data set.
    ``split_seed`` seeds the train/validation split (`train_val_split`) when it should differ
    from ``seed``, e.g. for attempts of one run (attempts.py), which train and validate on one split.
    A resumed run keeps the split its checkpoint records, whatever ``split_seed`` says.
    """

    preset: Preset
    data: str
    out: Path
    seed: int = 0
    resume: bool = False
    max_steps: int | None = None
    cpu: bool = False
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)
    model: str = "ua-sam"
    data_seed: int | None = None
    split_seed: int | None = None

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")

    @property
    def dataset_seed(self) -> int:
        return self.seed if self.data_seed is None else self.data_seed

    @property
    def validation_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed


@dataclass
class TrainResult:
    out: Path
    progress: Progress
    stopped_early: bool
    seconds: float
    throughput: dict[str, Any] = field(default_factory=dict)  # Throughput.summary() of this session
    sample_diversity: dict[str, Any] | None = None  # run.json's val_sample_diversity (latent_hold.py)


def _ua_sam_with_a_latent(job: TrainJob) -> bool:
    """Whether ``job`` trains UA-SAM with a latent sample z: the only model the preset's UA-SAM
    latent options reach (the Probabilistic U-Net keeps its own recipe whatever they say)."""
    return job.model == "ua-sam" and job.preset.interaction in USES_SAMPLE


def free_bits_of(job: TrainJob) -> float:
    """The free bits ``job`` trains with: the preset's for UA-SAM with a latent sample z, 0 (the
    plain ELBO) for UA-SAM without one (nothing to floor) and for the Probabilistic U-Net."""
    return job.preset.free_bits if _ua_sam_with_a_latent(job) else 0.0


def geco_kappa_of(job: TrainJob) -> float | None:
    """GECO's reconstruction target ``job`` trains with: the preset's for UA-SAM with a latent
    sample z, None (a fixed beta) for UA-SAM without one and for the Probabilistic U-Net."""
    return job.preset.geco_kappa if _ua_sam_with_a_latent(job) else None


def posterior_noise_warmup_of(job: TrainJob) -> float:
    """The posterior-noise warm-up ``job`` trains with: the preset's for UA-SAM with a latent
    sample z, 0 (none) for UA-SAM without one and for the Probabilistic U-Net."""
    return job.preset.posterior_noise_warmup if _ua_sam_with_a_latent(job) else 0.0


def posterior_noise_cycles_of(job: TrainJob) -> int:
    """How many posterior-noise warm-ups ``job`` trains with: the preset's where it has a warm-up
    (`posterior_noise_warmup_of` > 0), else 1."""
    return job.preset.posterior_noise_cycles if posterior_noise_warmup_of(job) > 0 else 1


def raters_per_image_of(job: TrainJob) -> str:
    """The ``raters_per_image`` ``job`` trains with (rater_batches.py): the preset's for UA-SAM
    with a latent sample z; 'one', the paper's draw, for UA-SAM without one (a deterministic
    model has no z to tell raters apart) and for the Probabilistic U-Net."""
    return job.preset.raters_per_image if _ua_sam_with_a_latent(job) else "one"


def train_val_split(num_items: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices of the train part: a permutation seeded by ``seed``; its last
    ceil(val_fraction * n) items (at least 1 when n > 1 and val_fraction > 0) validate."""
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(derive_seed(seed, _SPLIT_STREAM))).tolist()
    n_val = min(num_items - 1, math.ceil(val_fraction * num_items)) if val_fraction > 0 else 0
    return sorted(order[: num_items - n_val]), sorted(order[num_items - n_val :])


def _split_seed_of(job: TrainJob, checkpoints: Path) -> int:
    """The seed of ``job``'s train/validation split: on --resume the one its latest checkpoint
    records (the training seed for checkpoints written before it was recorded, the rule they were
    trained by), else ``job.validation_split_seed``."""
    recorded = recorded_split_seed(checkpoints, unrecorded=job.seed) if job.resume else None
    return job.validation_split_seed if recorded is None else recorded


def _wants_cuda_graph(preset: Preset, accelerator: Accelerator) -> bool:
    """Whether ``--compile`` records the whole training step as a CUDA graph: on one CUDA process
    without gradient accumulation (training/graphed_step.py's step owns backward and the optimizer step; several
    processes or accumulation keep Accelerate's loop, with the encoder compiled)."""
    if not preset.compile or accelerator.device.type != "cuda":
        return False
    if accelerator.num_processes > 1 or preset.grad_accum > 1:
        reason = "several processes" if accelerator.num_processes > 1 else "gradient accumulation"
        logger.info("--compile: %s, so the training step is not recorded as a CUDA graph (encoder compiled only)", reason)
        return False
    return True


def check_out_dir(out: Path, resume: bool) -> None:
    """Refuse to train into a file, into a folder ua-sam did not write (see output_dir.py), or
    over an existing run unless resuming."""
    output_dir.check(out, RUN_RECORDS)
    has_run = any((out / record).exists() for record in RUN_RECORDS)
    if has_run and not resume:
        raise FileExistsError(
            f"{out} already holds a training run; pass --resume to continue it, --overwrite to delete "
            f"it and start over, or choose another --out"
        )


def prompt_source(preset: Preset, rater_mask: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
    """The (B, 1, H, W) mask a training prompt is drawn from.

    The paper's modes ('point', 'box', 'point+box') draw it from the rater mask being learnt.
    'component-points' draws it from the raters' majority vote, as evaluation does: a click on
    every lesion the majority marks, the same question for every rater of an image, so that the
    prompt does not tell which rater is being learnt (a click on a satellite only one rater drew).
    """
    return batch["majority"].to(rater_mask.dtype) if preset.prompt == "component-points" else rater_mask


@dataclass
class Validation:
    """What one pass over the validation part measures.

    Attributes:
        loss: the mean ELBO over every (image, rater) pair: early stopping's score.
        rater_spread: `ua.LatentHeads.rater_spread` averaged over the images whose raters
            disagree, in prior sigmas: whether the latent has taken hold (0: the posterior does
            not tell the raters apart). None without latent heads or without such an image.
    """

    loss: float
    rater_spread: float | None


def _validate(model, loader, loss_fn, preset: Preset, seed: int, accelerator: Accelerator) -> Validation:
    """Mean ELBO over the validation part and every rater of each image (posterior z, seeded
    prompts), and the raters' posterior spread.

    Every rater, not the epoch's random draw: the draw changes with the epoch, and with it the
    score (one epoch's raters miss the faint lesion, the next's do not), so that early stopping
    and the best-weights choice followed the draw rather than the model. Over all raters the
    targets are the same every epoch and the score is the expected ELBO over the raters."""
    model.eval()
    heads = getattr(accelerator.unwrap_model(model), "latent_heads", None)
    total = torch.zeros((), device=accelerator.device)
    count = torch.zeros((), device=accelerator.device)
    spread_total = torch.zeros((), device=accelerator.device)
    spread_count = torch.zeros((), device=accelerator.device)
    with torch.no_grad():
        for index, batch in enumerate(loader):
            generator = generator_for(accelerator.device, seed, _VAL_STREAM, index, accelerator.process_index)
            latents = generator_for(accelerator.device, seed, _VAL_STREAM, index, accelerator.process_index)
            raters = batch["masks"]  # (B, R, H, W)
            union = raters.amax(1, keepdim=True)
            for rater in range(raters.shape[1]):
                mask = raters[:, rater : rater + 1].to(batch["mask"].dtype)
                prompts = make_prompts(prompt_source(preset, mask, batch), preset.prompt, generator, union,
                                       preset.box_jitter)
                output = model(batch["image"], prompts, masks=mask, generator=latents)
                terms = loss_fn(output.logits.float(), mask, output.kl)
                total += terms.loss.detach() * mask.shape[0]
                count += mask.shape[0]
            if heads is None:
                continue
            disagree = (raters != raters[:, :1]).flatten(1).any(-1)  # (B,)
            if disagree.any():
                spread = heads.rater_spread(batch["image"][disagree], raters[disagree].to(batch["image"].dtype))
                spread_total += spread.sum()
                spread_count += spread.numel()
    model.train()
    total, count = accelerator.reduce(total, "sum"), accelerator.reduce(count, "sum")
    spread_total, spread_count = accelerator.reduce(spread_total, "sum"), accelerator.reduce(spread_count, "sum")
    return Validation(loss=float(total / count.clamp_min(1)),
                      rater_spread=float(spread_total / spread_count) if spread_count > 0 else None)


def train(job: TrainJob, backbone: Path | None = None, meta: dict[str, Any] | None = None,
          copy_backbone: bool = False) -> TrainResult:
    """Train UA-SAM; write the run folder (see run_dir.py) to ``job.out``.

    Args:
        job: what to train.
        backbone: SAM weights to build on (a .pth in the official layout or .safetensors, or a
            Hugging Face SamModel folder, whose config.json then gives the architecture);
            None for a randomly initialised backbone (meaningless results, for smoke runs).
        meta: extra facts recorded in run.json (e.g. how the backbone was obtained).
        copy_backbone: copy ``backbone`` into the run folder (small backbones: the demo's),
            so the folder is self-contained; otherwise run.json records its path.
    """
    started = time.time()
    check_out_dir(job.out, job.resume)
    output_dir.claim(job.out, "train", RUN_RECORDS)
    loop = _TrainingLoop(job, backbone)
    if job.resume:
        loop.resume()
    loop.run()
    loop.finish(backbone, meta or {}, copy_backbone)
    return TrainResult(job.out, loop.progress, loop.stopped_early, time.time() - started, loop.throughput,
                       loop.sample_diversity)


class _TrainingLoop:
    """The state of one training run and the steps of its loop."""

    def __init__(self, job: TrainJob, backbone: Path | None) -> None:
        self.job, self.preset = job, job.preset
        preset = self.preset
        self.accelerator = accelerator = Accelerator(
            cpu=job.cpu,
            mixed_precision=preset.mixed_precision,
            gradient_accumulation_steps=preset.grad_accum,
            # Pinned host memory + non-blocking copies: a batch's transfer to the GPU overlaps compute.
            dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, non_blocking=True),
        )
        pin = accelerator.device.type == "cuda"
        seed_everything_for(job.seed)
        model = build_model(job, backbone)
        self.dataset_kwargs = dataset_kwargs_for(preset, job.data, job.dataset_kwargs)
        self.train_part = build_dataset(
            job.data, preset.image_size, split="train", seed=job.dataset_seed, **self.dataset_kwargs
        )
        self.checkpoints = job.out / "checkpoints"
        self.split_seed = _split_seed_of(job, self.checkpoints)
        train_idx, val_idx = train_val_split(len(self.train_part), preset.val_fraction, self.split_seed)
        if len(train_idx) < preset.batch_size:
            raise ValueError(
                f"the training part has {len(train_idx)} images, fewer than one batch of "
                f"{preset.batch_size}; lower --batch-size or add data"
            )
        self.split = {"train": len(train_idx), "validation": len(val_idx)}
        self.train_idx, self.val_idx = train_idx, val_idx
        self.prior_fit: list[dict[str, Any]] = []
        self.sample_diversity: dict[str, Any] | None = None
        self.raters_per_image = raters_per_image_of(job)
        order = torch.Generator().manual_seed(derive_seed(job.seed, _TRAIN_STREAM))
        train_images, per_step, sampler = Subset(self.train_part, train_idx), preset.batch_size, None
        if self.raters_per_image == "all":  # B / R images a step, each with all R raters (rater_batches.py)
            per_step = images_per_step(preset.batch_size, self.train_part.num_raters)
            sampler = all_raters_sampler(train_images, len(train_idx) // preset.batch_size, per_step, order)
        train_loader = DataLoader(
            train_images, batch_size=per_step, shuffle=sampler is None, sampler=sampler, drop_last=True,
            num_workers=preset.num_workers, pin_memory=pin, generator=order,
        )
        val_loader = DataLoader(
            Subset(self.train_part, val_idx), batch_size=preset.batch_size, num_workers=preset.num_workers, pin_memory=pin
        )
        self.noise_warmup = posterior_noise_warmup_of(job)
        self.noise_cycles = posterior_noise_cycles_of(job)
        graph_step = _wants_cuda_graph(preset, accelerator)
        if graph_step:  # capturable, tensor learning rates: the step is recorded as a CUDA graph
            optimizer = capturable_adam(model.optimizer_groups(preset.latent_lr), preset.lr, accelerator.device)
        else:  # fused Adam on CUDA: one kernel for all parameters instead of several per tensor
            optimizer = torch.optim.Adam(model.optimizer_groups(preset.latent_lr), lr=preset.lr, fused=pin or None)
        # Stepped once per epoch by hand, so it is not handed to accelerator.prepare.
        self.scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=preset.lr_step_epochs, gamma=preset.lr_gamma)
        # beta follows beta_at(step), or GECO's multiplier; free bits floor the KL per latent dimension
        self.loss_fn = ua.ElboLoss(beta=preset.beta, validate=False, free_bits=free_bits_of(job))
        kappa = geco_kappa_of(job)
        self.geco = None if kappa is None else ua.GecoBeta(kappa, beta=preset.beta).to(accelerator.device)
        self.reconstruction = torch.zeros(2, device=accelerator.device)  # GECO: sum and count since the last step
        self.val_loss_fn = ua.ElboLoss(beta=preset.beta, validate=False)
        self.model, self.optimizer, self.train_loader, self.val_loader = accelerator.prepare(
            model, optimizer, train_loader, val_loader
        )
        self.unwrapped: TrainableSegmenter = accelerator.unwrap_model(self.model)
        self.graphed = None
        if graph_step:
            dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(preset.mixed_precision)
            self.graphed = GraphedTrainStep(self.unwrapped, optimizer, self._reconstruction_and_kl, beta=preset.beta,
                                            posterior_noise=self.noise_warmup > 0, autocast_dtype=dtype)
        self.progress = Progress()
        self.stopped_early = False
        self.running = torch.zeros(3, device=accelerator.device)  # loss sum, KL sum, batches since last log
        job.out.mkdir(parents=True, exist_ok=True)
        self.log = CsvLog(job.out / LOG_CSV, enabled=accelerator.is_main_process)
        self.tracker = tensorboard_writer(job.out, accelerator.is_main_process)
        self.meter = Throughput(accelerator.device, processes=accelerator.num_processes)

    # -- resume / checkpoints ----------------------------------------------------------------
    def resume(self) -> None:
        loaded = load_latest_checkpoint(self.checkpoints)
        if loaded is None:
            raise FileNotFoundError(f"--resume: {self.checkpoints} holds no checkpoint to resume from")
        self.unwrapped.load_trainable_state_dict(loaded.trainable)
        self.optimizer.load_state_dict(loaded.states["optimizer"])
        self.scheduler.load_state_dict(loaded.states["scheduler"])
        if self.geco is not None:
            if "geco" not in loaded.states:
                raise ValueError(f"--resume: {loaded.path} was written without GECO (geco_kappa unset); resume it "
                                 f"with the settings it started with, or start a new run with --geco-kappa")
            self.geco.load_state_dict(loaded.states["geco"])
        self.progress = loaded.progress
        logger.info("resuming from %s (epoch %d, step %d)", loaded.path, self.progress.epoch, self.progress.step)

    def save_checkpoint(self) -> None:
        if self.accelerator.is_main_process:
            save_training_checkpoint(
                self.checkpoints,
                self.unwrapped.trainable_state_dict(),
                {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "split": {"seed": self.split_seed},
                 **({"geco": self.geco.state_dict()} if self.geco is not None else {})},
                self.progress,
            )
        self.accelerator.wait_for_everyone()

    def _kl_for_loss(self, output) -> torch.Tensor:
        """The KL the loss takes: per latent dimension (B, C) under free bits, else per image (B,)."""
        return output.kl_per_dim if self.loss_fn.free_bits > 0 else output.kl

    def _reconstruction_and_kl(self, output, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(reconstruction, the KL term beta multiplies, the mean KL) for `GraphedTrainStep`."""
        kl = self._kl_for_loss(output)
        terms = self.loss_fn(output.logits.float(), mask, kl)
        return terms.reconstruction, self.loss_fn.kl_terms(kl)[0], terms.kl

    # -- the loop ----------------------------------------------------------------------------
    @property
    def scheduled_steps(self) -> int:
        """Optimizer steps of the preset's schedule (epochs x steps an epoch). The warm-ups ramp over
        it, not over ``--max-steps``: a run capped early and resumed further takes the same course
        as one run straight through."""
        return len(self.train_loader) // self.preset.grad_accum * self.preset.epochs

    @property
    def planned_steps(self) -> int:
        """The steps this invocation may reach: the schedule's, capped by ``--max-steps``."""
        steps = self.scheduled_steps
        return steps if self.job.max_steps is None else min(steps, self.job.max_steps)

    def _ramp(self, share: float, step: int) -> float:
        """A warm-up's factor at ``step``: rising linearly from 0 to 1 over the first ``share`` of the
        scheduled steps, 1 after them (and throughout when ``share`` is 0)."""
        warmup = share * self.scheduled_steps
        return 1.0 if warmup <= 0 else min(1.0, step / warmup)

    def beta_at(self, step: int) -> float:
        """beta, ramped linearly from 0 over the first kl_warmup share of the scheduled steps."""
        return self.preset.beta * self._ramp(self.preset.kl_warmup, step)

    def posterior_noise_at(self, step: int) -> float:
        """The share of the posterior's noise z carries at ``step``: ramped linearly from 0 over
        the first posterior_noise_warmup share of the scheduled steps (`posterior_noise_warmup_of`),
        and from 0 again at the start of each of the ``posterior_noise_cycles`` equal parts of them
        (`posterior_noise_cycles_of`; cyclical annealing, Fu et al. 2019)."""
        period = self.scheduled_steps / self.noise_cycles
        cycle = min(self.noise_cycles - 1, int(step // period)) if period > 0 else 0
        return self._ramp(self.noise_warmup, step - cycle * period)

    def _warming_up(self, step: int) -> bool:
        """Whether ``step`` is inside the KL or the posterior-noise warm-up (no patience is spent)."""
        return self.beta_at(step) < self.preset.beta or self.posterior_noise_at(step) < 1.0

    def run(self) -> None:
        preset, progress = self.preset, self.progress
        self.bar = tqdm(total=self.planned_steps, initial=progress.step, desc=MODEL_LABELS[self.job.model],
                        disable=not self.accelerator.is_main_process)
        self.model.train()
        while progress.epoch < preset.epochs and not _done(progress, self.job):
            if not self.run_epoch():
                break  # max_steps reached mid-epoch
            if self.end_epoch():
                break  # early stopping
        self.bar.close()
        self.throughput = self.meter.summary()
        self.save_checkpoint()

    def run_epoch(self) -> bool:
        """Train the rest of the current epoch; False if max_steps ended it early."""
        job, preset, progress, accelerator = self.job, self.preset, self.progress, self.accelerator
        self.train_part.set_epoch(progress.epoch)
        self.train_loader.set_epoch(progress.epoch)
        for batch in accelerator.skip_first_batches(self.train_loader, progress.batches_into_epoch):
            if self.raters_per_image == "all":
                batch = with_every_rater(batch)
            global_batch = progress.epoch * len(self.train_loader) + progress.batches_into_epoch
            rank = accelerator.process_index
            # two generators with the same seed: one for the prompts, one for the latent draws
            generator = generator_for(accelerator.device, job.seed, _TRAIN_STREAM, global_batch, rank)
            latents = generator_for(accelerator.device, job.seed, _TRAIN_STREAM, global_batch, rank)
            self.loss_fn.beta = self.beta_at(progress.step) if self.geco is None else self.geco.beta
            with accelerator.accumulate(self.model):
                mask = batch["mask"]
                union = batch["masks"].amax(1, keepdim=True)
                prompts = make_prompts(prompt_source(preset, mask, batch), preset.prompt, generator, union,
                                       preset.box_jitter)
                if self.graphed is not None:
                    self.graphed.set_beta(self.loss_fn.beta)
                    if self.noise_warmup > 0:
                        self.graphed.set_posterior_noise(self.posterior_noise_at(progress.step))
                    terms = ElboTerms(*self.graphed(batch["image"], prompts, mask, latents))
                else:
                    noise = self.posterior_noise_at(progress.step)  # only UA-SAM with z has a warm-up
                    extra = {} if noise >= 1.0 else {"posterior_noise": noise}
                    output = self.model(batch["image"], prompts, masks=mask, generator=latents, **extra)
                    terms = self.loss_fn(output.logits.float(), mask, self._kl_for_loss(output))
                    accelerator.backward(terms.loss)
                    self.optimizer.step()
                    self.optimizer.zero_grad(set_to_none=True)
            progress.batches_into_epoch += 1
            self.meter.add(batch["image"].shape[0])
            self.running += torch.stack([terms.loss.detach(), terms.kl.detach(), torch.ones_like(terms.kl)])
            if self.geco is not None:
                self.reconstruction += torch.stack([terms.reconstruction.detach().float(), torch.ones_like(terms.kl)])
            if not accelerator.sync_gradients:
                continue
            if self.geco is not None:
                self.update_geco()
            progress.step += 1
            self.bar.update(1)
            checkpoint_now = progress.step % preset.checkpoint_every == 0
            if progress.step % preset.log_every == 0 or checkpoint_now or _done(progress, job):
                self.log_and_check()
            if checkpoint_now:
                with self.meter.paused():
                    self.save_checkpoint()
            if _done(progress, job):
                return False
        return True

    def update_geco(self) -> None:
        """One GECO step from the reconstruction loss of this optimizer step's batches, averaged over
        processes so that every process keeps the same beta (no host-device sync)."""
        reconstruction, count = self.reconstruction
        if self.accelerator.num_processes > 1:
            reconstruction, count = self.accelerator.reduce(self.reconstruction.clone(), "sum")
        self.geco.update(reconstruction / count)
        self.reconstruction.zero_()

    def log_and_check(self) -> None:
        """Log the mean loss since the last log; stop if it is not finite (one sync per log)."""
        loss_sum, kl_sum, count = self.accelerator.reduce(self.running, "sum").tolist()
        self.running.zero_()
        loss, kl = loss_sum / max(count, 1), kl_sum / max(count, 1)
        progress = self.progress
        if not (math.isfinite(loss) and math.isfinite(kl)):
            raise TrainingDiverged(
                f"the loss became {loss} (KL {kl}) by step {progress.step}; training stopped. The last "
                f"good checkpoint is in {self.checkpoints}: resume with --resume and a lower --lr, or "
                f"another --mixed-precision"
            )
        self.bar.set_postfix(loss=f"{loss:.4f}", kl=f"{kl:.3f}", epoch=progress.epoch)
        row = {"step": progress.step, "epoch": progress.epoch, "loss": loss, "kl": kl,
               "beta": float(self.loss_fn.beta), "lr": float(self.scheduler.get_last_lr()[0]), **self.meter.window()}
        self.log.write(row)
        if self.tracker is not None:
            for key in ("loss", "kl", "beta", "lr", "images_per_s", "peak_memory_gib"):
                if row[key] is not None:
                    self.tracker.add_scalar(f"train/{key}", row[key], progress.step)

    def end_epoch(self) -> bool:
        """Validate, step the LR, keep the best weights, checkpoint; True to stop early."""
        with self.meter.paused():
            return self._end_epoch()

    def _end_epoch(self) -> bool:
        progress, preset = self.progress, self.preset
        progress.epoch += 1
        progress.batches_into_epoch = 0
        self.scheduler.step()
        if self.split["validation"]:
            validation = _validate(self.model, self.val_loader, self.val_loss_fn, preset, self.job.seed, self.accelerator)
            val_loss, spread = validation.loss, validation.rater_spread
            improved = progress.best_val_loss is None or val_loss < progress.best_val_loss
        else:  # nothing to validate on: keep the latest weights, never stop early
            val_loss, spread, improved = float("nan"), None, True
        if improved:
            progress.best_val_loss, progress.epochs_without_improvement = val_loss, 0
            progress.best_rater_spread = spread
            if self.accelerator.is_main_process:
                ckpt.save_tensors_atomic(self.job.out / BEST_WEIGHTS, self.unwrapped.trainable_state_dict())
        elif not self._warming_up(progress.step):  # no patience is spent during a warm-up
            progress.epochs_without_improvement += 1
        self.log.write({"step": progress.step, "epoch": progress.epoch, "val_loss": val_loss, "val_rater_spread": spread})
        if self.tracker is not None:
            self.tracker.add_scalar("val/loss", val_loss, progress.step)
            if spread is not None:
                self.tracker.add_scalar("val/rater_spread", spread, progress.step)
        logger.info("epoch %d: validation loss %.4f%s%s", progress.epoch, val_loss, " (best)" if improved else "",
                    "" if spread is None else f"; raters' posterior means {spread:.2g} prior sigmas apart")
        self.save_checkpoint()
        self.stopped_early = progress.epochs_without_improvement >= preset.patience
        if self.stopped_early:
            logger.info("early stopping: no validation improvement in %d epochs", preset.patience)
        return self.stopped_early

    def finish(self, backbone: Path | None, meta: dict[str, Any], copy_backbone: bool) -> None:
        """Restore the best weights, fit the prior, check the samples and write the run folder; warn
        when its latent did not take hold."""
        out, accelerator = self.job.out, self.accelerator
        if self.tracker is not None:
            self.tracker.close()
        if (out / BEST_WEIGHTS).is_file():
            self.unwrapped.load_trainable_state_dict(ckpt.load_tensors(out / BEST_WEIGHTS, device=accelerator.device))
        self.fit_prior()
        self.check_samples()
        idle = idle_latent_message(self.progress.best_rater_spread, sample_share_of(self.sample_diversity))
        if idle is not None and accelerator.is_main_process:
            logger.warning(idle)
        if accelerator.is_main_process:
            recorded = None
            if backbone is not None and copy_backbone:
                shutil.copyfile(backbone, out / run_dir.BACKBONE)
                recorded = run_dir.BACKBONE
            elif backbone is not None:
                recorded = str(Path(backbone).resolve())
            run_dir.save_run(
                out,
                self.unwrapped,
                {
                    **meta,
                    "model": self.job.model,
                    "backbone": recorded,
                    "preset": self.preset.to_dict(),
                    "sam": self.preset.sam,
                    "image_size": self.preset.image_size,
                    "train_decoder": self.preset.train_decoder,
                    "free_bits": self.loss_fn.free_bits,  # the ones it trained with (free_bits_of), not the preset's
                    "raters_per_image": self.raters_per_image,  # likewise (raters_per_image_of)
                    "geco_kappa": None if self.geco is None else self.geco.kappa,  # likewise (geco_kappa_of)
                    "posterior_noise_warmup": self.noise_warmup,  # likewise (posterior_noise_warmup_of)
                    "posterior_noise_cycles": self.noise_cycles,  # likewise (posterior_noise_cycles_of)
                    "data": self.job.data,
                    "dataset_kwargs": self.dataset_kwargs,
                    "seed": self.job.seed,
                    "data_seed": self.job.dataset_seed,
                    "split_seed": self.split_seed,
                    "split": self.split,
                    "progress": dict(self.progress.__dict__),
                    "stopped_early": self.stopped_early,
                    "throughput": self.throughput,
                    "prior_fit": self.prior_fit,
                    "val_sample_diversity": self.sample_diversity,
                },
            )
        accelerator.wait_for_everyone()

    def fit_prior(self) -> None:
        """The prior-fit phase (prior_fit.py) on the restored best weights, when the preset asks
        for it. It is not checkpointed: seeded and short, it reruns identically after --resume.
        Under several processes each runs it alike on the whole training part (no communication)."""
        preset, heads = self.preset, getattr(self.unwrapped, "latent_heads", None)
        if preset.prior_fit_epochs < 1 or heads is None:
            if heads is not None and preset.prior_components > 1:
                logger.warning("prior_components=%d: no mixture prior is fitted without a prior-fit phase "
                               "(prior_fit_epochs=0), so the run samples its Gaussian prior; pass --prior-fit-epochs N "
                               "to fit one, or --prior-components 1 to say so", preset.prior_components)
            return
        validation = Subset(self.train_part, self.val_idx) if self.val_idx else None
        self.prior_fit = fit_prior(
            heads, Subset(self.train_part, self.train_idx), validation, preset.prior_fit_epochs, preset.prior_fit_lr,
            preset.batch_size, self.job.seed, self.accelerator.device, preset.num_workers, log=self.log.write,
        )

    def check_samples(self) -> None:
        """The samples' diversity against the raters' on the validation part (latent_hold.py), with
        the weights and prior the run keeps, for a model with latent heads. Seeded: it repeats
        exactly after --resume. Under several processes the images are split and gathered."""
        preset, heads = self.preset, getattr(self.unwrapped, "latent_heads", None)
        if heads is None or not self.val_idx:
            return
        self.sample_diversity = measure_sample_diversity(
            self.unwrapped, Subset(self.train_part, self.val_idx), preset.ged_samples, preset.prompt, self.job.seed,
            batch_size=preset.batch_size, accelerator=self.accelerator if self.accelerator.num_processes > 1 else None,
        )
        checked = self.sample_diversity
        if checked is not None:
            error = "" if checked["share_se"] is None else f" ± {checked['share_se']:.2f}"
            logger.info("validation: the samples' diversity is %.2f%s of the raters' (%.3f against %.3f, %d samples "
                        "per image, %d images)", checked["share"], error, checked["samples"], checked["raters"],
                        preset.ged_samples, checked["images"])


def _done(progress: Progress, job: TrainJob) -> bool:
    return job.max_steps is not None and progress.step >= job.max_steps
