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

from runstream._private import open_private, private_dir
from runstream_core.topics import TopicCode

_MAGIC = b"RS"
_FORMAT = 1
_HEADER = struct.Struct(">2sBBQII")
SEGMENT_SUFFIX = ".seg"
_write = os.write  # the spool's one way to its files (tests put a full disk here)
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

    Used by one thread (the run's sender). ``append()`` collects frames in memory; ``flush()`` hands
    them to the OS, which keeps them through a process kill; ``close()`` also fsyncs. A write that
    fails (a full disk: ENOSPC, EFBIG) is cut back off the file, so a segment always ends with a
    whole frame; that segment is closed, the frames not written are forgotten, and the OSError is
    raised. ``durable_seq`` is the last record on disk: whoever appended the later ones keeps them
    elsewhere or counts them lost. The next ``append()`` starts a new segment.

    Frames reach the file only through ``flush()`` (and ``close()``): a copy of the writer in a
    forked child, which never calls them, writes nothing into the parent's spool.
    """

    def __init__(self, directory: Path, segment_bytes: int) -> None:
        self.directory = directory
        private_dir(directory)
        self._segment_bytes = segment_bytes
        self._fd: int | None = None
        self._size = 0
        """Bytes of the current segment on disk."""
        self._pending = bytearray()
        self._pending_last_seq = -1
        self.segment = -1
        """The segment being written (-1: none)."""
        self.durable_seq = -1
        """The last record handed to the OS (-1: none)."""

    @property
    def pending_bytes(self) -> int:
        """Bytes appended and not flushed yet."""
        return len(self._pending)

    def append(self, seq: int, topic: TopicCode, payload: bytes) -> tuple[int, int]:
        """Add one frame; returns (segment, byte offset) where it starts. A segment is named by the
        sequence number of its first record. Raises OSError when the full segment it closes cannot
        be written (see the class docstring)."""
        if self._fd is None or self._size + len(self._pending) >= self._segment_bytes:
            self._roll(seq)
        offset = self._size + len(self._pending)
        self._pending += _HEADER.pack(_MAGIC, _FORMAT, topic, seq, len(payload), _crc(topic, seq, payload))
        self._pending += payload
        self._pending_last_seq = seq
        return self.segment, offset

    def flush(self) -> None:
        """Write what was appended. Raises OSError when it cannot (see the class docstring)."""
        if not self._pending or self._fd is None:
            return
        frames = bytes(self._pending)  # a copy: views of it may outlive a failed write
        self._pending.clear()
        view, written = memoryview(frames), 0
        try:
            while written < len(frames):
                written += _write(self._fd, view[written:])
        except OSError:
            self._abandon()
            raise
        self._size += written
        self.durable_seq = self._pending_last_seq

    def _abandon(self) -> None:
        """After a failed write: cut the segment back to its last whole frame, close it, forget the rest."""
        fd, self._fd = self._fd, None
        self._pending.clear()
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, self._size)
        with contextlib.suppress(OSError):
            os.close(fd)
        if self._size == 0:
            _segment_path(self.directory, self.segment).unlink(missing_ok=True)
        self.segment = -1
        self._size = 0

    def _roll(self, first_seq: int) -> None:
        self._close_file()
        fd = open_private(_segment_path(self.directory, first_seq), os.O_WRONLY | os.O_APPEND)
        self._fd = fd
        self.segment = first_seq
        self._size = os.fstat(fd).st_size

    def _close_file(self) -> None:
        if self._fd is None:
            return
        self.flush()
        fd, self._fd = self._fd, None
        self.segment, self._size = -1, 0
        try:
            with contextlib.suppress(OSError):  # the frames are the OS's already: only a power cut could lose them
                os.fsync(fd)
        finally:
            os.close(fd)

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
