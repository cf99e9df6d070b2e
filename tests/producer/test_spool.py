"""The on-disk spool: frames round-trip, torn or corrupt tails end a segment, cursors follow segments."""

from __future__ import annotations

from pathlib import Path

from runstream._spool import ReadStats, SpoolCursor, SpoolWriter, read_spool, segment_paths
from runstream_core.topics import TopicCode


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
