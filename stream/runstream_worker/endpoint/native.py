"""``FORMAT Native`` for a client's protocol revision, rewritten from the revision-0 blocks chDB writes.

ClickHouse's server writes Native output for the protocol revision the client names (on HTTP the
``client_protocol_version`` URL parameter, which clickhouse-go, the driver of Grafana's ClickHouse
plugin, sends and then decodes by). chDB writes every block as for revision 0. For a revision N > 0,
a block differs in two places (``NativeWriter::write``):

- it starts with BlockInfo, a list of numbered fields ended by field 0: 1 ``is_overflows`` (UInt8 0),
  2 ``bucket_num`` (Int32 -1) and, from revision 54480, 3 ``out_of_order_buckets`` (an empty list);
- from revision 54454 each column's type name is followed by one byte saying whether the column
  has a custom (sparse) serialization. chDB's columns are always full: the byte is 0.

Names, types and data are otherwise the same bytes. Adding the byte after each type takes knowing
where each column's data ends, which means walking the data by type: fixed-width values, null maps
and LowCardinality indexes are skipped by arithmetic, arrays by their last offset; strings take one
step per value (about 40 ns). Only the bytes of an unfinished block are held between calls.

Left as for revision 54405: below it ClickHouse sends LowCardinality columns as their dictionary
type (and below 54337, DateTime without its time zone); no client that old is expected. Columns
of types whose layout is not known here (AggregateFunction, Variant, Dynamic, JSON, ...) raise
:class:`UnsupportedNativeType`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Generator
from dataclasses import dataclass

# Protocol revisions (ClickHouse's ProtocolDefines.h) at which the block layout changes.
CUSTOM_SERIALIZATION_REVISION = 54454
OUT_OF_ORDER_BUCKETS_REVISION = 54480

# BlockInfo as the server writes it for a block of query results.
_BLOCK_INFO = b"\x01\x00\x02\xff\xff\xff\xff\x00"
_BLOCK_INFO_WITH_BUCKETS = b"\x01\x00\x02\xff\xff\xff\xff\x03\x00\x00"
_NO_CUSTOM_SERIALIZATION = b"\x00"

# LowCardinality: the version of its keys' serialization (one UInt64 per column and per
# LowCardinality in the type, at the column's start) and the flags of each granule's index type.
_SHARED_DICTIONARIES_WITH_ADDITIONAL_KEYS = 1
_NEED_GLOBAL_DICTIONARY = 1 << 8
_HAS_ADDITIONAL_KEYS = 1 << 9
_NEED_UPDATE_DICTIONARY = 1 << 10
_INDEX_TYPE_MASK = 0xFF
_KNOWN_INDEX_BITS = _INDEX_TYPE_MASK | _NEED_GLOBAL_DICTIONARY | _HAS_ADDITIONAL_KEYS | _NEED_UPDATE_DICTIONARY


class UnsupportedNativeType(Exception):  # noqa: N818 - named for what it reports
    """A column type whose Native layout the rewriter does not know."""

    type_name: str

    def __init__(self, type_name: str) -> None:
        super().__init__(f"the Native layout of {type_name} is not known")
        self.type_name = type_name


# Layouts: what a column's data is made of, with what does not matter for its length dropped.


@dataclass(frozen=True, slots=True)
class _Fixed:
    """``width`` bytes per row."""

    width: int


@dataclass(frozen=True, slots=True)
class _String:
    """Per row: varuint length, then the bytes."""


@dataclass(frozen=True, slots=True)
class _Nullable:
    """A null map (one byte per row), then the nested column."""

    inner: _Layout


@dataclass(frozen=True, slots=True)
class _Array:
    """Offsets (UInt64 per row, cumulative), then the nested column of the last offset's length."""

    inner: _Layout


@dataclass(frozen=True, slots=True)
class _Tuple:
    """Each element's column in turn."""

    elements: tuple[_Layout, ...]


@dataclass(frozen=True, slots=True)
class _LowCardinality:
    """Granules of: index type, optional dictionary keys (as ``keys``), then the indexes."""

    keys: _Layout


_Layout = _Fixed | _String | _Nullable | _Array | _Tuple | _LowCardinality

