"""All configuration in one place.

Every setting can be overridden by an environment variable ``SWINGDIAL_<NAME>``
(for example ``SWINGDIAL_KAFKA_BOOTSTRAP=broker:9092``). Modules never read the
environment themselves; they take a :class:`Settings` (usually from :func:`get_settings`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_TARGETS = ["Donald Trump", "Kamala Harris", "Elon Musk"]


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "swingdial"


def _default_shared_data() -> Path:
    # ../shared/data next to the project checkout (where CI and developers find it).
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def cpu_has_bf16() -> bool:
    """AVX512-BF16 or AMX: bfloat16 matmuls are ~3x faster than float32 (scoring, training)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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
    score_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="bf16 autocast is ~3x faster on CPUs with AVX512-BF16/AMX (~1% of labels "
        "flip); 'auto' uses it only where the CPU has it.",
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
    alert_approval_points: float = Field(
        15.0, gt=0, description="Alert when a cohort's approval (0-100) moves more than this..."
    )
    alert_window_min: int = Field(5, ge=1, description="...within this many minutes.")
    alert_webhook: str | None = Field(
        None, description="URL that receives new alerts as JSON (POST); none: banner only."
    )

    def resolved_precision(self) -> str:
        """``score_precision`` with 'auto' decided by the CPU's flags."""
        if self.score_precision != "auto":
            return self.score_precision
        return "bf16" if cpu_has_bf16() else "fp32"

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
