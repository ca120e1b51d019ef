"""Inference runtimes for the sentence encoder: torch (fp32 / bf16 autocast), ONNX
Runtime (fp32 / dynamic int8) and OpenVINO (static int8, see :mod:`models.quantize`), behind
one small interface, plus the probe that picks one per machine.

Every runtime takes token ids + attention mask and returns the normalised sentence
embeddings; :func:`embed_sorted` feeds it a batch sorted by token length in chunks (each
chunk padded only to its own longest text) and restores the input order.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from models.cpu import cpu_has_bf16, machine_key
from models.text import TEXT_FORM, normalize_texts


class EncoderRuntime(Protocol):
    """Token ids + mask (int64, [batch, tokens]) -> float32 embeddings [batch, dim]."""

    variant: str

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray: ...


class TorchRuntime:
    """The training encoder itself (LoRA merged), fp32 or under bf16 autocast."""

    def __init__(self, encoder, *, bf16: bool = False) -> None:  # encoder: models.encoder.Encoder
        self.encoder = encoder.eval()
        self.bf16 = bf16
        self.variant = "torch-bf16" if bf16 else "torch-fp32"

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        import torch

        batch = {
            "input_ids": torch.from_numpy(input_ids),
            "attention_mask": torch.from_numpy(attention_mask),
        }
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16),
        ):
            return self.encoder(batch).float().numpy()


class OnnxRuntime:
    """An exported encoder (see :mod:`models.export`) in an ONNX Runtime CPU session."""

    def __init__(self, path: Path, variant: str, *, threads: int = 0) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = max(0, threads)
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.variant = variant

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run(None, feeds)[0]


class OpenVinoRuntime:
    """The encoder on OpenVINO's CPU plugin: ``openvino-int8`` (a static-int8 IR from
    :mod:`models.quantize`) or ``openvino-bf16`` (the fp32 ONNX graph run in bf16: on a
    CPU with avx512_bf16 about 1.8x onnx-fp32 here). Both run their float ops in bf16
    (int8's float MatMuls and the LayerNorm / softmax path: ~1.2x faster, same proxy
    agreement) where the CPU has BF16 instructions, and in fp32 where it has not: asked
    for bf16 there, the plugin emulates it on AVX-512 at a fortieth of fp32's speed
    (docs/benchmarks.md, Session 18). :func:`models.cpu.numerics` names the same split.
    """

    def __init__(self, path: Path, variant: str, *, threads: int = 0) -> None:
        import openvino as ov

        self.streams = stream_count(threads)
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if cpu_has_bf16() else "f32",
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": self.streams,
        }
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        self.model = ov.Core().compile_model(str(path), "CPU", config)
        self.variant = variant
        self._local = threading.local()  # an infer queue is not thread-safe

    @property
    def float_precision(self) -> str:
        """The precision the plugin compiled the float ops for (``bf16`` or ``f32``)."""
        return self.model.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def run_many(self, chunks: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Every chunk in flight at once, one per stream (each stream one core): 1.05-1.2x
        one stream over all cores on 2 cores (docs/benchmarks.md), since a 32-post chunk
        is too small to keep two threads busy."""
        import openvino as ov

        queue = getattr(self._local, "queue", None)
        if queue is None:
            queue = self._local.queue = ov.AsyncInferQueue(self.model, self.streams)
        outputs: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(chunks)

        def keep(request: Any, index: int) -> None:  # a copy: the request reuses its buffer
            outputs[index] = np.array(request.get_output_tensor(0).data, dtype=np.float32)

        queue.set_callback(keep)
        for index, (input_ids, mask) in enumerate(chunks):
            queue.start_async({"input_ids": input_ids, "attention_mask": mask}, index)
        queue.wait_all()
        return outputs

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.run_many([(input_ids, attention_mask)])[0]


MAX_STREAMS = 8  # a worker batch of 256 in chunks of 32 never has more in flight


def stream_count(threads: int) -> int:
    """One inference stream per core the runtime may use (``threads``; 0: all cores)."""
    return max(1, min(threads if threads > 0 else os.cpu_count() or 1, MAX_STREAMS))


