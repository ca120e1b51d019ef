"""The scorer the worker calls: one encoder pass per text feeds every head.

``load_scorer(config, targets=None, topics=None) -> Scorer`` (config: a
:class:`models.config.ScorerConfig`); ``Scorer.score_texts(texts) -> list[dict]`` with
sentiment, per-target stance, emotion and topic, each ``{"label", "scores"}``. Identical
texts are served from a bounded LRU cache (retweets and copy-paste campaigns are common in
a live stream). The encoder runs on the runtime/precision ``config.precision`` names
(``auto``: the fastest allowed one on this machine, see :mod:`models.runtime`); the model
version names it (``...+openvino-int8``).

Artifacts: a model folder as :mod:`models.artifact_store` reads and writes it (manifest,
heads, optional peft LoRA adapters, calibration); which folder:
:func:`models.artifact_store.resolve` (explicit > ``config.model_dir`` > packaged default).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.artifact_store import (
    artifacts_hash,
    gate_verdict,
    read_adapter,
    read_calibration,
    read_encoder_delta,
    read_heads_state,
    resolve,
    runtime_gate,
)
from models.artifact_store import read_manifest as read_meta
from models.cache import ScoreCache
from models.calibration import calibrate
from models.config import PRECISION_ALIASES, ScorerConfig
from models.cpu import cpu_has_bf16
from models.data import EMOTION_LABELS, SENTIMENT_LABELS, STANCE_LABELS
from models.encoder import Encoder
from models.export import EXPORT_FILES, OPENVINO_FILES, ensure_exported
from models.heads import Heads
from models.paths import ARTIFACTS_DIR
from models.runtime import (
    OnnxRuntime,
    OpenVinoRuntime,
    SentenceEncoder,
    TorchRuntime,
    cached_probe,
    fastest,
    onnxruntime_available,
    openvino_available,
    probe_key,
    probe_variants,
)
from models.text import model_text_form

log = logging.getLogger(__name__)

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


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def label_scores(labels: Sequence[str], probs: np.ndarray) -> list[dict[str, Any]]:
    """Per row of ``probs`` (posts x labels): the top label and every label's probability
    to 4 decimals. Rounded and listed as whole arrays: per-value Python was ~9% of a
    batch's scoring time."""
    top = probs.argmax(axis=1).tolist()
    rounded = np.round(probs.astype(np.float64), 4).tolist()
    return [
        {"label": labels[t], "scores": dict(zip(labels, row, strict=True))}
        for t, row in zip(top, rounded, strict=True)
    ]


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
    """Opt-in sentiment from a Hugging Face sequence classifier (``settings.score.hf_model``)."""

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
    """Scores posts; thread-safe (the worker calls it from an executor thread).

    ``encoder`` is a :class:`models.runtime.SentenceEncoder` (any runtime) or a torch
    :class:`Encoder` (wrapped in the torch fp32 runtime: training and evaluation code).
    """

    def __init__(
        self,
        encoder: SentenceEncoder | Encoder,
        heads: Heads,
        *,
        version: str,
        targets: Sequence[str],
        topics: Sequence[tuple[str, str]] | None = None,
        cache_size: int = 50_000,
        cache_bytes: int = 256 * 2**20,
        sentiment_model: HFSentiment | None = None,
        chunk_size: int = 32,
        calibration: dict | None = None,
    ) -> None:
        sentence = (
            SentenceEncoder.from_torch(TorchRuntime(encoder), encoder, chunk_size)
            if isinstance(encoder, Encoder)
            else encoder
        )
        self.encoder = sentence
        self.variant = sentence.runtime.variant
        self.calibration = calibration or {}  # per-head temperature/bias (calibration.json)
        self.heads = heads.eval()
        self.version = version
        self.targets = list(targets)
        self.cache_size = max(0, int(cache_size))
        self.sentiment_model = sentiment_model
        self.encoder_calls = 0  # texts sent through the encoder (tests and metrics use it)
        self._cache = ScoreCache(self.cache_size, cache_bytes)
        self._lock = threading.RLock()
        self._target_emb = self.encoder.encode(self.targets)
        self.set_topics(topics or DEFAULT_TOPICS)

    # --- configuration ---------------------------------------------------------------
    def set_topics(self, topics: Sequence[tuple[str, str]]) -> None:
        """Use another topic list (e.g. an event file's); clears the cache."""
        with self._lock:
            topics = [(str(i), str(d)) for i, d in topics]
            self.topic_ids = [i for i, _ in topics if i != OTHER_TOPIC] + [OTHER_TOPIC]
            described = [(i, d or i) for i, d in topics if i != OTHER_TOPIC]
            self._topic_emb = self.encoder.encode([d for _, d in described])
            self._cache.clear()

    # --- scoring ---------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised post embeddings, length-sorted chunks (counts as encoder calls)."""
        self.encoder_calls += len(texts)
        return self.encoder.encode(texts)

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
                # Shared, not copied: callers only read outputs (a hot path at cache hits).
                out.append(results[text] if text in results else self._cache.get(text))
            for text, item in results.items():
                self._cache.put(text, item)
            return out

    def probabilities(self, task: str, logits: torch.Tensor) -> np.ndarray:
        """The one place logits become probabilities (``task``: sentiment, stance, emotion),
        with the per-head calibration fitted on dev data (``calibration.json``)."""
        return calibrate(task, logits.numpy(), self.calibration)

    @torch.inference_mode()
    def _score_fresh(self, texts: list[str]) -> list[dict]:
        emb = self.embed(texts)
        t = torch.from_numpy(emb)
        sent = self.probabilities("sentiment", self.heads.sentiment(t))
        if self.sentiment_model is not None:
            sent = self.sentiment_model(texts)
        emo = self.probabilities("emotion", self.heads.emotion(t))
        stance: list[np.ndarray] = []
        for j in range(len(self.targets)):
            g = torch.from_numpy(self._target_emb[j]).expand_as(t)
            stance.append(self.probabilities("stance", self.heads.stance_logits(t, g)))
        sentiments = label_scores(SENTIMENT_LABELS, sent)
        stances = [label_scores(STANCE_LABELS, s) for s in stance]
        emotions = label_scores(EMOTION_LABELS, emo)
        topics = label_scores(self.topic_ids, self._topic_probs(emb))
        return [
            {
                "sentiment": sentiments[i],
                "stance": {target: stances[j][i] for j, target in enumerate(self.targets)},
                "emotion": emotions[i],
                "topic": topics[i],
            }
            for i in range(len(texts))
        ]

    def _topic_probs(self, emb: np.ndarray) -> np.ndarray:
        """Zero-shot: cosine to each topic description; "other" competes at a fixed cosine."""
        sims = emb @ self._topic_emb.T if len(self._topic_emb) else np.zeros((len(emb), 0))
        other = np.full((len(emb), 1), TOPIC_OTHER_THRESHOLD)
        return _softmax(np.concatenate([sims, other], axis=1) / TOPIC_TEMPERATURE)


