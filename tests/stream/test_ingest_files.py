"""File ingest is how real posts enter: any text must survive the trip, columns must map,
and bad rows must reach the DLQ with a reason rather than vanish."""

from __future__ import annotations

import csv
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.cli import main
from stream.events import load_event
from stream.schema import InvalidPost, parse_post
from stream.sources.files import BadRow, ColumnMap, detect_format, ingest, parse_time
from stream.sources.producer import new_run_id, write_records
from stream.sources.simulator import simulate

T0 = datetime(2024, 8, 13, 0, 0, tzinfo=UTC)

# Any text a person could post: no surrogates (not encodable), at least one visible character.
post_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=200
).filter(lambda s: s.strip())


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def _write_csv(path: Path, rows: list[dict], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _posts(path: Path, **kwargs) -> list:
    return [r.post for r in ingest(path, event_id="ev", run_id="run", **kwargs)]


@settings(max_examples=60, deadline=None)
@given(texts=st.lists(post_text, min_size=1, max_size=5))
def test_text_round_trips_through_jsonl_csv_and_tsv(tmp_path_factory, texts):
    folder = tmp_path_factory.mktemp("rt")
    rows = [
        {"id": f"p{i}", "text": t, "created_at": "2024-08-13T00:00:00Z", "author_id": "a1"}
        for i, t in enumerate(texts)
    ]
    for path in (
        _write_jsonl(folder / "p.jsonl", rows),
        _write_csv(folder / "p.csv", rows),
        _write_csv(folder / "p.tsv", rows, delimiter="\t"),
    ):
        posts = _posts(path)
        assert [p.text for p in posts] == texts, path.name
        assert [p.id for p in posts] == [r["id"] for r in rows]


def test_csv_column_mapping_and_conversions(tmp_path):
    rows = [
        {
            "tweet_no": "17",
            "body": "Watching the Space, so far so good",
            "posted": "08/13/2024 00:45",
            "user": "jdoe",
            "about": "Undecided in PA",
            "fans": "1,234",
        }
    ]
    path = _write_csv(tmp_path / "export.csv", rows)
    columns = ColumnMap(
        id="tweet_no", text="body", time="posted", author_id="user", bio="about", followers="fans"
    )
    (post,) = _posts(path, columns=columns)
    assert post.id == "17" and post.text == rows[0]["body"]
    assert post.event_time == datetime(2024, 8, 13, 0, 45, tzinfo=UTC)
    assert post.author.id == post.author.handle == "jdoe"
    assert post.author.bio == "Undecided in PA" and post.author.followers == 1234
    assert post.event_id == "ev" and post.run_id == "run" and post.source == "file:export.csv"


def test_nested_twitter_json_maps_without_options(tmp_path):
    row = {
        "id_str": "1823",
        "full_text": "Trump on the border right now",
        "created_at": "Tue Aug 13 01:20:00 +0000 2024",
        "user": {
            "id_str": "99",
            "screen_name": "swingvoter",
            "description": "Independent",
            "followers_count": 88,
        },
        "lang": "en",
    }
    (post,) = _posts(_write_jsonl(tmp_path / "dump.jsonl", [row]))
    assert (post.id, post.author.id, post.author.handle) == ("1823", "99", "swingvoter")
    assert post.author.followers == 88 and post.author.bio == "Independent"
    assert post.event_time == datetime(2024, 8, 13, 1, 20, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "2024-08-13T00:30:00Z",
        "2024-08-13T00:30:00+00:00",
        "2024-08-12T20:30:00-04:00",
        "2024-08-13 00:30:00",
        1723509000,
        "1723509000",
        "1723509000000",
        1723509000.0,
        "Tue Aug 13 00:30:00 +0000 2024",
        "Tue, 13 Aug 2024 00:30:00 GMT",
        "08/13/2024 00:30",
        "2024/08/13 00:30:00",
    ],
)
def test_parse_time_formats(value):
    assert parse_time(value) == datetime(2024, 8, 13, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("value", ["", "soon", None, "13th of August"])
def test_parse_time_rejects_nonsense(value):
    with pytest.raises(ValueError):
        parse_time(value)


def test_bad_rows_are_sent_with_a_reason_or_stop_strict_mode(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps({"id": "1", "text": "fine", "created_at": "2024-08-13T00:01:00Z"}),
                '{"id": "2", "text": "cut off',
                "",
                json.dumps({"id": "3", "text": "", "created_at": "2024-08-13T00:02:00Z"}),
                json.dumps({"id": "4", "text": "when?", "created_at": "at some point"}),
                json.dumps({"id": "5", "text": "old", "created_at": "1970-01-01T00:00:00Z"}),
                json.dumps(["not", "an", "object"]),
                json.dumps({"id": "6", "text": "ok", "created_at": 1723509000, "followers": -5}),
            ]
        )
        + "\n"
    )
    records = list(ingest(path, event_id="ev", run_id="run"))
    assert [r.kind for r in records].count("original") == 1
    bad = [r for r in records if r.malformed]
    assert len(bad) == 6
    assert [r.reason.split(":")[0] for r in bad] == [
        "line 2",
        "line 4",
        "line 5",
        "line 6",
        "line 7",
        "line 8",
    ]
    assert bad[0].value == b'{"id": "2", "text": "cut off'  # the raw line, as it was
    for record in bad:
        with pytest.raises(InvalidPost):
            parse_post(record.value)
    assert json.loads(bad[1].value)["_source"]["where"] == "line 4"
    assert bad[1].key == b"unknown"  # no author column: the placeholder author
    with pytest.raises(BadRow) as err:
        list(ingest(path, event_id="ev", run_id="run", strict=True))
    assert err.value.where == "line 2"


