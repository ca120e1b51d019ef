"""All configuration in one place: one typed :class:`Settings` with a section per part.

Every setting can be overridden by an environment variable ``SWINGDIAL_<SECTION>_<NAME>``
(``SWINGDIAL_KAFKA_BOOTSTRAP=broker:9092`` sets ``settings.kafka.bootstrap``) or, for the
few top-level ones, ``SWINGDIAL_<NAME>`` (``SWINGDIAL_HOME``). The same flat names work as
keyword arguments (``Settings(kafka_bootstrap=...)``, ``settings.replace(sink_batch_size=10)``).
Modules never read the environment themselves; they take a :class:`Settings` (usually from
:func:`get_settings`).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from models.config import PRECISIONS, ScorerConfig, default_runtime_dir
from models.paths import DEFAULT_SHARED_DATA

DEFAULT_TARGETS = ["Donald Trump", "Kamala Harris", "Elon Musk"]


def _default_home() -> Path:
    return Path.home() / ".local" / "share" / "swingdial"


class Section(BaseModel):
    """A settings section: an unknown name (a typo) is an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class KafkaSettings(Section):
    """``SWINGDIAL_KAFKA_*``: the cluster, its clients and the local broker."""

    bootstrap: str = Field(
        "127.0.0.1:9092",
        description="Bootstrap servers. Point at your own cluster to skip the local broker.",
    )
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    controller_port: int = 9093
    heap: str = "768m"
    nodes: int = Field(
        1,
        ge=1,
        le=9,
        description="Brokers in the local cluster (`broker start`). With one bootstrap "
        "address, node i listens on its port + 2*i and its controller on the controller "
        "port + 2*i (default 9092/9094/9096); or list one host:port per node.",
    )
    node_heap: str = Field("512m", description="Heap of each node when nodes > 1.")
    replication_factor: int | None = Field(
        None, ge=1, description="Replicas of every topic (default: min(3, nodes))."
    )
    min_insync_replicas: int | None = Field(
        None,
        ge=1,
        description="Replicas that must have a write before it is acknowledged (default: "
        "replication factor - 1, at least 1), so one broker can fail without stopping writes.",
    )
    reconnect_backoff_max_ms: int = Field(
        1000, ge=50, description="kafka-python's longest wait between reconnects to a broker."
    )
    partitions: int = Field(6, ge=1, le=256, description="Partitions of every topic.")
    max_message_bytes: int = Field(
        1_000_000,
        ge=64 * 1024,
        le=100 * 1024 * 1024,
        description="Largest record any swingdial producer sends (faust's own limit is "
        "1,000,000). Larger posts are dead-lettered as a truncated copy with size and hash.",
    )

    @property
    def replicas(self) -> int:
        """The replication factor in force."""
        return self.replication_factor or min(3, self.nodes)

    @property
    def min_insync(self) -> int:
        """min.insync.replicas in force."""
        return self.min_insync_replicas or max(1, self.replicas - 1)

    def bootstrap_servers(self) -> list[str]:
        """Every broker address: the listed ones, or one per local node (port + 2*i)."""
        servers = [s.strip() for s in self.bootstrap.split(",") if s.strip()]
        if len(servers) == 1 and self.nodes > 1:
            host, _, port = servers[0].rpartition(":")
            if port.isdigit():
                return [f"{host}:{int(port) + 2 * i}" for i in range(self.nodes)]
        return servers

    def client_config(self) -> dict[str, object]:
        """Connection settings shared by every kafka-python client."""
        cfg: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers(),
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            cfg["sasl_mechanism"] = self.sasl_mechanism
            cfg["sasl_plain_username"] = self.sasl_username
            cfg["sasl_plain_password"] = secret(self.sasl_password)
        if self.ssl_cafile:
            cfg["ssl_cafile"] = self.ssl_cafile
        return cfg


class TopicSettings(Section):
    """``SWINGDIAL_TOPIC_*``: topic names."""

    posts: str = "posts"
    scores: str = "scores"
    dlq: str = "posts.dlq"
    annotations: str = "annotations"


