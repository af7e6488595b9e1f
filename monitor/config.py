"""config.yaml → validated, frozen pydantic models.

Loading order: read YAML → expand ``${VAR}`` / ``${VAR:-default}`` in every
string → apply ``MONITOR_*`` environment overrides → validate. Any problem is
a :class:`~monitor.errors.ConfigError` whose message names the file, the line,
the key path and what was expected.

Environment overrides: ``MONITOR_`` followed by the key path in upper case with
``_`` between levels, e.g. ``MONITOR_DATABASE_URL`` → ``database.url``,
``MONITOR_PRIVACY_STORE_TEXT`` → ``privacy.store_text``. Lists take a comma
list or JSON (``MONITOR_HASHTAGS=metoo,notallmen``; ``MONITOR_SOURCES='[...]'``).

The ``sources:`` and ``rules:`` lists accept exactly the source types and rule
kinds registered in :data:`monitor.sources.registry.SOURCES` and
:data:`monitor.detect.registry.RULES` (built-ins and installed plugins); any
other ``type:`` / ``kind:`` is a ConfigError listing the known ones.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from monitor.cluster.settings import ClusterSettings
from monitor.detect.registry import RULES
from monitor.detect.settings import RuleSettings
from monitor.durations import Duration
from monitor.errors import ConfigError
from monitor.notify.settings import NotifySettings
from monitor.privacy_settings import DurationOrOff, RetentionSettings
from monitor.registry import KindUnion, Registry
from monitor.sources.registry import SOURCES
from monitor.sources.settings import HttpSettings, SourceSettings
from monitor.tags import normalise_tag, strict_tag
from monitor.web.settings import WebSettings

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "Config",
    "DatabaseSettings",
    "PrivacySettings",
    "RetentionSettings",
    "SentimentSettings",
    "load_config",
    "normalise_tag",
    "validation_problem",
]

DEFAULT_CONFIG_FILE = "config.yaml"
ENV_PREFIX = "MONITOR_"
# the config lists whose items are tagged unions of a registry's settings models
_KIND_LISTS: dict[str, Registry[Any]] = {"sources": SOURCES, "rules": RULES}
# a type checker sees the base class; pydantic validates every registered model
SourceField = Annotated[SourceSettings, KindUnion(SOURCES.entries, "type")]
RuleField = Annotated[RuleSettings, KindUnion(RULES.entries, "kind")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Strict):
    url: str = "sqlite:///data/monitor.db"
    echo: bool = False

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgresql)(\+\w+)?://", value):
            raise ValueError(
                f"expected a sqlite:/// or postgresql:// URL, got {value.split('@')[-1]!r}"
            )
        from monitor.store.db import url_problem  # a bad port is a config error, not a crash

        problem = url_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class PrivacySettings(_Strict):
    """What is kept about people. Defaults are the cautious ones."""

    store_text: bool = False
    authors: Literal["keep", "hash", "drop"] = "hash"
    # keyed hash secret; empty → the database keeps its own key (table author_keys)
    hash_secret: str = ""
    # or a file holding it (created, mode 0600, when the database has no key yet);
    # absolute, so it never depends on the directory a command runs in
    hash_secret_file: str = ""
    example_posts_in_alerts: bool = False
    # a platform deletion removes the post row; keep: the 5-minute buckets and
    # pair rollups still count it (what was seen then); recount: subtract it
    deletions: Literal["keep", "recount"] = "keep"
    # ask polled platforms whether stored posts younger than this still exist
    # (off, or e.g. 7d), every recheck_every; what vanished is applied as a deletion
    recheck: DurationOrOff = None
    recheck_every: Duration = timedelta(hours=1)
    retention: RetentionSettings = RetentionSettings()

    @field_validator("hash_secret_file")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if value and not Path(value).expanduser().is_absolute():
            raise ValueError(f"expected an absolute path, got {value!r}")
        return value


class SentimentSettings(_Strict):
    """Languages VADER scores; posts in other languages get NULL sentiment."""

    languages: list[str] = Field(default_factory=lambda: ["en"])
    score_undetected: bool = False  # score posts whose language could not be determined


class LoggingSettings(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Config(_Strict):
    """The whole configuration; see config.yaml for a commented example."""

    # built on first use, so a plugin registering a kind (entry points load then)
    # may itself import this module
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    database: DatabaseSettings = DatabaseSettings()
    hashtags: list[str] = Field(
        default_factory=lambda: ["metoo", "howiwillchange", "notallmen", "ididit"], min_length=1
    )
    privacy: PrivacySettings = PrivacySettings()
    sentiment: SentimentSettings = SentimentSettings()
    logging: LoggingSettings = LoggingSettings()
    http: HttpSettings = HttpSettings()
    sources: list[SourceField] = Field(default_factory=list)
    web: WebSettings = WebSettings()
    notify: NotifySettings = NotifySettings()
    rules: list[RuleField] = Field(default_factory=list)
    cluster: ClusterSettings = ClusterSettings()  # PostgreSQL only: lease times (issue 14)

    @field_validator("rules")
    @classmethod
    def _unique_rule_names(cls, values: list[RuleSettings]) -> list[RuleSettings]:
        seen: set[str] = set()
        for rule in values:
            if rule.name in seen:
                raise ValueError(f"expected unique rule names, got {rule.name!r} twice")
            seen.add(rule.name)
        return values

    @field_validator("hashtags")
    @classmethod
    def _tags(cls, values: list[str]) -> list[str]:
        out: list[str] = []
        for raw in values:
            if not isinstance(raw, str):
                raise ValueError(f"expected a tag string without '#', got {raw!r}")
            tag = strict_tag(raw)  # the CLI's tag arguments are checked the same way
            if tag not in out:
                out.append(tag)
        return out

    def followed(self, override: list[str] | None = None) -> list[str]:
        """Tags for a source: its own list if given, else the top-level hashtags."""
        if override:
            return [normalise_tag(t) for t in override]
        return list(self.hashtags)


def _rebuild_config() -> None:
    # a kind registered after the first Config was built joins the unions now
    Config.model_rebuild(force=True)


SOURCES.on_change(_rebuild_config)
RULES.on_change(_rebuild_config)


# ---------------------------------------------------------------------------- loading

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


def _expand(value: Any, env: Mapping[str, str], path: str, file: str) -> Any:
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env and env[name] != "":
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                file, path or "(top)", f"environment variable {name} is not set and has no default"
            )

        return _ENV_REF.sub(repl, value)
    if isinstance(value, list):
        return [_expand(v, env, f"{path}[{i}]", file) for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {
            k: _expand(v, env, f"{path}.{k}" if path else str(k), file) for k, v in value.items()
        }
    return value


def _parse_env_value(raw: str, annotation_is_list: bool) -> Any:
    text = raw.strip()
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except (json.JSONDecodeError, RecursionError):  # "[[[[…": kept as text, then checked
            pass
    if annotation_is_list:
        return [part.strip() for part in text.split(",") if part.strip()]
    return raw


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    """Apply MONITOR_* overrides in place; returns {key path set: the variable's name}."""
    applied: dict[str, str] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX):
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        model: type[BaseModel] | None = Config
        target = data
        path: list[str] = []
        while model is not None and rest:
            match = None
            for field_name in sorted(model.model_fields, key=len, reverse=True):
                if rest == field_name or rest.startswith(field_name + "_"):
                    match = field_name
                    break
            if match is None:
                break
            path.append(match)
            rest = rest[len(match) + 1 :]
            annotation = model.model_fields[match].annotation
            if rest and isinstance(annotation, type) and issubclass(annotation, BaseModel):
                sub = target.get(match)
                if not isinstance(sub, dict):
                    sub = {}
                    target[match] = sub
                target = sub
                model = annotation
                continue
            if not rest:
                is_list = "list" in str(annotation)
                target[match] = _parse_env_value(env[name], is_list)
                applied[".".join(path)] = name
            break
    return applied


