"""A least-recently-used cache of model outputs, bounded by entries and by bytes.

Retweets and copy-paste campaigns repeat texts, so the scorer keeps outputs by text. Posts
may be up to 10,000 characters, so a count bound alone could hold gigabytes: each entry is
charged its text's UTF-8 size plus :data:`ENTRY_OVERHEAD_BYTES` for the output dicts.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

# Python dicts of one output (sentiment, emotion, 11 event topics, three targets' stance):
# 3.5 KB each, measured with tracemalloc over 2,000 outputs; charged with some headroom.
ENTRY_OVERHEAD_BYTES = 4096


class ScoreCache:
    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max(0, max_entries)
        self.max_bytes = max(0, max_bytes)
        self.bytes = 0
        self._items: OrderedDict[str, tuple[dict[str, Any], int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, text: str) -> bool:
        return text in self._items

    def get(self, text: str) -> dict[str, Any]:
        """The cached output (shared: callers must not modify it); marks it recently used."""
        self._items.move_to_end(text)
        return self._items[text][0]

    def put(self, text: str, output: dict[str, Any]) -> None:
        size = len(text.encode("utf-8", "replace")) + ENTRY_OVERHEAD_BYTES
        if not self.max_entries or size > self.max_bytes:
            return
        if text in self._items:
            self.bytes -= self._items.pop(text)[1]
        self._items[text] = (output, size)
        self.bytes += size
        while len(self._items) > self.max_entries or self.bytes > self.max_bytes:
            self.bytes -= self._items.popitem(last=False)[1][1]

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
