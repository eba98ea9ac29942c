"""Typed, closed, frozen records for the agent's configuration (`device.config`), standard
library only: the agent's start-up does not pay for a validation framework, nor for
generating dataclass methods (docs/adr/0019-agent-memory-and-uplink-benchmarks.md).

A section is a class deriving from `Section` whose annotations are its keys (type
checkers see a frozen, keyword-only dataclass: `typing.dataclass_transform`). A key's
default is its class attribute; `setting(default, ge=..., gt=..., le=..., lt=...)` adds
bounds; a key without a default is required. Values are checked strictly, as TOML types
them: a bool is not an integer, a string is not a number, an integer is a fine number
(and becomes a float); a path is a string or a `Path`. Defaults are not checked.
Building a section, from keywords or with `model_validate(mapping)`, checks every value
and raises `SchemaError` listing each problem with its location; `model_copy` replaces
values without checking them again; setting an attribute raises FrozenInstanceError.

A section may refine the checks: `_check_field(name, value, checked)` sees each value
that passed its type and bounds, with the values checked before it, and raises
ValueError to refuse it; `_resolve(checked)` adjusts the checked values before they are
set; `_check_whole()` raises ValueError, named at the section, once every value passed.
"""

from __future__ import annotations

import copy
import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, dataclass_transform

T = TypeVar("T")
Kind = Literal["unknown", "missing", "invalid"]
Converter = Callable[[Any], Any]


class Problem:
    """One refused value: where (keys from the section down, list indexes as strings),
    what kind of problem and what is wrong."""

    __slots__ = ("kind", "loc", "message")

    def __init__(self, loc: tuple[str, ...], kind: Kind, message: str) -> None:
        self.loc, self.kind, self.message = loc, kind, message

    def under(self, key: str) -> Problem:
        return Problem((key, *self.loc), self.kind, self.message)


class SchemaError(ValueError):
    """The values a section refused, every problem with its location."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(
            f"{'.'.join(p.loc)}: {p.message}" if p.loc else p.message for p in problems
        ))


class _Invalid(Exception):
    """Raised by converters: the problems of one value, located inside it."""

    def __init__(self, message: str, loc: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.problems = [Problem(loc, "invalid", message)]

    @classmethod
    def of(cls, problems: list[Problem]) -> _Invalid:
        error = cls(problems[0].message)
        error.problems = problems
        return error


class Bounds:
    """ge: >=, gt: >, le: <=, lt: <."""

    __slots__ = ("ge", "gt", "le", "lt")

    def __init__(self, ge: float | None = None, gt: float | None = None,
                 le: float | None = None, lt: float | None = None) -> None:
        self.ge, self.gt, self.le, self.lt = ge, gt, le, lt

    def check(self, value: Any) -> None:
        if self.ge is not None and not value >= self.ge:
            raise _Invalid(f"Input should be greater than or equal to {self.ge}")
        if self.gt is not None and not value > self.gt:
            raise _Invalid(f"Input should be greater than {self.gt}")
        if self.le is not None and not value <= self.le:
            raise _Invalid(f"Input should be less than or equal to {self.le}")
        if self.lt is not None and not value < self.lt:
            raise _Invalid(f"Input should be less than {self.lt}")


PositiveInt = Annotated[int, Bounds(gt=0)]


class _Setting:
    __slots__ = ("bounds", "default")

    def __init__(self, default: Any, bounds: Bounds) -> None:
        self.default, self.bounds = default, bounds


def setting(
    default: T,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> T:
    """A key's default with bounds (ge: >=, gt: >, le: <=, lt: <)."""
    spec: Any = _Setting(default, Bounds(ge, gt, le, lt))
    return typing.cast(T, spec)


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class FieldSpec:
    """One key of a section: its type (as annotated), default, bounds and check."""

    __slots__ = ("annotation", "bounds", "convert", "default", "name")

    def __init__(self, name: str, annotation: Any, default: Any, bounds: Bounds | None
                 ) -> None:
        self.name, self.annotation, self.default, self.bounds = name, annotation, default, bounds
        convert = converter(annotation)
        self.convert: Converter = convert if bounds is None else (
            lambda value: _bounded(convert(value), [bounds])
        )

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


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


