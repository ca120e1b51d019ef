"""`swingdial dlq`: dead letters counted by reason, listed, and sent back once fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from stream.cli import main
from stream.config import Settings, get_settings
from tests.factories import make_settings, populated_db

COUNTS = """\
reason_kind                       records    truncated    last_at
--------------------------------  ---------  -----------  -------------------------
not valid JSON                    6          0            2024-08-13 00:00:00+00:00
text                              3          1            2024-08-13 00:00:00+00:00
event_id                          2          0            2024-08-13 00:00:00+00:00
author.followers                  1          0            2024-08-13 00:00:00+00:00
empty record value (tombstone)    1          0            2024-08-13 00:00:00+00:00
event_time                        1          0            2024-08-13 00:00:00+00:00
expected a JSON object, got list  1          0            2024-08-13 00:00:00+00:00
expected a JSON object, got str   1          0            2024-08-13 00:00:00+00:00
run_id                            1          0            2024-08-13 00:00:00+00:00
scores record too large           1          0            2024-08-13 00:00:00+00:00
(10 rows)
"""


def use(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, text in settings.to_env().items():
        monkeypatch.setenv(name, text)
    get_settings.cache_clear()


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    settings = make_settings(tmp_path)
    populated_db(settings, n=10)  # + the poison corpus, dead-lettered by the worker's code
    use(settings, monkeypatch)
    yield settings
    get_settings.cache_clear()


def test_dlq_counts_by_reason(db: Settings) -> None:
    result = CliRunner().invoke(main, ["dlq"])
    assert result.exit_code == 0, result.output
    assert result.output == COUNTS


def test_dlq_list_json_carries_the_bytes_and_replays_after_a_fix(db: Settings, tmp_path) -> None:
    listed = CliRunner().invoke(main, ["dlq", "list", "--reason", "event_id", "-f", "json"])
    assert listed.exit_code == 0, listed.output
    rows = [json.loads(line) for line in listed.output.splitlines()]
    assert {json.loads(r["raw"])["event_id"] for r in rows} == {
        "/etc/ld.so.conf",
        "../../etc/passwd",
    }
    fixed = tmp_path / "fixed.jsonl"
    with fixed.open("w") as out:
        for row in rows:
            post = json.loads(row["raw"])
            post["event_id"] = "trump-musk-2024"
            out.write(json.dumps(row | {"raw": json.dumps(post)}) + "\n")
    dry = CliRunner().invoke(main, ["dlq", "replay", "--file", str(fixed), "--dry-run"])
    assert dry.output == "would send 2 records to posts\n"


def test_dlq_replay_needs_a_source(db: Settings) -> None:
    result = CliRunner().invoke(main, ["dlq", "replay"])
    assert result.exit_code == 2 and "give --file" in result.output


@pytest.mark.integration
def test_replayed_records_reach_the_posts_topic(
    kafka_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stream import kafka
    from stream.testing import valid_post

    settings = kafka_settings
    populated_db(settings, n=5)
    use(settings, monkeypatch)
    fixed = tmp_path / "fixed.jsonl"
    fixed.write_text(valid_post(1, run_id="fixed").to_bytes().decode() + "\n")
    sent = CliRunner().invoke(main, ["dlq", "replay", "--file", str(fixed)])
    resent = CliRunner().invoke(main, ["dlq", "replay", "--reason", "scores record too large"])
    get_settings.cache_clear()
    assert sent.output == f"sent 1 record to {settings.topic.posts}\n", sent.output
    assert resent.output == f"sent 1 record to {settings.topic.posts}\n", resent.output
    consumer = kafka.consumer(settings, settings.topic.posts, consumer_timeout_ms=3000)
    values = [json.loads(r.value) for r in consumer]
    consumer.close()
    assert sorted(v["id"] for v in values) == ["fixed-1", "p-big-truth"]
