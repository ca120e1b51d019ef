"""Build a realistic swingdial DuckDB for tests, screenshots and the dashboard benchmark.

Small tables (runs, moments, annotations, plans) go in as Arrow tables; posts, scores and
stances are generated inside DuckDB from ``range()`` and a seeded hash, so the 3.2M-post
benchmark database builds in well under a minute and every build with the same seed is
identical (DuckDB's ``random()`` is not reproducible across threads, ``hash()`` is).

The story the data tells (what the dashboard must show):

* minutes 8-40 (after a calm wait from minute 0): the Spaces stream keeps crashing
  ("massive DDoS"): volume ~3x and every
  cohort turns negative; texts say crash / ddos / down;
* later moments move the cohorts apart (immigration: lean_right up, lean_left down, ...);
* a few sparse minutes have fewer posts than ``min_posts_per_point`` in every cohort;
* two runs: the live run and a replay of part of it scored by a newer model version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from stream.config import get_settings
from stream.store import connect

EVENT_ID = "trump-musk-2024"
EVENT_START = datetime(2024, 8, 13, 0, 0, tzinfo=UTC)  # 8 pm ET, 12 Aug 2024
LIVE_RUN = "live-2024-08-13"
REPLAY_RUN = "replay-2024-08-20"
LIVE_MODEL = "minilm-heads-1.0.0"
REPLAY_MODEL = "minilm-heads-1.1.0"
OUTAGE_END_MIN = 40
SPARSE_MINUTES = (44, 71, 99)
COHORT_SHARES = {"moderate": 5, "lean_left": 7, "lean_right": 6, "unknown": 2}  # of 20
BASE_MOOD = {"moderate": -0.05, "lean_left": -0.25, "lean_right": 0.15, "unknown": 0.0}
TOPICS = ["tech_outage", "crime", "border", "climate", "economy", "musk_endorsement", "other"]


@dataclass(frozen=True)
class Script:
    """One moment of the synthetic event and how each cohort reacts to it."""

    id: str
    at_min: int
    until_min: int
    title: str
    topic: str
    mood: dict[str, float] = field(default_factory=dict)  # added to BASE_MOOD per cohort
    volume: float = 1.0


OUTAGE_START_MIN = 8
SCRIPT = [
    Script("waiting", 0, OUTAGE_START_MIN - 1, "Waiting for the Space to start", "other"),
    Script(
        "outage",
        OUTAGE_START_MIN,
        OUTAGE_END_MIN,
        "Spaces crashes: 'massive DDoS attack'",
        "tech_outage",
        {"moderate": -0.5, "lean_left": -0.35, "lean_right": -0.6, "unknown": -0.4},
        3.0,
    ),
    Script("start", 41, 47, "Conversation finally starts", "other", {c: 0.1 for c in BASE_MOOD}),
    Script(
        "butler",
        48,
        58,
        "Butler assassination attempt retold",
        "crime",
        {"moderate": 0.15, "lean_left": -0.15, "lean_right": 0.45},
        1.4,
    ),
    Script(
        "border",
        62,
        74,
        "Border and immigration",
        "border",
        {"moderate": -0.3, "lean_left": -0.4, "lean_right": 0.4},
        1.5,
    ),
    Script(
        "evs",
        78,
        88,
        "EVs and climate change",
        "climate",
        {"moderate": 0.3, "lean_left": 0.1, "lean_right": -0.15},
    ),
    Script(
        "economy",
        92,
        104,
        "Inflation and the economy",
        "economy",
        {"moderate": 0.35, "lean_left": -0.2, "lean_right": 0.3},
        1.3,
    ),
    Script(
        "doge",
        108,
        10_000,
        "Musk floats a 'government efficiency commission'",
        "musk_endorsement",
        {"moderate": -0.25, "lean_left": -0.4, "lean_right": 0.35},
        1.6,
    ),
]

PHRASES = {
    "tech_outage": [
        "spaces keeps crashing",
        "cannot even join the stream",
        "blaming a ddos attack again",
        "x servers down again",
        "buffering forever glitch city",
        "stream failed to load",
    ],
    "crime": [
        "talking about butler and the shooting",
        "the assassination attempt story",
        "secret service failures",
    ],
    "border": [
        "border numbers again",
        "mass deportation talk",
        "immigration crisis claims",
    ],
    "climate": ["electric cars debate", "climate change is overblown", "ev mandate talk"],
    "economy": ["inflation and grocery prices", "gas prices and the economy", "tax cut promises"],
    "musk_endorsement": [
        "government efficiency commission idea",
        "musk wants a cabinet role",
        "cutting federal agencies",
    ],
    "other": [
        "listening to trump and musk",
        "this conversation on x",
        "watching the spaces live",
        "two hours of rambling",
    ],
}
TONE = {
    "positive": ["love this", "great point", "honestly refreshing", "strong answer"],
    "negative": ["what a mess", "embarrassing", "total disaster", "so misleading"],
    "neutral": ["hmm", "we will see", "interesting", "noted"],
}
TAGS = {
    "moderate": ["#undecided", "#independent", ""],
    "lean_left": ["#harris2024", "#votedem", ""],
    "lean_right": ["#maga", "#trump2024", ""],
    "unknown": [""],
}
BIOS = {
    "moderate": (
        "Independent voter, undecided in 2024. Dad, engineer.",
        ["independent", "undecided"],
    ),
    "lean_left": ("Progressive teacher. #VoteBlue", ["progressive", "#voteblue"]),
    "lean_right": ("America First patriot #MAGA", ["america first", "#maga"]),
    "unknown": ("coffee, cats and football", []),
}
# Stance of each cohort toward each default target, and how strongly a moment's mood moves it.
STANCE_BASE = {
    "moderate": (-0.05, 0.0, -0.1),
    "lean_left": (-0.6, 0.55, -0.5),
    "lean_right": (0.6, -0.55, 0.4),
    "unknown": (0.0, 0.0, 0.0),
}
STANCE_FOLLOWS_MOOD = (0.6, -0.3, 0.4)


def _moments(minutes: int) -> tuple[datetime, list[dict]]:
    """Moments from the event file when the project has one, else the synthetic script."""
    try:
        from stream.events import load_event

        event = load_event(EVENT_ID)
        rows = [
            {
                "moment_id": m.id,
                "at_time": event.moment_time(m),
                "until_time": None
                if m.until_min is None
                else event.start + timedelta(minutes=m.until_min),
                "title": m.title,
                "topic": m.topic,
                "description": m.description,
            }
            for m in event.moments
            if m.at_min < minutes
        ]
        return event.start, rows
    except (FileNotFoundError, ImportError, ValueError):
        pass
    rows = [
        {
            "moment_id": s.id,
            "at_time": EVENT_START + timedelta(minutes=s.at_min),
            "until_time": EVENT_START + timedelta(minutes=min(s.until_min, minutes)),
            "title": s.title,
            "topic": s.topic,
            "description": f"Synthetic moment: {s.title}.",
        }
        for s in SCRIPT
        if s.at_min < minutes
    ]
    return EVENT_START, rows


START = _moments(0)[0]  # the event's start: minute 0 of every fixture run


def _plans(minutes: int, per_minute: float, sparse_posts: int, seed: int) -> tuple[pa.Table, ...]:
    """Per-minute volume/topic and per-minute x cohort mood (small; computed in numpy)."""
    rng = np.random.default_rng(seed)
    counts, topics = [], []
    mood_rows: dict[str, list] = {"minute_idx": [], "cohort": [], "mood": []}
    for m in range(minutes):
        active = next((s for s in SCRIPT if s.at_min <= m <= s.until_min), None)
        volume = per_minute * rng.uniform(0.85, 1.15)
        if active is not None:
            ramp = 1.0
            if active.id == "outage":  # ramps up, holds, drains
                ramp = min(1.0, (m - OUTAGE_START_MIN + 1) / 3, (OUTAGE_END_MIN - m + 1) / 4)
            volume *= 1 + (active.volume - 1) * ramp
        counts.append(sparse_posts if m in SPARSE_MINUTES else volume)
        topics.append(active.topic if active else None)
        for cohort, base in BASE_MOOD.items():
            shift = active.mood.get(cohort, 0.0) if active else 0.0
            mood_rows["minute_idx"].append(m)
            mood_rows["cohort"].append(cohort)
            mood_rows["mood"].append(base + shift + rng.normal(0, 0.03))
    # Rescale so the run holds ~minutes x per_minute posts (peaks redistribute, not add).
    dense = np.array([m not in SPARSE_MINUTES for m in range(minutes)])
    raw = np.array(counts, dtype=float)
    raw[dense] *= per_minute * dense.sum() / max(raw[dense].sum(), 1.0)
    counts = np.maximum(1, np.round(raw)).astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    minute_plan = pa.table(
        {
            "minute_idx": pa.array(range(minutes), pa.int64()),
            "n": pa.array(counts, pa.int64()),
            "start_i": pa.array(starts, pa.int64()),
            "moment_topic": pa.array(topics, pa.string()),
        }
    )
    return minute_plan, pa.table(mood_rows)


def build_test_db(
    path: Path | str,
    minutes: int = 120,
    posts_per_minute: float = 90,
    seed: int = 0,
    *,
    posts_per_second: float | None = None,
    sparse_posts: int = 4,
    replay_fraction: float = 0.25,
    targets: list[str] | None = None,
) -> Path:
    """Write a fresh fixture database at ``path`` (replacing any file there); returns the path.

    ``posts_per_second`` (benchmark size) overrides ``posts_per_minute``. The live run holds
    every post; the replay run re-scores ``replay_fraction`` of them with a newer model.
    """
    path = Path(path)
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    per_minute = posts_per_second * 60 if posts_per_second else posts_per_minute
    targets = list(targets or get_settings().targets)[:3]
    start, moment_rows = _moments(minutes)
    minute_plan, mood_plan = _plans(minutes, per_minute, sparse_posts, seed)
    total = int(np.sum(minute_plan["n"].to_numpy()))
    n_authors = max(60, total // 25)

    con = connect(path)
    try:
        con.execute(f"SET threads = {max(1, min(4, _cpus()))}")
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.register("minute_plan", minute_plan)
        con.register("mood_plan", mood_plan)
        con.register(
            "stance_plan",
            pa.table(
                {
                    "cohort": [c for c in STANCE_BASE for _ in targets],
                    "target": [t for _ in STANCE_BASE for t in targets],
                    "base": [STANCE_BASE[c][k] for c in STANCE_BASE for k in range(len(targets))],
                    "follow": [
                        STANCE_FOLLOWS_MOOD[k] for _ in STANCE_BASE for k in range(len(targets))
                    ],
                }
            ),
        )
        s = int(seed)
        con.execute(
            f"CREATE TEMP MACRO u(i, salt) AS "
            f"((hash(i, salt || '{s}') % 1000003) + 0.5) / 1000003.0"
        )
        con.execute(
            "CREATE TEMP MACRO gauss(i, salt) AS "
            "sqrt(-2 * ln(u(i, salt || 'x'))) * cos(2 * pi() * u(i, salt || 'y'))"
        )
        con.execute(
            "CREATE TEMP MACRO pick(xs, i, salt) AS xs[1 + (hash(i, salt) % len(xs))::INTEGER]"
        )
        con.execute(
            "CREATE TEMP MACRO cohort_of(a) AS CASE WHEN a % 20 < 5 THEN 'moderate' "
            "WHEN a % 20 < 12 THEN 'lean_left' WHEN a % 20 < 18 THEN 'lean_right' "
            "ELSE 'unknown' END"
        )
        con.execute(
            """
            CREATE TEMP TABLE g AS
            WITH base AS (
                SELECT pm.minute_idx, pm.moment_topic, pm.start_i + r.range AS i
                FROM minute_plan pm, range(pm.n) r
            ), drawn AS (
                SELECT *,
                    (hash(i, 'author') % ?)::BIGINT AS author_idx,
                    CASE WHEN moment_topic IS NOT NULL AND u(i, 'topic') < 0.75 THEN moment_topic
                         ELSE pick(?::VARCHAR[], i, 'topic2') END AS topic
                FROM base
            ), moody AS (
                SELECT d.*, cohort_of(d.author_idx) AS cohort,
                    greatest(-1.0, least(1.0, mp.mood + 0.45 * gauss(d.i, 'sent'))) AS x
                FROM drawn d JOIN mood_plan mp
                  ON mp.minute_idx = d.minute_idx AND mp.cohort = cohort_of(d.author_idx)
            )
            SELECT *,
                ?::TIMESTAMPTZ
                    + to_microseconds(((minute_idx * 60 + u(i, 'sec') * 59.9) * 1e6)::BIGINT)
                    AS event_time,
                0.5 * (1 - abs(x)) AS p_neu,
                CASE WHEN abs(x) < 0.25 THEN 'neutral' WHEN x > 0 THEN 'positive'
                     ELSE 'negative' END
                    AS sentiment,
                CASE WHEN x < -0.5 THEN 'anger' WHEN x < -0.15 THEN 'sadness'
                     WHEN x > 0.4 THEN 'joy' ELSE 'neutral' END AS emotion
            FROM moody
            """,
            [n_authors, TOPICS[1:], start],
        )
        # Text: topic phrase + tone + cohort hashtag (these carry the spike "drivers").
        con.execute(
            """
            ALTER TABLE g ADD COLUMN text VARCHAR;
            """
        )
        topic_case = " ".join(
            f"WHEN topic = '{t}' THEN pick({_sql_list(p)}, i, 'phrase')" for t, p in PHRASES.items()
        )
        tone_case = " ".join(
            f"WHEN sentiment = '{t}' THEN pick({_sql_list(p)}, i, 'tone')" for t, p in TONE.items()
        )
        tag_case = " ".join(
            f"WHEN cohort = '{c}' THEN pick({_sql_list(p)}, i, 'tag')" for c, p in TAGS.items()
        )
        con.execute(
            f"UPDATE g SET text = trim((CASE {topic_case} ELSE 'watching' END) || ', '"
            f" || (CASE {tone_case} END) || ' ' || (CASE {tag_case} ELSE '' END))"
        )
        runs = [
            (LIVE_RUN, LIVE_MODEL, None, timedelta(0), 1.0, 0.0),
            (REPLAY_RUN, REPLAY_MODEL, LIVE_RUN, timedelta(days=7), replay_fraction, 0.06),
        ]
        run_rows = []
        for run_id, model, replay_of, lag, fraction, bias in runs:
            _insert_run(con, run_id, model, lag, fraction, bias)
            first, last = con.execute(
                "SELECT min(received_at), max(stored_at) FROM scores WHERE run_id = ?", [run_id]
            ).fetchall()[0]
            run_rows.append(
                {
                    "run_id": run_id,
                    "event_id": EVENT_ID,
                    "source": "simulator" if replay_of is None else "replay",
                    "model_version": model,
                    "replay_of": replay_of,
                    "first_seen_at": first,
                    "last_seen_at": last,
                }
            )
        _insert_arrow(con, "runs", pa.Table.from_pylist(run_rows))
        _insert_arrow(
            con,
            "moments",
            pa.Table.from_pylist([{"event_id": EVENT_ID, **row} for row in moment_rows]),
        )
        created = start + timedelta(minutes=minutes + 5)
        notes = [
            ("ann-1", LIVE_RUN, 41, "Stream stable again: baselines reset here", "maria"),
            ("ann-2", LIVE_RUN, 95, "Moderates warming on prices? check sample", "sam"),
            ("ann-3", None, 22, "Fact-check desk: no evidence of a DDoS so far", "desk"),
        ]
        _insert_arrow(
            con,
            "annotations",
            pa.Table.from_pylist(
                [
                    {
                        "annotation_id": a_id,
                        "event_id": EVENT_ID,
                        "run_id": run_id,
                        "at_time": start + timedelta(minutes=m, seconds=20),
                        "text": text,
                        "author": who,
                        "created_at": created,
                    }
                    for a_id, run_id, m, text, who in notes
                    if m < minutes
                ]
            ),
        )
        settings = get_settings()
        con.execute(
            "INSERT INTO kafka_offsets SELECT ?, ?, p::INTEGER, ?, now() FROM range(?) t(p)",
            [
                settings.sink.group,
                settings.topic.scores,
                total // settings.kafka.partitions,
                settings.kafka.partitions,
            ],
        )
        con.execute("DROP TABLE g")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return path


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _sql_list(items: list[str]) -> str:
    quoted = ", ".join("'" + s.replace("'", "''") + "'" for s in items)
    return f"[{quoted}]::VARCHAR[]"


def _insert_arrow(con, table: str, data: pa.Table) -> None:  # noqa: ANN001 - duckdb connection
    """Insert an Arrow table by column name (the DDL decides column order and types)."""
    if data.num_rows == 0:
        return
    con.register("_arrow_in", data)
    cols = ", ".join(data.column_names)
    con.execute(f"INSERT INTO {table} ({cols}) SELECT {cols} FROM _arrow_in")
    con.unregister("_arrow_in")


def _insert_run(con, run_id: str, model: str, lag: timedelta, fraction: float, bias: float) -> None:  # noqa: ANN001
    """Posts, authors, scores and stances of one run, all generated from the temp table ``g``."""
    keep = f"u(i, 'replay') < {float(fraction)}"
    lag_us = int(lag.total_seconds() * 1e6)
    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE r AS
        SELECT g.*,
            'p' || lpad(i::VARCHAR, 9, '0') AS post_id,
            'a' || author_idx AS author_id,
            event_time + to_microseconds({lag_us} + ((0.3 + 1.5 * u(i, 'recv')) * 1e6)::BIGINT)
                AS received_at,
            -- latency grows under the outage's load
            exp(ln(0.12) + 0.6 * gauss(i, 'lat'))
                * CASE WHEN moment_topic = 'tech_outage' THEN 3 ELSE 1 END
                AS latency_s,
            greatest(-1.0, least(1.0, x + {float(bias)} + CASE WHEN {float(bias)} = 0 THEN 0
                ELSE 0.1 * gauss(i, 'model2') END)) AS xr
        FROM g WHERE {keep}
        """
    )
    con.execute(
        """
        INSERT INTO posts
        SELECT ?, post_id, ?, event_time, date_trunc('minute', event_time), author_id, text, 'en',
            NULL, NULL, 'simulator',
            json_object('id', post_id, 'run_id', ?, 'event_id', ?,
                        'event_time', strftime(event_time, '%Y-%m-%dT%H:%M:%S.%fZ'),
                        'author', json_object('id', author_id, 'handle', 'user' || author_idx),
                        'text', text, 'lang', 'en', 'source', 'simulator'),
            json_object('cohort', cohort, 'mood', round(x, 3)),
            received_at
        FROM r ORDER BY event_time
        """,
        [run_id, EVENT_ID, run_id, EVENT_ID],
    )
    bios_case = " ".join(
        f"WHEN '{c}' THEN {{'bio': '{b.replace(chr(39), chr(39) * 2)}', 'ev': {_sql_list(e)}}}"
        for c, (b, e) in BIOS.items()
    )
    con.execute(
        f"""
        INSERT INTO authors
        SELECT ?, author_id, 'user' || any_value(author_idx), bio.bio,
            (hash(any_value(author_idx), 'followers') % 50000)::BIGINT, cohort, bio.ev,
            count(*), max(received_at)
        FROM (SELECT *, CASE cohort {bios_case} END AS bio FROM r)
        GROUP BY author_id, cohort, bio
        """,
        [run_id],
    )
    con.execute(
        """
        INSERT INTO scores
        SELECT ?, post_id, event_time, date_trunc('minute', event_time), author_id, cohort,
            CASE WHEN abs(xr) < 0.25 THEN 'neutral' WHEN xr > 0 THEN 'positive' ELSE 'negative' END,
            (1 - xr) / 2 * (1 - 0.5 * (1 - abs(xr))),
            0.5 * (1 - abs(xr)),
            (1 + xr) / 2 * (1 - 0.5 * (1 - abs(xr))),
            xr * (1 - 0.5 * (1 - abs(xr))),
            emotion, topic, ?, received_at,
            received_at + to_microseconds((latency_s * 1e6)::BIGINT),
            received_at + to_microseconds(((latency_s + 0.2 + u(i, 'store')) * 1e6)::BIGINT)
        FROM r ORDER BY event_time
        """,
        [run_id, model],
    )
    con.execute(
        """
        INSERT INTO stances
        SELECT ?, post_id, sp.target, date_trunc('minute', r.event_time), r.cohort,
            CASE WHEN abs(y) < 0.2 THEN 'none' WHEN y > 0 THEN 'favor' ELSE 'against' END,
            (1 + y) / 2 * (1 - 0.6 * (1 - abs(y))),
            (1 - y) / 2 * (1 - 0.6 * (1 - abs(y))),
            0.6 * (1 - abs(y)),
            y * (1 - 0.6 * (1 - abs(y)))
        FROM r JOIN stance_plan sp ON sp.cohort = r.cohort,
        LATERAL (SELECT greatest(-1.0, least(1.0,
            sp.base + sp.follow * r.xr * 0.5 + 0.4 * gauss(r.i, 'stance' || sp.target))) AS y)
        ORDER BY r.event_time
        """,
        [run_id],
    )
    con.execute("DROP TABLE r")


def stance_db(path: Path | str, rows: list[tuple]) -> Path:
    """A fresh database holding only the given ``stances`` rows (known-answer view tests).

    Each row is ``(run_id, post_id, target, minute_offset, cohort, label, p_favor,
    p_against, p_none)``; the minute is ``START + minute_offset`` and ``net_stance`` is
    derived, as the sink does.
    """
    path = Path(path)
    path.unlink(missing_ok=True)
    table = pa.Table.from_pylist(
        [
            {
                "run_id": run_id,
                "post_id": post_id,
                "target": target,
                "minute": START + timedelta(minutes=offset),
                "cohort": cohort,
                "label": label,
                "p_favor": pf,
                "p_against": pa_,
                "p_none": pn,
                "net_stance": pf - pa_,
            }
            for run_id, post_id, target, offset, cohort, label, pf, pa_, pn in rows
        ]
    )
    con = connect(path)
    try:
        _insert_arrow(con, "stances", table)
        con.execute("CHECKPOINT")
    finally:
        con.close()
    return path
