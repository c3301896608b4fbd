"""Stable sharding of studies across jobs (answer extraction, CT preprocessing, image encoding).

A study belongs to shard ``shard_of(study_id, n)``: a hash of its id modulo ``n``, so it
keeps its shard when studies are added or removed, on every machine and Python version
(``hash()`` is salted per process; SHA-256 is not).
"""

from __future__ import annotations

import hashlib
from typing import Sequence

from .errors import ConfigError


def shard_of(study_id: str, n: int) -> int:
    """The shard (0..n-1) a study belongs to; stable across runs and machines."""
    return int(hashlib.sha256(str(study_id).encode("utf-8")).hexdigest()[:12], 16) % n


def check_shard(i: int, n: int) -> tuple[int, int]:
    """``(i, n)`` as ints, or a :class:`~ctsurv.errors.ConfigError` unless ``0 <= i < n``."""
    i, n = int(i), int(n)
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"shard {i} of {n}: expected 0 <= shard < n (n = the config's shard count)")
    return i, n


def shard_members(study_ids: Sequence[str], i: int, n: int) -> list[str]:
    """The ids of shard ``i`` of ``n``, in the given order."""
    i, n = check_shard(i, n)
    return [str(s) for s in study_ids if shard_of(str(s), n) == i]
