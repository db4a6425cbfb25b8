"""Whether a trained run's latent has taken hold, and the warning a run gets when it has not.

The posterior Q(z|X,Y) takes hold when it tells the raters of an image apart: the spread of
the raters' posterior means (`ua.LatentHeads.rater_spread`, in prior sigmas, averaged over the
validation images whose raters disagree; train_log.csv's ``val_rater_spread``). A run keeps the
weights of its best validation epoch, so the spread of that epoch is the one its samples have.

Below `TAKEOFF_SPREAD` the latent has not taken hold: the samples then barely differ, whatever the
raters do. The threshold is the one docs/results.md uses for a takeoff ("When the latent takes
off"), and it separates the recorded runs (docs/results.md, "A run whose latent did not take hold
says so").

Example:
    >>> idle_latent_message(0.61) is None
    True
    >>> idle_latent_message(0.02).startswith("the latent has not taken hold")
    True
"""

from __future__ import annotations

#: Raters' posterior means at least this many prior sigmas apart: the latent has taken hold.
TAKEOFF_SPREAD = 0.25


def idle_latent_message(best_rater_spread: float | None) -> str | None:
    """The warning for a run whose best epoch's raters' spread is ``best_rater_spread`` (prior
    sigmas), or None when the latent took hold or nothing was measured (no latent, no validation
    part, or no validation image whose raters disagree)."""
    if best_rater_spread is None or best_rater_spread >= TAKEOFF_SPREAD:
        return None
    return (
        f"the latent has not taken hold: at the best epoch the raters' posterior means were "
        f"{best_rater_spread:.2f} prior sigmas apart (a latent that takes hold reaches {TAKEOFF_SPREAD}), so the "
        f"samples will barely differ where the raters do. Another --seed (--attempts N trains again by itself) or "
        f"more --epochs may let it take hold (a run to use, not a benchmark's: there the lost seed counts); "
        f"train_log.csv's val_rater_spread shows, epoch by epoch, whether it does"
    )
