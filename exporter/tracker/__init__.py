"""Markdown trackers: import one into a config (`qualitygate import`), render one from live status."""
