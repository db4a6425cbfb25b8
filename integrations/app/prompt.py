"""The prompt that the page builds click by click: foreground and background points and at most
one box, in pixels of the image as read (x = column, y = row; the frame of `ua-sam predict`).

It travels between the page and the server as JSON text, which is also what the app's API
takes (``{"points": [[x, y], ...], "labels": [1, 0, ...], "box": [x0, y0, x1, y1] or null}``),
and it is written into summary.json in the same form `ua-sam predict` writes: a single
foreground point or a box alone keep predict's ``{"type": "point", ...}`` / ``{"type": "box", ...}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from uncertainty_adapters.integrations.sam.predictor import check_inside

__all__ = ["Prompt", "PromptError"]

DRAG_PIXELS = 4.0  # a press and release farther apart than this (pixels) draw a box


class PromptError(ValueError):
    """The prompt text or a click cannot be used; the message says why and what to do."""


@dataclass
class Prompt:
    """Points (N, 2) with labels (N,) 1 foreground / 0 background, and an optional box."""

    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: list[float] | None = None

    @property
    def is_empty(self) -> bool:
        return not self.points and self.box is None

    @classmethod
    def from_json(cls, text: str | None) -> "Prompt":
        """Parse the prompt text of the page or the API; empty text is the empty prompt.

        Raises:
            PromptError: not JSON, or fields of the wrong shape.
        """
        if not text or not text.strip():
            return cls()
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise PromptError(f"the prompt is not JSON ({error}); expected e.g. "
                              '{"points": [[40, 30]], "labels": [1], "box": null}') from None
        if not isinstance(data, dict) or set(data) - {"points", "labels", "box"}:
            raise PromptError('the prompt must be an object with "points", "labels" and "box", '
                              f"got {text[:80]!r}")
        points = data.get("points") or []
        labels = data.get("labels")
        labels = [1] * len(points) if labels is None else labels
        box = data.get("box")
        try:
            points = [[float(x), float(y)] for x, y in points]
            labels = [int(label) for label in labels]
            box = None if box is None else [float(v) for v in box]
        except (TypeError, ValueError):
            raise PromptError(f"points must be [[x, y], ...], labels [1 or 0, ...] and box "
                              f"[x0, y0, x1, y1] or null, got {text[:120]!r}") from None
        if len(labels) != len(points) or any(label not in (0, 1) for label in labels):
            raise PromptError(f"give one label per point, 1 (foreground) or 0 (background): "
                              f"{len(points)} point(s), labels {labels}")
        if box is not None and (len(box) != 4 or box[0] > box[2] or box[1] > box[3]):
            raise PromptError(f"a box is [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1, got {box}")
        return cls(points, labels, box)

    def to_json(self) -> str:
        return json.dumps({"points": self.points, "labels": self.labels, "box": self.box})

    def check_inside(self, size: tuple[int, int]) -> None:
        """Raise ValueError unless every point and box corner lies on an image of ``size`` (H, W)."""
        if self.points:
            check_inside(self.points, size, "point")
        if self.box is not None:
            check_inside([self.box[:2], self.box[2:]], size, "box corner")

    def add_click(self, start: tuple[float, float] | None, end: tuple[float, float], label: int,
                  size: tuple[int, int], drag_pixels: float = DRAG_PIXELS) -> "Prompt":
        """The prompt after one press-and-release on the image (``size`` = (H, W)).

        A release farther than ``drag_pixels`` from the press (both in image pixels) draws the
        box between them, replacing any earlier box; otherwise a point with ``label`` is added
        at the release. Coordinates are clipped to the image.
        """
        height, width = size

        def clip(x: float, y: float) -> list[float]:
            return [float(min(max(round(x), 0), width - 1)), float(min(max(round(y), 0), height - 1))]

        x1, y1 = clip(*end)
        if start is not None:
            x0, y0 = clip(*start)
            if max(abs(x1 - x0), abs(y1 - y0)) > drag_pixels:
                box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
                return Prompt([list(p) for p in self.points], list(self.labels), box)
        return Prompt([list(p) for p in self.points] + [[x1, y1]], list(self.labels) + [int(label)], self.box)

    def undo(self) -> "Prompt":
        """The prompt without its last point (or, with no point left, without its box)."""
        if self.points:
            return Prompt([list(p) for p in self.points[:-1]], list(self.labels[:-1]), self.box)
        return Prompt()

    def predictor_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `UncertaintySamPredictor.predict`."""
        return {
            "point_coords": self.points or None,
            "point_labels": self.labels or None,
            "box": self.box,
        }

    def summary(self) -> dict[str, Any]:
        """The prompt as summary.json records it (predict's form where predict could take it)."""
        if self.box is not None and not self.points:
            return {"type": "box", "box": list(self.box)}
        if len(self.points) == 1 and self.labels == [1] and self.box is None:
            return {"type": "point", "point": list(self.points[0]), "label": 1}
        record: dict[str, Any] = {"type": "points", "points": [list(p) for p in self.points],
                                  "labels": list(self.labels)}
        if self.box is not None:
            record["box"] = list(self.box)
        return record

    def predict_arguments(self) -> list[str] | None:
        """The ``ua-sam predict`` prompt option that gives the same prompt, or None when predict
        cannot express it (several points, a background point, points with a box)."""
        record = self.summary()
        if record["type"] == "box":
            return ["--box", ",".join(f"{v:g}" for v in record["box"])]
        if record["type"] == "point":
            return ["--point", ",".join(f"{v:g}" for v in record["point"])]
        return None

    def describe(self) -> str:
        """One line for the page: how many points of each kind, and the box."""
        if self.is_empty:
            return "no prompt yet"
        positive = sum(self.labels)
        parts = []
        if positive:
            parts.append(f"{positive} foreground point{'s' if positive != 1 else ''}")
        if len(self.labels) - positive:
            negative = len(self.labels) - positive
            parts.append(f"{negative} background point{'s' if negative != 1 else ''}")
        if self.box is not None:
            parts.append("box (" + ", ".join(f"{v:g}" for v in self.box) + ")")
        return ", ".join(parts)