def model_version(directory: Path = ARTIFACTS_DIR, meta: dict | None = None) -> str:
    meta = meta or read_meta(directory)
    kind = "lora" if meta.get("lora") else "full" if meta.get("encoder_delta") else "heads"
    date = str(meta.get("trained_at", "0000-00-00"))[:10].replace("-", ".")
    return f"minilm-l6+{kind}-{date}-{artifacts_hash(directory)}"


def load_heads(directory: Path = ARTIFACTS_DIR, meta: dict | None = None) -> Heads:
    """The task heads of an artifacts folder (all the scorer needs besides the encoder)."""
    meta = meta or read_meta(directory)
    heads = Heads(hidden=int(meta.get("head_hidden", 256)))
    heads.load_state_dict(read_heads_state(directory))
    return heads.eval()


def load_model(
    directory: Path = ARTIFACTS_DIR, *, merge: bool = True
) -> tuple[Encoder, Heads, dict]:
    """Encoder (with adapters if trained with LoRA) and heads from an artifacts folder.

    ``merge`` folds the adapters into the weights, so scoring is as fast as the frozen model.
    """
    meta = read_meta(directory)
    adapter = read_adapter(directory)
    settings, state = adapter if adapter else ({"rank": 0, "alpha": 16.0}, None)
    encoder = Encoder(
        max_length=int(meta.get("max_length", 64)),
        lora_rank=int(settings["rank"]),
        lora_alpha=float(settings["alpha"]),
        text_form=model_text_form(meta),
    )
    if state is not None:
        encoder.load_lora(state)
        if merge:
            encoder.merge_lora()
    delta = read_encoder_delta(directory)
    if delta is not None:
        encoder.apply_delta(*delta)
    encoder.eval()
    return encoder, load_heads(directory, meta), meta


