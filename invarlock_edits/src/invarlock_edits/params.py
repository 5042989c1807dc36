"""Typed parameters of edit spec strings.

A spec's arguments are positional (``quant_rtn:4:32:all``) or ``key=value``
(``quant_rtn:bits=4:symmetric=false:ffn``). The scope, when an edit has one, is always the last
argument and may be left out (then the edit's default scope applies). Every bad value raises a
one-line :class:`~invarlock_core.errors.UsageError` that shows the edit's usage and valid values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from invarlock_core.editing import EditParameter
from invarlock_core.errors import UsageError
from invarlock_edits.scopes import SCOPE_GROUPS, Scope, parse_scope

__all__ = ["ParamSpec", "convert_value", "parse_arguments", "usage"]

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@attrs.frozen
class ParamSpec:
    """One parameter: its kind (``int``, ``float``, ``bool``, ``choice``, ``scope``, ``str``),
    default (``None`` = required), bounds and choices."""

    name: str
    kind: str
    default: Any = None
    help: str = ""
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False

    def public(self) -> EditParameter:
        """The protocol-level description shown by ``invarlock edit list``."""
        return EditParameter(self.name, self.kind, self.default, self.describe(), self.choices)

    def describe(self) -> str:
        """Help text with the accepted values."""
        if self.kind == "scope":
            accepted = f"{'|'.join(SCOPE_GROUPS)}[+...][@layer=N[,N-M]]"
        else:
            accepted = _expectation(self)
        return f"{self.help} ({accepted})" if self.help else accepted


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def usage(edit: str, params: Sequence[ParamSpec]) -> str:
    """``quant_rtn[:bits[:group_size]][:scope]``-style usage line."""
    text = edit
    closing = ""
    for param in params:
        if param.kind == "scope":
            continue
        if param.default is None:
            text += f":{param.name}"
        else:
            text += f"[:{param.name}"
            closing += "]"
    text += closing
    if any(p.kind == "scope" for p in params):
        text += f"[:scope] (scope: {'|'.join(SCOPE_GROUPS)}[@layer=N])"
    return text


def _expectation(param: ParamSpec) -> str:
    if param.choices:
        return "one of " + ", ".join(param.choices)
    if param.kind == "bool":
        return "true or false"
    noun = {"int": "an integer", "float": "a number"}.get(param.kind, "a string")
    bounds = []
    if param.minimum is not None:
        bounds.append(f"{'>' if param.exclusive_minimum else '>='} {_fmt(param.minimum)}")
    if param.maximum is not None:
        bounds.append(f"<= {_fmt(param.maximum)}")
    return f"{noun} {' and '.join(bounds)}".rstrip()


def convert_value(edit: str, params: Sequence[ParamSpec], param: ParamSpec, raw: Any) -> Any:
    """``raw`` (spec text or a JSON value from a tuned-params file) as the parameter's type."""

    def fail() -> UsageError:
        return UsageError(
            f"{edit}: invalid {param.name} {raw!r}: expected {_expectation(param)}; "
            f"usage: {usage(edit, params)}"
        )

    text = str(raw).strip()
    if param.kind == "scope":
        return parse_scope(text) if not isinstance(raw, Scope) else raw
    if param.kind == "bool":
        if isinstance(raw, bool):
            return raw
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise fail()
    if param.kind == "choice":
        if text not in param.choices:
            raise fail()
        return text
    if param.kind == "str":
        return text
    value: float
    try:
        if param.kind == "int":
            if isinstance(raw, bool) or (isinstance(raw, float) and not raw.is_integer()):
                raise ValueError
            value = int(raw) if not isinstance(raw, str) else int(text, 10)
        else:
            if isinstance(raw, bool):
                raise ValueError
            value = float(text)
            if value != value or value in {float("inf"), float("-inf")}:
                raise ValueError
    except ValueError:
        raise fail() from None
    if param.minimum is not None and (
        value < param.minimum or (param.exclusive_minimum and value == param.minimum)
    ):
        raise fail()
    if param.maximum is not None and value > param.maximum:
        raise fail()
    return value


def _looks_like_scope(text: str) -> bool:
    return all(group in SCOPE_GROUPS for group in text.partition("@")[0].split("+"))


def parse_arguments(
    edit: str,
    params: Sequence[ParamSpec],
    args: Sequence[str],
    *,
    preset: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Bind spec arguments to ``params``; ``preset`` (tuned values) fills what the spec leaves out."""
    by_name = {p.name: p for p in params}
    scope_param = next((p for p in params if p.kind == "scope"), None)
    positional_params = [p for p in params if p.kind != "scope"]
    values: dict[str, Any] = {}
    positional: list[str] = []
    for arg in args:
        key, eq, value = arg.partition("=")
        if eq and key in by_name:
            if key in values:
                raise UsageError(f"{edit}: {key} is given twice; usage: {usage(edit, params)}")
            values[key] = convert_value(edit, params, by_name[key], value)
        else:
            positional.append(arg)
    if (
        scope_param is not None
        and positional
        and scope_param.name not in values
        and (_looks_like_scope(positional[-1]) or len(positional) > len(positional_params))
    ):
        values[scope_param.name] = convert_value(edit, params, scope_param, positional.pop())
    free = [p for p in positional_params if p.name not in values]
    if len(positional) > len(free):
        extra = ":".join(positional[len(free) :])
        raise UsageError(f"{edit}: unexpected argument(s) {extra!r}; usage: {usage(edit, params)}")
    for param, raw in zip(free, positional):
        values[param.name] = convert_value(edit, params, param, raw)
    for name, raw in (preset or {}).items():
        if name not in by_name:
            valid = ", ".join(by_name)
            raise UsageError(
                f"{edit}: tuned parameter {name!r} is not a parameter of {edit}; valid: {valid}"
            )
        values.setdefault(name, convert_value(edit, params, by_name[name], raw))
    for param in params:
        if param.name in values:
            continue
        if param.default is None:
            raise UsageError(f"{edit}: missing {param.name}; usage: {usage(edit, params)}")
        values[param.name] = convert_value(edit, params, param, param.default)
    return values