# MONITOR_* names that are not settings: the config file's own path, and the
# test suite's and benchmarks' knobs
_ENV_NOT_SETTINGS = ("MONITOR_CONFIG",)
_ENV_RESERVED_PREFIXES = ("MONITOR_TEST_", "MONITOR_BENCH_")


def _referenced(value: Any) -> set[str]:
    """The ``${VAR}`` names a config document uses (those are its own to define)."""
    if isinstance(value, str):
        return {m.group(1) for m in _ENV_REF.finditer(value)}
    if isinstance(value, list):
        return set().union(*(_referenced(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(_referenced(v) for v in value.values())) if value else set()
    return set()


def _reject_unknown_env(env: Mapping[str, str], referenced: set[str]) -> None:
    """A ``MONITOR_*`` variable that sets nothing is a mistake (a typo, an old name).

    Silently ignoring it once meant a secret meant for the author hash was never
    used; now it is one line naming the variable.
    """
    for name in sorted(env):
        if (not name.startswith(ENV_PREFIX) or name in _ENV_NOT_SETTINGS or name in referenced
                or name.startswith(_ENV_RESERVED_PREFIXES)):
            continue
        if not _apply_env({}, {name: env[name]}):
            raise ConfigError(
                "environment", name,
                "maps to no setting (expected MONITOR_ + a key path in upper case with _ "
                "between levels, e.g. MONITOR_PRIVACY_HASH_SECRET for privacy.hash_secret)")


def _user_loc(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop pydantic's union/discriminator steps, which are not keys the user wrote.

    In ``("sources", 0, "mastodon", "interval")`` the third step is the source
    type pydantic chose, not a key; validator steps look like ``function-after[…]``.
    """
    out: list[int | str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and ("[" in part or "-" in part):
            continue
        if (i == 2 and loc[0] in _KIND_LISTS and isinstance(loc[1], int)
                and part in _KIND_LISTS[str(loc[0])]):
            continue
        out.append(part)
    return tuple(out)


def _loc_to_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Find the YAML line for a validation error location (1-based)."""
    line = None
    for part in loc:
        if node is None:
            break
        if isinstance(node, yaml.MappingNode) and isinstance(part, str):
            nxt = None
            for key_node, value_node in node.value:
                if key_node.value == part:
                    line = key_node.start_mark.line + 1
                    nxt = value_node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                node = None
    return line


def _describe(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    msg = msg.removeprefix("Value error, ")
    kind = str(error.get("type", ""))
    got = error.get("input")
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see config.yaml for the known keys)"
    if kind == "missing":
        return "required key is missing"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        return _unknown_kind(error)
    msg = msg.replace("Input should be", "expected").replace("input should be", "expected")
    if kind == "string_type":
        msg = "expected a string"
    if "got" in msg:
        return msg
    if not msg.startswith("expected"):
        msg = f"expected {msg[0].lower() + msg[1:]}"
    if isinstance(got, dict | list):
        return msg
    return f"{msg}, got {got!r}"


def _unknown_kind(error: Mapping[str, Any]) -> str:
    """``expected one of 'a', 'b', got 'c'`` for a ``type:`` / ``kind:`` nobody registered."""
    ctx = error.get("ctx", {})
    loc = error.get("loc", ())
    registry = _KIND_LISTS.get(str(loc[0])) if loc else None
    known = ", ".join(repr(n) for n in registry.names()) if registry else ""
    expected = known or ctx.get("expected_tags", "")
    if error.get("type") == "union_tag_not_found":
        return f"required key is missing; expected one of {expected}"
    tag = ctx.get("tag")
    note = registry.failure_note(str(tag)) if registry else ""
    return f"expected one of {expected}, got {tag!r}{note}"


def parse_config(
    data: Any,
    *,
    file: str = DEFAULT_CONFIG_FILE,
    env: Mapping[str, str] | None = None,
    node: yaml.Node | None = None,
) -> Config:
    """Validate an already-parsed YAML document (a mapping) into a Config."""
    env = os.environ if env is None else env
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(file, "", f"expected a mapping of settings, got {type(data).__name__}")
    referenced = _referenced(data)
    data = _expand(data, env, "", file)
    from_env = _apply_env(data, env)
    _reject_unknown_env(env, referenced)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = _user_loc(tuple(first["loc"]))
        if first.get("type") in ("union_tag_invalid", "union_tag_not_found"):
            loc = (*loc, str(first.get("ctx", {}).get("discriminator", "type")).strip("'"))
        path = _loc_to_path(loc)
        # set by a MONITOR_* variable (or a key above it): name it, not a YAML line
        variable = next((v for k, v in from_env.items()
                         if path == k or path.startswith((k + ".", k + "["))), None)
        where = (f"environment variable {variable}" if variable else
                 f"{file}:{line}" if (line := _line_of(node, loc)) else file)
        raise ConfigError(where, path, _describe(first)) from None


def validation_problem(exc: ValidationError) -> tuple[str, str]:
    """(key path, problem) of a pydantic error's first entry, worded as config errors
    are; the CLI uses it for models it builds from arguments (one line, no dump)."""
    first = exc.errors()[0]
    return _loc_to_path(_user_loc(tuple(first["loc"]))), _describe(first)


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Load and validate a config file; a missing default file means all defaults."""
    env = os.environ if env is None else env
    explicit = path is not None or "MONITOR_CONFIG" in env
    file = Path(path if path is not None else env.get("MONITOR_CONFIG", DEFAULT_CONFIG_FILE))
    if not file.exists():
        if explicit:
            raise ConfigError(str(file), "", "file not found")
        return parse_config({}, file=str(file), env=env)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(file), "", f"cannot read: {exc}") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{file}:{mark.line + 1}" if mark is not None else str(file)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(where, "", f"invalid YAML: {problem}") from None
    except ValueError as exc:  # a date-like scalar YAML reads as a bad date: `2017-13-45`
        raise ConfigError(str(file), "", f"invalid YAML: {exc} (quote the value)") from None
    except RecursionError:  # `[[[[…` nested deeper than the parser's stack
        raise ConfigError(str(file), "", "invalid YAML: nested too deeply") from None
    return parse_config(data, file=str(file), env=env, node=node)