def allowed_variants(directory: Path = ARTIFACTS_DIR) -> list[str]:
    """Variants 'auto' may pick: fp32 always; bf16 / int8 (ORT dynamic, OpenVINO static)
    only where validation showed they cost <= 0.5 point on every metric (the stored gate
    for these artifacts, measured under this CPU's numerics)."""
    gate = runtime_gate(directory)
    passed = {
        v
        for v in gate.get("variants", {})
        if (gate_verdict(gate, v, EXPORT_FILES.get(v)) or {}).get("ok")
    }
    out = ["torch-fp32"]
    if cpu_has_bf16() and "torch-bf16" in passed:
        out.append("torch-bf16")
    if onnxruntime_available():
        out.append("onnx-fp32")
        if "onnx-int8" in passed:
            out.append("onnx-int8")
    if openvino_available():
        out += [v for v in ("openvino-int8", "openvino-bf16") if v in passed]
    return out


def export_folder(config: ScorerConfig, directory: Path = ARTIFACTS_DIR) -> Path:
    """Where the ONNX exports of these artifacts are cached (one folder per hash)."""
    return Path(config.runtime_dir) / artifacts_hash(directory)


def build_encoder(
    variant: str, config: ScorerConfig, directory: Path = ARTIFACTS_DIR, meta: dict | None = None
) -> SentenceEncoder:
    """The sentence encoder on ``variant``'s runtime; ONNX files are exported on first use."""
    meta = meta or read_meta(directory)
    if variant.startswith("torch-"):
        encoder, _heads, _meta = load_model(directory)
        runtime = TorchRuntime(encoder, bf16=variant == "torch-bf16")
        return SentenceEncoder.from_torch(runtime, encoder, config.chunk_size)
    tokenizer = base_tokenizer()
    max_length = int(meta.get("max_length", 64))
    path = ensure_exported(
        variant,
        export_folder(config, directory),
        lambda: load_model(directory)[0],
        lambda: calibration_inputs(config, tokenizer, max_length, model_text_form(meta)),
    )
    runtime_class = OpenVinoRuntime if variant in OPENVINO_FILES else OnnxRuntime
    return SentenceEncoder(
        runtime_class(path, variant, threads=config.threads),
        tokenizer,
        max_length=max_length,
        chunk_size=config.chunk_size,
        text_form=model_text_form(meta),
    )


def base_tokenizer():
    """The bundled MiniLM tokenizer, offline (the ONNX / OpenVINO encoders need only it)."""
    from transformers import AutoTokenizer

    from models.encoder import _offline_env, base_model_dir

    _offline_env()
    return AutoTokenizer.from_pretrained(str(base_model_dir()), local_files_only=True)


def calibration_inputs(config: ScorerConfig, tokenizer, max_length: int, form: str) -> list[dict]:
    """Static int8's calibration inputs: seeded training-pool texts in sorted chunks."""
    from models.quantize import calibration_feeds, calibration_texts

    texts = calibration_texts(config.data_dir)
    return calibration_feeds(tokenizer, texts, max_length, form=form)


def probe_file(config: ScorerConfig) -> Path:
    return Path(config.runtime_dir) / "probe.json"


