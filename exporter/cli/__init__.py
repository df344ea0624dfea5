"""The command line on top of every stage: argument parsing, the serve lifecycle, each command's client side."""

from exporter.cli.main import main

__all__ = ["main"]
