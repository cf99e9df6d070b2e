"""The on-disk spool: append-only segment files of encoded records, one directory per producer.

Every record a run produces is appended here before it is sent (a write-ahead log), so a job
killed with SIGKILL, or one whose Kafka was away, leaves everything it logged on disk for
``runstream sync``. Segments whose records Kafka has acknowledged are deleted.

Frame layout (big-endian): magic ``RS``, format version (1 byte), topic code (1 byte), sequence
number (8 bytes), payload length (4 bytes), CRC-32 of code + sequence + payload (4 bytes), payload.
A torn or corrupt frame ends a segment: everything before it is read, nothing after it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from runstream._private import open_private, private_dir
from runstream_core.topics import TopicCode

_MAGIC = b"RS"
_FORMAT = 1
_HEADER = struct.Struct(">2sBBQII")
SEGMENT_SUFFIX = ".seg"
SYNCED_MARKER = "synced"


@dataclass(frozen=True)
class SpooledRecord:
    seq: int
    topic: TopicCode
    payload: bytes
    segment: int
    """First sequence number of the segment holding the record (its file name)."""


def _crc(topic: int, seq: int, payload: bytes) -> int:
    return zlib.crc32(payload, zlib.crc32(struct.pack(">BQ", topic, seq)))


def _segment_path(directory: Path, first_seq: int) -> Path:
    return directory / f"{first_seq:020d}{SEGMENT_SUFFIX}"


def segment_paths(directory: Path) -> list[Path]:
    """Segments of one producer directory, oldest first."""
    return sorted(directory.glob(f"*{SEGMENT_SUFFIX}"))


class SpoolWriter:
    """Appends frames to the current segment; starts a new one past ``segment_bytes``.

    Used by one thread (the run's sender). ``flush()`` hands written frames to the OS, which
    keeps them through a process kill; ``close()`` also fsyncs.
    """

    def __init__(self, directory: Path, segment_bytes: int) -> None:
        self.directory = directory
        private_dir(directory)
        self._segment_bytes = segment_bytes
        self._file: BinaryIO | None = None
        self._size = 0
        self.segment = -1
        self.records_written = 0

    def append(self, seq: int, topic: TopicCode, payload: bytes) -> tuple[int, int]:
        """Write one frame; returns (segment, byte offset) where it starts. A segment is named by
        the sequence number of its first record."""
        if self._file is None or self._size >= self._segment_bytes:
            self._roll(seq)
        assert self._file is not None
        offset = self._size
        header = _HEADER.pack(_MAGIC, _FORMAT, topic, seq, len(payload), _crc(topic, seq, payload))
        self._file.write(header)
        self._file.write(payload)
        self._size += len(header) + len(payload)
        self.records_written += 1
        return self.segment, offset

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def _roll(self, first_seq: int) -> None:
        self._close_file()
        self.segment = first_seq
        fd = open_private(_segment_path(self.directory, first_seq), os.O_WRONLY | os.O_APPEND)
        self._file = os.fdopen(fd, "ab", buffering=1 << 20)
        self._size = 0

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def delete_segment(self, segment: int) -> None:
        """Remove a segment whose records are all acknowledged (never the one being written)."""
        if segment != self.segment:
            _segment_path(self.directory, segment).unlink(missing_ok=True)

    def close(self, remove: bool = False) -> None:
        """Close the current segment; ``remove`` deletes the directory's segments (all delivered)."""
        self._close_file()
        if remove:
            for path in segment_paths(self.directory):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # something else lives there: keep it
                self.directory.rmdir()


@dataclass
class ReadStats:
    records: int = 0
    corrupt_segments: int = 0


def read_segment(path: Path, stats: ReadStats | None = None, start: int = 0) -> Iterator[tuple[int, SpooledRecord]]:
    """Yield (offset after the frame, record) for each intact frame from byte ``start`` on."""
    segment = int(path.name.removesuffix(SEGMENT_SUFFIX))
    with path.open("rb") as file:
        file.seek(start)
        offset = start
        while True:
            header = file.read(_HEADER.size)
            if not header:
                return
            if len(header) < _HEADER.size:
                break
            magic, version, topic, seq, length, crc = _HEADER.unpack(header)
            payload = file.read(length)
            if magic != _MAGIC or version != _FORMAT or len(payload) < length or _crc(topic, seq, payload) != crc:
                break
            try:
                code = TopicCode(topic)
            except ValueError:
                break
            offset += _HEADER.size + length
            if stats is not None:
                stats.records += 1
            yield offset, SpooledRecord(seq, code, payload, segment)
    if stats is not None:
        stats.corrupt_segments += 1


def read_spool(directory: Path, stats: ReadStats | None = None) -> Iterator[SpooledRecord]:
    """Every intact record of a producer directory, in the order written."""
    for path in segment_paths(directory):
        for _, record in read_segment(path, stats):
            yield record


class SpoolCursor:
    """Reads a producer's spool forward from a given record, following segments as they appear."""

    def __init__(self, directory: Path, segment: int, offset: int) -> None:
        self._directory = directory
        self._segment = segment
        self._offset = offset

    def read(self, max_records: int) -> list[SpooledRecord]:
        """Up to ``max_records`` records after the cursor; fewer when the end is reached."""
        out: list[SpooledRecord] = []
        while len(out) < max_records:
            path = _segment_path(self._directory, self._segment)
            got = False
            if path.exists():
                for offset, record in read_segment(path, start=self._offset):
                    out.append(record)
                    self._offset = offset
                    got = True
                    if len(out) >= max_records:
                        return out
            if got:
                continue
            # End of this segment: move on if a later one exists.
            later = [
                p for p in segment_paths(self._directory) if int(p.name.removesuffix(SEGMENT_SUFFIX)) > self._segment
            ]
            if not later:
                return out
            self._segment = int(later[0].name.removesuffix(SEGMENT_SUFFIX))
            self._offset = 0
        return out
