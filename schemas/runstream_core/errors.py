"""Error classes. User mistakes (``UsageError``) are kept apart from backend failures (``CommError``)."""


class RunstreamError(Exception):
    """Root of every error runstream raises."""


class UsageError(RunstreamError, ValueError):
    """The caller passed something runstream cannot accept; the message says how to fix it."""


class CommError(RunstreamError):
    """A backend (Kafka, ClickHouse) could not be reached or refused a request."""


class MissingExtraError(RunstreamError, ImportError):
    """An optional dependency group is not installed."""

    def __init__(self, extra: str, module: str) -> None:
        super().__init__(
            f"this feature needs the '{extra}' extra (module {module!r} is missing): pip install 'runstream[{extra}]'"
        )
