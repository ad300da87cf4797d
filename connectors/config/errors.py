"""Configuration mistakes in words a user can act on: file, section, key, a close known key, the fix.

Shared by the settings (:mod:`twinflow.settings`), the TOML files read with
:func:`connectors.config.tomlfile.load_toml_model` (policy, twin registry) and the mapping files
(:mod:`connectors.bridges.mapping`). Unknown keys are errors everywhere (:mod:`operators.strict`); this
module only says so well.

>>> from operators.strict import StrictModel
>>> from pydantic import ValidationError
>>> class Postgres(StrictModel):
...     host: str = "127.0.0.1"
...     port: int = 5432
>>> class Root(StrictModel):
...     postgres: Postgres = Postgres()
>>> try:
...     Root.model_validate({"postgres": {"hostname": "db"}})
... except ValidationError as exc:
...     [p.text() for p in problems(exc, Root)]
['[postgres] hostname: unknown key, did you mean `host`?']
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

UNKNOWN = ("extra_forbidden", "unexpected_keyword_argument")


class ConfigError(Exception):
    """A configuration mistake, with the file, the field and how to fix it."""


@dataclass(frozen=True)
class Problem:
    """One mistake: where (``section``, ``key``), what (``message``), and a close known key."""

    loc: tuple[str | int, ...]
    section: str  # "[postgres]", "[[ml.limits]] entry 2", "" (top level)
    key: str  # "hostname", "windows_s[1]", "" (the section as a whole)
    message: str
    unknown: bool = False
    suggestion: str | None = None
    known: tuple[str, ...] = ()
    missing: bool = False

    def where(self) -> str:
        """``[postgres] hostname``; ``top level `x``` for a key outside every section."""
        if not self.section:
            return f"top level `{self.key}`" if self.key else "top level"
        return f"{self.section} {self.key}".rstrip()

    def text(self) -> str:
        return f"{self.where()}: {self.message}"

    def line(self, fix: str | None = None) -> str:
        """``where: message. Fix.`` with ``fix`` (default :meth:`fix`) as its own sentence."""
        return sentence(self.text(), self.fix() if fix is None else fix)

    def fix(self) -> str:
        """How to fix an unknown or a missing key; empty for other mistakes."""
        if self.missing:
            return "add it"
        if not self.unknown:
            return ""
        if self.suggestion:
            return f"rename it to `{self.suggestion}` or remove it"
        listed = ", ".join(self.known[:12]) + (", …" if len(self.known) > 12 else "")
        return f"remove it (known here: {listed})" if listed else "remove it"


def sentence(message: str, fix: str = "") -> str:
    """``message`` ended with a full stop, then ``fix`` as a sentence of its own.

    >>> sentence("[mqtt] qos: Input should be less than or equal to 2", "fix it in the file")
    '[mqtt] qos: Input should be less than or equal to 2. Fix it in the file.'
    """
    out = message if message.endswith((".", "?", "!")) else message + "."
    return f"{out} {fix[:1].upper()}{fix[1:]}." if fix else out


def problems(exc: ValidationError, root: Any) -> list[Problem]:
    """The errors of validating ``root`` (a pydantic model or dataclass), in user terms."""
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        section, key = _split(root, loc, leaf_is_key=err["type"] == "missing")
        if err["type"] in UNKNOWN and loc:
            parent = type_at(root, loc[:-1])
            known = keys_of(parent)
            tables = [_is_table(f) or _is_table(_step(f, 0)[0]) for f in _fields(parent).values()]
            what = "section" if len(loc) == 1 and tables and all(tables) else "key"
            match = [m] if (m := suggest(root, loc)) else []
            if what == "section":
                section, key = f"[{loc[0]}]", ""
            message = f"unknown {what}" + (f", did you mean `{match[0]}`?" if match else "")
            out.append(Problem(loc, section, key, message, True, match[0] if match else None, tuple(known)))
        else:
            message = err["msg"].removeprefix("Value error, ")
            out.append(Problem(loc, section, key, message, missing=err["type"] == "missing"))
    return out


def settings_problems(
    exc: ValidationError | None,
    root: Any,
    *,
    file: Path | None,
    data: dict[str, Any],
    environ: dict[str, str],
    prefix: str,
    delimiter: str = "__",
) -> list[str]:
    """One line per mistake in settings read from ``file`` (parsed as ``data``) and ``environ``,
    each naming where it is (the file or the variable), section, key and the fix. Also reports
    variables ``<prefix><SECTION><delimiter>…`` whose section does not exist, and variables that name a
    setting with single underscores (``TWINFLOW_FLOW_BATCH_SIZE``): pydantic-settings ignores both."""
    env = {k.upper(): k for k in environ}

    def var(loc: tuple[str | int, ...]) -> str:
        return prefix + delimiter.join(str(p).upper() for p in loc)

    lines = []
    sections = keys_of(root)
    for upper, name in sorted(env.items()):
        head, sep, tail = upper.removeprefix(prefix).partition(delimiter)
        if upper.startswith(prefix) and sep and head.lower() not in sections:
            match = difflib.get_close_matches(head.lower(), sections, n=1, cutoff=0.6)
            message = f"{name} (environment): unknown section `{head.lower()}`"
            if match:
                fixed = f"{prefix}{match[0].upper()}{delimiter}{tail}"
                lines.append(sentence(f"{message}, did you mean `{match[0]}`?", f"use {fixed}, or unset it"))
            else:
                lines.append(sentence(message, f"unset it (sections: {', '.join(sections)})"))
        elif upper.startswith(prefix) and not sep and (path := _setting_path(root, upper.removeprefix(prefix))):
            fixed = prefix + delimiter.join(path).upper()
            message = f"{name} (environment): sets nothing: a section and its keys are joined by `{delimiter}`"
            lines.append(sentence(message, f"use {fixed}, or unset it"))
    for p in problems(exc, root) if exc is not None else []:
        named = [p.loc[:n] for n in range(len(p.loc), 0, -1) if all(isinstance(x, str) for x in p.loc[:n])]
        # the variable of exactly this key; a whole table's (a section-level check) is no fix to suggest
        own = var(p.loc) if named and named[0] == p.loc and not _is_table(type_at(root, p.loc)) else None
        from_env = next((env[var(loc)] for loc in named if var(loc) in env), None)
        if from_env is not None:
            if p.unknown:
                fix = f"use {var((*p.loc[:-1], p.suggestion))}, or unset it" if p.suggestion else "unset it"
            elif p.message.startswith(("Input should be a valid tuple", "Input should be a valid list")):
                fix = """write it as a JSON list (e.g. '["*_kwh", "pump_*"]') or unset the variable"""
            elif p.message.startswith("Input should be a valid dictionary"):
                fix = """write it as a JSON object (e.g. '{"name": "value"}') or unset the variable"""
            else:
                fix = "fix or unset the variable"
            lines.append(f"{from_env} (environment): {p.line(fix)}")
        elif _has(data, p.loc):
            fix = p.fix() or ("fix it in the file" + (f", or set {own}" if own else ""))
            lines.append(f"{file}: {p.line(fix)}")
        else:
            lines.append(p.line())
    return lines


def _has(data: Any, loc: tuple[str | int, ...]) -> bool:
    """Whether the parsed file holds the section (or top-level key) of ``loc``."""
    return isinstance(data, dict) and bool(loc) and loc[0] in data


def read_toml(path: Path, what: str = "configuration") -> dict[str, Any]:
    """Parse a TOML file; :class:`ValueError` with file, line, column and the fix otherwise."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{what} file {path}: cannot read it ({exc.strerror}); fix the path") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{what} file {path}: {not_utf8(exc)}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(toml_syntax_error(f"{what} file {path}", exc, text)) from None


