"""The config stage: YAML with line marks -> typed fields -> the frozen, cross-checked model.

Deliberately empty: the probe kinds' specs are written in this package's field vocabulary
(`config.fields`) while the model (`config.model`) composes them, so re-exporting the model here
would import the probes from inside their own vocabulary.
"""
