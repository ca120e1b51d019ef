"""The scorer the worker calls: one encoder pass per text feeds every head.

``load_scorer(settings, targets=None, topics=None) -> Scorer``;
``Scorer.score_texts(texts) -> list[dict]`` with sentiment, per-target stance, emotion and
topic, each ``{"label", "scores"}``. Identical texts are served from a bounded LRU cache
(retweets and copy-paste campaigns are common in a live stream).

Artifacts (``models/artifacts``): ``model.json`` (labels, settings, training metadata),
``heads.safetensors``, optional ``lora.safetensors`` (encoder adapters), ``metrics.json``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from models.calibration import calibrate, read_calibration
from models.data import EMOTION_LABELS, SENTIMENT_LABELS, STANCE_LABELS
from models.encoder import Encoder
from models.heads import Heads
from models.paths import ARTIFACTS_DIR

if TYPE_CHECKING:
    from stream.config import Settings

ARTIFACT_FILES = ("model.json", "heads.safetensors", "lora.safetensors", "calibration.json")

# Used until an event file supplies its own topics: (id, description used for zero-shot).
DEFAULT_TOPICS: list[tuple[str, str]] = [
    ("economy", "the economy, inflation, prices, jobs, wages, taxes and the cost of living"),
    ("crime", "crime, violence, police, shootings and public safety in cities"),
    ("border", "the border, immigration, migrants, asylum and deportation"),
    ("justice", "the justice system, courts, judges, trials, indictments and the Supreme Court"),
    (
        "foreign_policy",
        "foreign policy, war, Ukraine, Russia, China, Israel, NATO, allies and the military",
    ),
    (
        "tech_outage",
        "technology problems, the stream or website is down, app crashed, outage, glitch, lag",
    ),
    ("election", "the election campaign, voting, polls, candidates, debates and rallies"),
    ("other", ""),
]
OTHER_TOPIC = "other"
TOPIC_TEMPERATURE = 0.05
TOPIC_OTHER_THRESHOLD = 0.22  # cosine below which a post is about none of the topics


def topic_prompt(label: str, description: str, keywords: Sequence[str] = ()) -> str:
    """The text a topic is matched by: label, description and keywords together."""
    text = f"{label}: {description}".strip(": ")
    return f"{text} ({', '.join(keywords)})" if keywords else text


def event_topics(topics: Sequence[Any]) -> list[tuple[str, str]]:
    """``(id, prompt)`` pairs from an event file's topics (objects or dicts with id, label,
    description, keywords); pass the result as ``load_scorer(..., topics=...)``."""
    out = []
    for topic in topics:
        get = topic.get if isinstance(topic, dict) else lambda k, t=topic: getattr(t, k, None)
        out.append(
            (
                str(get("id")),
                topic_prompt(
                    str(get("label") or ""),
                    str(get("description") or ""),
                    list(get("keywords") or []),
                ),
            )
        )
    return out


def artifacts_hash(directory: Path) -> str:
    """Short content hash of the artifacts, part of the version string."""
    digest = hashlib.sha256()
    for name in ARTIFACT_FILES:
        path = directory / name
        if path.exists():
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _label_scores(labels: Sequence[str], probs: np.ndarray) -> dict[str, Any]:
    scores = {lab: round(float(p), 4) for lab, p in zip(labels, probs, strict=True)}
    return {"label": labels[int(np.argmax(probs))], "scores": scores}


def map_sentiment_labels(id2label: dict[int, str]) -> list[int | None]:
    """Map a classifier's labels onto negative/neutral/positive by name.

    Returns, per class index, the index into :data:`SENTIMENT_LABELS` (or None to drop).
    Understands ``negative/neutral/positive`` (any case, abbreviations), ``LABEL_0..2``
    (the cardiffnlp convention) and 1..5 star ratings.
    """
    names = {int(k): str(v).lower() for k, v in id2label.items()}
    out: list[int | None] = [None] * (max(names) + 1)
    for idx, name in names.items():
        if "neg" in name:
            out[idx] = 0
        elif "neu" in name:
            out[idx] = 1
        elif "pos" in name:
            out[idx] = 2
        elif "star" in name and name[:1].isdigit():
            stars = int(name[0])
            out[idx] = 0 if stars <= 2 else (1 if stars == 3 else 2)
    if all(v is None for v in out) and len(out) == 3:
        out = [0, 1, 2]  # LABEL_0/1/2 = negative/neutral/positive
    if all(v is None for v in out):
        raise ValueError(f"cannot map labels {id2label} onto negative/neutral/positive")
    return out


class HFSentiment:
    """Opt-in sentiment from a Hugging Face sequence classifier (``settings.hf_model``)."""

    def __init__(self, name_or_path: str, *, allow_download: bool, max_length: int = 128) -> None:
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        local_only = not allow_download
        self.tokenizer = AutoTokenizer.from_pretrained(name_or_path, local_files_only=local_only)
        self.model = AutoModelForSequenceClassification.from_pretrained(
            name_or_path, local_files_only=local_only
        )
        self.model.eval()
        self.mapping = map_sentiment_labels(self.model.config.id2label)
        self.max_length = max_length
        self.name = str(name_or_path)

    @torch.inference_mode()
    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        probs = torch.softmax(self.model(**batch).logits, dim=-1).numpy()
        out = np.zeros((len(texts), 3), dtype=np.float64)
        for idx, dest in enumerate(self.mapping):
            if dest is not None:
                out[:, dest] += probs[:, idx]
        return out / out.sum(axis=1, keepdims=True).clip(min=1e-12)


class Scorer:
    """Scores posts; thread-safe (the worker calls it from an executor thread)."""

    def __init__(
        self,
        encoder: Encoder,
        heads: Heads,
        *,
        version: str,
        targets: Sequence[str],
        topics: Sequence[tuple[str, str]] | None = None,
        cache_size: int = 50_000,
        sentiment_model: HFSentiment | None = None,
        batch_size: int = 64,
        bf16: bool = False,
        calibration: dict | None = None,
    ) -> None:
        self.encoder = encoder
        self.calibration = calibration or {}  # per-head temperature/bias (calibration.json)
        self.bf16 = bf16
        self.heads = heads.eval()
        self.version = version
        self.targets = list(targets)
        self.cache_size = max(0, int(cache_size))
        self.sentiment_model = sentiment_model
        self.batch_size = batch_size
        self.encoder_calls = 0  # texts sent through the encoder (tests and metrics use it)
        self.cache_hits = 0
        self._cache: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.RLock()
        self._target_emb = self._embed_raw(self.targets)
        self.set_topics(topics or DEFAULT_TOPICS)

    # --- configuration ---------------------------------------------------------------
    def set_topics(self, topics: Sequence[tuple[str, str]]) -> None:
        """Use another topic list (e.g. an event file's); clears the cache."""
        with self._lock:
            topics = [(str(i), str(d)) for i, d in topics]
            self.topic_ids = [i for i, _ in topics if i != OTHER_TOPIC] + [OTHER_TOPIC]
            described = [(i, d or i) for i, d in topics if i != OTHER_TOPIC]
            self._topic_emb = self._embed_raw([d for _, d in described])
            self._cache.clear()

    # --- scoring ---------------------------------------------------------------------
    def _embed_raw(self, texts: Sequence[str]) -> np.ndarray:
        # bf16 autocast: ~1.6x faster on CPUs with AVX512-BF16/AMX, 99% identical labels.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            return self.encoder.encode(list(texts), batch_size=self.batch_size)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised post embeddings (counts as encoder calls)."""
        self.encoder_calls += len(texts)
        return self._embed_raw(texts)

    def score_texts(self, texts: Sequence[str]) -> list[dict]:
        """Score every text; unique uncached texts go through the encoder once, in batches."""
        with self._lock:
            fresh: list[str] = []
            seen: set[str] = set()
            for text in texts:
                if text in self._cache:
                    continue
                if text not in seen:
                    seen.add(text)
                    fresh.append(text)
            results = dict(zip(fresh, self._score_fresh(fresh), strict=True)) if fresh else {}
            out: list[dict] = []
            for text in texts:
                if text in results:
                    item = results[text]
                else:
                    item = self._cache[text]
                    self._cache.move_to_end(text)
                    self.cache_hits += 1
                out.append(copy.deepcopy(item))
            if self.cache_size:
                for text, item in results.items():
                    self._cache[text] = item
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            return out

    @torch.inference_mode()
    def _score_fresh(self, texts: list[str]) -> list[dict]:
        emb = self.embed(texts)
        t = torch.from_numpy(emb)
        sent = calibrate("sentiment", self.heads.sentiment(t).numpy(), self.calibration)
        if self.sentiment_model is not None:
            sent = self.sentiment_model(texts)
        emo = calibrate("emotion", self.heads.emotion(t).numpy(), self.calibration)
        stance: list[np.ndarray] = []
        for j in range(len(self.targets)):
            g = torch.from_numpy(self._target_emb[j]).expand_as(t)
            logits = self.heads.stance_logits(t, g).numpy()
            stance.append(calibrate("stance", logits, self.calibration))
        topic = self._topic_probs(emb)
        out = []
        for i in range(len(texts)):
            out.append(
                {
                    "sentiment": _label_scores(SENTIMENT_LABELS, sent[i]),
                    "stance": {
                        target: _label_scores(STANCE_LABELS, stance[j][i])
                        for j, target in enumerate(self.targets)
                    },
                    "emotion": _label_scores(EMOTION_LABELS, emo[i]),
                    "topic": _label_scores(self.topic_ids, topic[i]),
                }
            )
        return out

    def _topic_probs(self, emb: np.ndarray) -> np.ndarray:
        """Zero-shot: cosine to each topic description; "other" competes at a fixed cosine."""
        sims = emb @ self._topic_emb.T if len(self._topic_emb) else np.zeros((len(emb), 0))
        other = np.full((len(emb), 1), TOPIC_OTHER_THRESHOLD)
        return _softmax(np.concatenate([sims, other], axis=1) / TOPIC_TEMPERATURE)


def read_meta(directory: Path = ARTIFACTS_DIR) -> dict:
    path = directory / "model.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no trained model in {directory} (model.json missing); run `swingdial models train`"
        )
    return json.loads(path.read_text())


