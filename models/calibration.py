"""Calibrated probabilities: per-head temperature (and for sentiment a class-prior bias).

``probs = softmax(logits / T + b)``, fitted by negative log-likelihood on dev data:
temperature fixes over-/under-confidence, the bias ``b`` moves the class priors towards
the later year's (the out-of-time dev set has more neutral posts than the training pool).
The approval dial uses these probabilities, so they are applied wherever logits become
probabilities (:func:`calibrate`, called by the scorer and the evaluation).

Parameters live in ``calibration.json`` next to the other artifacts
(:func:`models.artifact_store.read_calibration`):
``{"sentiment": {"temperature": 1.3, "bias": [..]}, "stance": {"temperature": ..}, ...}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

ECE_BINS = 15


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def calibrate(head: str, logits: np.ndarray, params: dict | None) -> np.ndarray:
    """Probabilities of ``head`` from its logits; plain softmax when it has no parameters."""
    logits = np.asarray(logits, dtype=np.float64)
    p = (params or {}).get(head)
    if not p:
        return softmax(logits)
    z = logits / float(p.get("temperature", 1.0))
    if p.get("bias") is not None:
        z = z + np.asarray(p["bias"], dtype=np.float64)
    return softmax(z)


def fit(logits: np.ndarray, y: np.ndarray, *, bias: bool = False, balanced: bool = False) -> dict:
    """Temperature (and optionally per-class bias) minimising NLL on ``(logits, y)``.

    ``balanced`` weights every class equally (targets macro-recall rather than the dev
    set's own class mix). Convex in (1/T, b), so L-BFGS from T=1, b=0 finds the optimum.
    """
    z = torch.tensor(np.asarray(logits), dtype=torch.float64)
    t = torch.tensor(np.asarray(y), dtype=torch.long)
    k = z.shape[1]
    inv_t = torch.ones(1, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    counts = torch.bincount(t, minlength=k).clamp(min=1).double()
    weight = (len(t) / (k * counts)) if balanced else torch.ones(k, dtype=torch.float64)
    loss_fn = torch.nn.CrossEntropyLoss(weight=weight)
    params = [inv_t, b] if bias else [inv_t]
    opt = torch.optim.LBFGS(params, lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(z * inv_t + (b - b.mean()), t)
        loss.backward()
        return loss

    opt.step(closure)
    out: dict = {"temperature": round(float(1.0 / inv_t.clamp(min=1e-3).item()), 4)}
    if bias:
        out["bias"] = [round(float(v), 4) for v in (b - b.mean()).detach()]
    return out


def cross_fit(
    head: str, logits: np.ndarray, y: np.ndarray, halves: Sequence[np.ndarray], **kw
) -> np.ndarray:
    """Out-of-fold calibrated probabilities: fit on one half, apply to the other (and back).

    The dev set then still reports an honest held-out figure for the fitted parameters.
    """
    probs = np.zeros(logits.shape, dtype=np.float64)
    a, b = halves
    for fit_idx, apply_idx in ((a, b), (b, a)):
        params = {head: fit(logits[fit_idx], y[fit_idx], **kw)}
        probs[apply_idx] = calibrate(head, logits[apply_idx], params)
    return probs


def ece(probs: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error of the top-label confidence (equal-width bins)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == np.asarray(y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    total = 0.0
    for i in range(bins):
        mask = idx == i
        if mask.any():
            total += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(total)


def reliability(probs: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict]:
    """Per-bin mean confidence, accuracy and count (the reliability diagram's points)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == np.asarray(y)
    edges = np.linspace(0.0, 1.0, bins + 1)
    idx = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    out = []
    for i in range(bins):
        mask = idx == i
        if mask.any():
            out.append(
                {
                    "confidence": round(float(conf[mask].mean()), 4),
                    "accuracy": round(float(correct[mask].mean()), 4),
                    "n": int(mask.sum()),
                }
            )
    return out


def reliability_png(curves: dict[str, dict[str, list[dict]]], path: Path) -> None:
    """One small panel per head: accuracy vs confidence before and after calibration."""
    import altair as alt
    import pandas as pd
    import vl_convert as vlc

    rows = [
        {"head": head, "probabilities": kind, **point}
        for head, kinds in curves.items()
        for kind, points in kinds.items()
        for point in points
    ]
    for head in curves:  # the diagonal: perfectly calibrated
        rows += [{"head": head, "probabilities": "ideal", "confidence": c, "accuracy": c}
                 for c in (0.3, 1.0)]  # fmt: skip
    chart = (
        alt.Chart(pd.DataFrame(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("confidence:Q", scale=alt.Scale(domain=[0.3, 1.0]), title="confidence"),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=[0.0, 1.0]), title="accuracy"),
            color=alt.Color("probabilities:N", title=None),
        )
        .properties(width=170, height=150)
        .facet(column=alt.Column("head:N", title=None))
    )
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_bytes(vlc.vegalite_to_png(chart.to_json(), scale=1.0))
