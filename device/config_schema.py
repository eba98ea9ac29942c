"""Typed, closed, frozen records for the agent's configuration (`device.config`), standard
library only: the agent's start-up does not pay for a validation framework
(docs/adr/0019-agent-memory-and-uplink-benchmarks.md).

A section is a frozen, keyword-only dataclass deriving from `Section`. Its annotations
say the types; `setting(default, ge=..., gt=..., le=..., lt=...)` adds bounds. Values are
checked strictly, as TOML types them: a bool is not an integer, a string is not a
number, an integer is a fine number (and becomes a float); a path is a string or a
`Path`. Building a section, from keywords or with `model_validate(mapping)`, checks every
value and raises `SchemaError` listing each problem with its location; `model_copy`
replaces values without checking them again.

A section may refine the checks: `_check_field(name, value, checked)` sees each value
that passed its type and bounds, with the values checked before it, and raises
ValueError to refuse it; `_resolve(checked)` adjusts the checked values before they are
set; `_check_whole()` raises ValueError, named at the section, once every value passed.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

T = TypeVar("T")
Kind = Literal["unknown", "missing", "invalid"]


@dataclass(frozen=True, slots=True)
class Problem:
    loc: tuple[str, ...]  # keys from the section down, list indexes as strings
    kind: Kind
    message: str


class SchemaError(ValueError):
    """The values a section refused, every problem with its location."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(p.loc)}: {p.message}" for p in problems))

    def under(self, key: str) -> list[Problem]:
        return [Problem((key, *p.loc), p.kind, p.message) for p in self.problems]