def test_missing_ids_are_stable_and_ids_default_or_override(tmp_path):
    rows = [
        {"text": "no id here", "created_at": "2024-08-13T00:01:00Z", "author_id": "a"},
        {"text": "mine", "created_at": "2024-08-13T00:01:00Z", "run_id": "old", "event_id": "e0"},
    ]
    path = _write_jsonl(tmp_path / "p.jsonl", rows)
    first, second = _posts(path)
    assert first.id == _posts(path)[0].id and first.id.startswith("h")
    assert (first.run_id, first.event_id) == ("run", "ev")
    assert (second.run_id, second.event_id) == ("old", "e0")
    forced = [r.post for r in ingest(path, event_id="ev", run_id="new", override_ids=True)]
    assert {p.run_id for p in forced} == {"new"}


def test_realtime_pacing_uses_post_times(tmp_path):
    rows = [
        {"id": str(i), "text": "x", "created_at": (T0.timestamp() + s)}
        for i, s in enumerate([0, 10, 30, 20, 40])
    ]
    path = _write_jsonl(tmp_path / "p.jsonl", rows)
    delays = [r.delay_s for r in ingest(path, event_id="e", run_id="r", speed=2)]
    assert delays == [0, 5, 10, 0, 5]  # out-of-order rows never wait backwards
    assert {r.delay_s for r in ingest(path, event_id="e", run_id="r")} == {0}


def test_gzip_and_format_detection(tmp_path):
    path = tmp_path / "p.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps({"id": "1", "text": "zipped", "created_at": "2024-08-13"}) + "\n")
    assert detect_format(path) == "jsonl"
    assert [p.text for p in _posts(path)] == ["zipped"]
    with pytest.raises(ValueError):
        detect_format(tmp_path / "p.xlsx")


def test_simulator_dry_run_file_ingests_back_unchanged(tmp_path):
    event = load_event("trump-musk-2024")
    records = [r for r in simulate(event, "sim-run", seed=4, max_posts=300) if not r.malformed]
    path = tmp_path / "dry.jsonl"
    with path.open("wb") as out:
        write_records(out, records)
    back = _posts(path)
    assert {p.source for p in back} == {"file:dry.jsonl"}
    # ids, run, times, authors, truth and repost links all survive
    assert [p.model_copy(update={"source": "simulator"}) for p in back] == [r.post for r in records]


def test_new_run_id_format():
    run_id = new_run_id("trump-musk-2024", now=datetime(2026, 11, 23, 20, 45, 1, tzinfo=UTC))
    assert run_id.startswith("trump-musk-2024-20261123T204501Z-")
    assert len(run_id.rsplit("-", 1)[1]) == 4
    assert new_run_id("e") != new_run_id("e")


def test_cli_ingest_help_and_dry_run(tmp_path):
    result = CliRunner().invoke(main, ["ingest", "--help"])
    assert result.exit_code == 0
    assert "Examples" in result.output and "--text-col" in result.output
    rows = [{"tweet": "hello from a csv", "when": "2024-08-13 00:05:00", "who": "u1"}]
    src = _write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out.jsonl"
    args = [
        "ingest",
        str(src),
        "--text-col",
        "tweet",
        "--time-col",
        "when",
        "--author-col",
        "who",
        "--event-id",
        "trump-musk-2024",
        "--dry-run",
        str(out),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "1 posts sent, 0 malformed" in result.output
    post = parse_post(out.read_bytes().splitlines()[0])
    assert post.text == "hello from a csv" and post.event_id == "trump-musk-2024"
    assert post.run_id.startswith("trump-musk-2024-")