class WorkerSettings(Section):
    """``SWINGDIAL_WORKER_*``: the faust scoring worker."""

    app_id: str = "swingdial-worker"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    web_enabled: bool = Field(
        False, description="faust's web server (it serves the worker's tables); off by default."
    )
    batch_size: int = Field(
        256,
        ge=1,
        le=4096,
        description="Posts per worker batch (one scorer call, length-sorted chunks of "
        "score_chunk_size); 256 beat 64 by ~25% end to end (docs/benchmarks.md).",
    )
    batch_within_s: float = Field(
        0.2,
        gt=0,
        description="Longest wait to fill a batch. Bursts fill 256 at once; a trickle waits "
        "this long, so it bounds the added latency: 0.2 s gave paced p95 1.5 s vs 2.1 s at "
        "0.5 s (docs/benchmarks.md).",
    )
    overlap: bool = Field(
        False,
        description="Score the next batch while the previous one's outputs are delivered "
        "(acks still wait for delivery, in order). Off by default: on 2 cores it cost 3-6% "
        "(the model already uses every core); try it where delivery waits on the network.",
    )
    instance_id: str | None = Field(
        None,
        description="Opt-in static group membership id, one per worker: a restarted worker "
        "takes its partitions back without a rebalance, but a stopped one holds them for "
        "the session timeout (no LeaveGroup). Default: dynamic membership.",
    )
    session_timeout_s: float = Field(
        30.0, gt=1, description="How soon a killed worker's partitions move to another."
    )
    batch_retries: int = Field(
        3,
        ge=0,
        le=20,
        description="Retries of a batch whose scoring or sending failed as a whole; then the "
        "worker exits non-zero without acknowledging it, so a restart reads it again.",
    )
    history_max_authors: int = Field(
        200_000,
        ge=100,
        description="Author histories kept in memory (per run and author); the least "
        "recently seen are dropped, from the changelog too, beyond this.",
    )
    cohort_min_posts: int = Field(
        3, ge=1, description="Stance-bearing posts an author needs before history moves a call."
    )


class ScoreSettings(Section):
    """``SWINGDIAL_SCORE_*``: the model and its runtime."""

    precision: str = Field(
        "auto",
        description="Encoder runtime/precision: fp32 (ONNX Runtime), int8 (ONNX Runtime "
        "int8), bf16 (torch autocast), or a pair such as torch-fp32; 'auto' picks the "
        "fastest on this machine by a cached probe, among the precisions validated to cost "
        "<= 0.5 point against fp32.",
    )
    chunk_size: int = Field(
        32, ge=1, le=1024, description="Texts per encoder call after sorting by length."
    )
    threads: int = Field(0, ge=0, description="Intra-op threads of the encoder (0: default).")
    runtime_dir: Path = Field(
        default_factory=default_runtime_dir,
        description="Cache of exported ONNX encoders and the precision probe (rebuildable).",
    )
    cache_size: int = Field(50_000, ge=0, description="Outputs cached by text (LRU).")
    cache_bytes: int = Field(
        256 * 2**20, ge=0, description="Bound of that cache in bytes (texts + outputs)."
    )
    stub: bool = Field(
        False,
        description="Benchmarks only: a fixed-output stub instead of the model, to measure "
        "the pipeline's ceiling without it.",
    )
    hf_model: str | None = Field(
        None,
        description="Opt-in: a Hugging Face sequence classifier id or path used for sentiment "
        "instead of the bundled heads. Hub downloads need allow_hub_download.",
    )
    allow_hub_download: bool = False

    @field_validator("precision")
    @classmethod
    def _known_precision(cls, value: str) -> str:
        if value not in PRECISIONS:
            raise ValueError(f"score precision must be one of {', '.join(PRECISIONS)}")
        return value


class SinkSettings(Section):
    """``SWINGDIAL_SINK_*``: the single DuckDB writer."""

    group: str = "swingdial-sink"
    batch_size: int = Field(2000, ge=1)
    flush_s: float = Field(
        0.3,
        gt=0,
        description="Longest a stored post waits for its batch's commit. The scorer fills "
        "far fewer than batch_size posts a second, so this timer decides every commit: "
        "0.3 s cut paced p95 by 0.4-1.7 s against 1.0 s with no loss of burst rate "
        "(docs/benchmarks.md, Session 15).",
    )
    # How long a starting sink waits for DuckDB's file lock (a reader's one-query open).
    lock_wait_s: float = Field(30.0, ge=0)


class QuerySettings(Section):
    """``SWINGDIAL_QUERY_*``: the read path while the sink writes (Arrow Flight)."""

    host: str = "127.0.0.1"
    port: int = 8815
    token: SecretStr | None = Field(
        None,
        description="Token for the query server; default: a random one the sink writes to "
        "<home>/query.token (mode 0600) at each start.",
    )
    max_rows: int = Field(1_000_000, ge=1, description="Largest result a query returns.")
    max_bytes: int = Field(256 * 1024 * 1024, ge=1024, description="Same, in bytes.")
    timeout_s: float = Field(30.0, gt=0, description="Queries are cancelled after this.")
    memory_limit: str = Field("1GB", description="DuckDB memory_limit of the read path.")

    @property
    def location(self) -> str:
        return f"grpc://{self.host}:{self.port}"


class DashboardSettings(Section):
    """``SWINGDIAL_DASHBOARD_*``: the Streamlit page and its alerts."""

    host: str = "127.0.0.1"
    port: int = 8501
    refresh_s: float = 5.0
    min_posts_per_point: int = Field(
        5, ge=1, description="Minutes with fewer stance-taking posts are greyed."
    )
    alert_approval_points: float = Field(
        15.0, gt=0, description="Alert when a cohort's approval (0-100) moves more than this..."
    )
    alert_window_min: int = Field(5, ge=1, description="...within this many minutes.")
    alert_webhook: str | None = Field(
        None, description="URL that receives new alerts as JSON (POST); none: banner only."
    )