def run_chunks(
    runtime: Callable[[np.ndarray, np.ndarray], np.ndarray],
    chunks: Sequence[tuple[np.ndarray, np.ndarray]],
) -> list[np.ndarray]:
    """Embeddings per padded chunk: all at once where the runtime can overlap them
    (``run_many``), else one call each."""
    run_many = getattr(runtime, "run_many", None)
    if run_many is not None:
        return run_many(chunks)
    return [runtime(input_ids, mask) for input_ids, mask in chunks]


def tokenize_ids(tokenizer, texts: Sequence[str], max_length: int, form: str) -> list[list[int]]:
    """Token ids per text in the written form ``form`` (models.text), truncated, unpadded
    (padding happens per chunk)."""
    texts = normalize_texts(texts, form)
    return tokenizer(texts, truncation=True, max_length=max_length)["input_ids"]


def pad_chunk(ids: Sequence[Sequence[int]], pad_id: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded int64 ids and mask, as wide as the chunk's longest text."""
    width = max(len(x) for x in ids)
    input_ids = np.full((len(ids), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(ids), width), dtype=np.int64)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = seq
        mask[row, : len(seq)] = 1
    return input_ids, mask


def chunk_size_for(n: int, chunk_size: int, streams: int) -> int:
    """Texts per chunk for a batch of ``n``: ``chunk_size``, smaller when the batch would
    otherwise give a runtime with parallel ``streams`` fewer chunks than streams (a batch
    of 32 as one chunk keeps one of two OpenVINO streams, so one core, idle)."""
    if n <= 0:
        return chunk_size
    return max(1, min(chunk_size, -(-n // max(1, streams))))


def embed_sorted(
    runtime: Callable[[np.ndarray, np.ndarray], np.ndarray],
    ids: Sequence[Sequence[int]],
    *,
    chunk_size: int,
    dim: int,
    pad_id: int = 0,
    sort: bool = True,
) -> np.ndarray:
    """Embed token-id lists in chunks of ``chunk_size`` (smaller for a small batch on a
    runtime with parallel streams: :func:`chunk_size_for`); sorted by length first (less
    padding), outputs returned in the input order."""
    out = np.empty((len(ids), dim), dtype=np.float32)
    if not ids:
        return out
    chunk_size = chunk_size_for(len(ids), chunk_size, int(getattr(runtime, "streams", 1)))
    order = np.argsort([len(x) for x in ids], kind="stable") if sort else np.arange(len(ids))
    groups = [order[start : start + chunk_size] for start in range(0, len(order), chunk_size)]
    chunks = [pad_chunk([ids[i] for i in idx], pad_id) for idx in groups]
    for idx, embedded in zip(groups, run_chunks(runtime, chunks), strict=True):
        out[idx] = embedded
    return out


@dataclass
class SentenceEncoder:
    """Texts -> embeddings: the tokenizer, the padding rule and one runtime."""

    runtime: EncoderRuntime
    tokenizer: Any
    max_length: int
    dim: int = 384
    chunk_size: int = 32
    sort_by_length: bool = True  # off only to measure what sorting buys (models.bench)
    text_form: str = TEXT_FORM  # the model's written form of a post (models.text)

    @classmethod
    def from_torch(cls, runtime: EncoderRuntime, encoder, chunk_size: int = 32):
        """Around a torch :class:`models.encoder.Encoder` (its tokenizer and length)."""
        return cls(
            runtime,
            encoder.tokenizer,
            encoder.max_length,
            encoder.dim,
            chunk_size,
            text_form=encoder.text_form,
        )

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Normalised embeddings in the input order."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        ids = tokenize_ids(self.tokenizer, texts, self.max_length, self.text_form)
        pad = int(self.tokenizer.pad_token_id or 0)
        return embed_sorted(
            self.runtime,
            ids,
            chunk_size=self.chunk_size,
            dim=self.dim,
            pad_id=pad,
            sort=self.sort_by_length,
        )


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def openvino_available() -> bool:
    """OpenVINO to run the static int8 encoder and NNCF to build it (looked up, not
    imported: NNCF takes seconds to import)."""
    from importlib.util import find_spec

    return find_spec("openvino") is not None and find_spec("nncf") is not None


# --- the probe: which allowed variant is fastest on this machine -------------------------

PROBE_TEXTS = 256
PROBE_VERSION = 3  # 3: OpenVINO in fp32 without BF16; 2: burst and trickle timed; 1: burst
PROBE_TRICKLE_BATCH = 32  # a paced stream's worker batches are this small or smaller
_PROBE_VOCAB = (
    "the debate tonight he she said economy prices border crime court judge vote poll "
    "election rally lol wow great terrible liar honest plan jobs taxes war china ukraine "
    "stream down again lag #debate @user really think why never always best worst ever "
    "america people president senator trump harris musk biden crowd laugh angry happy"
)


def probe_texts(n: int = PROBE_TEXTS, seed: int = 0) -> list[str]:
    """Distinct tweet-like texts of 8-40 words (stable across runs: the probe's input)."""
    words = _PROBE_VOCAB.split()
    rng = np.random.default_rng(seed)
    return [f"{i} " + " ".join(rng.choice(words, int(rng.integers(8, 40)))) for i in range(n)]


def time_encoder(
    encoder: SentenceEncoder,
    texts: Sequence[str],
    repeats: int = 2,
    trickle_batch: int = PROBE_TRICKLE_BATCH,
) -> float:
    """Posts/s of ``encoder`` over ``texts`` encoded twice: as one burst batch and as
    small batches of ``trickle_batch`` (a paced stream's). Runtimes rank differently on the
    two (OpenVINO's streams want several chunks; docs/benchmarks.md, Session 15), and the
    worker sees both. Best of ``repeats`` after one warm-up chunk."""
    encoder.encode(texts[: encoder.chunk_size])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        encoder.encode(texts)
        for i in range(0, len(texts), trickle_batch):
            encoder.encode(texts[i : i + trickle_batch])
        best = min(best, time.perf_counter() - start)
    return 2 * len(texts) / best


def probe_variants(
    builders: dict[str, Callable[[], SentenceEncoder]], reference: str, min_cosine: float = 0.95
) -> dict[str, dict[str, float]]:
    """Time every candidate on :func:`probe_texts`; a candidate whose embeddings drift from
    the ``reference`` variant's (min cosine below ``min_cosine``: a broken export) is
    marked unusable."""
    texts = probe_texts()
    ref: np.ndarray | None = None
    out: dict[str, dict[str, float]] = {}
    for variant in [reference, *[v for v in builders if v != reference]]:
        encoder = builders[variant]()
        emb = encoder.encode(texts)
        ref = emb if ref is None else ref
        cosine = float(np.min(np.sum(emb * ref, axis=1)))
        out[variant] = {
            "posts_per_s": round(time_encoder(encoder, texts), 1),
            "min_cosine": round(cosine, 4),
            "usable": cosine >= min_cosine,
        }
        del encoder
    return out


def fastest(results: dict[str, dict[str, float]]) -> str:
    usable = {v: r["posts_per_s"] for v, r in results.items() if r["usable"]}
    return max(usable, key=usable.__getitem__)


def probe_key(artifacts_hash: str, candidates: Sequence[str], threads: int) -> str:
    """Cache key: this machine, these artifacts, these candidates, this thread count, and
    the probe's own version (a changed probe measures again)."""
    return (
        f"{machine_key()}|{artifacts_hash}|{','.join(sorted(candidates))}|t{threads}"
        f"|probe{PROBE_VERSION}"
    )


def cached_probe(
    cache_file: Path, key: str, run: Callable[[], dict[str, dict[str, float]]]
) -> dict[str, dict[str, float]]:
    """The probe result stored under ``key`` in ``cache_file``, or ``run()`` stored there."""
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]["results"]
    results = run()
    cache[key] = {"results": results, "chosen": fastest(results), "at": time.time()}
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cache, indent=2) + "\n")
    os.replace(tmp, cache_file)
    return results
