"""Loopback-only listeners (the rule lives in ``infra/net.py``), with the setting applied."""

from __future__ import annotations

from infra import net
from infra.net import NonLoopbackError, is_loopback
from stream.config import Settings

__all__ = ["NonLoopbackError", "is_loopback", "require_loopback"]


def require_loopback(host: str, what: str, settings: Settings) -> None:
    """Refuse to serve ``what`` on a non-loopback host unless the settings allow it."""
    net.require_loopback(host, what, settings.allow_non_loopback)
