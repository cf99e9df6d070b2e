"""Webhook delivery against a local receiver: bodies per format and their size limits, bearer
tokens, retries of 5xx only up to the bound, and reasons that never hold the secret URL."""

from __future__ import annotations

import asyncio
from typing import Any

from runstream_core import alert_rules as ar
from runstream_worker.alerts.notify import DISCORD_DESCRIPTION, SLACK_TEXT, Notifier
from runstream_worker.alerts.rulebook import RuleBook
from runstream_worker.tables.alerts import AlertMessage
from tests.fixtures.webhooks import WebhookReceiver

HOOKS = [
    {"name": "json", "url_secret": "JSON", "token_secret": "TOKEN"},
    {"name": "slack", "format": "slack", "url_secret": "SLACK"},
    {"name": "discord", "format": "discord", "url_secret": "DISCORD"},
    {"name": "fail", "url_secret": "FAIL"},
    {"name": "bad", "url_secret": "BAD"},
]


def message(*hooks: str, text: str = "loss is nan") -> AlertMessage:
    return AlertMessage(
        "vision", "p", "r1", "nan/loss/1/fired", "nan", "nan", "loss", "fired", "ERROR", "ERROR: nan [nan] loss",
        text, None, 7, 1_000, hooks, "pending",
    )  # fmt: skip


def deliver(webhooks: WebhookReceiver, *messages: AlertMessage) -> tuple[list[AlertMessage], list[Any]]:
    environ = {
        ar.secret_env("vision", "JSON"): f"{webhooks.url}/ok/json",
        ar.secret_env("vision", "TOKEN"): "tok",
        ar.secret_env("vision", "SLACK"): f"{webhooks.url}/ok/slack/T000/B000/secret-path",
        ar.secret_env("vision", "DISCORD"): f"{webhooks.url}/ok/discord",
        ar.secret_env("vision", "FAIL"): f"{webhooks.url}/fail/secret-path",
        ar.secret_env("vision", "BAD"): "http://[::1:nope/secret-path",
    }
    book = RuleBook({"vision": ar.validate({"team": "vision", "webhooks": HOOKS})})
    done: list[AlertMessage] = []
    dead: list[Any] = []

    async def on_done(m: AlertMessage) -> None:
        done.append(m)

    async def on_dead(m: AlertMessage, body: bytes, reason: str) -> None:
        dead.append((m.alert_id, reason))

    async def run() -> None:
        notifier = Notifier(book, on_done, on_dead, tries=3, timeout_s=5, first_backoff_s=0.01, environ=environ)
        task = asyncio.create_task(notifier.run())
        await asyncio.sleep(0.05)
        assert notifier.submit(list(messages)) == []
        while len(done) < len(messages):
            await asyncio.sleep(0.02)
        task.cancel()

    asyncio.run(run())
    return done, dead


def test_each_format_gets_its_body_within_its_limits(webhooks: WebhookReceiver) -> None:
    done, dead = deliver(webhooks, message("json", "slack", "discord", text="x" * 10_000))
    assert [(m.delivery, m.error) for m in done] == [("sent", "")] and dead == []
    (generic,) = webhooks.on("/ok/json")
    assert generic.headers["authorization"] == "Bearer tok"
    assert generic.body["alert_id"] == "nan/loss/1/fired" and generic.body["step"] == 7
    (slack,) = webhooks.on("/ok/slack")
    assert set(slack.body) == {"text"} and len(slack.body["text"]) == SLACK_TEXT
    (discord,) = webhooks.on("/ok/discord")
    assert discord.body["content"] == "ERROR: nan [nan] loss"
    assert len(discord.body["embeds"][0]["description"]) == DISCORD_DESCRIPTION


def test_failures_are_retried_to_the_bound_and_never_show_the_url(webhooks: WebhookReceiver) -> None:
    done, dead = deliver(webhooks, message("fail", "bad", "json"))
    assert [m.delivery for m in done] == ["failed"]
    assert len(webhooks.on("/fail")) == 3 and len(webhooks.on("/ok/json")) == 1
    ((alert_id, reason),) = dead
    assert alert_id == "nan/loss/1/fired"
    assert "fail: answered HTTP 500 (after 3 tries)" in reason
    assert "bad: InvalidUrlClientError: <webhook url> (after 1 tries)" in reason
    assert "secret-path" not in reason and "secret-path" not in done[0].error