def choose_variant(config: ScorerConfig, directory: Path = ARTIFACTS_DIR) -> str:
    """The variant ``config.precision`` names; for 'auto' the fastest allowed one on this
    machine, timed once by a probe and cached per machine + artifacts + thread count."""
    precision = PRECISION_ALIASES.get(config.precision, config.precision)
    if precision.startswith("onnx-") and not onnxruntime_available():
        log.warning("onnxruntime is not installed: scoring with torch fp32 instead")
        return "torch-fp32"
    if precision != "auto":
        if precision == "torch-bf16" and not cpu_has_bf16():
            log.warning(
                "this CPU has no BF16 instructions: torch bf16 is emulated here, ~8x slower "
                "than fp32 (docs/benchmarks.md, Session 15); precision 'auto' picks the fastest"
            )
        return precision
    candidates = allowed_variants(directory)
    if len(candidates) == 1:
        return candidates[0]
    results = cached_probe(
        probe_file(config),
        probe_key(artifacts_hash(directory), candidates, config.threads),
        lambda: probe_variants(
            {v: functools.partial(build_encoder, v, config, directory) for v in candidates},
            reference="torch-fp32",
        ),
    )
    return fastest(results)


def export_runtime(config: ScorerConfig, directory: Path = ARTIFACTS_DIR) -> dict[str, Path]:
    """Build every exported variant of these artifacts now (``swingdial models export``);
    OpenVINO int8 only where OpenVINO + NNCF are installed."""
    folder = export_folder(config, directory)
    encoder: list[Encoder] = []

    def load() -> Encoder:
        if not encoder:
            encoder.append(load_model(directory)[0])
        return encoder[0]

    def calibration() -> list[dict]:
        meta = read_meta(directory)
        max_length = int(meta.get("max_length", 64))
        return calibration_inputs(config, base_tokenizer(), max_length, model_text_form(meta))

    variants = [v for v in EXPORT_FILES if v not in OPENVINO_FILES or openvino_available()]
    return {v: ensure_exported(v, folder, load, calibration) for v in variants}


def load_on_runtime(directory: Path, config: ScorerConfig) -> tuple[SentenceEncoder, Heads, dict]:
    """The model as the worker runs it: (encoder, heads, manifest), the encoder on the
    variant ``config.precision`` picks here ('auto': the fastest the gate allows). The
    scorer and ``swingdial models eval|calibrate`` both load through it, so a model is
    judged on the runtime that ships."""
    meta = read_meta(directory)
    variant = choose_variant(config, directory)
    encoder = build_encoder(variant, config, directory, meta)
    return encoder, load_heads(directory, meta), meta


def load_scorer(
    config: ScorerConfig | Any = None,
    targets: Sequence[str] | None = None,
    topics: Sequence[tuple[str, str]] | None = None,
    *,
    artifacts: Path | None = None,
    precision: str | None = None,
) -> Scorer:
    """Build the scorer from ``artifacts``, else ``config.model_dir`` if it holds a model,
    else the packaged default (:func:`models.artifact_store.resolve`); offline by default.

    ``config`` is a :class:`ScorerConfig`, or any object with a ``scorer_config()`` method
    (the stream side's settings). ``targets`` defaults to ``config.targets``; ``topics``
    to :data:`DEFAULT_TOPICS`; ``precision`` overrides ``config.precision``. With
    ``config.hf_model`` set, sentiment comes from that Hugging Face classifier (local files
    only unless ``config.allow_hub_download``).
    """
    if config is None:
        config = ScorerConfig()
    elif not isinstance(config, ScorerConfig):
        config = config.scorer_config()
    if precision is not None:
        config = ScorerConfig(**{**config.__dict__, "precision": precision})
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    directory = resolve(artifacts, config.model_dir)
    encoder, heads, meta = load_on_runtime(directory, config)
    version = f"{model_version(directory, meta)}+{encoder.runtime.variant}"
    sentiment_model = None
    if config.hf_model:
        sentiment_model = HFSentiment(config.hf_model, allow_download=config.allow_hub_download)
        version += f"+hf:{Path(config.hf_model).name}"
    return Scorer(
        encoder,
        heads,
        version=version,
        targets=list(targets if targets is not None else config.targets),
        topics=topics,
        cache_size=config.cache_size,
        cache_bytes=config.cache_bytes,
        sentiment_model=sentiment_model,
        calibration=read_calibration(directory),
    )