_FIXED_WIDTHS = {
    "UInt8": 1,
    "UInt16": 2,
    "UInt32": 4,
    "UInt64": 8,
    "UInt128": 16,
    "UInt256": 32,
    "Int8": 1,
    "Int16": 2,
    "Int32": 4,
    "Int64": 8,
    "Int128": 16,
    "Int256": 32,
    "Float32": 4,
    "Float64": 8,
    "BFloat16": 2,
    "Bool": 1,
    "Date": 2,
    "Date32": 4,
    "DateTime": 4,
    "DateTime64": 8,
    "Time": 4,
    "Time64": 8,
    "UUID": 16,
    "IPv4": 4,
    "IPv6": 16,
    "Decimal32": 4,
    "Decimal64": 8,
    "Decimal128": 16,
    "Decimal256": 32,
    "Enum8": 1,
    "Enum16": 2,
    # One byte per row ('0'): NULL is Nullable(Nothing).
    "Nothing": 1,
    **{
        f"Interval{unit}": 8
        for unit in (
            "Nanosecond",
            "Microsecond",
            "Millisecond",
            "Second",
            "Minute",
            "Hour",
            "Day",
            "Week",
            "Month",
            "Quarter",
            "Year",
        )
    },
}

_POINT = _Fixed(16)  # Tuple(Float64, Float64)
_GEO: dict[str, _Layout] = {
    "Point": _POINT,
    "Ring": _Array(_POINT),
    "LineString": _Array(_POINT),
    "Polygon": _Array(_Array(_POINT)),
    "MultiLineString": _Array(_Array(_POINT)),
    "MultiPolygon": _Array(_Array(_Array(_POINT))),
}

_TYPE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*", re.DOTALL)
_ELEMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\s+")


def _split_arguments(text: str) -> list[str]:
    """The top-level, comma-separated arguments of a type, with quoted strings and names kept whole."""
    arguments: list[str] = []
    depth = start = i = 0
    quote = ""
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\":
                i += 1
            elif char == quote:
                if text[i + 1 : i + 2] == quote:
                    i += 1  # a doubled quote stands for itself
                else:
                    quote = ""
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            arguments.append(text[start:i].strip())
            start = i + 1
        i += 1
    if quote or depth:
        raise ValueError(f"unbalanced type arguments: {text}")
    last = text[start:].strip()
    if last or arguments:
        arguments.append(last)
    return arguments


def _element_type(argument: str) -> str:
    """The type of a Tuple or Nested element, written ``name Type``, ```quoted name` Type`` or ``Type``."""
    if argument.startswith("`"):
        i = 1
        while i < len(argument):
            if argument[i] == "\\":
                i += 1
            elif argument[i] == "`":
                if argument[i + 1 : i + 2] != "`":
                    return argument[i + 1 :].strip()
                i += 1
            i += 1
        raise ValueError(f"unclosed element name: {argument}")
    named = _ELEMENT_NAME.match(argument)
    return argument[named.end() :] if named else argument


def _nullable(inner: _Layout) -> _Layout:
    return _Fixed(inner.width + 1) if isinstance(inner, _Fixed) else _Nullable(inner)


def _tuple(elements: list[_Layout]) -> _Layout:
    if not elements:
        return _Fixed(1)  # Tuple(): one byte per row, as Nothing
    if len(elements) == 1:
        return elements[0]
    if all(isinstance(element, _Fixed) for element in elements):
        return _Fixed(sum(element.width for element in elements if isinstance(element, _Fixed)))
    return _Tuple(tuple(elements))


def _decimal_width(precision: int) -> int:
    for width, most in ((4, 9), (8, 18), (16, 38), (32, 76)):
        if 0 < precision <= most:
            return width
    raise ValueError(f"Decimal precision {precision}")


@functools.lru_cache(maxsize=4096)
def _layout(type_name: str) -> _Layout:
    try:
        return _parse(type_name)
    except ValueError:
        raise UnsupportedNativeType(type_name) from None


def _parse(type_name: str) -> _Layout:
    match = _TYPE.fullmatch(type_name)
    if match is None:
        raise UnsupportedNativeType(type_name)
    base, inner = match[1], match[2]
    arguments = [] if inner is None else _split_arguments(inner)
    count = len(arguments)
    layout: _Layout
    if base in _FIXED_WIDTHS:
        layout = _Fixed(_FIXED_WIDTHS[base])  # parameters (time zone, scale, enum values) keep the width
    elif base == "String" and inner is None:
        layout = _String()
    elif base == "FixedString" and count == 1:
        layout = _Fixed(int(arguments[0]))
    elif base == "Decimal" and count in (1, 2):
        layout = _Fixed(_decimal_width(int(arguments[0])))
    elif base == "Nullable" and count == 1:
        layout = _nullable(_layout(arguments[0]))
    elif base == "Array" and count == 1:
        layout = _Array(_layout(arguments[0]))
    elif base == "Map" and count == 2:
        layout = _Array(_tuple([_layout(argument) for argument in arguments]))
    elif base == "Tuple" and inner is not None:
        layout = _tuple([_layout(_element_type(argument)) for argument in arguments])
    elif base == "Nested" and count:
        layout = _Array(_tuple([_layout(_element_type(argument)) for argument in arguments]))
    elif base == "LowCardinality" and count == 1:
        # The dictionary of LowCardinality(Nullable(T)) holds T: NULL is a position in it.
        keys = _TYPE.fullmatch(arguments[0])
        if keys is not None and keys[1] == "Nullable" and keys[2] is not None:
            layout = _LowCardinality(_layout(keys[2]))
        else:
            layout = _LowCardinality(_layout(arguments[0]))
    elif base == "SimpleAggregateFunction" and count >= 2:
        layout = _layout(arguments[-1])  # stored as its argument type
    elif base in _GEO and inner is None:
        layout = _GEO[base]
    else:
        raise UnsupportedNativeType(type_name)
    return layout


