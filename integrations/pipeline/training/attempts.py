"""Training a run again, with another training seed, while its latent has not taken hold.

Whether a run's latent takes hold (latent_hold.py) is a draw of the whole run: no part of its seed
decides it alone, and a second warm-up of z's noise does not bring a collapsed latent back
(docs/results.md, "The learning rate held to the end, and what in a seed loses the latent" and
"The posterior's noise warmed up twice, and a run trained again"). What does draw again is a run
with another seed. `train_attempts` does that for the user:

    result = train_attempts(job, attempts=3, backbone=weights)

Attempt k trains with the training seed `attempt_seed` (``job.seed`` for k = 1) on the same data
(the data seed stays ``job.dataset_seed``, so the test part is the same for every attempt), the
same train/validation split (the first attempt's: ``split_seed``), and the same preset. The
attempts stop at the first whose latent took hold as latent_hold.py reads it, on validation data
only, as early stopping does: its best epoch's raters' spread reaches ``TAKEOFF_SPREAD`` and its
samples reach ``SAMPLE_SHARE`` of the raters' diversity by more than ``CHECK_MARGIN`` standard
errors of that share. An attempt that holds but lies nearer the line than that (`near_the_line`)
is trained again while attempts remain. Every attempt is checked on the same validation images,
so their shares compare: if none is clear of the line, the run keeps the attempt that came
closest (one that held before one that did not, then the largest share, then the largest spread
where no share was measured). What was not measured (no latent, or no validation image whose
raters disagree) does not count against an attempt: nothing says it was lost.

With ``attempts`` > 1 the output folder reads as any run folder (run_dir.py), with the attempts
beside it:

    OUT/attempts/<k>/      each attempt's complete run folder (checkpoints and train_log.csv too)
    OUT/...                the kept attempt's run files, copied (not its checkpoints)
    OUT/run.json           the kept attempt's, plus "attempts" (seed, spread, samples' share and its
                           standard error, and whether it held, of each, in order)
                           and "kept_attempt"; written last, so a folder without it is unfinished

``--resume`` continues an interrupted attempt, skips the finished ones and copies the kept one.
With ``attempts`` = 1 this is `train` itself and the folder is laid out as always.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from accelerate import PartialState

from uncertainty_adapters import checkpoint as ckpt
from uncertainty_adapters.integrations.pipeline import output_dir, run_dir
from uncertainty_adapters.integrations.pipeline.runtime import LOGGER_NAME
from uncertainty_adapters.integrations.pipeline.training.checkpoints import Progress
from uncertainty_adapters.integrations.pipeline.training import latent_hold
from uncertainty_adapters.integrations.pipeline.training.loop import (
    BEST_WEIGHTS,
    RUN_RECORDS,
    TrainJob,
    TrainResult,
    check_out_dir,
    train,
)
from uncertainty_adapters.integrations.pipeline.training.seeding import derive_seed

logger = logging.getLogger(LOGGER_NAME)

ATTEMPTS_DIR = "attempts"
_ATTEMPT_STREAM = 7  # derive_seed(seed, _ATTEMPT_STREAM, k): attempt k's training seed, apart from other streams
_NOT_COPIED = frozenset({"checkpoints", BEST_WEIGHTS, output_dir.MARKER, ATTEMPTS_DIR})


def attempt_seed(seed: int, attempt: int) -> int:
    """The training seed of attempt ``attempt`` (1-based) of a run started with ``seed``."""
    if attempt < 1:
        raise ValueError(f"attempts are counted from 1, got {attempt}")
    return seed if attempt == 1 else derive_seed(seed, _ATTEMPT_STREAM, attempt)


def holds_attempts(out: Path) -> bool:
    """Whether the run folder ``out`` holds attempts of a run (a non-empty ``out/attempts``)."""
    started = out / ATTEMPTS_DIR
    return started.is_dir() and any(started.iterdir())


def check_attempts(attempts: int) -> None:
    """Raise ValueError unless ``attempts`` >= 1 (checked before anything slow)."""
    if attempts < 1:
        raise ValueError(f"--attempts is how many times a run may be trained and must be >= 1, got {attempts}")


def train_attempts(job: TrainJob, attempts: int = 1, backbone: Path | None = None,
                   meta: dict[str, Any] | None = None, copy_backbone: bool = False) -> TrainResult:
    """Train ``job`` up to ``attempts`` times while its latent has not taken hold (module docstring).

    Returns the kept attempt's result, its ``out`` being ``job.out``. Raises ValueError for
    ``attempts`` < 1, and what `train` raises for an attempt.
    """
    check_attempts(attempts)
    if attempts == 1:
        return train(job, backbone=backbone, meta=meta, copy_backbone=copy_backbone)
    check_out_dir(job.out, job.resume)
    started = job.out / ATTEMPTS_DIR
    has_attempts = holds_attempts(job.out)
    if not job.resume and has_attempts:
        raise FileExistsError(f"{job.out} already holds attempts of a training run ({started}); pass --resume to "
                              f"continue them, --overwrite to delete them and start over, or choose another --out")
    if job.resume and not has_attempts:
        raise FileNotFoundError(f"--resume: {job.out} holds no attempts to resume ({started} is missing or empty); "
                                f"leave out --resume to start, or pass the --out of the run to continue")
    output_dir.claim(job.out, "train", RUN_RECORDS)
    records: list[dict[str, Any]] = []
    results: dict[int, TrainResult] = {}
    for attempt in range(1, attempts + 1):
        folder = job.out / ATTEMPTS_DIR / str(attempt)
        seed = attempt_seed(job.seed, attempt)
        if (folder / run_dir.RUN_CONFIG).is_file():  # finished before a --resume
            results[attempt] = _finished(folder)
        else:
            attempt_job = dataclasses.replace(job, out=folder, seed=seed, data_seed=job.dataset_seed,
                                              split_seed=job.validation_split_seed,
                                              resume=job.resume and _has_checkpoint(folder))
            results[attempt] = train(attempt_job, backbone=backbone, meta=meta, copy_backbone=copy_backbone)
        spread, checked = results[attempt].progress.best_rater_spread, results[attempt].sample_diversity
        share = latent_hold.sample_share_of(checked)
        held = latent_hold.idle_latent_message(spread, share) is None
        records.append({"attempt": attempt, "seed": seed, "best_rater_spread": spread, "sample_share": share,
                        "sample_share_se": None if checked is None else checked.get("share_se"), "held": held})
        clear = held and not latent_hold.near_the_line(checked)
        if clear:
            break
        if attempt < attempts:
            _log_again(records[-1], attempts, attempt_seed(job.seed, attempt + 1))
    # the attempt clear of the line is the last one trained; if none was, the one that came closest
    kept = attempt if clear else max(records, key=_closeness)["attempt"]
    state = PartialState()  # under `accelerate launch` every process trained; one copies
    if state.is_main_process:
        _publish(job.out / ATTEMPTS_DIR / str(kept), job.out, {"attempts": records, "kept_attempt": kept})
    state.wait_for_everyone()
    logger.info("kept attempt %d of %d (seed %d)", kept, len(records), records[kept - 1]["seed"])
    return dataclasses.replace(results[kept], out=job.out)


def _figure(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}"


def _log_again(record: dict[str, Any], attempts: int, next_seed: int) -> None:
    """The warning that the attempt of ``record`` (not clear of the line) is trained again."""
    attempt, share = record["attempt"], record["sample_share"]
    if not record["held"]:
        logger.warning("attempt %d of %d: the latent did not take hold (spread %s, samples' share of the raters' "
                       "diversity %s); training again with seed %d", attempt, attempts,
                       _figure(record["best_rater_spread"]), _figure(share), next_seed)
    else:  # held, but near_the_line
        logger.warning("attempt %d of %d: the samples' share of the raters' diversity, %.2f, lies above the line "
                       "(%g) by less than %g standard error (%.2f): the validation images cannot tell it from a "
                       "latent that did not take hold; training again with seed %d", attempt, attempts, share,
                       latent_hold.SAMPLE_SHARE, latent_hold.CHECK_MARGIN, record["sample_share_se"], next_seed)


def _closeness(record: dict[str, Any]) -> tuple[bool, float, float]:
    """How close an attempt not clear of the line came to it: whether it held first, then its
    samples' share (what the user gets), then its spread; what was not measured ranks last."""
    unmeasured = float("-inf")
    share, spread = record["sample_share"], record["best_rater_spread"]
    return (record["held"], unmeasured if share is None else share, unmeasured if spread is None else spread)


