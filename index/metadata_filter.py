"""Metadata filters: which documents a search may return, by their metadata's fields.

A filter maps field names to a value, a list of values or a range, ``{"topic": "food",
"year": [2023, 2024], "date": {"gte": "2024-01-01"}}``: a document matches when, for every
field named, its metadata has that top-level field with one of the values given (equality of
JSON values: a string matches only a string, a number only a number, ``true`` only ``true``),
or a value within the range (``gt``, ``gte``, ``lt``, ``lte``: numbers compare as numbers,
strings by their characters, which orders ISO dates). The same rule runs in SQL over the
docstore (:meth:`MetadataFilter.where`) and in Python (:meth:`MetadataFilter.matches`).
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Scalar = str | int | float | bool
"""A value a field can be compared with (JSON's string, number and boolean)."""

MAX_FIELDS = 16
MAX_VALUES = 1024

RANGE_OPERATORS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
"""A range's bounds, as JSON keys, and their comparisons."""


@dataclass(frozen=True)
class ValueRange:
    """Bounds on a field's value: all numbers or all strings, at least one given."""

    bounds: tuple[tuple[str, float | int | str], ...]
    """``(operator, value)`` pairs, operators from :data:`RANGE_OPERATORS`, in that order."""

    @classmethod
    def from_mapping(cls, name: str, given: Mapping[str, Any]) -> ValueRange:
        """Validate ``{"gte": 2020, "lt": 2025}``; a clear ``ValueError`` for anything else.

        >>> ValueRange.from_mapping("year", {"lt": 2025, "gte": 2020}).bounds
        (('gte', 2020), ('lt', 2025))
        >>> ValueRange.from_mapping("year", {"gte": 2020, "lt": "2025"})
        Traceback (most recent call last):
        ...
        ValueError: filter.year: a range's bounds are all numbers or all strings
        """
        unknown = sorted(set(given) - set(RANGE_OPERATORS))
        if unknown or not given:
            raise ValueError(
                f"filter.{name}: a range takes gt, gte, lt or lte"
                + (f", not {', '.join(map(str, unknown))}" if unknown else "")
            )
        bounds = tuple((op, given[op]) for op in RANGE_OPERATORS if op in given)
        for _, value in bounds:
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise ValueError(
                    f"filter.{name}: a range's bounds are numbers or strings, "
                    f"not {type(value).__name__}"
                )
            _check_number(name, value)
        if len({isinstance(value, str) for _, value in bounds}) > 1:
            raise ValueError(f"filter.{name}: a range's bounds are all numbers or all strings")
        return cls(bounds)

    @property
    def on_strings(self) -> bool:
        return isinstance(self.bounds[0][1], str)

    def contains(self, stored: Any) -> bool:
        """Whether a stored JSON value is of the bounds' type and within them.

        >>> r = ValueRange.from_mapping("n", {"gt": 1, "lte": 3})
        >>> [r.contains(v) for v in (1, 2, 3.0, 4, "2", True, [2])]
        [False, True, True, False, False, False, False]
        """
        if isinstance(stored, bool):
            return False
        if self.on_strings:
            if not isinstance(stored, str):
                return False
        elif not isinstance(stored, int | float):
            return False
        return all(_COMPARISONS[op](stored, value) for op, value in self.bounds)


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def _check_number(name: str, value: object) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"filter.{name}: numbers must be finite, got {value}")
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise ValueError(f"filter.{name}: integers must fit 64 bits, got {value}")


