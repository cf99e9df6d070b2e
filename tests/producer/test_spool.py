"""The on-disk spool: frames round-trip, torn or corrupt tails end a segment, cursors follow segments."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream import _spool as spool_module
from runstream._spool import ReadStats, SpoolCursor, SpoolWriter, read_spool, segment_paths
from runstream_core.topics import TopicCode
from tests.producer.fixtures import DiskFillsUp


def write(directory: Path, count: int, segment_bytes: int = 1 << 20) -> SpoolWriter:
    writer = SpoolWriter(directory, segment_bytes)
    for seq in range(count):
        writer.append(seq, TopicCode.METRICS if seq % 2 else TopicCode.RUNS, f"payload-{seq}".encode() * 10)
    writer.flush()
    return writer


def test_records_round_trip_in_order_across_segments(tmp_path: Path) -> None:
    writer = write(tmp_path, 50, segment_bytes=500)
    writer.close()
    assert len(segment_paths(tmp_path)) > 3
    records = list(read_spool(tmp_path))
    assert [r.seq for r in records] == list(range(50))
    assert records[7].topic is TopicCode.METRICS and records[8].topic is TopicCode.RUNS
    assert records[7].payload == b"payload-7" * 10
    # A segment is named after its first record.
    assert [int(p.stem) for p in segment_paths(tmp_path)] == sorted({r.segment for r in records})


def test_a_torn_tail_is_ignored_and_counted(tmp_path: Path) -> None:
    write(tmp_path, 10).close()
    (segment,) = segment_paths(tmp_path)
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])  # the last frame lost its end, as a kill mid-write would leave it
    stats = ReadStats()
    assert [r.seq for r in read_spool(tmp_path, stats)] == list(range(9))
    assert stats.records == 9 and stats.corrupt_segments == 1


def test_a_flipped_byte_fails_the_checksum_and_ends_the_segment(tmp_path: Path) -> None:
    write(tmp_path, 10).close()
    (segment,) = segment_paths(tmp_path)
    data = bytearray(segment.read_bytes())
    frame = len(data) // 10
    data[frame * 5 + 30] ^= 0xFF  # inside the sixth record's payload
    segment.write_bytes(bytes(data))
    stats = ReadStats()
    assert [r.seq for r in read_spool(tmp_path, stats)] == [0, 1, 2, 3, 4]
    assert stats.corrupt_segments == 1


def test_cursor_reads_from_a_record_and_follows_new_segments(tmp_path: Path) -> None:
    writer = SpoolWriter(tmp_path, 300)
    positions = [writer.append(seq, TopicCode.METRICS, b"x" * 100) for seq in range(6)]
    writer.flush()
    cursor = SpoolCursor(tmp_path, *positions[2])
    assert [r.seq for r in cursor.read(100)] == [2, 3, 4, 5]
    assert cursor.read(100) == []
    for seq in range(6, 9):
        writer.append(seq, TopicCode.METRICS, b"y" * 100)
    writer.flush()
    assert [r.seq for r in cursor.read(2)] == [6, 7]
    assert [r.seq for r in cursor.read(2)] == [8]


def test_deleting_acknowledged_segments_keeps_the_open_one(tmp_path: Path) -> None:
    writer = write(tmp_path, 20, segment_bytes=400)
    first, *_, last = segment_paths(tmp_path)
    writer.delete_segment(int(first.stem))
    writer.delete_segment(int(last.stem))  # still being written: kept
    assert not first.exists() and last.exists()
    writer.close(remove=True)
    assert not tmp_path.exists()


def test_a_failed_write_is_cut_back_to_whole_frames_and_the_next_append_starts_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = SpoolWriter(tmp_path, 1 << 20)
    for seq in range(10):
        writer.append(seq, TopicCode.METRICS, b"x" * 100)
    writer.flush()
    assert writer.durable_seq == 9
    (first,) = segment_paths(tmp_path)
    size = first.stat().st_size
    disk = DiskFillsUp(room=250)  # two frames and a half
    monkeypatch.setattr(spool_module, "_write", disk)
    for seq in range(10, 15):
        writer.append(seq, TopicCode.METRICS, b"y" * 100)
    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    assert disk.room == 0  # the half frame was written, then cut off again
    assert first.stat().st_size == size
    assert writer.durable_seq == 9 and writer.pending_bytes == 0
    stats = ReadStats()
    assert [r.seq for r in read_spool(tmp_path, stats)] == list(range(10))
    assert stats.corrupt_segments == 0

    disk.room = 1 << 20  # room again
    assert writer.append(15, TopicCode.METRICS, b"z" * 100) == (15, 0)
    writer.flush()
    writer.close()
    assert [int(p.stem) for p in segment_paths(tmp_path)] == [0, 15]
    assert [r.seq for r in read_spool(tmp_path)] == [*range(10), 15]


def test_a_segment_that_got_nothing_before_the_disk_filled_is_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool_module, "_write", DiskFillsUp(room=0))
    writer = SpoolWriter(tmp_path, 1 << 20)
    writer.append(0, TopicCode.RUNS, b"start")
    with pytest.raises(OSError):
        writer.flush()
    assert segment_paths(tmp_path) == [] and writer.durable_seq == -1