def not_utf8(exc: UnicodeDecodeError) -> str:
    """Why a file is no TOML text, where, and the fix.

    >>> print(not_utf8(UnicodeDecodeError("utf-8", b"x = 1" + bytes([10, 255]), 6, 7, "invalid start byte")))
    not UTF-8 text (byte 0xff at offset 6, line 2): TOML files are UTF-8; save it as UTF-8
    """
    line = exc.object[: exc.start].count(b"\n") + 1
    return (
        f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}, line {line}): "
        "TOML files are UTF-8; save it as UTF-8"
    )


def suggest(root: Any, loc: tuple[str | int, ...]) -> str | None:
    """The known key closest to the unknown one at ``loc`` (None when none is close)."""
    match = difflib.get_close_matches(str(loc[-1]), keys_of(type_at(root, loc[:-1])), n=1, cutoff=0.6)
    return match[0] if match else None


def toml_syntax_error(path: Path | str, exc: tomllib.TOMLDecodeError, text: str) -> str:
    """``file, line L, column C: not valid TOML: …`` with the line and a caret under the column
    (``path`` empty: no file name, when the message around it names the file).

    >>> try:
    ...     tomllib.loads("[kafka]\\nbootstrap_servers = k1:9092\\n")
    ... except tomllib.TOMLDecodeError as exc:
    ...     print(toml_syntax_error("twinflow.toml", exc, "[kafka]\\nbootstrap_servers = k1:9092\\n"))
    twinflow.toml, line 2, column 21: not valid TOML: Invalid value
        bootstrap_servers = k1:9092
                            ^
      (strings need quotes: key = "value"; see https://toml.io)
    """
    msg = str(exc)
    where = f"{path}, " if str(path) else ""
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
    if m is None:
        reason = re.sub(r"\s*\(at end of document\)$", "", msg)
        return f"{where}at the end: not valid TOML: {reason} (an unclosed [table], string or array?)"
    line, col, reason = int(m.group(1)), int(m.group(2)), msg[: m.start()]
    lines = text.splitlines()
    shown = lines[line - 1] if 0 < line <= len(lines) else ""
    hint = 'strings need quotes: key = "value"; ' if reason == "Invalid value" else ""
    return (
        f"{where}line {line}, column {col}: not valid TOML: {reason}\n"
        f"    {shown}\n    {' ' * (col - 1)}^\n"
        f"  ({hint}see https://toml.io)"
    )


