"""Deterministic sharding of gates over N exporters, by rendezvous (highest-random-weight) hashing.

Each gate has a shard key: its tracker and step (or an explicit `shard_key`), so a step's gates
stay together; an `uptime` gate takes the key of the gate it observes, so it always sits beside
that gate's history. For a key, every shard i in 0..N-1 gets a score hash(key, i); the highest
wins. Growing from N to N+1 shards moves only the keys whose new shard N now scores highest:
about 1/(N+1) of them, the minimum any scheme can move; no other key changes shard.
"""

from __future__ import annotations

import hashlib

from exporter.config.model import Config, Gate


def score(key: str, shard: int) -> int:
    """A stable 64-bit score of a key on a shard (same on every machine and Python run)."""
    digest = hashlib.blake2b(f"{shard}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def shard_of(key: str, count: int) -> int:
    """The shard (0..count-1) a key belongs to."""
    return max(range(count), key=lambda i: score(key, i))


def gate_key(config: Config, gate: Gate) -> str:
    """The key a gate is placed by: explicit shard_key, else tracker/step; uptime gates follow their target."""
    if gate.kind == "uptime":
        target = config.gate(gate.spec.gate)
        if target is not None and target is not gate:
            gate = target
    if gate.shard_key:
        return f"{config.tracker}/{gate.shard_key}"
    return f"{config.tracker}/{gate.phase}/{gate.step}"


def shard_config(config: Config, index: int, count: int) -> Config:
    """The part of a config that shard `index` of `count` evaluates and exports."""
    if count <= 1:
        return config
    return config.restrict(lambda g: shard_of(gate_key(config, g), count) == index)


def owner_of(config: Config, gate_id: str, count: int) -> int | None:
    """The shard that owns a gate of this (whole, unsharded) config; None for an unknown gate."""
    gate = config.gate(gate_id)
    if gate is None:
        return None
    return shard_of(gate_key(config, gate), count) if count > 1 else 0
