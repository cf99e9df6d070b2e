"""Errors as ClickHouse's HTTP interface reports them: ``Code: N. DB::Exception: ...`` and a status.

The codes and names are ClickHouse's own (``errorCodeToName``), and the HTTP status follows its
``exceptionCodeToHTTPStatus``, so clients that branch on either see what a server would send.
"""

from __future__ import annotations

import re
from enum import IntEnum
from http import HTTPStatus


class Code(IntEnum):
    """The ClickHouse error codes the endpoint raises itself."""

    UNSUPPORTED_METHOD = 1
    UNKNOWN_FUNCTION = 46
    NOT_IMPLEMENTED = 48
    UNKNOWN_TABLE = 60
    SYNTAX_ERROR = 62
    UNKNOWN_FORMAT = 73
    UNKNOWN_DATABASE = 81
    UNKNOWN_COMPRESSION_METHOD = 89
    UNKNOWN_SETTING = 115
    TIMEOUT_EXCEEDED = 159
    READONLY = 164
    REQUIRED_PASSWORD = 194
    TOO_MANY_SIMULTANEOUS_QUERIES = 202
    SOCKET_TIMEOUT = 209
    QUERY_IS_TOO_LARGE = 229
    CANNOT_DECOMPRESS = 271
    HTTP_LENGTH_REQUIRED = 381
    QUERY_WAS_CANCELLED = 394
    SETTING_CONSTRAINT_VIOLATION = 452
    ACCESS_DENIED = 497
    AUTHENTICATION_FAILED = 516
    BAD_ARGUMENTS = 36


# ClickHouse's exceptionCodeToHTTPStatus (src/Server/HTTP/exceptionCodeToHTTPStatus.cpp), its names
# resolved to codes with the engine's errorCodeToName; every other code is a 500.
_STATUS: dict[int, HTTPStatus] = {
    194: HTTPStatus.UNAUTHORIZED,
    **dict.fromkeys((192, 193, 497, 512, 516), HTTPStatus.FORBIDDEN),
    **dict.fromkeys(
        (6, 8, 15, 25, 26, 27, 36, 37, 38, 41, 44, 53, 62, 72, 117, 123, 167, 168, 223, 321, 376, 427, 441, 675, 676),
        HTTPStatus.BAD_REQUEST,
    ),
    **dict.fromkeys((46, 47, 50, 56, 60, 63, 73, 78, 81, 115, 152, 336, 511), HTTPStatus.NOT_FOUND),
    229: HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
    48: HTTPStatus.NOT_IMPLEMENTED,
    **dict.fromkeys((76, 209, 439), HTTPStatus.SERVICE_UNAVAILABLE),
    381: HTTPStatus.LENGTH_REQUIRED,
    159: HTTPStatus.REQUEST_TIMEOUT,
    779: HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
}
_ENGINE_CODE = re.compile(r"Code: (\d+)\. DB::\w*Exception: ")
_ENGINE_NAME = re.compile(r"\(([A-Z][A-Z0-9_]+)\)(?: \(version [^)]*\))?\.?\s*$")


def http_status(code: int) -> HTTPStatus:
    return _STATUS.get(code, HTTPStatus.INTERNAL_SERVER_ERROR)


class EndpointError(Exception):
    """A request the endpoint answers with a ClickHouse exception instead of a result."""

    def __init__(self, code: int, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.code = int(code)
        self.message = message
        self.name = name if name is not None else (Code(code).name if code in Code._value2member_map_ else "")

    @property
    def status(self) -> HTTPStatus:
        return http_status(self.code)

    def body(self) -> bytes:
        """The text ClickHouse would send: ``Code: N. DB::Exception: message. (NAME)``."""
        if self.message.startswith("Code: "):
            return (self.message.rstrip() + "\n").encode()
        suffix = f" ({self.name})" if self.name else ""
        return f"Code: {self.code}. DB::Exception: {self.message.rstrip('.')}.{suffix}\n".encode()

    @classmethod
    def from_engine(cls, exc: BaseException) -> EndpointError:
        """The engine's own exception (``Code: N. DB::Exception: ...``) with its code kept."""
        text = str(exc).strip()
        # chDB nests the engine's message ("Code: 164. DB::Exception: Code: 164. ..."): keep the innermost.
        starts = list(_ENGINE_CODE.finditer(text))
        if not starts:
            return cls(1000, text or type(exc).__name__, "UNKNOWN_EXCEPTION")
        inner = starts[-1]
        name = _ENGINE_NAME.search(text)
        return cls(int(inner[1]), text[inner.start() :].strip(), name[1] if name else "")


def denied(message: str) -> EndpointError:
    return EndpointError(Code.ACCESS_DENIED, message)
