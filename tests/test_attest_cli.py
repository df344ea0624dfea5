"""`qualitygate attest`: against a real exporter (with and without basic auth) and straight into a state file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from exporter.state.attestation import AttestationError, parse_value
from tests.conftest import ROOT, Served, free_port, wait_for, wait_listening
from tests.test_manual_gates import manual_tracker


def attest(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "QUALITYGATE_PASSWORD"}
    return subprocess.run([sys.executable, "-m", "exporter", "attest", *args], capture_output=True, text=True,
                          check=False, timeout=60, cwd=str(ROOT), env={**base, **(env or {})})


def rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as c:
        return c.execute("SELECT g.tracker, g.gate, a.value, a.by, a.note FROM attestations a "
                         "JOIN gates g USING (gid) ORDER BY a.at").fetchall()


@pytest.mark.parametrize("text, value", [("1", 1.0), ("0.97", 0.97), ("85%", 0.85), ("true", 1.0),
                                         ("FALSE", 0.0), ("-2", -2.0), ("1e3", 1000.0),
                                         ("350ms", 0.35), ("2h", 7200.0), ("95 %", 0.95), ("1.5d", 129600.0),
                                         ("12", 12.0)])
def test_values(text: str, value: float) -> None:
    assert parse_value(text).value == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "abc", "nan", "inf", "1%%", "yes", "0x10", "١٢", "1" * 400, "5 years",
                                  "2hh", "95 %%"])
def test_bad_values(text: str) -> None:
    with pytest.raises(AttestationError):
        parse_value(text)


def test_attest_through_a_running_exporter(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    s = serve(write_config(manual_tracker("m")), "--storage.path", str(db))
    ok = attest("security-audit", "--value", "true", "--note", "pentest #12", "--by", "alice", "--url", s.url)
    assert ok.returncode == 0, ok.stderr
    assert "recorded true for m/security-audit by alice" in ok.stdout
    wait_for(lambda: json.loads(s.get("/api/gates/security-audit")[1])["status"] == "pass", timeout=30,
             what="the gate to pass")
    for args, message in [
        (("nope", "--value", "1"), "refused (404): unknown gate 'nope'"),
        (("disk", "--value", "1"), "refused (409)"),
        (("security-audit", "--value", "maybe"), "invalid value 'maybe'"),
        (("security-audit", "--value", "1", "--tracker", "zzz"), "refused (404): unknown tracker"),
        (("../../metrics", "--value", "1"), "invalid gate id"),
    ]:
        bad = attest(*args, "--url", s.url)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert message in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    port = free_port()
    down = attest("security-audit", "--value", "1", "--url", f"http://127.0.0.1:{port}")
    assert down.returncode == 2 and "cannot reach" in down.stderr
    s.stop()
    assert rows(db) == [("m", "security-audit", 1.0, "alice", "pentest #12")]


def test_attest_with_basic_auth(tmp_path: Path, write_config) -> None:
    bcrypt = pytest.importorskip("bcrypt")
    web_config = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"pa:ss w0rd", bcrypt.gensalt(rounds=4)).decode()
    web_config.write_text(f"basic_auth_users:\n  dana: {hashed}\n")
    db = tmp_path / "state.db"
    with open(tmp_path / "serve.log", "w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "exporter", "serve", "--config.file",
                                 str(write_config(manual_tracker("m"))), "--storage.path", str(db),
                                 "--web.config.file", str(web_config), "--web.listen-address", "127.0.0.1:0"],
                                stdout=log_file, stderr=subprocess.STDOUT, cwd=str(ROOT), text=True)
    s = Served(proc, wait_listening(proc, tmp_path / "serve.log"), tmp_path / "serve.log")
    try:
        wait_for(lambda: s.proc.poll() is not None or s.get("/-/healthy", timeout=1)[0] == 401, timeout=30,
                 what="exporter with auth")
        no_creds = attest("signoff", "--value", "1", "--url", s.url)
        assert no_creds.returncode == 2 and "wants credentials" in no_creds.stderr
        no_password = attest("signoff", "--value", "1", "--url", s.url, "--web.basic-auth-user", "dana")
        assert no_password.returncode == 2 and "needs --web.basic-auth-password-file" in no_password.stderr
        wrong = attest("signoff", "--value", "1", "--url", s.url, "--web.basic-auth-user", "dana",
                       env={"QUALITYGATE_PASSWORD": "nope"})
        assert wrong.returncode == 2 and "refused these credentials" in wrong.stderr
        pw_file = tmp_path / "pw"
        pw_file.write_text("pa:ss w0rd\n")
        by_file = attest("signoff", "--value", "1", "--url", s.url, "--web.basic-auth-user", "dana",
                         "--web.basic-auth-password-file", str(pw_file), "--by", "someone-else")
        assert by_file.returncode == 0, by_file.stderr
        assert "by dana" in by_file.stdout
        by_env = attest("signoff", "--value", "0", "--url", s.url, "--web.basic-auth-user", "dana",
                        env={"QUALITYGATE_PASSWORD": "pa:ss w0rd"})
        assert by_env.returncode == 0, by_env.stderr
    finally:
        s.stop()
    assert [(r[2], r[3]) for r in rows(db)] == [(1.0, "dana"), (0.0, "dana")]
    assert "pa:ss w0rd" not in s.log()


def test_password_is_never_a_flag() -> None:
    out = attest("--help")
    assert "--web.basic-auth-password-file" in out.stdout
    assert "--web.basic-auth-password " not in out.stdout and "--password" not in out.stdout


def test_attest_straight_into_the_state_file(tmp_path: Path, write_config) -> None:
    db = tmp_path / "state.db"
    config = write_config(manual_tracker("m"))
    ok = attest("signoff", "--value", "97%", "--note", "release v2", "--by", "erin",
                "--storage.path", str(db), "--config.file", str(config))
    assert ok.returncode == 0, ok.stderr
    assert "recorded 97% (0.97) for m/signoff by erin" in ok.stdout
    assert rows(db) == [("m", "signoff", 0.97, "erin", "release v2")]
    for args, message in [
        (("nope", "--value", "1", "--config.file", str(config)), "unknown gate 'nope'"),
        (("disk", "--value", "1", "--config.file", str(config)), "is a file gate"),
        (("signoff", "--value", "x", "--config.file", str(config)), "invalid value"),
        (("signoff", "--value", "1"), "needs --config.file"),
        (("signoff", "--value", "1", "--config.file", str(config), "--note", "a\x01b"), "control characters"),
    ]:
        bad = attest(*args, "--storage.path", str(db))
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
    neither = attest("signoff", "--value", "1")
    assert neither.returncode == 2 and "--url" in neither.stderr
    bad_config = tmp_path / "bad.yml"
    bad_config.write_text("tracker: [\n")
    broken = attest("signoff", "--value", "1", "--storage.path", str(db), "--config.file", str(bad_config))
    assert broken.returncode == 2 and "bad.yml" in broken.stderr and "Traceback" not in broken.stderr
    assert len(rows(db)) == 1, "refused attestations store nothing"


def test_attest_into_a_corrupt_file_refuses_and_leaves_it(tmp_path: Path, write_config) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"garbage" * 1000)
    bad = attest("signoff", "--value", "1", "--storage.path", str(db),
                 "--config.file", str(write_config(manual_tracker("m"))))
    assert bad.returncode == 2 and "corrupt" in bad.stderr
    assert db.read_bytes() == b"garbage" * 1000
    assert not [p for p in tmp_path.iterdir() if ".corrupt-" in p.name]


def test_attest_into_the_file_of_a_running_exporter(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    config = write_config(manual_tracker("m"))
    s = serve(config, "--storage.path", str(db))
    ok = attest("signoff", "--value", "1", "--by", "fay", "--storage.path", str(db), "--config.file", str(config))
    assert ok.returncode == 0, ok.stderr
    wait_for(lambda: [a["by"] for a in json.loads(s.get("/api/gates/signoff")[1])["attestations"]] == ["fay"],
             timeout=30, what="the running exporter to see the attestation")


def test_attest_values_with_units_through_the_exporter_and_into_the_file(tmp_path: Path, write_config, serve) -> None:
    db = tmp_path / "state.db"
    config = write_config(manual_tracker("m"))
    s = serve(config, "--storage.path", str(db))
    ambiguous = attest("integration-coverage", "--value", "42", "--url", s.url)
    assert ambiguous.returncode == 2
    assert ambiguous.stderr.strip() == ("qualitygate attest: refused (400): 42 is ambiguous for '>= 90%': "
                                        "write it with its unit, e.g. 42%")
    wrong_family = attest("p99-latency", "--value", "30%", "--url", s.url)
    assert wrong_family.returncode == 2 and "30% is a ratio" in wrong_family.stderr
    ok = attest("integration-coverage", "--value", "95%", "--by", "gus", "--url", s.url)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("recorded 95% for m/integration-coverage by gus at ")
    fast = attest("p99-latency", "--value", "350ms", "--url", s.url)
    assert fast.returncode == 0 and fast.stdout.startswith("recorded 350ms for m/p99-latency"), fast.stderr
    wait_for(lambda: json.loads(s.get("/api/gates/integration-coverage")[1])["status"] == "pass", timeout=30,
             what="95% to pass '>= 90%'")
    assert "95%" in s.get("/gates/integration-coverage")[1]  # the page shows it in the unit of expect
    s.stop()
    # stored in base units, by the same arithmetic as expect's thresholds (so 90% meets '>= 90%' exactly)
    assert [(r[1], r[2]) for r in rows(db)] == [("integration-coverage", pytest.approx(0.95)),
                                                ("p99-latency", pytest.approx(0.35))]
    direct = attest("integration-coverage", "--value", "0.42", "--storage.path", str(db), "--config.file", str(config))
    assert direct.returncode == 2 and "0.42 is ambiguous for '>= 90%'" in direct.stderr
    assert len(rows(db)) == 2, "nothing stored"


def test_attest_failures_are_one_line_and_exit_2(tmp_path: Path, write_config) -> None:
    config = write_config(manual_tracker("m"))
    fifo = tmp_path / "pw.fifo"
    os.mkfifo(fifo)
    url = "http://127.0.0.1:9"
    for args, message in [
        (("--timeout", "-1", "--url", url), "--timeout must be a positive number of seconds (got '-1')"),
        (("--timeout", "0", "--url", url), "--timeout must be a positive"),
        (("--timeout", "nan", "--url", url), "--timeout must be a positive"),
        (("--timeout", "soon", "--url", url), "--timeout must be a positive"),
        (("--storage.path", "/no/such/dir/x.db", "--config.file", str(config)),
         "--storage.path: folder /no/such/dir does not exist"),
        (("--storage.path", str(tmp_path), "--config.file", str(config)), "is not a regular file"),
        (("--url", url, "--web.basic-auth-user", "u", "--web.basic-auth-password-file", str(fifo)),
         "not a regular file"),
        (("--url", url, "--web.basic-auth-user", "u", "--web.basic-auth-password-file", str(tmp_path / "none")),
         "no such file"),
        (("--url", url, "--tls.ca-file", str(tmp_path / "none.pem")), "no such file"),
        (("--url", "ftp://x"), "--url must start with http"),
        (("--url", url, "--note", "x" * 1001), "longer than 1000"),
    ]:
        bad = attest("signoff", "--value", "1", *args)
        assert bad.returncode == 2, (args, bad.stdout, bad.stderr)
        assert len(bad.stderr.splitlines()) == 1 and message in bad.stderr, (args, bad.stderr)
        assert "Traceback" not in bad.stderr
    assert not os.path.exists("/no/such/dir"), "no folder is created for an attestation"


def test_a_value_written_like_the_threshold_meets_it() -> None:
    from exporter.config.expect import parse_condition
    from exporter.state.attestation import understand

    for number in [*range(0, 201), 99.9, 0.5, 1e-3]:
        for unit in ("%", "ms", "s", "h"):
            cond = parse_condition(f"== {number}{unit}")
            assert cond.holds(understand(parse_value(f"{number}{unit}"), [cond])), (number, unit)
