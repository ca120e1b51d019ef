"""Task heads on top of the shared sentence embedding.

Small MLPs so the same code serves the frozen-encoder heads and the LoRA multi-task model.
Stance is target-conditioned: the head sees the post embedding ``t`` and the target-name
embedding ``g`` as ``[t, g, t*g, |t-g|]``, which lets it score targets it never saw in
training (with the honest caveat that accuracy on those is much lower).
"""

from __future__ import annotations

import torch
from torch import nn

from models.data import EMOTION_LABELS, SENTIMENT_LABELS, STANCE_LABELS


class MLPHead(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear; LayerNorm copes with unit-norm inputs."""

    def __init__(self, dim_in: int, n_out: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(dim_in),
            nn.Linear(dim_in, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, n_out),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def pair_features(text_emb: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
    """``[t, g, t*g, |t-g|]``: the classic sentence-pair features (InferSent/SBERT)."""
    return torch.cat(
        [text_emb, target_emb, text_emb * target_emb, (text_emb - target_emb).abs()], dim=-1
    )


class Heads(nn.Module):
    """Sentiment, stance (target-conditioned) and emotion heads sharing one embedding."""

    labels = {
        "sentiment": SENTIMENT_LABELS,
        "stance": STANCE_LABELS,
        "emotion": EMOTION_LABELS,
    }

    def __init__(self, dim: int = 384, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.dim = dim
        self.hidden = hidden
        self.sentiment = MLPHead(dim, len(SENTIMENT_LABELS), hidden, dropout)
        self.emotion = MLPHead(dim, len(EMOTION_LABELS), hidden, dropout)
        self.stance = MLPHead(4 * dim, len(STANCE_LABELS), hidden, dropout)

    def stance_logits(self, text_emb: torch.Tensor, target_emb: torch.Tensor) -> torch.Tensor:
        return self.stance(pair_features(text_emb, target_emb))
