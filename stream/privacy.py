"""Pseudonymous storage (``SWINGDIAL_PSEUDONYMIZE=true``).

The sink stores a keyed hash (HMAC-SHA256) in place of each author's id and handle, and
drops bios once the worker has used them for the cohort call (bio phrases in the cohort
evidence are redacted too). The same author maps to the same pseudonym across runs while
the key stays the same, so per-author analysis still works; without the key the mapping
cannot be recomputed from a list of handles. Exports and replays read the stored rows, so
they carry only pseudonyms. Kafka's ``posts`` topic still holds what producers sent: keep
its retention short when this matters.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from stream.config import Settings
from stream.schema import Author, ScoredPost

REDACTED_BIO_EVIDENCE = "bio: self-description matched (bio not stored)"


class Pseudonymizer:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def name(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode(), hashlib.sha256).hexdigest()
        return f"u_{digest[:24]}"

    def scored(self, scored: ScoredPost) -> ScoredPost:
        """The record with author id and handle hashed, bio and bio evidence removed."""
        author = scored.post.author
        hidden = Author(
            id=self.name(author.id),
            handle=self.name(author.handle),
            bio="",
            followers=author.followers,
        )
        evidence = [
            REDACTED_BIO_EVIDENCE if line.startswith("bio:") else line
            for line in scored.cohort.evidence
        ]
        return scored.model_copy(
            update={
                "post": scored.post.model_copy(update={"author": hidden}),
                "cohort": scored.cohort.model_copy(update={"evidence": evidence}),
            }
        )


def load_key(settings: Settings) -> bytes:
    """``SWINGDIAL_PSEUDONYMIZE_KEY``, else a random key kept in ``<home>/pseudonym.key``
    (0600; created once, never rotated by swingdial: a new key means new pseudonyms)."""
    if settings.pseudonymize_key is not None:
        return settings.pseudonymize_key.get_secret_value().encode()
    path = settings.home / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def pseudonymizer(settings: Settings) -> Pseudonymizer | None:
    return Pseudonymizer(load_key(settings)) if settings.pseudonymize else None