class _Invalid(Exception):
    def __init__(self, message: str, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.message, self.loc = message, loc


@dataclass(frozen=True, slots=True)
class Bounds:
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def check(self, value: float) -> None:
        if self.ge is not None and not value >= self.ge:
            raise _Invalid(f"Input should be greater than or equal to {self.ge}")
        if self.gt is not None and not value > self.gt:
            raise _Invalid(f"Input should be greater than {self.gt}")
        if self.le is not None and not value <= self.le:
            raise _Invalid(f"Input should be less than or equal to {self.le}")
        if self.lt is not None and not value < self.lt:
            raise _Invalid(f"Input should be less than {self.lt}")


PositiveInt = Annotated[int, Bounds(gt=0)]


def setting(
    default: T,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> T:
    """A field with a default and bounds (ge: >=, gt: >, le: <=, lt: <)."""
    field: T = dataclasses.field(default=default, metadata={"bounds": Bounds(ge, gt, le, lt)})
    return field


REQUIRED: Any = dataclasses.MISSING


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One key of a section: its type (as annotated), default, bounds and check."""

    name: str
    annotation: Any
    default: Any  # REQUIRED when the key must be given
    bounds: Bounds | None
    convert: Callable[[Any], Any]

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


Converter = Callable[[Any], Any]
_NAMES = {bool: "boolean", int: "integer", float: "number", str: "string"}


def _scalar(kind: type) -> Converter:
    """Strict, as TOML types values: a bool is no integer, an integer is a fine number."""
    accepted: tuple[type, ...] = (int, float) if kind is float else (kind,)
    refused: tuple[type, ...] = () if kind is bool else (bool,)
    message = f"Input should be a valid {_NAMES[kind]}"

    def convert(value: Any) -> Any:
        valid = isinstance(value, accepted) and not isinstance(value, refused)
        if not valid:
            raise _Invalid(message)
        return float(value) if kind is float else value

    return convert


def _path(value: Any) -> Path:
    if isinstance(value, Path):
        return value
    if isinstance(value, str):
        return Path(value)
    raise _Invalid("Input should be a valid path")


def _literal(choices: tuple[Any, ...]) -> Converter:
    names = [repr(c) for c in choices]
    expected = ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]

    def convert(value: Any) -> Any:
        if any(type(value) is type(c) and value == c for c in choices):
            return value
        raise _Invalid(f"Input should be {expected}")

    return convert


class _Many(_Invalid):
    def __init__(self, problems: list[_Invalid]) -> None:
        super().__init__(problems[0].message, problems[0].loc)
        self.problems = problems


def _under(key: str, exc: _Invalid) -> list[_Invalid]:
    inner = exc.problems if isinstance(exc, _Many) else [exc]
    return [_Invalid(p.message, (key, *p.loc)) for p in inner]


def _items(value: Any, convert: Callable[[int, Any], Any]) -> list[Any]:
    out, problems = [], []
    for index, item in enumerate(value):
        try:
            out.append(convert(index, item))
        except _Invalid as exc:
            problems.extend(_under(str(index), exc))
    if problems:
        raise _Many(problems)
    return out


def converter(annotation: Any) -> Converter:
    """The function that checks and converts a value of `annotation`'s type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        inner, bounds = converter(args[0]), [b for b in args[1:] if isinstance(b, Bounds)]
        return lambda value: _bounded(inner(value), bounds)
    if origin in (typing.Union, types.UnionType):
        others = [converter(a) for a in args if a is not type(None)]
        if len(others) != 1:
            raise TypeError(f"unsupported union {annotation}")
        return lambda value: None if value is None else others[0](value)
    if origin is Literal:
        return _literal(args)
    if origin is list:
        item = converter(args[0])

        def convert_list(value: Any) -> list[Any]:
            if not isinstance(value, list | tuple):
                raise _Invalid("Input should be a valid list")
            return _items(value, lambda _, x: item(x))

        return convert_list
    if origin is tuple:
        parts = [converter(a) for a in args]

        def convert_tuple(value: Any) -> tuple[Any, ...]:
            if not isinstance(value, list | tuple) or len(value) != len(parts):
                raise _Invalid(f"Input should be a list of {len(parts)} items")
            return tuple(_items(value, lambda i, x: parts[i](x)))

        return convert_tuple
    if origin is dict:
        key, item = converter(args[0]), converter(args[1])
        return lambda value: _dict(value, key, item)
    if annotation is Path:
        return _path
    if annotation in _NAMES:
        return _scalar(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation._from_value
    raise TypeError(f"unsupported type {annotation}")


def _bounded(value: Any, bounds: list[Bounds]) -> Any:
    for bound in bounds:
        bound.check(value)
    return value


def _with_bounds(convert: Converter, bounds: Bounds) -> Converter:
    return lambda value: _bounded(convert(value), [bounds])


def _dict(value: Any, key: Converter, item: Converter) -> dict[Any, Any]:
    if not isinstance(value, Mapping):
        raise _Invalid("Input should be a table")
    out, problems = {}, []
    for k, v in value.items():
        try:
            out[key(k)] = item(v)
        except _Invalid as exc:
            problems.extend(_under(str(k), exc))
    if problems:
        raise _Many(problems)
    return out


class _Fields:
    """`Section.model_fields`: the class's FieldSpecs by name, built at first use."""

    def __get__(self, instance: object, owner: type[Section]) -> dict[str, FieldSpec]:
        specs: dict[str, FieldSpec] | None = owner.__dict__.get("_specs")
        if specs is None:
            specs = {}
            hints = typing.get_type_hints(owner, include_extras=True)
            for field in dataclasses.fields(owner):  # type: ignore[arg-type]
                default = field.default
                if field.default_factory is not dataclasses.MISSING:
                    default = field.default_factory()
                bounds = field.metadata.get("bounds")
                check = converter(hints[field.name])
                if bounds is not None:
                    check = _with_bounds(check, bounds)
                specs[field.name] = FieldSpec(field.name, hints[field.name], default, bounds,
                                              check)
            type.__setattr__(owner, "_specs", specs)
        return specs


class Section:
    """The base of a configuration section (see the module's docstring)."""

    model_fields: ClassVar[_Fields] = _Fields()

    def __post_init__(self) -> None:
        self._set(self._checked({name: getattr(self, name) for name in self.model_fields}))

    @classmethod
    def model_validate(cls, data: object) -> Self:
        """The section from a mapping (a TOML table); raises SchemaError."""
        return cls._from_value(data)

    @classmethod
    def _from_value(cls, data: object) -> Self:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise SchemaError([Problem((), "invalid", "Input should be a table")])
        fields = cls.model_fields
        values: dict[str, Any] = {}
        problems: list[Problem] = []
        for name, spec in fields.items():
            if name in data:
                values[name] = data[name]
            elif spec.required:
                problems.append(Problem((name,), "missing", "Field required"))
            else:
                values[name] = spec.default
        problems += [Problem((str(key),), "unknown", "Extra inputs are not permitted")
                     for key in data if key not in fields]
        instance = object.__new__(cls)
        instance._set(cls._checked(values, problems))
        return instance

    @classmethod
    def _checked(cls, values: Mapping[str, Any], problems: list[Problem] | None = None
                 ) -> dict[str, Any]:
        """`values` converted and checked, defaults as they are; raises SchemaError."""
        problems = list(problems or ())
        checked: dict[str, Any] = {}
        for name, value in values.items():
            spec = cls.model_fields[name]
            if value is spec.default:
                checked[name] = value
                continue
            try:
                converted = spec.convert(value)
                cls._check_field(name, converted, checked)
            except SchemaError as exc:
                problems.extend(exc.under(name))
            except _Invalid as exc:
                problems.extend(Problem(p.loc, "invalid", p.message) for p in _under(name, exc))
            except ValueError as exc:
                problems.append(Problem((name,), "invalid", str(exc)))
            else:
                checked[name] = converted
        if problems:
            order = {name: index for index, name in enumerate(cls.model_fields)}
            problems.sort(key=lambda p: order.get(p.loc[0], len(order)) if p.loc else -1)
            raise SchemaError(problems)
        return cls._resolve(checked)

    def _set(self, checked: Mapping[str, Any]) -> None:
        for name, value in checked.items():
            object.__setattr__(self, name, value)
        try:
            self._check_whole()
        except ValueError as exc:
            raise SchemaError([Problem((), "invalid", str(exc))]) from None

    @classmethod
    def _check_field(cls, name: str, value: Any, checked: Mapping[str, Any]) -> None:
        """Refuse `value` of key `name` (ValueError); `checked` holds the keys before it."""

    @classmethod
    def _resolve(cls, checked: dict[str, Any]) -> dict[str, Any]:
        """The checked values as they will be set (a default may follow another key)."""
        return checked

    def _check_whole(self) -> None:
        """Refuse the section as a whole (ValueError), once every key passed."""

    def model_copy(self, *, update: Mapping[str, Any] | None = None) -> Self:
        """A copy with `update`'s values, set as given (not checked again)."""
        unknown = set(update or ()) - set(self.model_fields)
        if unknown:
            raise TypeError(f"{type(self).__name__} has no key {', '.join(sorted(unknown))}")
        clone = copy.copy(self)
        for name, value in (update or {}).items():
            object.__setattr__(clone, name, value)
        return clone
