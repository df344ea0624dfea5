"""YAML text -> one node tree with line marks: libyaml's parser under PyYAML's composer."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import yaml
from yaml.composer import Composer
from yaml.resolver import Resolver

from exporter.config.fields import ConfigError, Issue


class _Scalar(yaml.ScalarNode):
    __slots__ = ("tag", "value", "start_mark", "end_mark", "style", "comment")


class _Sequence(yaml.SequenceNode):
    __slots__ = ("tag", "value", "start_mark", "end_mark", "flow_style", "comment")


class _Mapping(yaml.MappingNode):
    __slots__ = ("tag", "value", "start_mark", "end_mark", "flow_style", "comment")


class _SlimComposer(Composer):
    """PyYAML's composer making nodes with slots and without end marks (nothing reads them).

    A 10,000-gate file makes 130,000 nodes: this keeps the peak memory of a load ~10 MB lower,
    and memory Python took once it keeps (docs/performance.md).
    """

    def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:
        event = self.get_event()
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = _Scalar(tag, event.value, event.start_mark, None, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        return node

    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.SequenceNode, None, start.implicit)
        node = _Sequence(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        index = 0
        while not self.check_event(yaml.SequenceEndEvent):
            node.value.append(self.compose_node(node, index))
            index += 1
        self.get_event()
        return node

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.MappingNode, None, start.implicit)
        node = _Mapping(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        while not self.check_event(yaml.MappingEndEvent):
            key = self.compose_node(node, None)
            value = self.compose_node(node, key)
            node.value.append((key, value))
        self.get_event()
        return node


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    _FastLoader: Any = None
else:
    class _FastLoader(_SlimComposer, CParser, Resolver):  # type: ignore[misc]
        """libyaml's parser under a PyYAML composer: the nodes SafeLoader makes, 10x faster.

        (libyaml's own composer recurses in C and crashes on deeply nested input; this one raises
        RecursionError like SafeLoader. Plain scalars get style '' instead of None.)
        """

        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            Composer.__init__(self)
            Resolver.__init__(self)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic GC while a big config is read: it builds 100,000s of acyclic objects, and each
    collection would walk all of them again (a 10,000-gate file loads 2-3x faster)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _compose(text: str) -> yaml.Node | None:
    """The document's node tree; errors are worded by the pure-Python loader, as users know them."""
    if _FastLoader is not None and not yaml.reader.Reader.NON_PRINTABLE.search(text):
        try:
            return yaml.compose(text, Loader=_FastLoader)
        except yaml.YAMLError:
            pass  # parse again below for SafeLoader's exact message
    return yaml.compose(text, Loader=yaml.SafeLoader)


def compose(text: str, path: str) -> yaml.Node | None:
    """The one document in `text` as a node tree, or None if empty; ConfigError with FILE:LINE if not YAML."""
    try:
        return _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([Issue(path, line, "", f"invalid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Issue(path, 1, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError([Issue(path, 1, "", "invalid YAML: nested too deeply")]) from None
