"""``runstream alerts check|apply FILE``: validate a team's rules file, and publish it for the workers.

Applying publishes the rule set, versioned by the time it was applied, on the compacted
``<prefix>alert-rules`` topic under the team's name; every worker reads that topic and puts the
new rules in force within a second or so, without a restart. A file that does not validate is
never published, so the rules in force stay as they were.
"""

from __future__ import annotations

import time
from pathlib import Path

import msgspec

from runstream_core import alert_rules as ar
from runstream_core import kafka
from runstream_core.errors import CommError


def load(path: Path) -> ar.RuleSet:
    """The rule set in ``path`` (YAML), validated; :class:`~runstream_core.alert_rules.RulesError` otherwise."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ar.RulesError(f"cannot read rules file {path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ar.RulesError(f"{path}: not valid YAML: {exc}") from exc
    ruleset = ar.validate(data, str(path))
    if len(ar.encode(ruleset)) > ar.MAX_RULE_SET_BYTES:
        raise ar.RulesError(f"{path}: the rule set is over {ar.MAX_RULE_SET_BYTES} bytes")
    return ruleset


def apply(ruleset: ar.RuleSet, settings: object, timeout_s: float = 30.0) -> ar.RuleSet:
    """Publish ``ruleset`` as the team's rules in force; returns it with its version."""
    from kafka.errors import KafkaError

    from runstream_worker.settings import WorkerSettings
    from runstream_worker.topics import ensure_topics

    assert isinstance(settings, WorkerSettings)
    versioned = msgspec.structs.replace(ruleset, version=time.time_ns() // 1_000_000)
    ensure_topics(settings, timeout_s=timeout_s)
    producer = kafka.producer(settings, acks="all", max_block_ms=int(timeout_s * 1000))
    try:
        producer.send(settings.topics.alert_rules, key=versioned.team.encode(), value=ar.encode(versioned)).get(
            timeout=timeout_s
        )
    except KafkaError as exc:
        raise CommError(f"could not publish the alert rules on {settings.kafka_bootstrap}: {exc}") from exc
    finally:
        producer.close(timeout=5)
    return versioned
