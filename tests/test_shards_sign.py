"""The signature of requests between shards: only a holder of the secret makes one, once, for one request."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.web.peersign import SKEW, SignatureError, Signer, derive_key, read_secret

KEY = derive_key(b"a shared secret of the shards, 32 bytes")


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pair(clock: Clock) -> tuple[Signer, Signer]:
    return Signer(KEY, 1, clock), Signer(KEY, 0, clock)


def test_a_signed_request_verifies_once_with_its_claims() -> None:
    sender, owner = pair(Clock())
    headers = sender.sign("POST", "/api/gates/g/attestations?tracker=t", b'{"value": true}', user="alice",
                          loopback=True)
    claim = owner.verify("POST", "/api/gates/g/attestations?tracker=t", headers)
    assert (claim.shard, claim.user, claim.loopback) == (1, "alice", True)
    with pytest.raises(SignatureError, match="replayed"):
        owner.verify("POST", "/api/gates/g/attestations?tracker=t", headers)


@pytest.mark.parametrize("change", [
    ("method", "GET"), ("path", "/api/gates/other/attestations?tracker=t"),
    ("X-Qualitygate-Shard-User", "Ym9i"), ("X-Qualitygate-Shard-Loopback", "1"),
    ("X-Qualitygate-Shard-Body-Sha256", "0" * 64), ("X-Qualitygate-Shard-From", "2"),
    ("X-Qualitygate-Shard-Time", "1800000001.000"),
])
def test_any_change_breaks_the_signature(change: tuple[str, str]) -> None:
    sender, owner = pair(Clock())
    headers = sender.sign("POST", "/api/gates/g/attestations?tracker=t", b"{}", user="alice")
    method, path = "POST", "/api/gates/g/attestations?tracker=t"
    what, value = change
    if what == "method":
        method = value
    elif what == "path":
        path = value
    else:
        headers[what] = value
    with pytest.raises(SignatureError, match="bad shard signature"):
        owner.verify(method, path, headers)


def test_another_secret_cannot_sign() -> None:
    clock = Clock()
    stranger = Signer(derive_key(b"a guess at the secret, 32 bytes long"), 1, clock)
    with pytest.raises(SignatureError, match="bad shard signature"):
        Signer(KEY, 0, clock).verify("GET", "/-/shard/state", stranger.sign("GET", "/-/shard/state"))


def test_an_old_or_future_signature_is_refused() -> None:
    clock = Clock()
    sender, owner = pair(clock)
    old = sender.sign("GET", "/-/shard/state")
    clock.now += SKEW + 1
    with pytest.raises(SignatureError, match="from this shard's clock"):
        owner.verify("GET", "/-/shard/state", old)
    clock.now -= 2 * (SKEW + 1)
    with pytest.raises(SignatureError, match="from this shard's clock"):
        owner.verify("GET", "/-/shard/state", old)


def test_nonces_are_forgotten_after_the_window_and_only_then() -> None:
    clock = Clock()
    sender, owner = pair(clock)
    for _ in range(100):
        owner.verify("GET", "/x", sender.sign("GET", "/x"))
    clock.now += 3 * SKEW
    owner.verify("GET", "/x", sender.sign("GET", "/x"))
    assert len(owner._seen) == 1  # the hundred older nonces could never verify again: dropped


def test_secret_file_is_checked(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("too short\n")
    with pytest.raises(ValueError, match="at least 16"):
        read_secret(str(short))
    with pytest.raises(ValueError, match="cannot read"):
        read_secret(str(tmp_path / "missing"))
    good = tmp_path / "good"
    good.write_text("  a shared secret of the shards, 32 bytes\n")
    assert derive_key(read_secret(str(good))) == KEY


def test_an_answer_is_signed_over_its_request_and_its_body() -> None:
    asker, peer = pair(Clock())
    nonce = asker.sign("GET", "/-/shard/handover?index=3&count=4")["X-Qualitygate-Shard-Nonce"]
    body = b'{"attestations": []}'
    mac = peer.answer(nonce, body)
    assert asker.answer_ok(nonce, body, mac)
    # A host between the shards cannot change the answer, reuse it for another request, or sign its own.
    assert not asker.answer_ok(nonce, b'{"attestations": [{"value": 1}]}', mac)
    assert not asker.answer_ok("0" * 32, body, mac)
    stranger = Signer(derive_key(b"another secret, also 32 bytes.."), 0)
    assert not asker.answer_ok(nonce, body, stranger.answer(nonce, body))
    assert not asker.answer_ok(nonce, body, "")


def test_a_signature_time_that_is_not_a_number_is_refused() -> None:
    # Signed with the key (so the signature holds) but at a time of NaN, which no window comparison catches.
    sender, owner = Signer(KEY, 1, lambda: float("nan")), Signer(KEY, 0, Clock())
    headers = sender.sign("GET", "/-/shard/state")
    assert headers["X-Qualitygate-Shard-Time"] == "nan"
    with pytest.raises(SignatureError, match="malformed"):
        owner.verify("GET", "/-/shard/state", headers)
