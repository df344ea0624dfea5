"""--config.watch-interval: a real serve reloads by itself when a config file changes (ConfigMaps)."""

from __future__ import annotations

from pathlib import Path

from conftest import parse_metrics, sample, wait_for

BODY = """
tracker: watched
defaults: {interval: 1s, timeout: 500ms}
phases:
  - id: p
    steps:
      - id: s
        gates:
          - {id: first, file: {path: /etc/hostname}}
"""


def test_config_change_is_picked_up_without_signal(tmp_path: Path, serve):
    conf_dir = tmp_path / "trackers"
    conf_dir.mkdir()
    (conf_dir / "a.yml").write_text(BODY)
    s = serve(conf_dir, "--config.watch-interval", "200ms")
    assert 'gate="first"' in s.get("/metrics")[1]
    # Kubernetes swaps the whole file; a new tracker file appears in the directory too.
    (conf_dir / "a.yml").write_text(BODY.replace("id: first", "id: second"))
    (conf_dir / "b.yml").write_text(BODY.replace("tracker: watched", "tracker: other"))
    wait_for(lambda: 'gate="second"' in s.get("/metrics")[1] and 'tracker="other"' in s.get("/metrics")[1],
             timeout=20, what="the watcher to reload")
    text = s.get("/metrics")[1]
    assert 'tracker="watched",phase="p",step="s",gate="first"' not in text
    # A broken edit is rejected and the running config stays.
    (conf_dir / "b.yml").write_text("tracker: [broken\n")
    wait_for(lambda: sample(parse_metrics(s.get("/metrics")[1]), "qualitygate_config_last_reload_successful") == 0,
             timeout=20, what="the failed reload to show")
    assert 'tracker="other"' in s.get("/metrics")[1]
    assert "config reload failed" in s.log()


def test_bad_watch_interval_is_usage_error(tmp_path: Path):
    import subprocess
    import sys

    (tmp_path / "a.yml").write_text(BODY)
    proc = subprocess.run([sys.executable, "-m", "exporter", "serve", "--config.file", str(tmp_path / "a.yml"),
                           "--config.watch-interval", "soon"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("qualitygate: --config.watch-interval: invalid duration 'soon'")
