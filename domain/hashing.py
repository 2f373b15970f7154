"""The one hash every decision uses: text onto 10,000 buckets, reproducible in any language."""

from __future__ import annotations

import hashlib

BUCKETS = 10_000
"""Buckets of the split: one bucket is 0.01% of traffic, the finest share a variant may get."""


def bucket(text: str) -> int:
    """0..9999: SHA-256 of ``text`` (UTF-8), first 8 bytes as a big-endian unsigned integer,
    modulo 10,000.

    SHA-256 is in every language's standard library, so any client can reproduce an assignment;
    the modulo bias of 2**64 onto 10,000 buckets is below 1e-15.
    """
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") % BUCKETS
