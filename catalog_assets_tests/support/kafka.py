"""Kafka fixtures: a broker for the test session and throwaway topics.

`kafka_bootstrap` is ``KAFKA_BOOTSTRAP_SERVERS`` when set (a real cluster; ``KAFKA_SECURITY_*`` /
``KAFKA_SASL_*`` apply too, see `client_config`), else a local Tansu broker for the session.
`kafka_topic` is a factory of uniquely named topics, deleted after the test.
"""

from __future__ import annotations

import contextlib
import os
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from catalog_assets.devtools.broker import (
    BOOTSTRAP_ENV,
    BrokerError,
    LocalBroker,
    ensure_topics,
)
from catalog_assets.settings import Settings


def using_local_broker() -> bool:
    """True when the fixtures run Tansu (no ``KAFKA_BOOTSTRAP_SERVERS``): some gaps apply."""
    return not os.environ.get(BOOTSTRAP_ENV, "").strip()


def client_config(bootstrap: str, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Client settings for `bootstrap`: the environment's security settings when it is the
    configured cluster, plus `extra` (e.g. ``{"group.id": ...}``)."""
    config: dict[str, Any] = {"bootstrap.servers": bootstrap}
    if not using_local_broker():
        environment = Settings.from_env().kafka().client_config()
        if environment["bootstrap.servers"] == bootstrap:
            config = environment
    return {**config, **(extra or {})}


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``bootstrap.servers`` of the cluster the tests may use."""
    if not using_local_broker():
        yield os.environ[BOOTSTRAP_ENV].strip()
        return
    try:
        broker = LocalBroker().start()
    except BrokerError as exc:
        pytest.fail(f"{exc}\n(or set {BOOTSTRAP_ENV} to a Kafka cluster)", pytrace=False)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()


MakeTopic = Callable[..., str]


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Iterator[MakeTopic]:
    """``make_topic(partitions=1) -> name``: a new topic named after the test."""
    created: list[str] = []
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", request.node.name).strip("-")[:80]

    def make_topic(partitions: int = 1) -> str:
        name = f"test-{stem}-{uuid.uuid4().hex[:10]}"
        ensure_topics(
            kafka_bootstrap, [name], partitions=partitions, config=client_config(kafka_bootstrap)
        )
        created.append(name)
        return name

    yield make_topic
    if created:  # best effort: keeps a shared cluster tidy; Tansu forgets everything anyway
        from confluent_kafka.admin import AdminClient

        admin = AdminClient(client_config(kafka_bootstrap))
        for future in admin.delete_topics(created, operation_timeout=5).values():
            with contextlib.suppress(Exception):  # cleanup must not fail the test
                future.result(timeout=10)
