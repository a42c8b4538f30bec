"""Metadata filters: which documents a search may return, by their metadata's fields.

A filter maps field names to a value or a list of values, ``{"topic": "food", "year":
[2023, 2024]}``: a document matches when, for every field named, its metadata has that
top-level field with one of the values given (equality of JSON values: a string matches only
a string, a number only a number, ``true`` only ``true``). The same rule runs in SQL over the
docstore (:meth:`MetadataFilter.where`) and in Python (:meth:`MetadataFilter.matches`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Scalar = str | int | float | bool
"""A value a field can be compared with (JSON's string, number and boolean)."""

MAX_FIELDS = 16
MAX_VALUES = 1024


@dataclass(frozen=True)
class MetadataFilter:
    """Every field in ``fields`` must hold one of its values (AND across fields, OR within)."""

    fields: tuple[tuple[str, tuple[Scalar, ...]], ...]

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> MetadataFilter:
        """Validate ``{field: value | [values]}``; a clear ``ValueError`` for anything else.

        >>> MetadataFilter.from_mapping({"topic": ["food", "health"], "year": 2024}).fields
        (('topic', ('food', 'health')), ('year', (2024,)))
        >>> MetadataFilter.from_mapping({"topic": {"$ne": "food"}})
        Traceback (most recent call last):
        ...
        ValueError: filter.topic: a string, number or boolean, or a list of them, not dict
        """
        if not mapping:
            raise ValueError("filter: give at least one field")
        if len(mapping) > MAX_FIELDS:
            raise ValueError(f"filter: at most {MAX_FIELDS} fields, got {len(mapping)}")
        fields = []
        for name, given in mapping.items():
            if not isinstance(name, str) or not name or '"' in name or "\\" in name:
                raise ValueError(f"filter: field names are non-empty, without quotes: {name!r}")
            values = tuple(given) if isinstance(given, list | tuple) else (given,)
            if not values:
                raise ValueError(f"filter.{name}: give at least one value")
            if len(values) > MAX_VALUES:
                raise ValueError(f"filter.{name}: at most {MAX_VALUES} values, got {len(values)}")
            for value in values:
                if not isinstance(value, Scalar) or value is None:
                    raise ValueError(
                        f"filter.{name}: a string, number or boolean, or a list of them, "
                        f"not {type(value).__name__}"
                    )
                if isinstance(value, float) and not math.isfinite(value):
                    raise ValueError(f"filter.{name}: numbers must be finite, got {value}")
                if isinstance(value, int) and not -(2**63) <= value < 2**63:
                    raise ValueError(f"filter.{name}: integers must fit 64 bits, got {value}")
            fields.append((name, values))
        return cls(tuple(fields))

    @property
    def key(self) -> tuple[tuple[str, tuple[tuple[str, Scalar], ...]], ...]:
        """A hashable identity that tells ``true`` from ``1`` (which Python's ``==`` does not).

        >>> a, b = (MetadataFilter.from_mapping({"n": v}) for v in (True, 1))
        >>> a == b, a.key == b.key
        (True, False)
        """
        return tuple(
            (name, tuple((type(v).__name__, v) for v in values)) for name, values in self.fields
        )

    def as_mapping(self) -> dict[str, list[Scalar]]:
        """The JSON form ``/v1/search`` takes: ``{field: [values]}``."""
        return {name: list(values) for name, values in self.fields}

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
        )

    def where(self, column: str = "metadata") -> tuple[str, list[Scalar]]:
        """An SQLite condition on a JSON text ``column``, and its parameters.

        >>> import sqlite3
        >>> cond, params = MetadataFilter.from_mapping({"n": [1, True]}).where("m")
        >>> rows = ['{"n": 1}', '{"n": 1.0}', '{"n": true}', '{"n": "1"}', '{"n": false}', '{}']
        >>> sql = f"SELECT {cond} FROM (SELECT ? AS m)"
        >>> [bool(sqlite3.connect(":memory:").execute(sql, [*params, r]).fetchone()[0])
        ...  for r in rows]
        [True, True, True, False, False, False]
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
        return " AND ".join(clauses), params


def _same_json_value(stored: Any, wanted: Scalar) -> bool:
    """JSON equality: booleans equal only booleans, numbers only numbers (1 == 1.0)."""
    if isinstance(wanted, bool) or isinstance(stored, bool):
        return isinstance(stored, bool) and isinstance(wanted, bool) and stored == wanted
    if isinstance(wanted, str):
        return isinstance(stored, str) and stored == wanted
    return isinstance(stored, int | float) and stored == wanted


def parse_filter_pairs(pairs: Sequence[str]) -> MetadataFilter:
    """``FIELD=VALUE`` command-line pairs as a filter; a value is read as JSON when it parses
    (``year=2024``, ``new=true``), else as a string; a repeated field takes any of its values.

    >>> parse_filter_pairs(["topic=food", "topic=health", "year=2024"]).fields
    (('topic', ('food', 'health')), ('year', (2024,)))
    """
    grouped: dict[str, list[Scalar]] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ValueError(f"--filter takes FIELD=VALUE, got {pair!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        grouped.setdefault(name, []).append(value)
    return MetadataFilter.from_mapping(grouped)
