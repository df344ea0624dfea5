"""YAML text -> one node tree with line marks: libyaml's parser, PyYAML's composer, bounded aliases."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import yaml
from yaml.composer import Composer
from yaml.resolver import Resolver

from exporter.config.issues import ConfigError, Issue

ALIAS_NODE_LIMIT = 100_000
"""How many nodes the aliases of one document may stand for, all together (docs/reference.md).

An alias is the node it names, so a 1.6 KB "billion laughs" of nested aliases is a billion
nodes to whoever walks the tree. Aliases are counted at their expanded size as they are composed,
so such a file is refused after reading its own 1.6 KB, before anything walks it. Nodes written
out in the file are not limited: their number is bounded by the file's size.
"""


class AliasLimitError(yaml.YAMLError):
    """Aliases that stand for too many nodes, or for a node that contains them (a cycle)."""

    def __init__(self, mark: Any, message: str):
        super().__init__(message)
        self.mark = mark
        self.message = message


class _BoundedAliases:
    """Composer mixin: counts the size of every anchored node and what each alias adds."""

    _sizes: dict[str, int]
    _aliased: int
    _nodes: int
    if TYPE_CHECKING:  # given by the parser and composer this is combined with (PyYAML's events are untyped)
        anchors: dict[str, yaml.Node]

        def peek_event(self) -> Any: ...
        def get_event(self) -> Any: ...
        def check_event(self, *choices: Any) -> Any: ...
        def resolve(self, kind: type, value: str | None, implicit: Any) -> str: ...

    def _start_counting(self) -> None:
        self._sizes = {}  # anchor -> expanded size of its node, once its node is complete
        self._aliased = 0  # nodes that aliases stood for so far
        self._nodes = 0  # nodes composed so far, aliases at their expanded size

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """Compose one node, counting it; an alias counts as the whole node it names."""
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            size = self._sizes.get(event.anchor or "")
            if size is None and event.anchor in self.anchors:
                # The anchor's own node is still open: the alias would make the tree a cycle.
                raise AliasLimitError(event.start_mark, f"alias *{event.anchor} refers to a node that contains it")
            if size is not None:
                self._aliased += size
                self._nodes += size
                if self._aliased > ALIAS_NODE_LIMIT:
                    raise AliasLimitError(event.start_mark, f"aliases expand to more than {ALIAS_NODE_LIMIT:,} nodes "
                                                        f"(at alias *{event.anchor})")
            return Composer.compose_node(self, parent, index)  # type: ignore[arg-type]
        before = self._nodes
        node = Composer.compose_node(self, parent, index)  # type: ignore[arg-type]
        self._nodes += 1
        if event.anchor is not None:
            self._sizes[event.anchor] = self._nodes - before
        return node


class _Scalar(yaml.ScalarNode):
    __slots__ = ("tag", "value", "start_mark", "end_mark", "style", "comment")


class _Sequence(yaml.SequenceNode):
    __slots__ = ("tag", "value", "start_mark", "end_mark", "flow_style", "comment")


class _Mapping(yaml.MappingNode):
    __slots__ = ("tag", "value", "start_mark", "end_mark", "flow_style", "comment")


class _SlimComposer(_BoundedAliases, Composer):
    """PyYAML's composer making nodes with slots and without end marks (nothing reads them).

    A 10,000-gate file makes 130,000 nodes: this keeps the peak memory of a load ~10 MB lower,
    and memory Python took once it keeps (docs/performance.md).
    """

    def compose_scalar_node(self, anchor: str | None) -> yaml.ScalarNode:  # type: ignore[override]
        event = self.get_event()
        tag = event.tag
        if tag is None or tag == "!":
            tag = self.resolve(yaml.ScalarNode, event.value, event.implicit)
        node = _Scalar(tag, event.value, event.start_mark, None, style=event.style)
        if anchor is not None:
            self.anchors[anchor] = node
        return node

    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:  # type: ignore[override]
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

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:  # type: ignore[override]
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


class BoundedSafeLoader(_BoundedAliases, yaml.SafeLoader):
    """PyYAML's pure-Python SafeLoader (its error messages are the ones users know), aliases bounded.

    Also for `yaml.load(text, Loader=BoundedSafeLoader)` where Python objects are wanted.
    """

    def __init__(self, stream: str):
        yaml.SafeLoader.__init__(self, stream)
        self._start_counting()


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    _FastLoader: Any = None
else:
    class _FastLoader(_SlimComposer, CParser, Resolver):  # type: ignore[no-redef]
        """libyaml's parser under a PyYAML composer: the nodes SafeLoader makes, 10x faster.

        (libyaml's own composer recurses in C and crashes on deeply nested input; this one raises
        RecursionError like SafeLoader. Plain scalars get style '' instead of None.)
        """

        def __init__(self, stream: str):
            CParser.__init__(self, stream)
            Composer.__init__(self)
            Resolver.__init__(self)
            self._start_counting()


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
        except AliasLimitError:
            raise
        except yaml.YAMLError:
            pass  # parse again below for SafeLoader's exact message
    return yaml.compose(text, Loader=BoundedSafeLoader)


def compose(text: str, path: str) -> yaml.Node | None:
    """The one document in `text` as a node tree, or None if empty; ConfigError with FILE:LINE if not YAML."""
    bad = yaml.reader.Reader.NON_PRINTABLE.search(text)
    if bad:
        # PyYAML names a character offset; users need the line (and the character, spelled so it shows).
        line = text.count("\n", 0, bad.start()) + 1
        char = bad.group()
        raise ConfigError([Issue(path, line, "", f"invalid YAML: control character U+{ord(char):04X} "
                                                 f"({char!r}) is not allowed")])
    try:
        return _compose(text)
    except AliasLimitError as exc:
        raise ConfigError([Issue(path, exc.mark.line + 1, "", f"invalid YAML: {exc.message}")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError([Issue(path, line, "", f"invalid YAML: {exc.problem or exc.context}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Issue(path, 1, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:  # PyYAML composes nested collections recursively
        raise ConfigError([Issue(path, 1, "", "invalid YAML: nested too deeply")]) from None
