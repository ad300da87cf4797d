"""Every setting, its type, default, environment variable and meaning, read from the settings models
themselves (``twinflow settings reference``, which writes docs/configuration.md), and the settings in
effect (``twinflow settings show``).

A setting's meaning is its field's ``description``, else the comment on its line or the comment
lines right above it in the model's source: what the code's reader sees is what the reference says.

>>> rows = {r.key: r for r in reference_rows()}
>>> r = rows["api.verdict_wait_s"]
>>> r.type, r.default, r.variable
('float (≥ 0)', '10.0', 'TWINFLOW_API__VERDICT_WAIT_S')
>>> r.meaning
"PATCH desired waits this long for the gate's verdict."
>>> rows["postgres.password"].default  # secrets are never shown
'(secret)'
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr

from connectors.config.errors import unwrap
from connectors.config.shown import SHOWN
from twinflow.settings import PROJECT_ROOT, Settings

PREFIX = "TWINFLOW_"
PROJECT_PACKAGES = ("connectors", "flows", "operators", "twinflow")  # whose sources the comments come from


@dataclass(frozen=True)
class Row:
    """One setting: ``key`` as a dotted path (``<name>`` for a table's own names, ``[]`` for an array
    of tables), its type, default, environment variable (empty where none names it alone) and meaning."""

    key: str
    type: str
    default: str
    variable: str
    meaning: str


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and (issubclass(t, BaseModel) or dataclasses.is_dataclass(t))


def _fields(cls: type, instance: Any = None) -> list[tuple[str, Any, Any, list[Any], str]]:
    """(name, annotation, default, constraints, description) of a pydantic model's or dataclass's fields;
    the defaults are ``instance``'s values where the table has one (a table's own default, e.g.
    ``sensor_fault: KindRule = KindRule(0.0, 120.0)``, not its class's)."""
    if issubclass(cls, BaseModel):
        out = []
        for name, f in cls.model_fields.items():
            default = getattr(instance, name) if instance is not None else f.get_default(call_default_factory=True)
            out.append((f.alias or name, f.annotation, default, list(f.metadata), f.description or ""))
        return out
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        if instance is not None:
            default = getattr(instance, f.name)
        elif f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = dataclasses.MISSING
        annotation = hints.get(f.name, Any)
        extra = list(get_args(annotation)[1:]) if get_origin(annotation) is typing.Annotated else []
        out.append((f.name, annotation, default, extra, ""))
    return out


@cache
def _comments(cls: type) -> dict[str, str]:
    """Field name → the comment on its line, or the comment lines right above it. A field without either
    has no meaning here (never its neighbour's: a comment block describes the one field below it)."""
    try:
        lines, _start = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    source = textwrap.dedent("".join(lines))
    body = source.splitlines()
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    out: dict[str, str] = {}
    for node in tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above = []
        i = node.lineno - 2
        while i >= 0 and body[i].strip().startswith("#"):
            above.insert(0, body[i].strip().lstrip("#").strip())
            i -= 1
        trailing = _comment_of(body[(node.end_lineno or node.lineno) - 1])
        if trailing or above:
            out[node.target.id] = trailing or " ".join(above)
    return out


