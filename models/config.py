"""The scorer's own configuration, so ``models/`` needs nothing from ``stream/``.

The stream side builds it from its settings (``Settings.scorer_config()``); tests and
scripts can build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from models.paths import DEFAULT_SHARED_DATA

# Runtime-precision pairs the scorer can run ("variants"), named as in the model version.
VARIANTS = (
    "torch-fp32",
    "torch-bf16",
    "onnx-fp32",
    "onnx-int8",
    "openvino-int8",
    "openvino-bf16",
)
# Short names a user sets; each maps onto one variant ("auto" is decided by a probe).
PRECISION_ALIASES = {"fp32": "onnx-fp32", "bf16": "torch-bf16", "int8": "onnx-int8"}
PRECISIONS = ("auto", *PRECISION_ALIASES, *VARIANTS)
# Forms a fully fine-tuned encoder's weight delta is stored in (models.delta).
DELTA_FORMS = ("fp16", "svd", "int8", "int4")
# What `swingdial models average` does with the two runs' heads.
AVERAGE_HEADS = ("average", "first", "second")


def default_runtime_dir() -> Path:
    """A cache, not state: exports are rebuilt from the artifacts whenever missing."""
    return Path.home() / ".cache" / "swingdial" / "models"


@dataclass(frozen=True)
class ScorerConfig:
    """Everything ``load_scorer`` needs besides the artifacts and the targets."""

    targets: tuple[str, ...] = ("Donald Trump", "Kamala Harris", "Elon Musk")
    precision: str = "auto"  # one of PRECISIONS
    cache_size: int = 50_000  # LRU of identical texts ...
    cache_bytes: int = 256 * 2**20  # ... and of their bytes (models/cache.py)
    threads: int = 0  # 0: the runtime's default (all cores)
    chunk_size: int = 32  # texts per encoder call, after sorting a batch by token length
    runtime_dir: Path = field(default_factory=default_runtime_dir)  # exports + probe cache
    # Trained / promoted models; used when it holds one, else the packaged default
    # (models.artifact_store.resolve). None: always the packaged default.
    model_dir: Path | None = None
    data_dir: Path = DEFAULT_SHARED_DATA  # training texts that calibrate static int8
    hf_model: str | None = None  # opt-in Hugging Face sentiment classifier
    allow_hub_download: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision {self.precision!r} not in {PRECISIONS}")
