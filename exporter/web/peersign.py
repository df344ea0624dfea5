"""Requests between shards: signed with a key only the shards hold, so that a client cannot pose as a peer.

A shard that hands a write (or a read) to another signs, with HMAC-SHA256 under a key derived
from `--shard.secret-file`, the method, the raw path and query, the SHA-256 of the body, its own
index, the time, a random nonce, the user it authenticated and whether the caller was on
loopback. The receiving shard accepts the claims only when the signature matches, the time is
within SKEW seconds of its own, and the nonce has not been seen in that window (a captured
request cannot be replayed, nor its body, path or user changed). The caller's own credentials
travel too and are checked again by the owner: the signature adds only what the owner cannot
see itself (that the caller came over loopback at the first shard) and marks the request as a
peer's, so that it is answered locally and never handed on again.
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import hmac
import math
import os
import time
from dataclasses import dataclass

PREFIX = "X-Qualitygate-Shard-"
SIGNATURE = PREFIX + "Signature"
# A peer's answer to a signed request is signed too (over the request's nonce and the answer's body), so a
# host on the path between shards cannot hand a shard made-up attestations, pushes or gate states.
ANSWER = PREFIX + "Answer"
HEADERS = ("From", "Time", "Nonce", "User", "Loopback", "Body-Sha256")
SKEW = 30.0  # seconds a signed request stays valid either side of the receiver's clock
MIN_SECRET = 16  # bytes: a shorter secret file is a usage error
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class SignatureError(Exception):
    """A request that claims to come from a peer but does not prove it."""


@dataclass(frozen=True)
class Claim:
    """What a verified peer request says about its caller."""

    shard: int
    user: str | None
    loopback: bool
    body_sha256: str


def derive_key(secret: bytes) -> bytes:
    """The signing key: derived, so that the file's bytes are never used as a key anywhere else."""
    return hmac.new(secret.strip(), b"qualitygate shard forwarding v1", hashlib.sha256).digest()


def read_secret(path: str) -> bytes:
    """The shared secret's bytes (ValueError when it is too short or unreadable)."""
    try:
        with open(path, "rb") as fh:
            secret = fh.read(4096).strip()
    except OSError as exc:
        raise ValueError(f"cannot read --shard.secret-file {path}: {exc.strerror or exc}") from None
    if len(secret) < MIN_SECRET:
        raise ValueError(f"--shard.secret-file {path} holds {len(secret)} bytes; at least {MIN_SECRET} are needed "
                         "(e.g. head -c 32 /dev/urandom | base64)")
    return secret


def _message(method: str, path_qs: str, fields: dict[str, str]) -> bytes:
    parts = ["qualitygate-shard-v1", method.upper(), path_qs, *(fields[h] for h in HEADERS)]
    return "\n".join(parts).encode("utf-8", "surrogateescape")


def _answer_message(nonce: str, body: bytes) -> bytes:
    return f"qualitygate-shard-answer-v1\n{nonce}\n{hashlib.sha256(body).hexdigest()}".encode()


class Signer:
    """Signs outgoing peer requests and verifies incoming ones (one per process: it remembers nonces)."""

    def __init__(self, key: bytes, index: int, clock: collections.abc.Callable[[], float] = time.time):
        self._key = key
        self.index = index
        self._clock = clock
        self._seen: collections.OrderedDict[str, float] = collections.OrderedDict()

    def sign(self, method: str, path_qs: str, body: bytes | str = EMPTY_SHA256, *, user: str | None = None,
             loopback: bool = False) -> dict[str, str]:
        """The headers that prove this request comes from this shard (`body`: bytes, or their hex SHA-256)."""
        digest = hashlib.sha256(body).hexdigest() if isinstance(body, bytes) else body
        fields = {
            "From": str(self.index),
            "Time": f"{self._clock():.3f}",
            "Nonce": os.urandom(16).hex(),
            "User": "" if user is None else base64.urlsafe_b64encode(user.encode()).decode(),
            "Loopback": "1" if loopback else "0",
            "Body-Sha256": digest,
        }
        mac = hmac.new(self._key, _message(method, path_qs, fields), hashlib.sha256).hexdigest()
        return {**{PREFIX + h: v for h, v in fields.items()}, SIGNATURE: mac}

    def verify(self, method: str, path_qs: str, headers: collections.abc.Mapping[str, str]) -> Claim:
        """The claim of a signed request; SignatureError when the signature, time or nonce is not right."""
        fields = {h: headers.get(PREFIX + h, "") for h in HEADERS}
        given = headers.get(SIGNATURE, "")
        expected = hmac.new(self._key, _message(method, path_qs, fields), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise SignatureError("bad shard signature (is --shard.secret-file the same on every shard?)")
        now = self._clock()
        try:
            at = float(fields["Time"])
            if not math.isfinite(at):
                raise ValueError("time")
            shard = int(fields["From"])
            user = base64.urlsafe_b64decode(fields["User"]).decode() if fields["User"] else None
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise SignatureError("malformed shard headers") from None
        if abs(now - at) > SKEW:
            raise SignatureError(f"shard request signed {now - at:+.0f}s from this shard's clock (limit {SKEW:g}s)")
        self._forget(now)
        nonce = fields["Nonce"]
        if nonce in self._seen:
            raise SignatureError("shard request replayed (nonce already seen)")
        self._seen[nonce] = at
        return Claim(shard, user, fields["Loopback"] == "1", fields["Body-Sha256"])

    def answer(self, nonce: str, body: bytes) -> str:
        """The signature of an answer `body` to the request that carried `nonce`."""
        return hmac.new(self._key, _answer_message(nonce, body), hashlib.sha256).hexdigest()

    def answer_ok(self, nonce: str, body: bytes, given: str) -> bool:
        """Whether `given` signs `body` as the answer to the request that carried `nonce`."""
        return hmac.compare_digest(given.encode(), self.answer(nonce, body).encode())

    def _forget(self, now: float) -> None:
        # A nonce older than the window cannot pass the time check again: it need not be kept.
        while self._seen:
            nonce, at = next(iter(self._seen.items()))
            if at >= now - 2 * SKEW:
                break
            del self._seen[nonce]


def is_signed(headers: collections.abc.Mapping[str, str]) -> bool:
    """Whether a request claims to come from a peer shard."""
    return SIGNATURE in headers
