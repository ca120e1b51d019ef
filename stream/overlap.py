"""Score batch N+1 while batch N's outputs are still on their way to Kafka, without ever
acknowledging a batch before every one of its outputs is delivered.

The worker (``stream/worker.py``) hands each micro-batch to :meth:`Overlap.submit`. Scoring
runs on the executor (the model thread) while the previous batch's delivery task sends,
awaits the broker and then acknowledges. The rules, which the unit tests check without
Kafka:

* a batch is acknowledged only after its delivery succeeded, and batches are acknowledged
  in the order they arrived (at most one batch is in delivery at a time);
* ``prepare`` (the author-history update) runs on the event loop after the previous
  batch's ``prepare`` and before the next batch is scored, so the next batch reads it;
* a batch whose scoring or delivery still fails after the retries goes to ``give_up``
  (the worker exits there without acknowledging: nothing unacked is ever committed).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, NoReturn, TypeVar

log = logging.getLogger(__name__)

R = TypeVar("R")  # an input record
O = TypeVar("O")  # noqa: E741 - what scoring returns
D = TypeVar("D")  # what delivery sends


def backoff_s(attempt: int) -> float:
    """Wait before retry ``attempt`` (1, 2, ...): 2, 4, 8, then 10 s."""
    return min(2.0**attempt, 10.0)


@dataclass
class Overlap(Generic[R, O, D]):
    """A two-stage pipeline: scoring (executor) overlapped with delivery + ack (event loop).

    score:    records -> output, run on ``executor`` (blocking: the model).
    prepare:  output -> what to deliver; runs on the loop, in batch order (history update).
    deliver:  sends it and returns once Kafka has all of it (raises otherwise).
    ack:      called with the batch's handle once its delivery succeeded.
    give_up:  called with the records and the error when retries are exhausted; must not
              return normally (the worker exits; tests raise).
    """

    score: Callable[[Sequence[R]], O]
    prepare: Callable[[O], D]
    deliver: Callable[[D], Awaitable[None]]
    ack: Callable[[Any], None]
    give_up: Callable[[Sequence[R], BaseException], NoReturn]
    executor: Executor | None = None
    retries: int = 3
    backoff: Callable[[int], float] = backoff_s
    before_score: Callable[[], Awaitable[None]] | None = None  # e.g. load the model once

    def __post_init__(self) -> None:
        self._in_flight: asyncio.Task[None] | None = None

    async def submit(self, records: Sequence[R], handle: Any) -> O:
        """Score ``records`` (overlapping the previous delivery), then start their delivery.

        Returns once the batch is scored and its delivery has started; the previous
        batch has been delivered and acknowledged by then.
        """
        try:
            output = await self._score(records)
        finally:
            # Whatever happened to this batch, the previous one finishes first (a failure
            # there ends in give_up, which never returns normally).
            await self._wait_previous()
        payload = self.prepare(output)
        self._in_flight = asyncio.ensure_future(self._deliver_then_ack(records, payload, handle))
        return output

    async def drain(self) -> None:
        """Wait until the batch in delivery (if any) is delivered and acknowledged."""
        await self._wait_previous()

    async def _wait_previous(self) -> None:
        task, self._in_flight = self._in_flight, None
        if task is not None:
            await task

    async def _score(self, records: Sequence[R]) -> O:
        loop = asyncio.get_running_loop()
        attempt = 0
        while True:
            try:
                if self.before_score is not None:
                    await self.before_score()
                return await loop.run_in_executor(self.executor, self.score, records)
            except Exception as exc:  # noqa: BLE001 - the batch failed as a whole
                attempt = await self._retry_or_give_up(records, exc, attempt, "scoring")

    async def _deliver_then_ack(self, records: Sequence[R], payload: D, handle: Any) -> None:
        attempt = 0
        while True:
            try:
                await self.deliver(payload)
                break
            except Exception as exc:  # noqa: BLE001 - Kafka refused an output
                attempt = await self._retry_or_give_up(records, exc, attempt, "delivery")
        self.ack(handle)

    async def _retry_or_give_up(
        self, records: Sequence[R], exc: BaseException, attempt: int, stage: str
    ) -> int:
        if attempt >= self.retries:
            self.give_up(records, exc)
        attempt += 1
        log.warning(
            "%s of a batch of %d failed (%r); retry %d of %d",
            stage,
            len(records),
            exc,
            attempt,
            self.retries,
        )
        await asyncio.sleep(self.backoff(attempt))
        return attempt
