"""Kind registries: the one way a stage names its pluggable parts.

Every stage that can be extended keeps one :class:`Registry` in its registry
module: source types (``monitor.sources.registry``), rule kinds
(``monitor.detect.registry``), notifiers (``monitor.notify.registry``) and the
CLI's command sets (``monitor.commands``). The built-in kinds are an explicit
tuple in that module. A separately installed package adds kinds through the
stage's entry-point group, each entry point naming one kind object whose
``name`` is the entry point's name::

    [project.entry-points."hashtag_monitor.sources"]
    myplatform = "monitor_myplatform:SOURCE"

A name nobody registered is an error that lists the known names; no stage falls
back to a default kind. The config unions of source types and rule kinds are
built from their registries by :class:`KindUnion`, so a registered kind is a
valid ``type:`` / ``kind:`` in config.yaml and nothing else is.
See docs/extending.md for a walk-through.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar, cast, get_args, get_origin

from pydantic import BaseModel, Field, GetCoreSchemaHandler
from pydantic_core import CoreSchema

__all__ = ["ENTRY_POINT_PREFIX", "KindUnion", "Registry", "UnknownKind", "require_tag"]

log = logging.getLogger("monitor.registry")

ENTRY_POINT_PREFIX = "hashtag_monitor."
# kind names are config values and CLI words: keep them plain
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Named(Protocol):
    @property
    def name(self) -> str: ...


class Configured(Named, Protocol):
    """A kind that has its own settings model (a source type, a rule kind)."""

    @property
    def settings(self) -> type[BaseModel]: ...


K = TypeVar("K", bound=Named)


class UnknownKind(LookupError):
    """A name no entry of the registry has; ``str()`` lists the known names."""

    def __init__(self, what: str, name: str, known: Sequence[str], failed: str = "") -> None:
        self.name = name
        self.known = tuple(known)
        listed = ", ".join(repr(k) for k in known) or "none"
        super().__init__(f"unknown {what} {name!r}; known: {listed}{failed}")


class Registry(Generic[K]):
    """Kinds of one stage by name: the built-ins given here, plugins from entry points.

    Entry points are loaded on first read, not at import, so a plugin module may
    import any part of ``monitor`` (the config included) without a cycle.
    """

    def __init__(
        self,
        what: str,
        group: str,
        kind_type: type[K],
        builtins: Iterable[K] = (),
        *,
        check: Callable[[K], None] | None = None,
    ) -> None:
        self.what = what  # "source type", "rule kind" …: used in error messages
        self.group = group
        self._type = kind_type
        self._check = check
        self._entries: dict[str, K] = {}
        self._listeners: list[Callable[[], None]] = []
        self._plugins_loaded = False
        # plugin entry points that could not be loaded: name → why (shown on lookup)
        self.failed: dict[str, str] = {}
        for entry in builtins:
            self._add(entry)

    # ----------------------------------------------------------------- writing

    def register(self, entry: K) -> K:
        """Add a kind (a plugin calling this at import, or a test); a taken name is an error."""
        self._add(entry)
        self._changed()
        return entry

    def unregister(self, name: str) -> K:
        """Remove a kind again (tests that registered a tiny one clean up with this)."""
        entry = self._entries.pop(name)
        self._changed()
        return entry

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call *callback* after every register/unregister (the config rebuilds its unions)."""
        self._listeners.append(callback)

    def _add(self, entry: K) -> None:
        if not isinstance(entry, self._type):
            raise TypeError(f"{self.what} entries are {self._type.__name__}, got {entry!r}")
        if not _NAME.match(entry.name):
            raise ValueError(f"{self.what} name {entry.name!r}: use lower-case letters, "
                             "digits and '_'")
        if entry.name in self._entries:
            raise ValueError(f"{self.what} {entry.name!r} is registered twice")
        if self._check is not None:
            self._check(entry)
        self._entries[entry.name] = entry

    def _changed(self) -> None:
        for callback in self._listeners:
            callback()

    # ----------------------------------------------------------------- reading

    def get(self, name: str) -> K:
        """The kind called *name*; :class:`UnknownKind` (listing the known ones) if none is."""
        self.load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownKind(self.what, name, self.names(), self.failure_note(name)) from None

    def names(self) -> tuple[str, ...]:
        self.load_plugins()
        return tuple(self._entries)

    def entries(self) -> tuple[K, ...]:
        self.load_plugins()
        return tuple(self._entries.values())

    def __iter__(self) -> Iterator[K]:
        return iter(self.entries())

    def __contains__(self, name: object) -> bool:
        self.load_plugins()
        return name in self._entries

    def failure_note(self, name: str) -> str:
        """`` (plugin 'x' failed to load: …)`` when *name* is a plugin that did not load."""
        why = self.failed.get(name)
        return f" (plugin {name!r} failed to load: {why})" if why else ""

    # ----------------------------------------------------------------- plugins

    def load_plugins(self) -> None:
        """Register the kinds of the stage's entry-point group (once).

        A plugin that fails to import or names a wrong object is logged and
        remembered in :attr:`failed`, not raised: one broken package must not
        stop a service whose configuration does not use it. A configuration that
        does use it gets the reason in its unknown-kind error.
        """
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for point in sorted(entry_points(group=self.group), key=lambda p: p.name):
            try:
                entry = point.load()
                if getattr(entry, "name", None) != point.name:
                    raise ValueError(f"{point.value} is named {getattr(entry, 'name', None)!r}, "
                                     f"not {point.name!r}")
                self._add(entry)
            except Exception as exc:  # any failure of third-party code: see docstring
                reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
                self.failed[point.name] = reason
                log.warning("%s plugin %r (%s) not loaded: %s", self.what, point.name,
                            self.group, reason)


def require_tag(model: type[BaseModel], field: str, name: str) -> None:
    """Raise unless *model*'s *field* is ``Literal[name]`` (the config union's discriminator)."""
    info = model.model_fields.get(field)
    annotation = info.annotation if info is not None else None
    if get_origin(annotation) is not Literal or get_args(annotation) != (name,):
        raise TypeError(f"{model.__name__}.{field} must be Literal[{name!r}] "
                        f"to be the settings of {name!r}")


@dataclass(frozen=True)
class KindUnion:
    """Pydantic marker: validate as the tagged union of a registry's settings models.

    Used as ``Annotated[SourceSettings, KindUnion(SOURCES.entries, "type")]``:
    type checkers see the base class, pydantic sees every registered model, keyed
    by *discriminator*. The schema is built when the model is (first use, or a
    ``model_rebuild`` after a registration), so it always reflects the registry.
    """

    kinds: Callable[[], Sequence[Configured]]
    discriminator: str

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        models = tuple(kind.settings for kind in self.kinds())
        if not models:
            raise TypeError(f"no kinds registered for {source!r}")
        if len(models) == 1:
            # a one-member union has nothing to discriminate; its Literal still rejects others
            return handler.generate_schema(models[0])
        union: Any = functools.reduce(operator.or_, models)
        # Annotated built at run time from a run-time union: opaque to type checkers
        tagged = cast(Any, Annotated)[union, Field(discriminator=self.discriminator)]
        return handler.generate_schema(tagged)
