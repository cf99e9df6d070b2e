"""Request bodies read and decompressed within caps, and responses compressed as they stream.

A body is read as ``Content-Length`` bytes or as chunked transfer coding, never past
``max_body_bytes`` as sent nor ``max_decompressed_bytes`` once decoded (gzip, deflate, lz4 frames,
zstd), so a small compressed body cannot expand into memory.
"""

from __future__ import annotations

import io
import re
import zlib
from collections.abc import Callable, Iterator
from email.message import Message
from typing import BinaryIO, Protocol

from runstream_worker.endpoint.errors import Code, EndpointError

READ_CHUNK = 256 * 1024
_CHUNK_SIZE = re.compile(rb"^[0-9A-Fa-f]{1,16}$")


def body_chunks(rfile: BinaryIO | io.BufferedIOBase, headers: Message, max_bytes: int) -> Iterator[bytes]:
    """The raw body of a request, in pieces of at most ``READ_CHUNK`` bytes."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        yield from _chunked(rfile, max_bytes)
        return
    declared = headers.get("Content-Length")
    if declared is None:
        return
    if not declared.strip().isdigit():
        raise EndpointError(Code.BAD_ARGUMENTS, f"Invalid Content-Length: {declared[:32]!r}")
    left = int(declared)
    if left > max_bytes:
        raise EndpointError(Code.QUERY_IS_TOO_LARGE, f"Request body of {left} bytes is over the limit of {max_bytes}")
    while left:
        piece = rfile.read(min(left, READ_CHUNK))
        if not piece:
            raise EndpointError(Code.BAD_ARGUMENTS, "Request body ended before its Content-Length")
        left -= len(piece)
        yield piece


def _chunked(rfile: BinaryIO | io.BufferedIOBase, max_bytes: int) -> Iterator[bytes]:
    total = 0
    while True:
        line = rfile.readline(1024).split(b";", 1)[0].strip()
        if not _CHUNK_SIZE.match(line):
            raise EndpointError(Code.BAD_ARGUMENTS, "Malformed chunked request body")
        size = int(line, 16)
        if size == 0:
            while rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return
        total += size
        if total > max_bytes:
            raise EndpointError(Code.QUERY_IS_TOO_LARGE, f"Request body is over the limit of {max_bytes} bytes")
        while size:
            piece = rfile.read(min(size, READ_CHUNK))
            if not piece:
                raise EndpointError(Code.BAD_ARGUMENTS, "Chunked request body ended early")
            size -= len(piece)
            yield piece
        rfile.readline(8)  # the CRLF after each chunk


class _Decoder(Protocol):
    def decompress(self, data: bytes, max_length: int = ..., /) -> bytes: ...


def _zstd() -> _Decoder:
    try:
        from compression import zstd
    except ImportError:
        from backports import zstd
    decoder: _Decoder = zstd.ZstdDecompressor()
    return decoder


def _lz4() -> _Decoder:
    import lz4.frame

    decoder: _Decoder = lz4.frame.LZ4FrameDecompressor()
    return decoder


_DECODERS: dict[str, Callable[[], _Decoder]] = {
    "gzip": lambda: zlib.decompressobj(wbits=47),  # gzip or zlib header, as clients send either
    "x-gzip": lambda: zlib.decompressobj(wbits=47),
    "deflate": lambda: zlib.decompressobj(wbits=15),
    "zstd": _zstd,
    "lz4": _lz4,
}


def decoded(chunks: Iterator[bytes], encoding: str, max_bytes: int) -> Iterator[bytes]:
    """``chunks`` decoded from ``Content-Encoding``, never more than ``max_bytes`` in total.

    Concatenated members or frames (gzip members, lz4 frames, zstd frames) are all decoded.
    """
    encoding = encoding.strip().lower()
    if encoding in ("", "identity", "none"):
        yield from _capped(chunks, max_bytes)
        return
    if encoding not in _DECODERS:
        raise EndpointError(Code.UNKNOWN_COMPRESSION_METHOD, f"Unknown Content-Encoding {encoding[:32]!r}")
    decoder = _DECODERS[encoding]()
    yield from _capped(_decode(chunks, decoder, _DECODERS[encoding], encoding), max_bytes)


def _decode(
    chunks: Iterator[bytes], decoder: _Decoder, fresh: Callable[[], _Decoder], encoding: str
) -> Iterator[bytes]:
    for chunk in chunks:
        data = chunk
        while data:
            try:
                piece = decoder.decompress(data, READ_CHUNK)
                # zlib keeps input it had no room for in unconsumed_tail; lz4 and zstd keep it
                # inside and give more output for b"" until they need input again.
                data = bytes(getattr(decoder, "unconsumed_tail", None) or b"")
                yield piece
                while not data and not _ended(decoder) and not getattr(decoder, "needs_input", True):
                    yield decoder.decompress(b"", READ_CHUNK)
            except EndpointError:
                raise
            except Exception as exc:  # each codec has its own error class
                raise EndpointError(Code.CANNOT_DECOMPRESS, f"Cannot decompress the {encoding} body: {exc}") from exc
            if _ended(decoder):
                data = bytes(getattr(decoder, "unused_data", None) or b"") + data
                decoder = fresh()  # the next member or frame


def _ended(decoder: _Decoder) -> bool:
    return bool(getattr(decoder, "eof", False))


def _capped(chunks: Iterator[bytes], max_bytes: int) -> Iterator[bytes]:
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > max_bytes:
            raise EndpointError(Code.QUERY_IS_TOO_LARGE, f"Request body is over the limit of {max_bytes} bytes")
        yield chunk


def read_all(chunks: Iterator[bytes]) -> bytes:
    return b"".join(chunks)


class ResponseEncoder:
    """Compresses a streamed response as the client accepts it (gzip or deflate), or passes it through."""

    def __init__(self, accept_encoding: str, enabled: bool) -> None:
        accepted = {part.split(";")[0].strip().lower() for part in accept_encoding.split(",")}
        self.encoding: str | None = None
        self._compressor: zlib._Compress | None = None
        if enabled and "gzip" in accepted:
            self.encoding, self._compressor = "gzip", zlib.compressobj(3, zlib.DEFLATED, 31)
        elif enabled and "deflate" in accepted:
            self.encoding, self._compressor = "deflate", zlib.compressobj(3, zlib.DEFLATED, 15)

    def encode(self, data: bytes) -> bytes:
        return self._compressor.compress(data) if self._compressor else data

    def finish(self) -> bytes:
        return self._compressor.flush() if self._compressor else b""