def _all(pairs: list[tuple[str, Any]], convert: Callable[[int, Any], Any]) -> list[Any]:
    """Each (key, value) converted, or _Invalid with every problem located by its key."""
    out, problems = [], []
    for index, (key, value) in enumerate(pairs):
        try:
            out.append(convert(index, value))
        except _Invalid as exc:
            problems += [p.under(key) for p in exc.problems]
    if problems:
        raise _Invalid.of(problems)
    return out


def _bounded(value: Any, bounds: list[Bounds]) -> Any:
    for bound in bounds:
        bound.check(value)
    return value


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
            return _all([(str(i), x) for i, x in enumerate(value)], lambda _, x: item(x))

        return convert_list
    if origin is tuple:
        parts = [converter(a) for a in args]

        def convert_tuple(value: Any) -> tuple[Any, ...]:
            if not isinstance(value, list | tuple) or len(value) != len(parts):
                raise _Invalid(f"Input should be a list of {len(parts)} items")
            pairs = [(str(i), x) for i, x in enumerate(value)]
            return tuple(_all(pairs, lambda i, x: parts[i](x)))

        return convert_tuple
    if origin is dict:
        key, item = converter(args[0]), converter(args[1])

        def convert_table(value: Any) -> dict[Any, Any]:
            if not isinstance(value, Mapping):
                raise _Invalid("Input should be a table")
            pairs = [(str(k), (k, v)) for k, v in value.items()]
            return dict(_all(pairs, lambda _, kv: (key(kv[0]), item(kv[1]))))

        return convert_table
    if annotation is Path:
        return _path
    if annotation in _NAMES:
        return _scalar(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Section):
        return annotation._from_value
    raise TypeError(f"unsupported type {annotation}")


class _Fields:
    """`Section.model_fields`: the class's FieldSpecs by name, built at first use."""

    def __get__(self, instance: object, owner: type[Section]) -> dict[str, FieldSpec]:
        specs: dict[str, FieldSpec] | None = owner.__dict__.get("_specs")
        if specs is None:
            hints = typing.get_type_hints(owner, include_extras=True)
            specs = {}
            for name, default in owner._declared.items():
                bounds = None
                if isinstance(default, _Setting):
                    default, bounds = default.default, default.bounds
                specs[name] = FieldSpec(name, hints[name], default, bounds)
            type.__setattr__(owner, "_specs", specs)
        return specs


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Section:
    """The base of a configuration section (see the module's docstring). A section's keys
    are its own annotations: sections do not inherit keys from one another."""

    model_fields: ClassVar[_Fields] = _Fields()
    _declared: ClassVar[dict[str, Any]]  # key -> default (REQUIRED, a value or _Setting)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = inspect.get_annotations(cls)
        cls._declared = {
            name: cls.__dict__.get(name, REQUIRED)
            for name, annotation in own.items()
            if not str(annotation).startswith("ClassVar")
        }
        for name, default in cls._declared.items():
            if isinstance(default, _Setting):
                type.__setattr__(cls, name, default.default)

    def __init__(self, **values: Any) -> None:
        """Every key checked; raises SchemaError naming each problem."""
        self._build(values)

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
        instance = object.__new__(cls)
        instance._build(data)
        return instance

    def _build(self, data: Mapping[Any, Any]) -> None:
        fields = self.model_fields
        problems = [Problem((str(key),), "unknown", "Extra inputs are not permitted")
                    for key in data if key not in fields]
        checked: dict[str, Any] = {}
        for name, spec in fields.items():
            if name not in data:
                if spec.required:
                    problems.append(Problem((name,), "missing", "Field required"))
                else:  # a list or table default: every section has its own
                    default = spec.default
                    checked[name] = copy.copy(default) if type(default) in (list, dict) else default
                continue
            try:
                converted = spec.convert(data[name])
                self._check_field(name, converted, checked)
            except (SchemaError, _Invalid) as exc:
                problems += [p.under(name) for p in exc.problems]
            except ValueError as exc:
                problems.append(Problem((name,), "invalid", str(exc)))
            else:
                checked[name] = converted
        if problems:
            order = {name: index for index, name in enumerate(fields)}
            problems.sort(key=lambda p: order.get(p.loc[0], len(order)))
            raise SchemaError(problems)
        for name, value in self._resolve(checked).items():
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

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._declared)

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        pairs = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._declared)
        return f"{type(self).__name__}({pairs})"