SECTIONS: dict[str, type[Section]] = {
    "kafka": KafkaSettings,
    "topic": TopicSettings,
    "worker": WorkerSettings,
    "score": ScoreSettings,
    "sink": SinkSettings,
    "query": QuerySettings,
    "dashboard": DashboardSettings,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SWINGDIAL_",
        env_nested_delimiter="_",
        env_nested_max_split=1,  # SWINGDIAL_KAFKA_SASL_PASSWORD -> kafka.sasl_password
        extra="forbid",
        env_ignore_empty=True,  # X= means the default
    )

    home: Path = Field(default_factory=_default_home, description="Root of all local state.")
    targets: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_TARGETS),
        description="Stance targets: comma-separated (or a JSON list).",
    )
    duckdb_path: Path | None = None
    model_dir: Path | None = Field(
        None,
        description="Where `swingdial models train` and `models promote` write models "
        "(default: <home>/models); the scorer loads the model there if it holds one, else the "
        "read-only default shipped in the package.",
    )
    shared_data: Path = DEFAULT_SHARED_DATA
    events_dir: Path | None = Field(
        None,
        description="A folder of your own event files (<id>.yaml), searched before the "
        "bundled ones. Event ids in posts are looked up only there and in stream/events.",
    )
    allow_non_loopback: bool = Field(
        False,
        description="Let the broker, worker web, query server and dashboard listen on a "
        "non-loopback address (they serve data without authentication).",
    )
    pseudonymize: bool = Field(
        False, description="Store a keyed hash instead of author ids and handles; drop bios."
    )
    pseudonymize_key: SecretStr | None = Field(
        None, description="HMAC key for pseudonyms (default: <home>/pseudonym.key, made once)."
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topic: TopicSettings = Field(default_factory=TopicSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    score: ScoreSettings = Field(default_factory=ScoreSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    query: QuerySettings = Field(default_factory=QuerySettings)
    dashboard: DashboardSettings = Field(default_factory=DashboardSettings)

    @model_validator(mode="before")
    @classmethod
    def _nest_flat_names(cls, data: Any) -> Any:
        """``kafka_bootstrap=...`` (the environment variable's name) -> ``kafka.bootstrap``."""
        if not isinstance(data, dict):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            section, _, name = key.partition("_")
            if section in SECTIONS and name:
                current = out.get(section, {})
                if isinstance(current, BaseModel):
                    current = current.model_dump()
                out[section] = {**current, name: value}
            elif key in SECTIONS and isinstance(out.get(key), dict):
                update = value.model_dump() if isinstance(value, BaseModel) else value
                out[key] = {**update, **out[key]}
            else:
                out[key] = value
        return out

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

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (flat names, as in the environment) validated in."""
        return type(self)(**{**dict(self.flat_items()), **changes})

    def flat_items(self) -> list[tuple[str, Any]]:
        """Every setting as (flat name, value): ``kafka_bootstrap``, ``home``, ..."""
        items: list[tuple[str, Any]] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if name in SECTIONS:
                items += [
                    (f"{name}_{key}", getattr(value, key)) for key in type(value).model_fields
                ]
            else:
                items.append((name, value))
        return items

    def scorer_config(self) -> ScorerConfig:
        """What ``models.scorer.load_scorer`` needs from these settings."""
        # The score section holds ScorerConfig's fields (plus the stub switch).
        fields = self.score.model_dump(exclude={"stub"})
        return ScorerConfig(
            targets=tuple(self.targets),
            model_dir=self.model_path,
            data_dir=self.shared_data,
            **fields,
        )

    @property
    def model_path(self) -> Path:
        """The model directory (trained and promoted models), set or default."""
        return self.model_dir or self.home / "models"

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

    def display_values(self) -> dict[str, str | None]:
        """Every setting as the text its ``SWINGDIAL_*`` variable takes, by flat name;
        secrets as ``***``. Lists are comma-separated, so a printed line can be pasted back
        into a shell."""
        out: dict[str, str | None] = {}
        for name, value in self.flat_items():
            if value is None:
                out[name] = None
            elif isinstance(value, SecretStr):
                out[name] = "***"
            elif isinstance(value, list | tuple):
                out[name] = ",".join(str(v) for v in value)
            elif isinstance(value, bool):
                out[name] = str(value).lower()
            else:
                out[name] = str(value)
        return out

    def to_env(self) -> dict[str, str]:
        """These settings as ``SWINGDIAL_*`` variables, for child processes (demo, tests).

        Secrets are passed in clear here (the child needs them); never log this mapping.
        """
        env: dict[str, str] = {}
        shown = self.display_values()
        for name, value in self.flat_items():
            text = secret(value) if isinstance(value, SecretStr) else shown[name]
            if text is not None:
                env[f"SWINGDIAL_{name.upper()}"] = text
        return env


def secret(value: SecretStr | None) -> str | None:
    """The clear text of an optional secret, for the one call that needs it."""
    return value.get_secret_value() if value is not None else None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
