"""The worker's overlap of scoring and delivery, without Kafka: batch N+1 is scored while
batch N is being delivered, yet a batch is acknowledged only after its delivery, in order,
and a batch that fails for good is never acknowledged (nor is anything after it)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

import pytest

from stream.batch import BatchOutput, InRecord, apply_history, history_key, score_batch
from stream.overlap import Overlap
from stream.testing import FakeScorer, valid_post


class GaveUp(Exception):
    """What the worker's os._exit(70) is in these tests."""


def give_up(records: Sequence[Any], exc: BaseException) -> NoReturn:
    raise GaveUp(list(records)) from exc


class Recorder:
    """Scoring, delivery and acks that log what happened, in what order."""

    def __init__(self, fail_deliveries: dict[str, int] | None = None) -> None:
        self.events: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.fail_deliveries = dict(fail_deliveries or {})

    def score(self, records: Sequence[str]) -> str:
        self.events.append(f"score {records[0]}")
        if records[0].startswith("broken"):
            raise RuntimeError("model unavailable")
        return records[0]

    def prepare(self, output: str) -> str:
        self.events.append(f"prepare {output}")
        return output

    async def deliver(self, batch: str) -> None:
        self.events.append(f"send {batch}")
        if self.fail_deliveries.get(batch, 0) > 0:
            self.fail_deliveries[batch] -= 1
            raise ConnectionError("broker refused")
        gate = self.gates.setdefault(batch, asyncio.Event())
        await gate.wait()
        self.events.append(f"delivered {batch}")

    def ack(self, handle: str) -> None:
        self.events.append(f"ack {handle}")

    def overlap(self, retries: int = 2) -> Overlap:
        return Overlap(
            score=self.score,
            prepare=self.prepare,
            deliver=self.deliver,
            ack=self.ack,
            give_up=give_up,
            retries=retries,
            backoff=lambda attempt: 0.0,
        )

    def release(self, batch: str) -> None:
        self.gates.setdefault(batch, asyncio.Event()).set()


def test_the_next_batch_is_scored_while_the_previous_one_is_still_in_delivery():
    async def main() -> list[str]:
        rec = Recorder()
        pipe = rec.overlap()
        await pipe.submit(["b1"], "b1")
        second = asyncio.ensure_future(pipe.submit(["b2"], "b2"))
        await asyncio.sleep(0.05)
        # b2 is scored, b1 is not yet delivered: nothing acked, b2 waits for b1.
        assert "score b2" in rec.events and "ack b1" not in rec.events
        assert not second.done()
        rec.release("b1")
        await second
        rec.release("b2")
        await pipe.drain()
        return rec.events

    events = asyncio.run(main())
    assert events.index("score b2") < events.index("delivered b1")
    assert events.index("delivered b1") < events.index("ack b1") < events.index("prepare b2")
    assert events.index("ack b1") < events.index("ack b2")
    assert events.index("delivered b2") < events.index("ack b2")


def test_at_most_one_batch_is_in_delivery_and_acks_follow_batch_order():
    async def main() -> list[str]:
        rec = Recorder()
        pipe = rec.overlap()
        await pipe.submit(["b1"], "b1")
        second = asyncio.ensure_future(pipe.submit(["b2"], "b2"))
        rec.release("b2")  # b2 could be delivered at once, but must not start before b1 is
        await asyncio.sleep(0.05)
        assert "send b2" not in rec.events and not second.done()
        rec.release("b1")
        await second
        rec.release("b3")
        await pipe.submit(["b3"], "b3")
        await pipe.drain()
        return rec.events

    events = asyncio.run(main())
    assert [e for e in events if e.startswith("ack")] == ["ack b1", "ack b2", "ack b3"]
    assert events.index("ack b1") < events.index("send b2")
    for name in ("b1", "b2", "b3"):
        assert events.index(f"delivered {name}") < events.index(f"ack {name}")


