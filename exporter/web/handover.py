"""Resharding: a gate's attestations and pushed evidence follow it to its new shard.

Each shard keeps what it was given. At start, a shard asks every peer for what they hold of
the gates it owns now (`GET /-/shard/handover?index=I&count=N`, signed) and stores what it does
not have yet; then it re-evaluates those gates. A peer that does not answer is asked again every
RETRY seconds until it has answered once. Attestations and pushes are facts with a time, so
taking them twice changes nothing (equal ones are skipped) and the newest still decides. The old
shard's copy goes with the state file's grace period for gates no longer configured (7 days).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import aiohttp

from exporter.engine.runtime import Runtime
from exporter.engine.sharding import owner_of
from exporter.log import kv
from exporter.state.store import StorageError
from exporter.web.peerwire import attestation_from, attestation_json, push_from, push_json

if TYPE_CHECKING:
    from exporter.web.peers import Peers

log = logging.getLogger("qualitygate.peers")

RETRY = 2.0  # seconds between asks of a peer that did not answer
ASK_TIMEOUT = 10.0


def held_for(runtime: Runtime, index: int, count: int) -> dict[str, Any]:
    """The attestations and pushes this shard holds of the gates shard `index` of `count` owns."""
    store = runtime.store
    out: dict[str, dict[str, Any]] = {}
    if store is None:
        return {"trackers": out}
    for name, config in runtime.whole.items():
        for gate in config.gates:
            if owner_of(config, gate.id, count) != index:
                continue
            atts = store.attestations(name, gate.id)
            pushes = store.evidence(name, gate.id)
            if atts or pushes:
                out.setdefault(name, {})[gate.id] = {"attestations": [attestation_json(a) for a in atts],
                                                     "pushes": [push_json(p) for p in reversed(pushes)]}
    return {"trackers": out}


async def adopt(peers: Peers) -> None:
    """Ask every peer once (retrying those that do not answer) and take what they hold of this shard's gates."""
    runtime, settings = peers.runtime, peers.settings
    if runtime.store is None:
        return
    waiting = [i for i in range(settings.count) if i != settings.index]
    while waiting:
        for shard in list(waiting):
            path = f"/-/shard/handover?index={settings.index}&count={settings.count}"
            try:
                status, _, body = await peers.get(shard, path, ASK_TIMEOUT)
                if status != 200:
                    raise ValueError(f"HTTP {status}")
                doc = json.loads(body)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                reason = str(exc) or type(exc).__name__
                log.debug("handover: peer not answering yet", extra=kv(shard=shard, error=reason))
                continue
            waiting.remove(shard)
            taken = await _take(runtime, doc)
            if taken:
                log.info("handover: took a peer's attestations and pushes", extra=kv(shard=shard, **taken))
        if waiting:
            await asyncio.sleep(RETRY)


async def _take(runtime: Runtime, doc: dict[str, Any]) -> dict[str, int]:
    store = runtime.store
    assert store is not None
    counts = {"attestations": 0, "pushes": 0, "gates": 0}
    for name, gates in doc.get("trackers", {}).items():
        config = next((c for c in runtime.trackers.values() if c.tracker == name), None)
        if config is None:
            continue
        for gate_id, held in gates.items():
            gate = config.gate(gate_id)
            if gate is None:
                continue  # not this shard's after all (the peer counts another shard count)
            new = False
            have = set(store.attestations(name, gate_id))
            for att in map(attestation_from, held.get("attestations", [])):
                if att not in have:
                    await asyncio.wrap_future(store.attest(name, gate_id, att))
                    counts["attestations"] += 1
                    new = True
            have_pushes = store.evidence(name, gate_id)  # Push holds a dict: compared, not hashed
            for push in map(push_from, held.get("pushes", [])):
                if push in have_pushes:
                    continue
                try:
                    await store.add_push(name, gate_id, push)
                except StorageError as exc:
                    log.error("handover: push not stored", extra=kv(tracker=name, gate=gate_id, error=str(exc)))
                    continue
                runtime.evidence.accept(name, gate, push)
                counts["pushes"] += 1
                new = True
            if new:
                counts["gates"] += 1
                if runtime.scheduler is not None:
                    runtime.scheduler.trigger(name, gate_id)
    return counts if counts["gates"] else {}
