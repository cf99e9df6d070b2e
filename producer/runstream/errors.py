"""The SDK's errors: runstream's error classes, which live in the core."""

from runstream_core.errors import CommError, MissingExtraError, RunstreamError, UsageError

__all__ = ["CommError", "MissingExtraError", "RunstreamError", "UsageError"]
