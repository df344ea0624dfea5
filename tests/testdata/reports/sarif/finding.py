"""A fixture for the sarif tests: Bandit finds B404, B602 (shell=True) and B101 (assert) here."""

import subprocess


def run(command: str) -> None:
    """Run a shell command (on purpose unsafe: the finding)."""
    subprocess.call(command, shell=True)
    assert command
