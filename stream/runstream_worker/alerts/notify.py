"""Sending alert messages to webhooks: generic JSON, Slack and Discord bodies, retries, dead letters.

A message names its webhooks; each webhook's URL (and optional bearer token) is read from the
worker's environment by the name the team's rules give it (``RUNSTREAM_TEAM_<TEAM>_ALERT_<NAME>``):
secrets never travel through Kafka or ClickHouse. A send is tried ``worker_alert_webhook_tries``
times with back-off when it times out (``worker_alert_webhook_timeout_s``), cannot connect, or is
answered 429 or 5xx; any other answer, a missing secret or a URL that is not http(s) fails at
once. A message that could not be delivered goes to the dead-letter topic (its JSON body, never the
URL) and its row in ``alerts`` says ``failed`` with the reason. Senders run beside the agents, so a
webhook that hangs delays nothing but its own messages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import aiohttp

from runstream_core import alert_rules as ar
from runstream_core.log import get_logger
from runstream_worker.alerts.rulebook import RuleBook
from runstream_worker.tables import alerts as table
from runstream_worker.tables.alerts import AlertMessage

log = get_logger("runstream.alerts")

_COLORS = {"ERROR": 0xD62728, "WARN": 0xFF7F0E, "INFO": 0x1F77B4}
_SLACK_ICONS = {"ERROR": ":red_circle:", "WARN": ":warning:", "INFO": ":information_source:"}
DISCORD_CONTENT = 2000
DISCORD_DESCRIPTION = 4096
SLACK_TEXT = 3000


class DeliveryError(Exception):
    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.retry = retry


def generic(message: AlertMessage) -> dict[str, Any]:
    """The generic JSON body: every field of the message."""
    return {
        "alert_id": message.alert_id,
        "team": message.team,
        "project": message.project,
        "run_id": message.run_id,
        "run_name": message.run_name,
        "rule": message.rule,
        "kind": message.kind,
        "subject": message.subject,
        "event": message.event,
        "level": message.level,
        "title": message.title,
        "text": message.text,
        "value": message.value,
        "step": message.step,
        "ts_ms": message.ts_ms,
    }


def _where(message: AlertMessage) -> str:
    return f"{message.team}/{message.project}/{message.run_id}" + (f" step {message.step}" if message.step >= 0 else "")


def slack(message: AlertMessage) -> dict[str, Any]:
    """A Slack incoming-webhook body (``text`` with mrkdwn)."""
    icon = ":white_check_mark:" if message.event == table.RESOLVED else _SLACK_ICONS.get(message.level, "")
    text = f"{icon} *{message.title}*\n{message.text}\n_{_where(message)}_"
    return {"text": text[:SLACK_TEXT]}


def discord(message: AlertMessage) -> dict[str, Any]:
    """A Discord webhook body: a short content line and one embed."""
    color = 0x2CA02C if message.event == table.RESOLVED else _COLORS.get(message.level, 0)
    return {
        "content": message.title[:DISCORD_CONTENT],
        "embeds": [
            {
                "title": message.title[:256],
                "description": message.text[:DISCORD_DESCRIPTION],
                "color": color,
                "footer": {"text": _where(message)[:2048]},
            }
        ],
    }


BODIES: dict[ar.WebhookFormat, Callable[[AlertMessage], dict[str, Any]]] = {
    ar.WebhookFormat.JSON: generic,
    ar.WebhookFormat.SLACK: slack,
    ar.WebhookFormat.DISCORD: discord,
}


DoneCallback = Callable[[AlertMessage], Awaitable[None]]
DeadLetterCallback = Callable[[AlertMessage, bytes, str], Awaitable[None]]


class Notifier:
    """A bounded queue of messages and the tasks that send them."""

    def __init__(
        self,
        book: RuleBook,
        on_done: DoneCallback,
        on_dead: DeadLetterCallback,
        *,
        tries: int = 3,
        timeout_s: float = 5.0,
        first_backoff_s: float = 0.5,
        senders: int = 4,
        queue_size: int = 10_000,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._book = book
        self._on_done = on_done
        self._on_dead = on_dead
        self._tries = tries
        self._timeout = timeout_s
        self._backoff = first_backoff_s
        self._senders = senders
        self._environ = os.environ if environ is None else environ
        self._queue: asyncio.Queue[AlertMessage] = asyncio.Queue(maxsize=queue_size)
        self._session: aiohttp.ClientSession | None = None
        self.sent = 0
        self.failed = 0
        self._sending: set[tuple[str, str, str, str]] = set()
        """Messages queued or being sent, by run and alert id."""

    @staticmethod
    def _ident(message: AlertMessage) -> tuple[str, str, str, str]:
        return (message.team, message.project, message.run_id, message.alert_id)

    def sending(self, message: AlertMessage) -> bool:
        """Whether ``message`` is queued or being sent."""
        return self._ident(message) in self._sending

    def submit(self, messages: list[AlertMessage]) -> list[AlertMessage]:
        """Queue the messages to send; returns those the full queue refused."""
        refused = []
        for message in messages:
            if message.delivery != table.PENDING or self.sending(message):
                continue
            try:
                self._queue.put_nowait(message)
                self._sending.add(self._ident(message))
            except asyncio.QueueFull:
                refused.append(message)
        return refused

    async def run(self) -> None:
        """Send until cancelled."""
        timeout = aiohttp.ClientTimeout(total=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            self._session = session
            tasks = [asyncio.create_task(self._sender()) for _ in range(self._senders)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for task in tasks:
                    task.cancel()

    async def _sender(self) -> None:
        while True:
            message = await self._queue.get()
            try:
                await self.deliver(message)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let one message stop the sender
                log.error("alert delivery crashed", alert_id=message.alert_id, error=repr(exc)[:300])
            finally:
                self._sending.discard(self._ident(message))
                self._queue.task_done()

    async def deliver(self, message: AlertMessage) -> AlertMessage:
        """Send ``message`` to each of its webhooks; returns it with its delivery outcome, stored
        through ``on_done`` (and dead-lettered through ``on_dead`` when it failed)."""
        errors = []
        body = b""
        ruleset = self._book.current().get(message.team)
        for name in message.webhooks:
            try:
                if ruleset is None or name not in {w.name for w in ruleset.webhooks}:
                    raise DeliveryError(f"webhook {name!r} is not in the team's rules in force", retry=False)
                webhook = ruleset.webhook(name)
                body = json.dumps(BODIES[webhook.format](message)).encode()
                await self._send(message, webhook, body)
            except DeliveryError as exc:
                errors.append(f"{name}: {exc}")
        done = dataclasses.replace(message, delivery=table.FAILED if errors else table.SENT, error="; ".join(errors))
        if errors:
            self.failed += 1
            log.error("alert not delivered", alert_id=message.alert_id, team=message.team, error=done.error[:500])
            await self._on_dead(done, body or json.dumps(generic(message)).encode(), done.error)
        else:
            self.sent += 1
            log.info("alert sent", alert_id=message.alert_id, team=message.team, webhooks=list(message.webhooks))
        await self._on_done(done)
        return done

    def _secret(self, team: str, name: str) -> str:
        env = ar.secret_env(team, name)
        value = self._environ.get(env, "")
        if not value:
            raise DeliveryError(f"secret {env} is not set in the worker's environment", retry=False)
        return value

    async def _send(self, message: AlertMessage, webhook: ar.Webhook, body: bytes) -> None:
        url = self._secret(message.team, webhook.url_secret)
        if not url.startswith(("http://", "https://")):
            raise DeliveryError(
                f"secret {ar.secret_env(message.team, webhook.url_secret)} is not an http(s) URL", retry=False
            )
        headers = {"Content-Type": "application/json"}
        if webhook.token_secret:
            headers["Authorization"] = f"Bearer {self._secret(message.team, webhook.token_secret)}"
        assert self._session is not None
        delay = self._backoff
        for attempt in range(1, self._tries + 1):
            try:
                async with self._session.post(url, data=body, headers=headers, allow_redirects=False) as response:
                    if response.status < 300:
                        return
                    retry = response.status == 429 or response.status >= 500
                    error = DeliveryError(f"answered HTTP {response.status}", retry=retry)
            except (TimeoutError, aiohttp.ClientError) as exc:
                # The URL is a secret (Slack's and Discord's carry their token in the path): never in a reason.
                text = f"{type(exc).__name__}: {exc}".replace(url, "<webhook url>")
                error = DeliveryError(text[:300], retry=not isinstance(exc, aiohttp.InvalidURL))
            if not error.retry or attempt == self._tries:
                raise DeliveryError(f"{error} (after {attempt} tries)", retry=False)
            await asyncio.sleep(delay)
            delay *= 2
