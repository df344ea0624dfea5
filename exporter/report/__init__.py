"""The status document and what is rendered from it: CI reports, badges, markdown."""