def _comment_of(line: str) -> str:
    """The ``# comment`` ending a line of code (not a ``#`` inside a string), without ``fmt:``/``noqa`` pragmas."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            text = line[i + 1 :].strip()
            return "" if text.startswith(("fmt:", "noqa", "type:")) else text
    return ""


def _type_name(t: Any) -> str:
    origin = get_origin(t)
    if origin is typing.Annotated:  # the constraints are shown apart
        return _type_name(get_args(t)[0])
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else str(a) for a in get_args(t))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in get_args(t))
    if origin is not None:
        args = ", ".join("…" if a is Ellipsis else _type_name(a) for a in get_args(t))
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{args}]" if args else name
    if t is type(None):
        return "None"
    if t is SecretStr:
        return "secret"
    if isinstance(t, type) and issubclass(t, Enum):
        return " | ".join(f'"{m.value}"' for m in t)
    return getattr(t, "__name__", str(t).replace("typing.", ""))


_BOUNDS = (
    (annotated_types.Ge, "≥", "ge"),
    (annotated_types.Gt, ">", "gt"),
    (annotated_types.Le, "≤", "le"),
    (annotated_types.Lt, "<", "lt"),
)


def _constraints(metadata: list[Any]) -> str:
    parts = []
    for m in metadata:
        for kind, sign, attr in _BOUNDS:
            if isinstance(m, kind):
                parts.append(f"{sign} {getattr(m, attr)}")
        if isinstance(m, annotated_types.MinLen):
            parts.append(f"at least {m.min_length}")
        if isinstance(m, annotated_types.MaxLen):
            parts.append(f"at most {m.max_length}")
    return ", ".join(parts)


def _shown(value: Any) -> str:
    """A default as the TOML file would spell it; paths inside the project relative to it."""
    if value is dataclasses.MISSING:
        return "(required)"
    if isinstance(value, SecretStr):
        return "(secret)"
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Enum):
        return f'"{value.value}"'
    if isinstance(value, Path):
        try:
            return f'"<project>/{value.relative_to(PROJECT_ROOT)}"'
        except ValueError:
            return f'"{value}"'
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_shown(v)}" for k, v in value.items()) + "}" if value else "{}"
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return f"{value:.1f}"
    return str(value)


def _container_model(t: Any) -> tuple[str, Any] | None:
    """For ``dict[str, Model]`` → ("<name>", Model); ``list[Model]`` / ``tuple[Model, ...]`` → ("[]", Model)."""
    t = unwrap(t)
    origin = get_origin(t)
    args = [unwrap(a) for a in get_args(t) if a is not Ellipsis]
    if origin is dict and len(args) == 2 and _is_model(args[1]):
        return "<name>", args[1]
    if origin in (list, tuple) and args and _is_model(args[0]):
        return "[]", args[0]
    return None


def _model_of(t: Any) -> type | None:
    """The model of a table (``Model`` or ``Model | None``), else None."""
    t = unwrap(t)
    return t if _is_model(t) else None


def _rows(
    cls: type, path: tuple[str, ...], named: bool, listed: dict[type, str], instance: Any = None
) -> Iterator[Row]:
    """The rows of ``cls``'s fields below ``path``; the tables of a table or array of tables whose model
    is already listed (``listed``: model → where) get one row naming where their keys are."""
    own = [base for base in reversed(cls.__mro__) if base.__module__.split(".")[0] in PROJECT_PACKAGES]
    comments = {k: v for base in own for k, v in _comments(base).items()}  # a subclass's comment wins
    for name, annotation, default, metadata, description in _fields(cls, instance):
        key = (*path, name)
        meaning = _sentence(description or comments.get(name, ""))
        model = _model_of(annotation)
        inner = _container_model(annotation)
        if model is not None:  # a table of its own (with its own defaults)
            yield from _rows(model, key, named, listed, default if isinstance(default, model) else None)
            continue
        if inner is not None:
            marker, item = inner
            kind = "table of tables, by name" if marker == "<name>" else "array of tables"
            below = (*key[:-1], key[-1] + (f".{marker}" if marker == "<name>" else "[]"))
            if item in listed:
                yield Row(
                    ".".join(key), kind, _shown(default), "", f"each with the keys of `{listed[item]}`" + _also(meaning)
                )
                continue
            yield Row(".".join(key), kind, _shown(default), "", meaning)
            listed[item] = ".".join(below)
            yield from _rows(item, below, False, listed)
            continue
        limits = _constraints(metadata)
        shown_type = _type_name(annotation) + (f" ({limits})" if limits else "")
        variable = PREFIX + "__".join(p.upper() for p in key) if named and path else ""
        yield Row(".".join(key), shown_type, _shown(default), variable, meaning)


def _sentence(text: str) -> str:
    """A meaning as a sentence: capitalised, with a full stop (comments on a field's line are often neither).

    >>> _sentence("the login role"), _sentence("Seconds per try."), _sentence("")
    ('The login role.', 'Seconds per try.', '')
    """
    text = text.strip()
    if not text:
        return text
    return text[0].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")


def _also(meaning: str) -> str:
    return f": {meaning}" if meaning else ""


def reference_rows() -> list[Row]:
    """Every setting of :class:`~twinflow.settings.Settings`, section by section in its order."""
    out: list[Row] = []
    for section, field in Settings.model_fields.items():
        model = _model_of(field.annotation)
        if model is not None:
            out.extend(_rows(model, (section,), True, {model: section}))
    return out


def reference_markdown() -> str:
    """docs/configuration.md: one table per section (``twinflow settings reference > docs/configuration.md``)."""
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `twinflow settings reference > docs/configuration.md` from the settings models;",
        "     a unit test checks it is current. Edit the models' comments, not this file. -->",
        "",
        "Every setting twinflow reads, from the settings models themselves. Give a setting in the TOML file",
        "named by `TWINFLOW_CONFIG` (else `./twinflow.toml`) under its section, or as its environment",
        "variable (which wins over the file); `twinflow settings show` prints the settings in effect and what",
        "set them (secrets as `**********`, URLs without user, password, query and fragment). Unknown keys",
        "are errors, in the file and in variables alike (README, *Configuration*).",
        "A key with `<name>` is a table of your own names (e.g. `[twin.policy.types.pump]`); `[]` marks an",
        "array of tables (`[[ml.limits]]`); such tables are given in the file (or as one JSON variable for",
        "the whole setting). A variable holding a list or a table is JSON",
        "(`TWINFLOW_ML__COUNTERS__SENSORS='[\"*_kwh\", \"*_hours\"]'`). Paths under `<project>` are relative",
        "to the checkout.",
        "",
    ]
    rows = reference_rows()
    sections = list(dict.fromkeys(r.key.split(".", 1)[0] for r in rows))
    lines.append("Sections: " + ", ".join(f"[`[{s}]`](#{s})" for s in sections) + ".")
    for section in sections:
        model = _model_of(Settings.model_fields[section].annotation)
        own = model.__dict__.get("__doc__") if model else None  # not a base class's
        doc = inspect.cleandoc(own).split("\n\n", 1)[0].replace("\n", " ") if own else ""
        lines += ["", f"## {section}", ""]
        if doc:
            lines += [doc, ""]
        lines += ["| key | type | default | environment variable | meaning |", "|---|---|---|---|---|"]
        for r in rows:
            if r.key.split(".", 1)[0] != section:
                continue
            cells = [f"`{r.key}`", _cell(r.type), f"`{r.default}`" if r.default else "", _cell(r.variable, code=True),
                     _cell(r.meaning)]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _cell(text: str, code: bool = False) -> str:
    text = text.replace("|", "\\|")
    return f"`{text}`" if code and text else text


def effective(settings: Settings, section: str | None = None) -> dict[str, Any]:
    """The settings in effect as TOML-ready data (secrets masked, URLs as
    :func:`~connectors.config.shown.shown_url` shows them, unset values left out)."""
    data = settings.model_dump(mode="json", by_alias=True, context=SHOWN)
    data = _without_none(data)
    if section is not None:
        return {section: data.get(section, {})}
    return data


def _without_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value