def _low_cardinalities(layout: _Layout) -> int:
    if isinstance(layout, _LowCardinality):
        return 1
    if isinstance(layout, _Nullable | _Array):
        return _low_cardinalities(layout.inner)
    if isinstance(layout, _Tuple):
        return sum(_low_cardinalities(element) for element in layout.elements)
    return 0


@functools.lru_cache(maxsize=4096)
def _column(type_name: bytes) -> tuple[_Layout, int]:
    """A column type's layout and how many LowCardinality serialization versions start its data."""
    layout = _layout(type_name.decode("utf-8", "surrogateescape"))
    return layout, _low_cardinalities(layout)


def _long_string_end(buf: bytes | bytearray, pos: int) -> int:
    """Where the string at ``pos`` ends, for a length of two bytes or more; IndexError if cut short."""
    length = shift = 0
    for i in range(pos, pos + 10):
        byte = buf[i]
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            return i + 1 + length
        shift += 7
    raise ValueError(f"malformed string length at byte {pos}")


class NativeRewriter:
    """Rewrites revision-0 Native output (what chDB writes) into the layout for client protocol revision `revision`.

    Blocks may arrive cut anywhere: the bytes of an unfinished block are held (and only those) until
    the rest arrives. After an exception the rewriter is unusable.
    """

    def __init__(self, revision: int) -> None:
        if revision < 0:
            raise ValueError(f"protocol revision {revision}")
        self.revision = revision
        self._block_info = _BLOCK_INFO_WITH_BUCKETS if revision >= OUT_OF_ORDER_BUCKETS_REVISION else _BLOCK_INFO
        self._markers = revision >= CUSTOM_SERIALIZATION_REVISION
        # The engine's output not yet rewritten, from the start of the first unfinished block
        # (self._start) on; self._pos is how far that block has been walked, possibly past the
        # bytes received when the data there need not be read to find the block's end.
        self._buf: bytes | bytearray = b""
        self._growable = False
        self._start = 0
        self._pos = 0
        self._block: Generator[None, None, list[int]] | None = None
        self._failed = False

    def feed(self, data: bytes) -> bytes:
        """Takes the next bytes of the engine's output; returns the rewritten bytes of every block completed so far
        (a block cut across two calls is held until its end arrives)."""
        if not self.revision:
            return data
        if self._failed:
            raise ValueError("the Native rewriter failed on earlier output")
        if self._block is None:
            self._buf, self._growable, self._start, self._pos = data, False, 0, 0
        else:
            if self._start or not self._growable:
                # Keep the unfinished block alone, in a buffer of our own that can grow.
                self._buf = bytearray(memoryview(self._buf)[self._start :])
                self._growable = True
                self._pos -= self._start
                self._start = 0
            self._buf += data
        try:
            return self._rewrite()
        except BaseException:
            self._failed = True
            self._block = None
            raise

    def finish(self) -> None:
        """Raises ValueError if a partial block is left over."""
        if self._block is not None:
            raise ValueError(f"the engine's output ended inside a block ({len(self._buf) - self._start} bytes)")

    def _rewrite(self) -> bytes:
        view = memoryview(self._buf)
        pieces: list[bytes | memoryview] = []
        try:
            while True:
                if self._block is None:
                    if self._start >= len(self._buf):
                        break
                    self._block = self._walk_block()
                try:
                    next(self._block)
                except StopIteration as done:
                    self._block = None
                    self._emit(view, done.value, pieces)
                    self._start = self._pos
                else:
                    break  # the block goes on in data yet to come
            return b"".join(pieces)
        finally:
            pieces.clear()
            view.release()
            if self._block is None:
                self._buf, self._growable, self._start, self._pos = b"", False, 0, 0

    def _emit(self, view: memoryview, marks: list[int], pieces: list[bytes | memoryview]) -> None:
        """The block at self._start, given where each column's type ends and (last) where the block ends."""
        start = self._start
        pieces.append(self._block_info)
        if not self._markers:
            pieces.append(view[start : start + marks[-1]])
            return
        previous = start
        for mark in marks[:-1]:
            pieces.append(view[previous : start + mark])
            pieces.append(_NO_CUSTOM_SERIALIZATION)
            previous = start + mark
        pieces.append(view[previous : start + marks[-1]])

    # The walk. Each step is a generator that yields while the bytes it must read have not arrived.
    # Positions are kept in self._pos only, never in a local across a yield: feed() may move the
    # unfinished block to the front of a new buffer in between.

    def _walk_block(self) -> Generator[None, None, list[int]]:
        columns = yield from self._varuint()
        rows = yield from self._varuint()
        marks = []
        for _ in range(columns):
            name_length = yield from self._varuint()
            self._pos += name_length  # the column's name
            type_name = yield from self._read_string()
            marks.append(self._pos - self._start)
            if rows:
                layout, versions = _column(type_name)
                if versions:
                    yield from self._serialization_versions(versions)
                yield from self._walk(layout, rows)
        yield from self._need(0)
        marks.append(self._pos - self._start)
        return marks

    def _need(self, count: int) -> Generator[None, None, None]:
        while len(self._buf) < self._pos + count:
            yield

    def _varuint(self) -> Generator[None, None, int]:
        while True:
            buf, pos = self._buf, self._pos
            value = shift = 0
            for i in range(pos, min(pos + 10, len(buf))):
                byte = buf[i]
                value |= (byte & 0x7F) << shift
                if byte < 0x80:
                    self._pos = i + 1
                    return value
                shift += 7
            if len(buf) >= pos + 10:
                raise ValueError(f"malformed varuint at byte {pos - self._start} of a block")
            yield

    def _uint64(self) -> Generator[None, None, int]:
        yield from self._need(8)
        pos = self._pos
        self._pos = pos + 8
        return int.from_bytes(self._buf[pos : pos + 8], "little")

    def _read_string(self) -> Generator[None, None, bytes]:
        length = yield from self._varuint()
        yield from self._need(length)
        pos = self._pos
        self._pos = pos + length
        return bytes(self._buf[pos : pos + length])

    def _serialization_versions(self, count: int) -> Generator[None, None, None]:
        for _ in range(count):
            version = yield from self._uint64()
            if version != _SHARED_DICTIONARIES_WITH_ADDITIONAL_KEYS:
                raise ValueError(f"unknown LowCardinality serialization version {version}")

    def _walk(self, layout: _Layout, rows: int) -> Generator[None, None, None]:
        if not rows:
            return
        if isinstance(layout, _Fixed):
            self._pos += rows * layout.width
        elif isinstance(layout, _String):
            yield from self._strings(rows)
        elif isinstance(layout, _Nullable):
            self._pos += rows
            yield from self._walk(layout.inner, rows)
        elif isinstance(layout, _Array):
            self._pos += rows * 8 - 8
            total = yield from self._uint64()  # the last offset: the nested column's length
            yield from self._walk(layout.inner, total)
        elif isinstance(layout, _Tuple):
            for element in layout.elements:
                yield from self._walk(element, rows)
        else:
            yield from self._low_cardinality(layout.keys, rows)

    def _low_cardinality(self, keys: _Layout, rows: int) -> Generator[None, None, None]:
        while rows:
            index_type = yield from self._uint64()
            if index_type & ~_KNOWN_INDEX_BITS or index_type & _INDEX_TYPE_MASK > 3:
                raise ValueError(f"unknown LowCardinality index type {index_type:#x}")
            if index_type & _NEED_GLOBAL_DICTIONARY:
                raise ValueError("a LowCardinality column with a shared dictionary is not Native output")
            if index_type & _HAS_ADDITIONAL_KEYS:
                count = yield from self._uint64()
                yield from self._walk(keys, count)
            count = yield from self._uint64()
            if not 0 < count <= rows:
                raise ValueError(f"LowCardinality granule of {count} rows where {rows} remain")
            self._pos += count << (index_type & _INDEX_TYPE_MASK)
            rows -= count

    def _strings(self, rows: int) -> Generator[None, None, None]:
        buf, pos, resume = self._buf, self._pos, 0
        while True:
            row = resume
            try:
                for row in range(resume, rows):  # noqa: B007 - read where a string is cut short
                    length = buf[pos]
                    if length < 0x80:
                        pos += length + 1
                    else:
                        pos = _long_string_end(buf, pos)
            except IndexError:
                # String `row` starts at `pos` and its length has not all arrived.
                self._pos, resume = pos, row
                yield
                buf, pos = self._buf, self._pos
                continue
            self._pos = pos
            return