def _has_checkpoint(folder: Path) -> bool:
    """Whether an unfinished attempt got as far as a checkpoint (else it starts again)."""
    checkpoints = folder / "checkpoints"
    return checkpoints.is_dir() and any(checkpoints.iterdir())


def _finished(folder: Path) -> TrainResult:
    """A finished attempt's result, read back from its run.json (this session trained nothing)."""
    config = run_dir.read_run_config(folder)
    return TrainResult(folder, Progress(**config["progress"]), bool(config.get("stopped_early")), 0.0,
                       sample_diversity=config.get("val_sample_diversity"))  # absent: recorded before the check


def _publish(source: Path, out: Path, facts: dict[str, Any]) -> None:
    """Copy the run files of ``source`` into ``out`` (each file atomically), then its run.json
    with ``facts`` added, last."""
    skipped = _NOT_COPIED | {run_dir.RUN_CONFIG}
    shutil.copytree(source, out, dirs_exist_ok=True,
                    ignore=lambda folder, names: [n for n in names if Path(folder) == source and n in skipped],
                    copy_function=lambda src, dst: ckpt.atomic_write_bytes(dst, Path(src).read_bytes()))
    ckpt.write_json_atomic(out / run_dir.RUN_CONFIG, {**run_dir.read_run_config(source), **facts})
