"""`ua-sam reproduce`: the paper's Tables 1 and 2 (and Fig. 2, Fig. 3a) at a scale you can run.

Every row is trained by `training.loop.train` and scored by `evaluation.scoring.evaluate` with the same K
samples (the majority-vote Dice), N samples (GED, HM-IoU, diversity, S_NCC, soft Dice, ECE),
prompts and metrics, once per seed:

    Table 1   Adapter-SAM (interaction "none": deterministic, its K samples are identical),
              an ensemble of M Adapter-SAMs (hypothesis k = member k mod M), the Probabilistic
              U-Net (from scratch, no prompts), UA-SAM (CMSM)
    Table 2   the ways of feeding z: "sample" (z only), "position" (p only), "concat" (WMS),
              "cmsm" (the method)
    Fig. 3a   UA-SAM (CMSM) at each of ``latent_dims`` (optional)

A trained model serves every row that needs it: UA-SAM (CMSM) at the preset's latent dimension
is Table 1's last row, Table 2's last row and a point of the latent sweep; the ensemble's first
member is the Adapter-SAM run of the same seed, its other members are Adapter-SAMs trained from
other model seeds on the same data (seed ``s + 1000 m`` for member m, data seed ``s``). All
UA-SAM rows share one frozen backbone: the cached demo backbone (copied once to DIR), or
``--sam-checkpoint``.

The output folder's layout (every path and file name) is `layout.ReproductionLayout`.

The run resumes at row granularity: a scored row (evaluation.json) is read back, not recomputed;
a trained but unscored run is only evaluated (so is a row scored at another N, or before the
metrics it lacks existed: changing ``--ged-samples`` re-scores every row without retraining); a run interrupted mid-training continues from its
last checkpoint. The tables are rewritten after every row, so a partial run already has them.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.integrations.data import build_dataset, dataset_kwargs_for
from uncertainty_adapters.integrations.pipeline import output_dir, run_dir
from uncertainty_adapters.integrations.pipeline.evaluation.scoring import METRIC_KEYS, evaluate, rater_diversity
from uncertainty_adapters.integrations.pipeline.models import AdapterEnsemble
from uncertainty_adapters.integrations.pipeline.presets import Preset, with_legacy_values
from uncertainty_adapters.integrations.pipeline.reproduce.layout import SETTINGS_FILE, ReproductionLayout
from uncertainty_adapters.integrations.pipeline.reproduce.report import (
    ComparisonCases,
    Invocation,
    ReproductionRecords,
    RowRecord,
    TableRecord,
    write_outputs,
)
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME, choose_device
from uncertainty_adapters.integrations.pipeline.training.checkpoints import LATEST
from uncertainty_adapters.integrations.pipeline.training.loop import LOG_CSV, TrainJob, train
from uncertainty_adapters.integrations.sam import read_sam_checkpoint
from uncertainty_adapters.integrations.sam.hf_checkpoint import checkpoint_sha256, is_hf_sam_folder

logger = logging.getLogger(LOGGER_NAME)

MEMBER_SEED_STRIDE = 1000
EVAL_BATCH = 16


# -- what is trained and what is scored -------------------------------------------------------------
@dataclass(frozen=True)
class RunSpec:
    """One trained model (per seed): its kind, how z enters, the latent dimension, and, for
    extra ensemble members, the member number (0: the row's own run)."""

    model: str
    interaction: str = "none"
    latent_dim: int = 6
    member: int = 0

    @property
    def uses_latent(self) -> bool:
        return self.model == "prob-unet" or self.interaction in ("sample", "concat", "cmsm")

    @property
    def name(self) -> str:
        if self.model == "prob-unet":
            base = f"prob-unet-c{self.latent_dim}"
        elif self.interaction == "none":
            base = "adapter-sam"
        elif self.uses_latent:
            base = f"ua-sam-{self.interaction}-c{self.latent_dim}"
        else:
            base = f"ua-sam-{self.interaction}"
        return f"{base}-member{self.member}" if self.member else base

    def preset_for(self, preset: Preset) -> Preset:
        return preset.replace(interaction=self.interaction, latent_dim=self.latent_dim)

    def model_seed(self, seed: int) -> int:
        return seed + MEMBER_SEED_STRIDE * self.member


@dataclass(frozen=True)
class Row:
    """One line of a table: a method, the runs it is made of (one, or the ensemble's M), and the
    paper's Dice for it on LIDC-IDRI and REFUGE2 (None where the paper has no such row)."""

    key: str
    method: str
    runs: tuple[RunSpec, ...]
    paper_dice: tuple[float, float] | None = None

    @property
    def evaluation_name(self) -> str:
        return self.runs[0].name if len(self.runs) == 1 else f"ensemble-m{len(self.runs)}"


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    rows: tuple[Row, ...]


def plan_tables(latent_dim: int, members: int, latent_dims: tuple[int, ...] = ()) -> list[Table]:
    """Tables 1 and 2 (and the latent sweep when ``latent_dims`` is given) for a preset whose
    UA-SAM has latent dimension ``latent_dim``."""
    if members < 1:
        raise ValueError(f"the ensemble needs at least one member, got {members}")
    none = RunSpec("ua-sam", "none", latent_dim)
    cmsm = Row("ua-sam", "UA-SAM (CMSM)", (RunSpec("ua-sam", "cmsm", latent_dim),), (0.887, 0.856))
    table1 = Table("table1", "Table 1: UA-SAM against the baselines", (
        Row("adapter-sam", "Adapter-SAM (deterministic)", (none,), (0.861, 0.823)),
        Row("ensemble", f"Ensemble of {members} Adapter-SAMs",
            tuple(RunSpec("ua-sam", "none", latent_dim, member=m) for m in range(members)), (0.557, 0.744)),
        Row("prob-unet", "Probabilistic U-Net", (RunSpec("prob-unet", "none", latent_dim),), (0.602, 0.682)),
        cmsm,
    ))
    table2 = Table("table2", "Table 2: how the sample z enters the adapters (ablation)", (
        Row("sample", "z only (sample)", (RunSpec("ua-sam", "sample", latent_dim),), (0.862, 0.824)),
        Row("position", "p only (position)", (RunSpec("ua-sam", "position", latent_dim),), (0.866, 0.827)),
        Row("concat", "z and p, WMS (concat)", (RunSpec("ua-sam", "concat", latent_dim),), (0.868, 0.828)),
        Row("cmsm", "z and p, CMSM (cmsm)", cmsm.runs, cmsm.paper_dice),
    ))
    tables = [table1, table2]
    if latent_dims:
        tables.append(Table("latent_dims", "Latent dimension sweep (Fig. 3a): UA-SAM (CMSM)", tuple(
            Row(f"latent-{c}", f"UA-SAM (CMSM), C = {c}", (RunSpec("ua-sam", "cmsm", c),)) for c in latent_dims
        )))
    return tables


# -- the job --------------------------------------------------------------------------------------
@dataclass
class ReproduceJob:
    """A reproduction: the preset (budget and overrides applied), the data and where to write.

    Attributes:
        seeds, first_seed: the seeds ``first_seed .. first_seed + seeds - 1`` (`seed_list`). The
            seeds are not settings: a folder holds any seeds, each invocation tabulates its own.
        backbone: frozen SAM weights for the UA-SAM rows (None: random, smoke runs only).
        backbone_facts: how the backbone was obtained (recorded in every run.json).
        max_steps: cap on optimizer steps per training run (smoke runs).
        figure_cases: test cases drawn in fig2.png.
        rows: keys of the rows to compute (e.g. "ua-sam", "prob-unet"); empty: every row.
        description: the budget and overrides, in words, for the report.
        data_options: dataset keyword arguments from the command line (`data_options`, e.g. the
            LIDC split), given to every row's training and scoring alike.
    """

    preset: Preset
    data: str
    out: Path
    seeds: int = 3
    first_seed: int = 0
    members: int = 4
    latent_dims: tuple[int, ...] = ()
    backbone: Path | None = None
    backbone_facts: dict[str, Any] = field(default_factory=dict)
    max_steps: int | None = None
    cpu: bool = False
    figure_cases: int = 4
    rows: tuple[str, ...] = ()
    command: str = ""
    description: str = ""
    data_options: dict[str, Any] = field(default_factory=dict)

    @property
    def seed_list(self) -> list[int]:
        """The seeds this invocation trains and tabulates: first_seed .. first_seed + seeds - 1."""
        return list(range(self.first_seed, self.first_seed + self.seeds))

    @property
    def samples(self) -> int:
        return self.preset.eval_samples

    @property
    def ged_samples(self) -> int:
        return self.preset.ged_samples

    def settings(self) -> dict[str, Any]:
        """What shapes the trained runs: a rerun on the same DIR must match it to reuse rows. The
        evaluation's N (``ged_samples``) is left out: a rerun at another N re-scores the rows."""
        preset = self.preset.to_dict()
        preset.pop("ged_samples")
        settings = {
            "preset": preset,
            "data": self.data,
            "max_steps": self.max_steps,
            "backbone_sha256": checkpoint_sha256(self.backbone) if self.backbone is not None else None,
        }
        if self.data_options:  # absent when none, as in reproductions recorded before the option
            settings["data_options"] = self.data_options
        return json.loads(json.dumps(settings))  # as read back from disk (tuples become lists)


def check_settings(job: ReproduceJob) -> None:
    """Record the settings in DIR/reproduce.json, or refuse when DIR holds another reproduction."""
    path = ReproductionLayout(job.out).settings
    settings = job.settings()
    if path.is_file():
        recorded = ckpt.read_json(path)
        recorded["preset"] = with_legacy_values(recorded.get("preset", {}))
        changed = _differences(recorded, settings)
        if changed:
            raise FileExistsError(
                f"{job.out} holds a reproduction with other settings ({'; '.join(changed)}), "
                f"so its rows cannot be reused; choose another --out, or delete {job.out} to start over"
            )
        return
    output_dir.claim(job.out, "reproduce", (SETTINGS_FILE,))
    ckpt.write_json_atomic(path, settings)


def _differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """'name: old -> new' for every setting that differs (nested dicts by dotted name)."""
    changed = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            changed += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            changed.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return changed


class Reproduction:
    """Trains, scores and tabulates the rows of a `ReproduceJob`, reusing what DIR already holds."""

    def __init__(self, job: ReproduceJob) -> None:
        self.job = job
        self.layout = ReproductionLayout(job.out)
        self.device = choose_device(job.cpu)
        self.tables = plan_tables(job.preset.latent_dim, job.members, job.latent_dims)
        self.selected = self._select(job.rows)
        self.dataset_kwargs = dataset_kwargs_for(job.preset, job.data, job.data_options)
        self.backbone = self._place_backbone()

    def _place_backbone(self) -> Path | None:
        """A small backbone file (the demo's) is copied into DIR once, as safetensors, so the folder
        stands alone; a Hugging Face folder is used where it is."""
        job = self.job
        if job.backbone is None or job.preset.sam != "demo" or is_hf_sam_folder(job.backbone):
            return job.backbone
        target = self.layout.backbone
        if not target.is_file():
            if Path(job.backbone).suffix == ".safetensors":
                shutil.copyfile(job.backbone, target)
            else:
                ckpt.save_tensors_atomic(target, read_sam_checkpoint(job.backbone))
        return target.resolve()

    # -- rows ------------------------------------------------------------------------------------
    def _select(self, keys: tuple[str, ...]) -> set[str]:
        """Evaluation names of the rows named by ``keys`` (all rows when empty)."""
        every = [row for table in self.tables for row in table.rows]
        unknown = sorted(set(keys) - {row.key for row in every})
        if unknown:
            raise ValueError(f"unknown row(s) {', '.join(unknown)}; rows: {', '.join(dict.fromkeys(r.key for r in every))}")
        return {row.evaluation_name for row in every if not keys or row.key in keys}

    def rows(self) -> list[Row]:
        """Every distinct selected evaluation, in table order (a shared row once)."""
        seen: dict[str, Row] = {}
        for table in self.tables:
            for row in table.rows:
                if row.evaluation_name in self.selected:
                    seen.setdefault(row.evaluation_name, row)
        return list(seen.values())

    def is_scored(self, row: Row, seed: int) -> bool:
        """Whether the row's evaluation at ``seed`` exists, at this job's N, with every metric."""
        path = self.layout.evaluation(row.evaluation_name, seed)
        if not path.is_file():
            return False
        record = ckpt.read_json(path)
        return record.get("ged_samples") == self.job.ged_samples and all(key in record for key in METRIC_KEYS)

    def ensure_trained(self, spec: RunSpec, seed: int) -> Path:
        """The run folder of ``spec`` at ``seed``, training (or finishing) it if needed."""
        job, folder = self.job, self.layout.run(spec.name, seed)
        if (folder / run_dir.RUN_CONFIG).is_file():
            return folder
        resume = (folder / "checkpoints" / LATEST).is_file()
        if folder.exists() and not resume:  # interrupted before its first checkpoint: nothing to keep
            output_dir.remove(folder, (LOG_CSV,), option="reproduce")
        logger.info("training %s, seed %d%s", spec.name, seed, " (resuming)" if resume else "")
        train_job = TrainJob(
            preset=spec.preset_for(job.preset), data=job.data, out=folder, seed=spec.model_seed(seed),
            data_seed=seed, resume=resume, max_steps=job.max_steps, cpu=job.cpu, model=spec.model,
            dataset_kwargs=job.data_options,
        )
        backbone = None if spec.model == "prob-unet" else self.backbone
        meta = {"backbone_source": job.backbone_facts if backbone is not None else "none (trained from scratch)",
                "command": job.command, "reproduce": {"run": spec.name, "seed": seed}}
        result = train(train_job, backbone=backbone, meta=meta)
        ckpt.write_json_atomic(self.layout.train_time(spec.name, seed), {
            "seconds": round(result.seconds, 2), "steps": result.progress.step, "epochs": result.progress.epoch,
            "stopped_early": result.stopped_early, "resumed": resume,
        })
        logger.info("trained %s, seed %d: %d steps in %.0f s", spec.name, seed, result.progress.step, result.seconds)
        return folder

    def score(self, row: Row, seed: int) -> dict[str, Any]:
        """The row's evaluation.json at ``seed``, training and evaluating what is missing."""
        folder = self.layout.run(row.evaluation_name, seed)
        path = self.layout.evaluation(row.evaluation_name, seed)
        if self.is_scored(row, seed):
            return ckpt.read_json(path)
        job = self.job
        run_folders = [self.ensure_trained(spec, seed) for spec in row.runs]
        models = [run_dir.load_run(f, device=self.device)[0] for f in run_folders]
        model = models[0] if len(models) == 1 else AdapterEnsemble(models).eval()
        test = build_dataset(job.data, job.preset.image_size, split="test", seed=seed, **self.dataset_kwargs)
        started = time.time()
        result = evaluate(model, test, num_samples=job.samples, batch_size=EVAL_BATCH, prompt=job.preset.prompt,
                          seed=seed, keep_examples=job.figure_cases, ged_samples=job.ged_samples)
        timings = [ckpt.read_json(self.layout.train_time(spec.name, seed)) for spec in row.runs]
        record = {
            **result.summary(),
            "row": row.key,
            "method": row.method,
            "runs": [spec.name for spec in row.runs],
            "seed": seed,
            "trainable_parameters": int(model.get_nb_trainable_parameters()[0]),
            "train_seconds": round(sum(t["seconds"] for t in timings), 2),
            "train_steps": int(sum(t["steps"] for t in timings)),
            "stopped_early": [bool(t["stopped_early"]) for t in timings],
            "eval_seconds": round(time.time() - started, 2),
            "case_ids": result.case_ids[: job.figure_cases],
            "per_image": {key: [None if math.isnan(v) else round(v, 6) for v in values.tolist()]
                          for key, values in result.per_image.items()},
        }
        folder.mkdir(parents=True, exist_ok=True)
        _save_examples(self.layout.examples(row.evaluation_name, seed), result.examples)
        ckpt.write_json_atomic(path, record)
        logger.info("%s, seed %d: dice %.3f, GED %.3f, HM-IoU %.3f, diversity %.3f, S_NCC %s, soft Dice %.3f",
                    row.method, seed, record["dice"], record["ged"], record["hm_iou"], record["diversity"],
                    "undefined" if record["s_ncc"] is None else f"{record['s_ncc']:.3f}", record["soft_dice"])
        return record

    def rater_diversity(self, seed: int) -> float:
        """Mean pairwise (1 - IoU) among the raters of the test part: the diversity to aim for."""
        path = self.layout.raters(seed)
        if path.is_file():
            return float(ckpt.read_json(path)["diversity"])
        test = build_dataset(self.job.data, self.job.preset.image_size, split="test", seed=seed, **self.dataset_kwargs)
        value = rater_diversity(test)
        path.parent.mkdir(parents=True, exist_ok=True)
        ckpt.write_json_atomic(path, {"diversity": value, "num_images": len(test)})
        return value

    def examples(self, row: Row, seed: int) -> dict[str, torch.Tensor]:
        return ckpt.load_tensors(self.layout.examples(row.evaluation_name, seed))

    # -- what the outputs are written from ---------------------------------------------------------
    def records(self, figures: bool) -> ReproductionRecords:
        """The folder's scored rows, rater diversities and timings as plain records; with
        ``figures``, also the cases of fig2.png (when Table 1 is scored at the first seed)."""
        job, layout = self.job, self.layout
        tables = [
            TableRecord(table.key, table.title, tuple(
                RowRecord(row.key, row.method, row.evaluation_name, tuple(spec.name for spec in row.runs),
                          row.paper_dice)
                for row in table.rows))
            for table in self.tables
        ]
        evaluations = {
            row.evaluation_name: [ckpt.read_json(layout.evaluation(row.evaluation_name, seed))
                                  for seed in job.seed_list if self.is_scored(row, seed)]
            for row in self.rows()
        }
        raters = [float(ckpt.read_json(path)["diversity"])
                  for path in (layout.raters(s) for s in job.seed_list) if path.is_file()]
        compute = sum(float(ckpt.read_json(path)["seconds"]) for path in layout.train_times())
        compute += sum(float(ckpt.read_json(path)["eval_seconds"]) for path in layout.evaluations())
        settings = {
            "command": job.command, "description": job.description, "data": job.data,
            "preset": job.preset.to_dict(), "seeds": job.seed_list, "samples": job.samples,
            "ged_samples": job.ged_samples, "ensemble_members": job.members, "latent_dims": list(job.latent_dims),
            "backbone": job.backbone_facts, "rows": tuple(job.rows), "figure_cases": job.figure_cases,
        }
        comparison = self._comparison_cases(evaluations) if figures else None
        return ReproductionRecords(settings, tables, evaluations, raters, compute, comparison)

    def _comparison_cases(self, evaluations: dict[str, list[dict[str, Any]]]) -> ComparisonCases | None:
        """fig2.png's cases: Table 1's rows at the first seed on the first test cases, or None."""
        job = self.job
        seed = job.seed_list[0]
        table1 = next(t for t in self.tables if t.key == "table1")
        if job.figure_cases <= 0 or not all(evaluations.get(row.evaluation_name) and self.is_scored(row, seed)
                                            for row in table1.rows):
            return None
        examples = [(row.method, self.examples(row, seed)) for row in table1.rows]
        count = min(job.figure_cases, *(e["probabilities"].shape[0] for _, e in examples))
        points = examples[-1][1].get("points")
        test = build_dataset(job.data, job.preset.image_size, split="test", seed=seed, **self.dataset_kwargs)
        items = [test[i] for i in range(count)]
        return ComparisonCases(
            images=torch.stack([item["image"] for item in items]),
            raters=torch.stack([item["masks"] for item in items]),
            methods=tuple((name, e["probabilities"][:count].float()) for name, e in examples),
            points=None if points is None else points[:count],
            case_ids=tuple(item["case_id"] for item in items),
        )


def _save_examples(path: Path, examples: list[dict[str, Any]]) -> None:
    """The first cases' K probabilities (float16) and prompt points, for the comparison figure."""
    if not examples:
        return
    tensors = {"probabilities": torch.stack([e["probabilities"] for e in examples]).half().contiguous()}
    prompts = [e["prompts"] for e in examples]
    if all(p.points is not None for p in prompts):
        # Cases may have different numbers of points ('component-points'): pad to the most with
        # label -1, and give every padding point NaN coordinates so that figures draw nothing.
        most = max(p.points.shape[1] for p in prompts)
        points = torch.full((len(prompts), most, 2), float("nan"))
        labels = torch.full((len(prompts), most), -1.0)
        for row, p in enumerate(prompts):
            real = p.labels[0] != -1
            points[row, : p.points.shape[1]] = torch.where(real[:, None], p.points[0].float(), float("nan"))
            labels[row, : p.labels.shape[1]] = p.labels[0].float()
        tensors["points"], tensors["labels"] = points, labels
    save_file(tensors, str(path))



def run_reproduction(job: ReproduceJob, report: Path | None = None, section: str = "results") -> dict[str, Any]:
    """Train and score every row for every seed (reusing what DIR holds), then write the tables,
    results.json, the figures and, when ``report`` is given, the Markdown report there (the
    block named ``section``: one report file can hold several reproductions).

    Returns:
        The content of results.json.
    """
    invocation = Invocation.start()
    check_settings(job)
    reproduction = Reproduction(job)
    rows = reproduction.rows()
    pending = [(seed, row) for seed in job.seed_list for row in rows if not reproduction.is_scored(row, seed)]
    logger.info("%d rows x %d seeds: %d to compute, %d already in %s", len(rows), job.seeds, len(pending),
                len(rows) * job.seeds - len(pending), job.out)
    for number, (seed, row) in enumerate(pending, start=1):
        logger.info("[%d/%d] %s, seed %d (%.0f s so far)", number, len(pending), row.method, seed,
                    invocation.elapsed())
        reproduction.rater_diversity(seed)
        reproduction.score(row, seed)
        write_outputs(reproduction.records(figures=False), reproduction.layout, invocation, figures=False)
        left = len(pending) - number
        if left:
            logger.info("%d row evaluations left; at this pace about %.0f min more", left,
                        invocation.elapsed() / number * left / 60)
    for seed in job.seed_list:
        reproduction.rater_diversity(seed)
    invocation.rows_computed = len(pending)
    return write_outputs(reproduction.records(figures=True), reproduction.layout, invocation, figures=True,
                         report=report, section=section)