def model_version(directory: Path = ARTIFACTS_DIR, meta: dict | None = None) -> str:
    meta = meta or read_meta(directory)
    kind = "lora" if meta.get("lora") else "heads"
    date = str(meta.get("trained_at", "0000-00-00"))[:10].replace("-", ".")
    return f"minilm-l6+{kind}-{date}-{artifacts_hash(directory)}"


def load_model(
    directory: Path = ARTIFACTS_DIR, *, merge: bool = True
) -> tuple[Encoder, Heads, dict]:
    """Encoder (with adapters if trained with LoRA) and heads from an artifacts folder.

    ``merge`` folds the adapters into the weights, so scoring is as fast as the frozen model.
    """
    from safetensors.torch import load_file

    meta = read_meta(directory)
    lora = meta.get("lora") or {}
    encoder = Encoder(
        max_length=int(meta.get("max_length", 64)),
        lora_rank=int(lora.get("rank", 0)),
        lora_alpha=float(lora.get("alpha", 16.0)),
    )
    if lora:
        encoder.load_lora(load_file(str(directory / "lora.safetensors")))
        if merge:
            encoder.merge_lora()
    encoder.eval()
    heads = Heads(dim=encoder.dim, hidden=int(meta.get("head_hidden", 256)))
    heads.load_state_dict(load_file(str(directory / "heads.safetensors")))
    heads.eval()
    return encoder, heads, meta


