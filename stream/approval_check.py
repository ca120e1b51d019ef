"""Does the approval dial follow the truth? Real labelled tweets through the real pipeline.

Builds a 60-minute stream from P-Stance *validation* tweets about Donald Trump (never
trained on) whose favor share swings minute by minute on a known curve, sends it through
Kafka -> worker -> sink like any source, and correlates the stored per-minute approval
(``v_minute_approval``) with the labels' own per-minute approval. The old mood-style view
(mean net stance over all posts, ``v_minute_cohort_target``) is measured beside it.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from stream.config import Settings
from stream.schema import Author, Post

TARGET = "Donald Trump"
START = datetime(2024, 8, 13, 0, 0, tzinfo=UTC)


@dataclass
class CheckStream:
    posts: list[Post]
    truth: dict[datetime, float]  # minute -> (favor - against) / (favor + against) of labels


def labelled_tweets(shared_data: Path) -> dict[str, list[str]]:
    """P-Stance validation tweets toward Trump, by label (favor / against)."""
    out: dict[str, list[str]] = {"favor": [], "against": []}
    for line in (shared_data / "stance" / "pstance_val.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row.get("target") == TARGET and row.get("label") in out:
            out[row["label"]].append(row["text"])
    return out


def build_stream(
    shared_data: Path, minutes: int = 60, per_minute: int = 15, seed: int = 7
) -> CheckStream:
    """Per minute, ``per_minute`` tweets whose favor share follows a swinging curve."""
    rng = random.Random(seed)
    pools = labelled_tweets(shared_data)
    posts: list[Post] = []
    truth: dict[datetime, float] = {}
    for m in range(minutes):
        share = 0.5 + 0.45 * math.sin(2 * math.pi * 1.5 * m / minutes + 0.3)
        favor = sum(rng.random() < share for _ in range(per_minute))
        labels = ["favor"] * favor + ["against"] * (per_minute - favor)
        minute = START + timedelta(minutes=m)
        truth[minute] = (2 * favor - per_minute) / per_minute
        for i, label in enumerate(labels):
            n = len(posts)
            posts.append(
                Post(
                    id=f"check-{n}",
                    run_id="approval-check",
                    event_id="approval-check",
                    event_time=minute + timedelta(seconds=rng.uniform(0, 59)),
                    # One cohort for every author ("Independent" bios), so the cohort's
                    # approval is the whole minute's.
                    author=Author(id=f"u{n}", handle=f"user{n}", bio="Independent voter"),
                    text=rng.choice(pools[label]),
                    source=f"check:{label}:{i}",
                )
            )
    return CheckStream(posts, truth)


def pearson(xs: list[float], ys: list[float]) -> float:
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx and syy else float("nan")


def run_check(broker_settings: Settings, minutes: int = 60, per_minute: int = 15) -> dict[str, Any]:
    """Stream the check through a worker and sink of its own; returns the correlations."""
    from stream import kafka
    from stream.bench import count_stored, running_pipeline

    stream = build_stream(broker_settings.shared_data, minutes, per_minute)
    tag = f"approval-{int(time.time()) % 10**6}"
    with running_pipeline(broker_settings, tag, targets=[TARGET]) as (settings, client, _):
        producer = kafka.producer(settings)
        for post in stream.posts:
            producer.send(settings.topic.posts, key=post.author.id.encode(), value=post.to_bytes())
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            if count_stored(client, "approval-check") >= len(stream.posts):
                break
            time.sleep(1)
        approval = client.sql(
            "SELECT minute, sum(n_stance) AS n_stance, "
            "sum(approval * n_stance) / sum(n_stance) AS approval "
            "FROM v_minute_approval WHERE run_id = 'approval-check' AND target = ? "
            "GROUP BY minute ORDER BY minute",
            [TARGET],
        ).to_pylist()
        mood = client.sql(
            "SELECT minute, avg(net_stance) AS net FROM stances "
            "WHERE run_id = 'approval-check' AND target = ? GROUP BY minute ORDER BY minute",
            [TARGET],
        ).to_pylist()
    rows = [r for r in approval if r["approval"] is not None]
    truth = [stream.truth[r["minute"]] for r in rows]
    mood_by_minute = {r["minute"]: r["net"] for r in mood}
    return {
        "minutes": len(rows),
        "posts": len(stream.posts),
        "stance_posts_per_minute": float(sum(r["n_stance"] for r in rows)) / max(1, len(rows)),
        "r_approval": pearson([r["approval"] for r in rows], truth),
        "r_mean_net_stance": pearson([mood_by_minute[r["minute"]] for r in rows], truth),
        "truth_range": [min(truth), max(truth)],
        "approval_range": [min(r["approval"] for r in rows), max(r["approval"] for r in rows)],
    }
