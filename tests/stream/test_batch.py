"""The worker's batch logic, without Kafka: every record ends in exactly one place (a scores
record or a dead letter with its reason), whatever the other records of the batch are."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.batch import (
    RECORD_OVERHEAD_BYTES,
    TRUNCATED_COPY_BYTES,
    BatchFailed,
    InRecord,
    history_key,
    score_batch,
)
from stream.schema import Post
from stream.testing import FakeScorer, poison_corpus, valid_post

MAX_BYTES = 1_000_000


def records(values: list[bytes | None], partition: int = 0) -> list[InRecord]:
    return [
        InRecord("posts", partition, offset, b"k", value, 1723507200.0)
        for offset, value in enumerate(values)
    ]


def run(values: list[bytes | None], scorer: FakeScorer | None = None, history=None):
    return score_batch(
        records(values),
        scorer or FakeScorer(),
        history if history is not None else {},
        version="fake-model",
        min_posts=3,
        max_bytes=MAX_BYTES,
    )


def test_every_poison_record_is_dead_lettered_and_valid_posts_between_them_are_scored():
    corpus = poison_corpus(MAX_BYTES)
    good = [valid_post(i).to_bytes() for i in range(len(corpus) + 1)]
    values: list[bytes | None] = [good[-1]]
    for g, bad in zip(good, corpus.values(), strict=False):
        values += [bad, g]
    out = run(values)
    assert sorted(json.loads(r.value)["post"]["id"] for r in out.scores) == sorted(
        json.loads(g)["id"] for g in good
    )
    assert len(out.dead_letters) == len(corpus)
    assert len(out.scores) + len(out.dead_letters) == len(values)
    for letter in out.dead_letters:
        assert letter.header("reason")
        assert len(letter.value) <= MAX_BYTES - RECORD_OVERHEAD_BYTES
    reasons = " | ".join(d.header("reason") or "" for d in out.dead_letters)
    for expected in ("nested too deeply", "event_id", "4300 digits", "scores record too large"):
        assert expected in reasons


def test_a_record_over_the_size_limit_is_dead_lettered_as_a_truncated_copy_with_its_hash():
    huge = poison_corpus(MAX_BYTES)["just over the size limit"]
    assert huge is not None and len(huge) > MAX_BYTES
    (letter,) = run([huge]).dead_letters
    assert letter.header("truncated") == "true"
    assert letter.header("original_size") == str(len(huge))
    assert letter.header("original_sha256") == hashlib.sha256(huge).hexdigest()
    assert letter.value == huge[:TRUNCATED_COPY_BYTES]
    assert letter.header("source_offset") == "0"


def test_small_bad_records_keep_their_original_bytes():
    raw = b"{this is not json"
    (letter,) = run([raw]).dead_letters
    assert letter.value == raw and letter.key == b"k"
    assert "not valid JSON" in (letter.header("reason") or "")
    assert letter.header("truncated") is None


def test_a_post_the_model_cannot_score_is_isolated_and_the_rest_are_scored():
    posts = [valid_post(i) for i in range(6)]
    posts[3] = valid_post(3, text="this one makes the model BOOM")
    out = run([p.to_bytes() for p in posts], FakeScorer(fail_on="BOOM"))
    assert {json.loads(r.value)["post"]["id"] for r in out.scores} == {
        p.id for i, p in enumerate(posts) if i != 3
    }
    (letter,) = out.dead_letters
    assert "scoring failed for this post" in (letter.header("reason") or "")


def test_a_broken_model_fails_the_whole_batch_so_it_is_not_acknowledged():
    with pytest.raises(BatchFailed):
        run([valid_post(i).to_bytes() for i in range(4)], FakeScorer(broken=True))


def test_a_batch_of_only_bad_records_does_not_call_the_model():
    scorer = FakeScorer(broken=True)
    out = run([b"nope", None], scorer)
    assert len(out.dead_letters) == 2 and scorer.calls == 0


def test_history_is_per_run_and_counts_each_post_once_across_a_replayed_batch():
    first = [valid_post(i, run_id="r1").to_bytes() for i in range(0, 34, 17)]  # author a0
    out = run(first)
    key = history_key(valid_post(0, run_id="r1"))
    partition, value = out.history[key]
    assert partition == 0 and value["posts"] == 2 and value["offset"] == 1
    # the same batch re-read after a crash: nothing new to count, nothing to write
    again = run(first, history={key: value})
    assert again.history == {} and len(again.scores) == 2
    # another run of the same author starts from an empty history
    other = run([valid_post(0, run_id="r2").to_bytes()], history={key: value})
    assert other.history[history_key(valid_post(0, run_id="r2"))][1]["posts"] == 1


valid_posts = st.integers(0, 10_000).map(lambda i: valid_post(i, run_id="h"))
any_value = st.one_of(st.binary(max_size=300), st.none(), valid_posts)


@settings(max_examples=150, deadline=None)
@given(st.lists(any_value, max_size=30))
def test_any_bytes_end_in_exactly_one_place(values):
    raw = [v.to_bytes() if isinstance(v, Post) else v for v in values]
    out = run(raw)
    assert len(out.scores) + len(out.dead_letters) == len(values)
    wanted = [v.id for v in values if isinstance(v, Post)]
    assert sorted(json.loads(r.value)["post"]["id"] for r in out.scores) == sorted(wanted)
    offsets = sorted(int(d.header("source_offset") or -1) for d in out.dead_letters)
    assert len(set(offsets)) == len(offsets)