def load_scorer(
    settings: Settings | None = None,
    targets: Sequence[str] | None = None,
    topics: Sequence[tuple[str, str]] | None = None,
    *,
    artifacts: Path | None = None,
    precision: str | None = None,
) -> Scorer:
    """Build the scorer from ``models/artifacts`` (or ``artifacts``), offline by default.

    ``targets`` defaults to ``settings.targets``; ``topics`` to :data:`DEFAULT_TOPICS`.
    With ``settings.hf_model`` set, sentiment comes from that Hugging Face classifier
    (local files only unless ``settings.allow_hub_download``). ``precision`` "bf16" trades
    ~1% label flips for ~1.6x speed (default: ``settings.score_precision`` if it exists,
    else "fp32").
    """
    if settings is None:
        from stream.config import get_settings

        settings = get_settings()
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    directory = Path(artifacts or ARTIFACTS_DIR)
    encoder, heads, meta = load_model(directory)
    version = model_version(directory, meta)
    sentiment_model = None
    if settings.hf_model:
        sentiment_model = HFSentiment(settings.hf_model, allow_download=settings.allow_hub_download)
        version += f"+hf:{Path(settings.hf_model).name}"
    bf16 = (precision or settings.resolved_precision()) == "bf16"
    if bf16:  # outputs differ slightly from fp32, so rows must say which produced them
        version += "+bf16"
    return Scorer(
        encoder,
        heads,
        version=version,
        targets=list(targets if targets is not None else settings.targets),
        topics=topics,
        cache_size=settings.score_cache_size,
        sentiment_model=sentiment_model,
        bf16=bf16,
        calibration=read_calibration(directory),
    )
