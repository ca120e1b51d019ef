"""All configuration in one place.

Every setting can be overridden by an environment variable ``SWINGDIAL_<NAME>``
(for example ``SWINGDIAL_KAFKA_BOOTSTRAP=broker:9092``). Modules never read the
environment themselves; they take a :class:`Settings` (usually from :func:`get_settings`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.config import PRECISIONS, ScorerConfig, default_runtime_dir
from models.paths import DEFAULT_SHARED_DATA

DEFAULT_TARGETS = ["Donald Trump", "Kamala Harris", "Elon Musk"]


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "swingdial"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWINGDIAL_",
        extra="ignore",
        env_ignore_empty=True,  # X= means the default
    )

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
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_controller_port: int = 9093
    kafka_heap: str = "768m"
    kafka_nodes: int = Field(
        1,
        ge=1,
        le=9,
        description="Brokers in the local cluster (`broker start`). With one bootstrap "
        "address, node i listens on its port + 2*i and its controller on the controller "
        "port + 2*i (default 9092/9094/9096); or list one host:port per node.",
    )
    kafka_node_heap: str = Field("512m", description="Heap of each node when kafka_nodes > 1.")
    kafka_replication_factor: int | None = Field(
        None, ge=1, description="Replicas of every topic (default: min(3, kafka_nodes))."
    )
    kafka_min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="Replicas that must have a write before it is acknowledged (default: "
        "replication factor - 1, at least 1), so one broker can fail without stopping writes.",
    )
    kafka_reconnect_backoff_max_ms: int = Field(
        1000, ge=50, description="kafka-python's longest wait between reconnects to a broker."
    )
    partitions: int = Field(6, ge=1, le=256)
    topic_posts: str = "posts"
    topic_scores: str = "scores"
    topic_dlq: str = "posts.dlq"
    topic_annotations: str = "annotations"
    kafka_max_message_bytes: int = Field(
        1_000_000,
        ge=64 * 1024,
        le=100 * 1024 * 1024,
        description="Largest record any swingdial producer sends (faust's own limit is "
        "1,000,000). Larger posts are dead-lettered as a truncated copy with size and hash.",
    )

    # --- scoring worker (faust) ---
    worker_app_id: str = "swingdial-worker"
    worker_web_host: str = "127.0.0.1"
    worker_web_port: int = 6066
    batch_size: int = Field(64, ge=1, le=4096)
    batch_within_s: float = Field(0.5, gt=0)
    worker_web_enabled: bool = Field(
        False, description="faust's web server (it serves the worker's tables); off by default."
    )
    worker_instance_id: str | None = Field(
        None,
        description="Opt-in static group membership id, one per worker: a restarted worker "
        "takes its partitions back without a rebalance, but a stopped one holds them for "
        "the session timeout (no LeaveGroup). Default: dynamic membership.",
    )
    worker_session_timeout_s: float = Field(
        30.0, gt=1, description="How soon a killed worker's partitions move to another."
    )
    worker_batch_retries: int = Field(
        3,
        ge=0,
        le=20,
        description="Retries of a batch whose scoring or sending failed as a whole; then the "
        "worker exits non-zero without acknowledging it, so a restart reads it again.",
    )
    worker_history_max_authors: int = Field(
        200_000,
        ge=100,
        description="Author histories kept in memory (per run and author); the least "
        "recently seen are dropped, from the changelog too, beyond this.",
    )
    targets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        description="Stance targets: comma-separated (or a JSON list).",
    )
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
    score_cache_size: int = Field(50_000, ge=0, description="Outputs cached by text (LRU).")
    score_cache_bytes: int = Field(
        256 * 2**20, ge=0, description="Bound of that cache in bytes (texts + outputs)."
    )
    score_stub: bool = Field(
        False,
        description="Benchmarks only: a fixed-output stub instead of the model, to measure "
        "the pipeline's ceiling without it.",
    )
    torch_threads: int = 0  # 0: leave torch's default
    shared_data: Path = DEFAULT_SHARED_DATA
    events_dir: Path | None = Field(
        None,
        description="A folder of your own event files (<id>.yaml), searched before the "
        "bundled ones. Event ids in posts are looked up only there and in stream/events.",
    )

    # --- listeners ---
    allow_non_loopback: bool = Field(
        False,
        description="Let the broker, worker web, query server and dashboard listen on a "
        "non-loopback address (they serve data without authentication).",
    )

    # --- sink / DuckDB ---
    duckdb_path: Path | None = None
    sink_group: str = "swingdial-sink"
    sink_batch_size: int = Field(2000, ge=1)
    sink_flush_s: float = Field(1.0, gt=0)

    pseudonymize: bool = Field(
        False, description="Store a keyed hash instead of author ids and handles; drop bios."
    )
    pseudonymize_key: SecretStr | None = Field(
        None, description="HMAC key for pseudonyms (default: <home>/pseudonym.key, made once)."
    )

    # --- read path while the sink writes (Arrow Flight served by the sink) ---
    query_host: str = "127.0.0.1"
    query_port: int = 8815
    query_token: SecretStr | None = Field(
        None,
        description="Token for the query server; default: a random one the sink writes to "
        "<home>/query.token (mode 0600) at each start.",
    )
    query_max_rows: int = Field(1_000_000, ge=1, description="Largest result a query returns.")
    query_max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Same, in bytes.")
    query_timeout_s: float = Field(30.0, gt=0, description="Queries are cancelled after this.")
    query_memory_limit: str = Field("1GB", description="DuckDB memory_limit of the read path.")

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

    @field_validator("targets", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        """``a,b`` or ``["a", "b"]`` from the environment; a list stays a list."""
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @property
    def replication_factor(self) -> int:
        return self.kafka_replication_factor or min(3, self.kafka_nodes)

    @property
    def min_insync_replicas(self) -> int:
        return self.kafka_min_insync_replicas or max(1, self.replication_factor - 1)

    def bootstrap_servers(self) -> list[str]:
        """Every broker address: the listed ones, or one per local node (port + 2*i)."""
        servers = [s.strip() for s in self.kafka_bootstrap.split(",") if s.strip()]
        if len(servers) == 1 and self.kafka_nodes > 1:
            host, _, port = servers[0].rpartition(":")
            if port.isdigit():
                return [f"{host}:{int(port) + 2 * i}" for i in range(self.kafka_nodes)]
        return servers

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
            cache_bytes=self.score_cache_bytes,
            threads=self.torch_threads,
            chunk_size=self.score_chunk_size,
            runtime_dir=self.score_runtime_dir,
            data_dir=self.shared_data,
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
    def query_token_path(self) -> Path:
        return self.home / "query.token"

    @property
    def query_location(self) -> str:
        return f"grpc://{self.query_host}:{self.query_port}"

    def display_values(self) -> dict[str, str | None]:
        """Every setting as the text its ``SWINGDIAL_*`` variable takes; secrets as ``***``.

        Lists are comma-separated, so a printed line can be pasted back into a shell.
        """
        out: dict[str, str | None] = {}
        for name, value in self.model_dump(mode="json").items():
            if value is None:
                out[name] = None
            elif isinstance(getattr(self, name), SecretStr):
                out[name] = "***"
            elif isinstance(value, list):
                out[name] = ",".join(str(v) for v in value)
            elif isinstance(value, dict):
                out[name] = json.dumps(value)
            else:
                out[name] = str(value)
        return out

    def to_env(self) -> dict[str, str]:
        """These settings as ``SWINGDIAL_*`` variables, for child processes (demo, tests).

        Secrets are passed in clear here (the child needs them); never log this mapping.
        """
        env: dict[str, str] = {}
        for name, text in self.display_values().items():
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                text = value.get_secret_value()
            if text is not None:
                env[f"SWINGDIAL_{name.upper()}"] = text
        return env

    def kafka_client_config(self) -> dict[str, object]:
        """Connection settings shared by every kafka-python client."""
        cfg: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers(),
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            cfg["sasl_mechanism"] = self.kafka_sasl_mechanism
            cfg["sasl_plain_username"] = self.kafka_sasl_username
            cfg["sasl_plain_password"] = secret(self.kafka_sasl_password)
        if self.kafka_ssl_cafile:
            cfg["ssl_cafile"] = self.kafka_ssl_cafile
        return cfg


def secret(value: SecretStr | None) -> str | None:
    """The clear text of an optional secret, for the one call that needs it."""
    return value.get_secret_value() if value is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
