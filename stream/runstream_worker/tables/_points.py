"""The columns of a point table as arrays: one chunk per record, joined once, no object per point.

A record adds each column once: a value it holds for all its points (team, run, producer, ...) as
that value and a count, a column of its own as an array (a v2 record's), a dictionary-coded column
(``Names``: a v2 record's keys and devices, as sent) or a list (a v1 record's). ``arrays`` joins the
chunks into one column each: numbers as numpy arrays, names as ``Names`` (codes into one dictionary
per column, the strings never repeated per point). ``arrow_table`` hands them to ClickHouse as an
Arrow table of the same buffers, names as Arrow dictionaries (LowCardinality's own shape).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from numpy.typing import NDArray

CODE = np.int32


@dataclass(frozen=True)
class Names:
    """A column of names, dictionary-coded: value ``i`` is ``names[codes[i]]``."""

    codes: NDArray[np.integer[Any]]
    names: Sequence[str]

    def __len__(self) -> int:
        return len(self.codes)

    def __getitem__(self, index: NDArray[np.intp]) -> Names:
        return Names(self.codes[index], self.names)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or name not in self.names:
            return False
        return bool(np.any(self.codes == list(self.names).index(name)))

    def tolist(self) -> list[str]:
        names = list(self.names)
        return [names[code] for code in self.codes.tolist()]


Column = NDArray[Any] | Names
Arrays = dict[str, Column]
"""One column per name, all of one length."""


class _Numbers:
    """Chunks of a numeric column: constants (value, count) and arrays, in order."""

    __slots__ = ("chunks", "dtype")

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        self.chunks: list[Any] = []

    def add_constant(self, value: Any, n: int) -> None:
        self.chunks.append((value, n))

    def add(self, column: Any) -> None:
        self.chunks.append(column)

    def join(self) -> NDArray[Any]:
        if not self.chunks:
            return np.empty(0, dtype=self.dtype)
        if all(type(chunk) is tuple for chunk in self.chunks):
            values, counts = zip(*self.chunks, strict=True)
            return np.repeat(np.array(values, dtype=self.dtype), counts)
        parts = [
            np.full(chunk[1], chunk[0], dtype=self.dtype) if type(chunk) is tuple else np.asarray(chunk, self.dtype)
            for chunk in self.chunks
        ]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


class _Names:
    """Chunks of a name column as codes into one dictionary that grows as names arrive."""

    __slots__ = ("chunks", "codes")

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.chunks: list[Any] = []

    def _code(self, name: str) -> int:
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.codes)
        return code

    def add_constant(self, value: str, n: int) -> None:
        self.chunks.append((self._code(value), n))

    def add(self, column: Names | Sequence[str]) -> None:
        if isinstance(column, Names):
            remap = np.array([self._code(name) for name in column.names], dtype=CODE)
            self.chunks.append(remap[column.codes] if len(remap) else column.codes.astype(CODE))
        else:  # a v1 record's list, coded by Arrow (in C), then as a v2 column
            coded = pa.array(column, pa.string()).dictionary_encode()
            self.add(Names(coded.indices.to_numpy(), coded.dictionary.to_pylist()))

    def join(self) -> Names:
        numbers = _Numbers(np.dtype(CODE))
        numbers.chunks = self.chunks
        return Names(numbers.join(), list(self.codes))


class PointColumns:
    """The columns of one point table (``names`` with their numpy ``dtypes``; ``object``: a name
    column) for one batch."""

    def __init__(self, dtypes: Mapping[str, str | type]) -> None:
        self.names: tuple[str, ...] = tuple(dtypes)
        self._columns: dict[str, _Numbers | _Names] = {
            name: _Names() if np.dtype(dtype) == object else _Numbers(np.dtype(dtype)) for name, dtype in dtypes.items()
        }
        self._length = 0
        self._records = 0
        self._joined: Arrays | None = None

    def __len__(self) -> int:
        return self._length

    def add(self, n: int, constants: Mapping[str, Any], columns: Mapping[str, Any]) -> None:
        """Add ``n`` points: ``constants`` hold one value for all of them, ``columns`` one per point
        (arrays, ``Names`` or lists). Together they name every column once."""
        if not n:
            return
        for name, column in columns.items():
            if len(column) != n:
                raise ValueError(f"column {name} holds {len(column)} values for {n} points")
        for name, value in constants.items():
            self._columns[name].add_constant(value, n)
        for name, column in columns.items():
            self._columns[name].add(column)
        self._length += n
        self._records += 1
        self._joined = None

    def mark(self) -> tuple[int, int]:
        """Where the columns end now, for ``cut``."""
        return self._length, self._records

    def cut(self, mark: tuple[int, int]) -> None:
        """Drop what was added since ``mark`` (an add that raised part way leaves columns of unequal
        lengths: each is cut back to the chunks it had)."""
        length, records = mark
        for column in self._columns.values():
            del column.chunks[records:]
        self._length, self._records = length, records
        self._joined = None

    def arrays(self) -> Arrays:
        """Every column joined (once, then kept until something is added)."""
        if self._joined is None:
            self._joined = {name: column.join() for name, column in self._columns.items()}
        return self._joined

    def column(self, name: str) -> Column:
        return self.arrays()[name]

    def lists(self) -> list[list[Any]]:
        """The columns as Python lists, in column order (for reading them in tests and logs)."""
        arrays = self.arrays()
        return [arrays[name].tolist() for name in self.names]


def take(arrays: Arrays, index: NDArray[np.intp]) -> Arrays:
    """The rows ``index`` of every column."""
    return {name: column[index] for name, column in arrays.items()}


def row_count(arrays: Arrays) -> int:
    return len(next(iter(arrays.values()))) if arrays else 0


def arrow_table(arrays: Arrays) -> Any:
    """The columns as a ``pyarrow.Table`` over the same buffers: names as dictionaries, ``ts`` (epoch
    milliseconds) as a UTC millisecond timestamp, NaN kept as NaN (a DataFrame would read it as NULL)."""
    fields = {}
    for name, column in arrays.items():
        if isinstance(column, Names):
            fields[name] = pa.DictionaryArray.from_arrays(
                pa.array(column.codes, pa.int32()), pa.array(list(column.names), pa.string())
            )
        elif name == "ts":
            fields[name] = pa.array(column, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
        else:
            fields[name] = pa.array(column)
    return pa.table(fields)
