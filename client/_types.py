"""What the client returns: ``Prediction`` for one input, ``BatchResult`` for many."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, overload

__all__ = ["BatchResult", "Explanation", "Label", "Prediction"]


class Label(NamedTuple):
    """One class of a prediction: its name, its index in the model's output, its score."""

    label: str
    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the class index
    score: float

    def __repr__(self) -> str:
        return f"{self.label!r}: {self.score:.4g}"


@dataclass(frozen=True)
class Prediction:
    """The answer for one input.

    Classifiers fill ``label``, ``score``, ``index`` (the best class) and ``top_k`` (best first);
    ``tensor`` models fill ``outputs`` (a numpy array: the model's first output for this input).
    """

    label: str | None
    score: float | None
    top_k: list[Label] = field(default_factory=list)
    index: int | None = None
    outputs: Any = None
    model: str | None = None
    version: str | None = None
    request_id: str | None = None

    @classmethod
    def from_scores(
        cls,
        ranked: Sequence[dict[str, Any]],
        *,
        model: str | None,
        version: str | None,
        request_id: str | None,
    ) -> Prediction:
        """From the API's ``[{"label", "index", "score"}, ...]`` (best first)."""
        top = [Label(str(r["label"]), int(r["index"]), float(r["score"])) for r in ranked]
        best = top[0] if top else None
        return cls(
            label=best.label if best else None,
            score=best.score if best else None,
            index=best.index if best else None,
            top_k=top,
            model=model,
            version=version,
            request_id=request_id,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what ``onnxfn predict --json`` prints)."""
        out: dict[str, Any] = {"model": self.model, "version": self.version, "request_id": self.request_id}
        if self.outputs is not None:
            out["outputs"] = self.outputs.tolist() if hasattr(self.outputs, "tolist") else self.outputs
        else:
            out.update(
                label=self.label,
                score=self.score,
                index=self.index,
                top_k=[{"label": t.label, "index": t.index, "score": t.score} for t in self.top_k],
            )
        return out

    def __repr__(self) -> str:
        where = f", model={self.model!r}" if self.model else ""
        if self.outputs is not None:
            shape = getattr(self.outputs, "shape", None)
            return f"Prediction(outputs=<array shape={list(shape) if shape is not None else '?'}>{where})"
        shown = ", ".join(repr(t) for t in self.top_k[:3])
        more = ", …" if len(self.top_k) > 3 else ""
        score = f"{self.score:.4f}" if self.score is not None else "None"
        return f"Prediction(label={self.label!r}, score={score}, top_k=[{shown}{more}]{where})"


class BatchResult(Sequence["Prediction | BaseException"]):
    """Results of ``predict_batch`` in input order: a ``Prediction`` per item, or (with
    ``return_exceptions=True``) the exception that item raised."""

    def __init__(self, items: list[Prediction | BaseException], *, requests: int = 0, elapsed: float = 0.0):
        self.items = items
        self.requests = requests
        self.elapsed = elapsed

    @overload
    def __getitem__(self, index: int) -> Prediction | BaseException: ...
    @overload
    def __getitem__(self, index: slice) -> list[Prediction | BaseException]: ...
    def __getitem__(self, index: int | slice) -> Any:
        return self.items[index]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Prediction | BaseException]:
        return iter(self.items)

    @property
    def errors(self) -> dict[int, BaseException]:
        """Index → exception, for the items that failed."""
        return {i: x for i, x in enumerate(self.items) if isinstance(x, BaseException)}

    @property
    def predictions(self) -> list[Prediction | None]:
        """One entry per item: its Prediction, or None where it failed."""
        return [x if isinstance(x, Prediction) else None for x in self.items]

    @property
    def labels(self) -> list[str | None]:
        return [x.label if isinstance(x, Prediction) else None for x in self.items]

    @property
    def ok(self) -> bool:
        return not any(isinstance(x, BaseException) for x in self.items)

    def __repr__(self) -> str:
        failed = sum(isinstance(x, BaseException) for x in self.items)
        rate = f", {len(self.items) / self.elapsed:,.0f}/s" if self.elapsed > 0 else ""
        return (
            f"BatchResult({len(self.items)} items: {len(self.items) - failed} ok, {failed} failed; "
            f"{self.requests} requests in {self.elapsed:.2f} s{rate})"
        )


@dataclass(frozen=True)
class Explanation:
    """Why the model answered ``label`` (``Client.explain``).

    Images: ``heatmap`` (numpy H×W in 0..1 at the model's input size; high = the evidence) and ``overlay``
    (PNG bytes of the heatmap over the image; ``save(path)`` writes it). Text: ``tokens`` (the words) and
    ``scores`` (the drop of the class score without each word; negative = it spoke against the class).
    """

    label: str
    index: int
    score: float
    method: str | None = None
    heatmap: Any = None
    overlay: bytes | None = None
    tokens: list[str] | None = None
    scores: list[float] | None = None
    masks: int | None = None
    complete: bool = True
    model: str | None = None
    version: str | None = None
    request_id: str | None = None

    @classmethod
    def from_json(
        cls, item: dict[str, Any], *, model: str | None, version: str | None, request_id: str | None
    ) -> Explanation:
        """From one entry of the API's ``explanations`` list."""
        import base64

        import numpy as np

        heatmap = item.get("heatmap")
        overlay = item.get("overlay")
        return cls(
            label=str(item["label"]),
            index=int(item["index"]),
            score=float(item["score"]),
            method=item.get("method"),
            heatmap=None if heatmap is None else np.asarray(heatmap, dtype=np.float32),
            overlay=None if overlay is None else base64.b64decode(overlay, validate=True),
            tokens=None if item.get("tokens") is None else [str(t) for t in item["tokens"]],
            scores=None if item.get("scores") is None else [float(s) for s in item["scores"]],
            masks=item.get("masks"),
            complete=bool(item.get("complete", True)),
            model=model,
            version=version,
            request_id=request_id,
        )

    def save(self, path: Any) -> None:
        """Write the overlay PNG to ``path`` (images only)."""
        from pathlib import Path

        if self.overlay is None:
            raise ValueError("this explanation has no overlay image (a text model explains words)")
        Path(path).write_bytes(self.overlay)

    def __repr__(self) -> str:
        what = (
            f"heatmap=<{self.heatmap.shape[0]}x{self.heatmap.shape[1]}>"
            if self.heatmap is not None
            else f"tokens={len(self.tokens or [])}"
        )
        return f"Explanation(label={self.label!r}, score={self.score:.4f}, method={self.method!r}, {what})"