# ----------------------------------------------------------------------------- walking the schema
def unwrap(t: Any) -> Any:
    """``Annotated[X, …]`` → X; ``X | None`` → X (other unions are kept)."""
    while True:
        origin = get_origin(t)
        if origin is typing.Annotated:
            t = get_args(t)[0]
        elif origin in (Union, types.UnionType):
            args = [a for a in get_args(t) if a is not type(None)]
            if len(args) != 1:
                return t
            t = args[0]
        else:
            return t


def _fields(t: Any) -> dict[str, Any]:
    """Field name (and alias) → type of a pydantic model or a dataclass; {} for anything else."""
    if isinstance(t, type) and issubclass(t, BaseModel):
        out = {}
        for name, f in t.model_fields.items():
            out[name] = f.annotation
            if f.alias:
                out[f.alias] = f.annotation
        return out
    if isinstance(t, type) and dataclasses.is_dataclass(t):
        try:
            hints = typing.get_type_hints(t, include_extras=True)
        except Exception:  # an unresolvable hint only costs the suggestion
            hints = {}
        return {f.name: hints.get(f.name, Any) for f in dataclasses.fields(t)}
    return {}


def _is_table(t: Any) -> bool:
    t = unwrap(t)
    return bool(_fields(t)) or get_origin(t) is dict


def _step(t: Any, part: str | int) -> tuple[Any, bool]:
    """The type one step down ``part``; the bool says whether ``part`` was consumed as a union tag."""
    t = unwrap(t)
    origin = get_origin(t)
    if origin in (list, tuple, set, frozenset) and isinstance(part, int):
        args = [a for a in get_args(t) if a is not Ellipsis]
        return (args[0] if args else Any), False
    if origin is dict:
        args = get_args(t)
        return (args[1] if len(args) == 2 else Any), False
    if origin in (Union, types.UnionType):
        members = [m for m in get_args(t) if _fields(unwrap(m))]
        for m in members:  # a discriminated union puts the tag into the location
            for f in _fields(unwrap(m)).values():
                if get_origin(f) is Literal and part in get_args(f):
                    return m, True
        having = [m for m in members if part in _fields(unwrap(m))]
        return (_fields(unwrap(having[0]))[part] if having else Any), False
    return _fields(t).get(str(part), Any), False


def type_at(root: Any, loc: tuple[str | int, ...]) -> Any:
    """The type found at ``loc`` below ``root`` (``Any`` when the schema does not say)."""
    t = root
    for part in loc:
        t, _ = _step(t, part)
    return unwrap(t)


def keys_of(t: Any) -> list[str]:
    """The keys a table of type ``t`` accepts (its field names), for suggestions."""
    return [k for k in _fields(unwrap(t)) if not k.startswith("_")]


def _setting_path(t: Any, name: str) -> list[str] | None:
    """The keys of the setting ``name`` spells with single underscores (``FLOW_BATCH_SIZE`` →
    ``["flow", "batch_size"]``), or None when it spells none (``DATA_DIR``, ``CONFIG``)."""
    lower = name.lower()
    for key in sorted(keys_of(t), key=len, reverse=True):
        if lower == key and not _is_table(_step(t, key)[0]):
            return [key]
        if lower.startswith(key + "_") and _is_table(_step(t, key)[0]):
            rest = _setting_path(_step(t, key)[0], lower[len(key) + 1 :])
            if rest:
                return [key, *rest]
    return None


def _split(root: Any, loc: tuple[str | int, ...], leaf_is_key: bool = False) -> tuple[str, str]:
    """Section and key of a location, as the TOML file shows them.

    ``("ml", "limits", 1, "sensr")`` → ``("[[ml.limits]] entry 2", "sensr")``;
    ``("twin", "windows_s", 1)`` → ``("[twin]", "windows_s[1]")``;
    ``("rule", 0, "parameters", "x", "min")`` → ``("[[rule]] entry 1, [rule.parameters.x]", "min")``.
    """
    t = root
    names: list[list[Any]] = []  # [name, list index or None]
    table_end = 0
    for i, part in enumerate(loc):
        t, tag = _step(t, part)
        if tag:
            continue
        if isinstance(part, int) and names:
            names[-1][1] = part
        else:
            names.append([str(part), None])
        if _is_table(t) and not (leaf_is_key and i == len(loc) - 1):
            table_end = len(names)
    head, rest = names[:table_end], names[table_end:]
    section = ""
    if head:
        dotted = ".".join(n for n, _ in head)
        section = f"[[{dotted}]] entry {head[-1][1] + 1}" if head[-1][1] is not None else f"[{dotted}]"
        for j in range(len(head) - 2, -1, -1):  # tables inside an array of tables: name the entry first
            if head[j][1] is not None:
                section = f"[[{'.'.join(n for n, _ in head[: j + 1])}]] entry {head[j][1] + 1}, {section}"
    key = ".".join(n + (f"[{idx}]" if idx is not None else "") for n, idx in rest)
    return section, key
