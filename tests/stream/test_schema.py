"""Post validation: what the worker accepts, and the reason it gives for what it refuses."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.schema import InvalidPost, Post, parse_post


def valid_post(**overrides) -> dict:
    post = {
        "id": "p1",
        "run_id": "run-1",
        "event_id": "trump-musk-2024",
        "event_time": "2024-08-13T00:45:00Z",
        "author": {"id": "a1", "handle": "jo", "bio": "Independent voter", "followers": 10},
        "text": "Finally the Space is live",
        "source": "test",
    }
    post.update(overrides)
    return post


def test_valid_post_round_trips_through_bytes():
    post = parse_post(json.dumps(valid_post()).encode())
    assert post.event_time == datetime(2024, 8, 13, 0, 45, tzinfo=UTC)
    assert parse_post(post.to_bytes()) == post


def test_naive_time_is_taken_as_utc():
    post = parse_post(json.dumps(valid_post(event_time="2024-08-13T00:45:00")))
    assert post.event_time.tzinfo is not None


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({k: v for k, v in valid_post().items() if k != "text"}).encode(), "text"),
        (json.dumps(valid_post(author={"id": "a"})).encode(), "author.handle"),
        (json.dumps(valid_post(event_time="yesterday")).encode(), "event_time"),
        (json.dumps(valid_post(event_time="1970-01-01T00:00:00Z")).encode(), "outside"),
        (json.dumps(valid_post(text="   ")).encode(), "blank"),
        (
            json.dumps(valid_post(author={"id": "a", "handle": "h", "followers": -5})).encode(),
            "followers",
        ),
        (json.dumps(valid_post(text=["a"])).encode(), "text"),
    ],
)
def test_invalid_records_say_why(raw: bytes, reason: str):
    with pytest.raises(InvalidPost) as info:
        parse_post(raw)
    assert reason in info.value.reason


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_other_errors(raw: bytes):
    try:
        parse_post(raw)
    except InvalidPost as exc:
        assert exc.reason
    # A random byte string that happens to be a valid post would be fine, too.


@given(st.text(min_size=1, max_size=300).filter(lambda t: t.strip()))
def test_any_nonblank_text_is_kept_exactly(text: str):
    post = Post.model_validate(valid_post(text=text))
    assert parse_post(post.to_bytes()).text == text
