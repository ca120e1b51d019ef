"""All configuration in one place.

Every setting can be overridden by an environment variable ``SWINGDIAL_<NAME>``
(for example ``SWINGDIAL_KAFKA_BOOTSTRAP=broker:9092``). Modules never read the
environment themselves; they take a :class:`Settings` (usually from :func:`get_settings`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.config import PRECISIONS, ScorerConfig, default_runtime_dir
from models.cpu import cpu_has_bf16  # noqa: F401  (moved to models/; importable here too)

DEFAULT_TARGETS = ["Donald Trump", "Kamala Harris", "Elon Musk"]


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "swingdial"


def _default_shared_data() -> Path:
    # ../shared/data next to the project checkout (where CI and developers find it).
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SWINGDIAL_", extra="ignore")

    # --- where state lives (outside the repo) ---
    home: Path = Field(default_factory=_default_home, description="Root of all local state.")

    # --- Kafka ---
    kafka_bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Bootstrap servers. Point at your own cluster to skip the local broker.",
    )
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = None
    kafka_ssl_cafile: str | None = None
    kafka_controller_port: int = 9093
    kafka_heap: str = "768m"
    partitions: int = Field(6, ge=1, le=256)
    topic_posts: str = "posts"
    topic_scores: str = "scores"
    topic_dlq: str = "posts.dlq"
    topic_annotations: str = "annotations"

    # --- scoring worker (faust) ---
    worker_app_id: str = "swingdial-worker"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    batch_size: int = Field(64, ge=1, le=4096)
    batch_within_s: float = Field(0.5, gt=0)
    worker_instance_id: str | None = Field(
        None,
        description="Static group membership id (default: host name + web port), so a "
        "restarted worker takes its own partitions back without a rebalance.",
    )
    worker_session_timeout_s: float = Field(
        30.0, gt=1, description="How soon a killed worker's partitions move to another."
    )
    targets: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGETS))
    cohort_min_posts: int = Field(
        3, ge=1, description="Stance-bearing posts an author needs before history moves a call."
    )

    # --- models ---
    hf_model: str | None = Field(
        None,
        description="Opt-in: a Hugging Face sequence classifier id or path used for sentiment "
        "instead of the bundled heads. Hub downloads need allow_hub_download.",
    )
    allow_hub_download: bool = False
    score_precision: str = Field(
        "auto",
        description="Encoder runtime/precision: fp32 (ONNX Runtime), int8 (ONNX Runtime "
        "dynamic int8), bf16 (torch autocast), or a pair such as torch-fp32; 'auto' picks the "
        "fastest on this machine by a cached probe, among the precisions validated to cost "
        "<= 0.5 point against fp32.",
    )
    score_chunk_size: int = Field(
        32, ge=1, le=1024, description="Texts per encoder call after sorting by length."
    )
    score_runtime_dir: Path = Field(
        default_factory=default_runtime_dir,
        description="Cache of exported ONNX encoders and the precision probe (rebuildable).",
    )
    score_cache_size: int = 50_000
    torch_threads: int = 0  # 0: leave torch's default
    shared_data: Path = Field(default_factory=_default_shared_data)

    # --- sink / DuckDB ---
    duckdb_path: Path | None = None
    sink_group: str = "swingdial-sink"
    sink_batch_size: int = Field(2000, ge=1)
    sink_flush_s: float = Field(1.0, gt=0)

    # --- read path while the sink writes (Arrow Flight served by the sink) ---
    query_host: str = "127.0.0.1"
    query_port: int = 8815

    # --- dashboard ---
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8501
    dashboard_refresh_s: float = 5.0
    min_posts_per_point: int = 5

    @field_validator("score_precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in PRECISIONS:
            raise ValueError(f"score_precision must be one of {', '.join(PRECISIONS)}")
        return value

    def scorer_config(self) -> ScorerConfig:
        """What ``models.scorer.load_scorer`` needs from these settings."""
        return ScorerConfig(
            targets=tuple(self.targets),
            precision=self.score_precision,
            cache_size=self.score_cache_size,
            threads=self.torch_threads,
            chunk_size=self.score_chunk_size,
            runtime_dir=self.score_runtime_dir,
            hf_model=self.hf_model,
            allow_hub_download=self.allow_hub_download,
        )

    @property
    def db_path(self) -> Path:
        return self.duckdb_path or self.home / "swingdial.duckdb"

    @property
    def kafka_dir(self) -> Path:
        return self.home / "kafka"

    @property
    def faust_dir(self) -> Path:
        return self.home / "faust"

    @property
    def query_location(self) -> str:
        return f"grpc://{self.query_host}:{self.query_port}"

    def to_env(self) -> dict[str, str]:
        """These settings as ``SWINGDIAL_*`` variables, for child processes (demo, tests)."""
        env: dict[str, str] = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                continue
            text = json.dumps(value) if isinstance(value, list | dict) else str(value)
            env[f"SWINGDIAL_{name.upper()}"] = text
        return env

    def kafka_client_config(self) -> dict[str, object]:
        """Connection settings shared by every kafka-python client."""
        cfg: dict[str, object] = {
            "bootstrap_servers": self.kafka_bootstrap.split(","),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            cfg["sasl_mechanism"] = self.kafka_sasl_mechanism
            cfg["sasl_plain_username"] = self.kafka_sasl_username
            cfg["sasl_plain_password"] = self.kafka_sasl_password
        if self.kafka_ssl_cafile:
            cfg["ssl_cafile"] = self.kafka_ssl_cafile
        return cfg


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