def test_a_delivery_that_fails_for_good_acks_neither_it_nor_any_later_batch():
    async def main(rec: Recorder) -> None:
        pipe = rec.overlap(retries=2)
        rec.release("b1")
        await pipe.submit(["b1"], "b1")
        await pipe.submit(["b2"], "b2")  # b2's delivery fails three times
        await pipe.submit(["b3"], "b3")  # b3 is scored meanwhile, then b2 gives up

    rec = Recorder(fail_deliveries={"b2": 10})
    with pytest.raises(GaveUp) as failed:
        asyncio.run(main(rec))
    assert failed.value.args[0] == ["b2"]
    assert [e for e in rec.events if e.startswith("ack")] == ["ack b1"]
    assert rec.events.count("send b2") == 3  # the first try and two retries
    assert "prepare b3" not in rec.events  # b3's delivery never started


def test_a_transient_delivery_failure_is_retried_and_acked_once():
    async def main(rec: Recorder) -> None:
        pipe = rec.overlap(retries=2)
        rec.release("b1")
        await pipe.submit(["b1"], "b1")
        await pipe.drain()

    rec = Recorder(fail_deliveries={"b1": 1})
    asyncio.run(main(rec))
    assert rec.events == ["score b1", "prepare b1", "send b1", "send b1", "delivered b1", "ack b1"]


def test_a_batch_that_cannot_be_scored_lets_the_previous_one_finish_but_is_never_acked():
    async def main(rec: Recorder) -> None:
        pipe = rec.overlap(retries=1)
        await pipe.submit(["b1"], "b1")
        asyncio.get_running_loop().call_later(0.05, rec.release, "b1")
        await pipe.submit(["broken"], "broken")

    rec = Recorder()
    with pytest.raises(GaveUp) as failed:
        asyncio.run(main(rec))
    assert failed.value.args[0] == ["broken"]
    assert rec.events.count("score broken") == 2
    assert "ack b1" in rec.events and "ack broken" not in rec.events


def records(posts, first_offset: int) -> list[InRecord]:
    return [
        InRecord("posts", 0, first_offset + i, b"k", p.to_bytes(), 1723507200.0)
        for i, p in enumerate(posts)
    ]


def test_the_next_batch_reads_the_history_of_the_previous_one_while_it_is_in_delivery():
    """Real score_batch on the executor: an author's posts spread over overlapped batches
    are each counted once, as if the batches had run one at a time."""
    history: dict[str, Any] = {}
    held: list[asyncio.Event] = []
    acked: list[int] = []

    def score(batch: Sequence[InRecord]) -> BatchOutput:
        return score_batch(
            batch, FakeScorer(), history, version="fake", min_posts=3, max_bytes=1_000_000
        )

    async def deliver(payload: tuple[BatchOutput, list]) -> None:
        gate = asyncio.Event()
        held.append(gate)
        asyncio.get_running_loop().call_later(0.02, gate.set)
        await gate.wait()

    async def main() -> list[BatchOutput]:
        pipe = Overlap(
            score=score,
            prepare=lambda out: (out, apply_history(history, out.history, 1000)),
            deliver=deliver,
            ack=acked.append,
            give_up=give_up,
            executor=ThreadPoolExecutor(1),
            backoff=lambda attempt: 0.0,
        )
        outs = []
        for n in range(5):  # author a0 posts in every batch (post i has author a{i % 17})
            posts = [valid_post(17 * (2 * n + k), run_id="r") for k in range(2)]
            outs.append(await pipe.submit(records(posts, 2 * n), n))
        await pipe.drain()
        return outs

    outs = asyncio.run(main())
    assert acked == [0, 1, 2, 3, 4]
    evidence = [line for out in outs for r in out.scores
                for line in json.loads(r.value)["cohort"]["evidence"]]  # fmt: skip
    # "history: <stance posts>/<posts> posts with stance ..."
    counted = [int(line.split("/")[1].split()[0]) for line in evidence if "history:" in line]
    assert counted == list(range(1, 11))  # 1, 2, ... 10 posts: each counted once, in order
    assert history[history_key(valid_post(0, run_id="r"))]["posts"] == 10


def test_apply_history_stores_updates_most_recent_last_and_evicts_beyond_the_limit():
    history: dict[str, Any] = {"old": {"posts": 1, "partition": 2}, "kept": {"posts": 1}}
    writes = apply_history(history, {"new": (1, {"posts": 1}), "kept": (0, {"posts": 2})}, 2)
    assert list(history) == ["new", "kept"]
    assert writes == [("new", 1, {"posts": 1}), ("kept", 0, {"posts": 2}), ("old", 2, None)]