@dataclass(frozen=True)
class MetadataFilter:
    """Every field in ``fields`` must hold one of its values (AND across fields, OR within),
    and every field in ``ranges`` a value within its range."""

    fields: tuple[tuple[str, tuple[Scalar, ...]], ...]
    ranges: tuple[tuple[str, ValueRange], ...] = ()

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> MetadataFilter:
        """Validate ``{field: value | [values]}``; a clear ``ValueError`` for anything else.

        >>> MetadataFilter.from_mapping({"topic": ["food", "health"], "year": 2024}).fields
        (('topic', ('food', 'health')), ('year', (2024,)))
        >>> MetadataFilter.from_mapping({"year": {"gte": 2020}}).ranges[0][1].bounds
        (('gte', 2020),)
        >>> MetadataFilter.from_mapping({"topic": {"$ne": "food"}})
        Traceback (most recent call last):
        ...
        ValueError: filter.topic: a range takes gt, gte, lt or lte, not $ne
        """
        if not mapping:
            raise ValueError("filter: give at least one field")
        if len(mapping) > MAX_FIELDS:
            raise ValueError(f"filter: at most {MAX_FIELDS} fields, got {len(mapping)}")
        fields = []
        ranges = []
        for name, given in mapping.items():
            if not isinstance(name, str) or not name or '"' in name or "\\" in name:
                raise ValueError(f"filter: field names are non-empty, without quotes: {name!r}")
            if isinstance(given, Mapping):
                ranges.append((name, ValueRange.from_mapping(name, given)))
                continue
            values = tuple(given) if isinstance(given, list | tuple) else (given,)
            if not values:
                raise ValueError(f"filter.{name}: give at least one value")
            if len(values) > MAX_VALUES:
                raise ValueError(f"filter.{name}: at most {MAX_VALUES} values, got {len(values)}")
            for value in values:
                if not isinstance(value, Scalar) or value is None:
                    raise ValueError(
                        f"filter.{name}: a string, number or boolean, a list of them, or a "
                        f'range ({{"gte": ..., "lt": ...}}), not {type(value).__name__}'
                    )
                _check_number(name, value)
            fields.append((name, values))
        return cls(tuple(fields), tuple(ranges))

    @property
    def key(self) -> Hashable:
        """A hashable identity that tells ``true`` from ``1`` (which Python's ``==`` does not).

        >>> a, b = (MetadataFilter.from_mapping({"n": v}) for v in (True, 1))
        >>> a == b, a.key == b.key
        (True, False)
        """
        equal = tuple(
            (name, tuple((type(v).__name__, v) for v in values)) for name, values in self.fields
        )
        within = tuple(
            (name, tuple((op, type(v).__name__, v) for op, v in value_range.bounds))
            for name, value_range in self.ranges
        )
        return equal, within

    def as_mapping(self) -> dict[str, Any]:
        """The JSON form ``/v1/search`` takes: ``{field: [values] | {op: bound}}``."""
        mapping: dict[str, Any] = {name: list(values) for name, values in self.fields}
        mapping |= {name: dict(r.bounds) for name, r in self.ranges}
        return mapping

    def matches(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a document with this metadata passes.

        >>> f = MetadataFilter.from_mapping({"topic": ["food", "health"], "new": True})
        >>> f.matches({"topic": "food", "new": True}), f.matches({"topic": "food", "new": 1})
        (True, False)
        >>> f.matches({"topic": "sport", "new": True}), f.matches({"topic": "food"})
        (False, False)
        """
        return all(
            name in metadata and any(_same_json_value(metadata[name], v) for v in values)
            for name, values in self.fields
        ) and all(name in metadata and r.contains(metadata[name]) for name, r in self.ranges)

    def where(self, column: str = "metadata") -> tuple[str, list[Scalar]]:
        """An SQLite condition on a JSON text ``column``, and its parameters.

        >>> import sqlite3
        >>> cond, params = MetadataFilter.from_mapping({"n": [1, True]}).where("m")
        >>> rows = ['{"n": 1}', '{"n": 1.0}', '{"n": true}', '{"n": "1"}', '{"n": false}', '{}']
        >>> sql = f"SELECT {cond} FROM (SELECT ? AS m)"
        >>> [bool(sqlite3.connect(":memory:").execute(sql, [*params, r]).fetchone()[0])
        ...  for r in rows]
        [True, True, True, False, False, False]
        >>> dates = MetadataFilter.from_mapping({"d": {"gte": "2024-01", "lt": "2025"}})
        >>> cond, params = dates.where("m")
        >>> rows = ['{"d": "2024-06-01"}', '{"d": "2025-01-01"}', '{"d": "2023-12"}', '{"d": 2024}']
        >>> sql = f"SELECT {cond} FROM (SELECT ? AS m)"
        >>> [bool(sqlite3.connect(":memory:").execute(sql, [*params, r]).fetchone()[0])
        ...  for r in rows]
        [True, False, False, False]
        """
        clauses: list[str] = []
        params: list[Scalar] = []
        for name, values in self.fields:
            # one IN list per JSON type, so a row's field is read a few times, not per value
            path = f'$."{name}"'
            kind, value_of = f"json_type({column}, ?)", f"json_extract({column}, ?)"
            options = []
            texts = [v for v in values if isinstance(v, str)]
            numbers = [v for v in values if not isinstance(v, str | bool)]
            booleans = sorted({"true" if v else "false" for v in values if isinstance(v, bool)})
            for group, json_types in ((texts, "'text'"), (numbers, "'integer', 'real'")):
                if group:
                    marks = ", ".join("?" * len(group))
                    options.append(f"({kind} IN ({json_types}) AND {value_of} IN ({marks}))")
                    params += [path, path, *group]
            if booleans:
                options.append(f"{kind} IN ({', '.join('?' * len(booleans))})")
                params += [path, *booleans]
            clauses.append("(" + " OR ".join(options) + ")")
        for name, value_range in self.ranges:
            path = f'$."{name}"'
            json_types = "'text'" if value_range.on_strings else "'integer', 'real'"
            compared = [
                f"json_extract({column}, ?) {RANGE_OPERATORS[op]} ?" for op, _ in value_range.bounds
            ]
            clauses.append(
                f"(json_type({column}, ?) IN ({json_types}) AND {' AND '.join(compared)})"
            )
            params.append(path)
            for _, bound in value_range.bounds:
                params += [path, bound]
        return " AND ".join(clauses), params


def _same_json_value(stored: Any, wanted: Scalar) -> bool:
    """JSON equality: booleans equal only booleans, numbers only numbers (1 == 1.0)."""
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(wanted, str):
        return isinstance(stored, str) and stored == wanted
    return isinstance(stored, int | float) and stored == wanted


FILTER_PAIR = re.compile(r"^(?P<name>[^<>=]+)(?P<op>>=|<=|>|<|=)(?P<value>.*)$", re.DOTALL)
PAIR_OPERATORS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def parse_filter_pairs(pairs: Sequence[str]) -> MetadataFilter:
    """``FIELD=VALUE`` command-line pairs as a filter; a value is read as JSON when it parses
    (``year=2024``, ``new=true``), else as a string; a repeated field takes any of its values.
    ``FIELD>=VALUE`` (and ``>``, ``<``, ``<=``) bound a field's range instead.

    >>> parse_filter_pairs(["topic=food", "topic=health", "year=2024"]).fields
    (('topic', ('food', 'health')), ('year', (2024,)))
    >>> parse_filter_pairs(["year>=2020", "year<2025", "date<=2024-06-30"]).as_mapping()
    {'year': {'gte': 2020, 'lt': 2025}, 'date': {'lte': '2024-06-30'}}
    """
    grouped: dict[str, list[Scalar]] = {}
    ranges: dict[str, dict[str, Any]] = {}
    for pair in pairs:
        found = FILTER_PAIR.match(pair)
        if found is None:
            raise ValueError(f"--filter takes FIELD=VALUE or FIELD>=VALUE (>, <, <=), got {pair!r}")
        name, op, raw = found["name"], found["op"], found["value"]
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if op == "=":
            grouped.setdefault(name, []).append(value)
        else:
            ranges.setdefault(name, {})[PAIR_OPERATORS[op]] = value
    both = sorted(set(grouped) & set(ranges))
    if both:
        raise ValueError(f"--filter: {both[0]} takes values or a range, not both")
    return MetadataFilter.from_mapping({**grouped, **ranges})
