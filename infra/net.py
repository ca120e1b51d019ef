"""The one rule for every listening socket: loopback only unless explicitly allowed.

The broker, the worker's web server, the query server and the dashboard serve data, so none
of them binds to an address other machines can reach unless the operator allows it
(``SWINGDIAL_ALLOW_NON_LOOPBACK=true``; ``stream/listeners.py`` reads that setting).
"""

from __future__ import annotations

import ipaddress


class NonLoopbackError(ValueError):
    """A listener was asked to bind to an address other machines can reach."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IPs (127.0.0.0/8, ::1); false for 0.0.0.0 or ''."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


def require_loopback(host: str, what: str, allowed: bool) -> None:
    """Refuse (raise :class:`NonLoopbackError`) to serve ``what`` on a non-loopback host."""
    if is_loopback(host) or allowed:
        return
    raise NonLoopbackError(
        f"refusing to run {what} on {host!r}: it listens on loopback only; set "
        "SWINGDIAL_ALLOW_NON_LOOPBACK=true to allow other machines to connect"
    )
