"""Event lane commands: a local broker, a test event, and replay from a point in time."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from catalog_assets.cli.common import dagster_home, one_line, print_error


def broker(args: argparse.Namespace) -> int:
    from catalog_assets.devtools.broker import main_broker

    return main_broker(args.port)


def publish(args: argparse.Namespace) -> int:
    """Send one test event; ``--format openedx`` as edx-event-bus-kafka sends it (Avro key and
    value, Confluent framing, CloudEvent headers; schemas registered when a registry is set)."""
    from confluent_kafka import Producer

    from catalog_assets.core.events import encode_json_event, schema_registry
    from catalog_assets.core.redaction import redact
    from catalog_assets.devtools.encoders import catalog_info_changed_message, full_topic
    from catalog_assets.settings import Settings

    settings = Settings.from_env()
    prefix = settings.value("KAFKA_TOPIC_PREFIX")
    if args.format == "openedx":
        if args.delete or args.metadata:
            raise ValueError("--delete and --metadata apply to --format json only")
        topic = args.topic or full_topic("course-catalog-info-changed", prefix)
        registry = settings.schema_registry()
        message = catalog_info_changed_message(
            args.content_key,
            topic=topic,
            registry=schema_registry(registry) if registry else None,
        )
        key, value, headers = message.key, message.value, message.headers
    else:
        topic = args.topic or full_topic("content-metadata-changed", prefix)
        metadata = json.loads(Path(args.metadata).read_text()) if args.metadata else None
        event_type = "content.deleted" if args.delete else "content.upserted"
        key, value = encode_json_event(
            args.content_key, args.content_type, event_type=event_type, metadata=metadata
        )
        headers = None
    producer = Producer(settings.kafka().client_config())
    producer.produce(topic, key=key, value=value, headers=headers)
    if producer.flush(15):
        print_error(args.command, redact(f"could not deliver to {topic} within 15 s"))
        return 1
    print(f"published a {args.format} event for {args.content_key} to {topic}")
    return 0


def since(text: str) -> datetime:
    """``--since``: an ISO time or a duration before now (argparse explains a bad one)."""
    from sensors.replay import parse_since

    try:
        return parse_since(text, datetime.now(UTC))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _offsets(offsets: Mapping[str, Mapping[int, int]]) -> str:
    return ", ".join(f"{t}[{p}]={o}" for t, parts in offsets.items() for p, o in parts.items())


NEED_THE_BROKER = "the offsets, and so the cursor, need the broker."


def replay(args: argparse.Namespace) -> int:
    """Print the plan, compute the rewound cursor from Kafka, and set it (unless
    ``--dry-run``) with Dagster's own ``dagster sensor cursor`` command. A dry run without a
    broker stops after the plan."""
    import shlex

    from confluent_kafka import KafkaError, KafkaException

    from catalog_assets.settings import Settings
    from sensors.replay import event_source, replayed_topics, rewind_cursor

    settings = Settings.from_env()
    if not args.dry_run:
        settings.kafka()  # raises when KAFKA_BOOTSTRAP_SERVERS is not set, saying what to do
    content = settings.content_topics()
    topics = replayed_topics(content, args.topic)
    others = [topic for topic in content if topic not in topics]
    group = settings.value("KAFKA_CONSUMER_GROUP")
    ago = str(datetime.now(UTC) - args.since).split(".")[0]
    when = args.since.isoformat(timespec="seconds")
    print(f"replay for sensor {args.sensor} from {when} ({ago} ago)")
    print(f"  replayed topics: {', '.join(topics)}")
    print(f"  other content topics (from consumer group {group}): {', '.join(others) or 'none'}")
    if not settings.kafka_enabled:
        print(f"KAFKA_BOOTSTRAP_SERVERS is not set: {NEED_THE_BROKER}")
        print("dry run: nothing changed")
        return 0
    try:
        rewind = rewind_cursor(event_source(), args.since, topics)
    except KafkaException as error:
        first = error.args[0] if error.args else None
        reason = first.str() if isinstance(first, KafkaError) else str(error)
        unreachable = f"Kafka at {settings.kafka().bootstrap_servers} could not be reached"
        if not args.dry_run:
            print_error(args.command, f"{unreachable} ({reason})")
            return 2
        print(f"{unreachable} ({one_line(reason)}): {NEED_THE_BROKER}")
        print("dry run: nothing changed")
        return 0
    print(f"  replayed offsets: {_offsets(rewind.replayed) or 'none (no partitions)'}")
    if others:
        print(f"  resumed offsets: {_offsets(rewind.resumed.offsets) or 'none'}")
    start_from = f"from the {settings.kafka_start_from.value} offset (KAFKA_START_FROM)"
    if rewind.resumed.uncommitted:
        named = ", ".join(f"{t}[{p}]" for t, p in rewind.resumed.uncommitted)
        print(f"  not committed in {group}, so the sensor starts them {start_from}: {named}")
    if rewind.resumed.missing_topics:
        named = ", ".join(rewind.resumed.missing_topics)
        print(f"  not on the broker yet, so the sensor starts them {start_from}: {named}")
    print(f"cursor for {args.sensor}: {rewind.cursor}")
    command = ["dagster", "sensor", "cursor", args.sensor, "--set", rewind.cursor]
    command += ["-m", "catalog_assets.definitions"]
    if args.dry_run:
        print(f"dry run: nothing changed; to apply: {shlex.join(command)}")
        return 0
    return _set_cursor(command)


def _set_cursor(command: list[str]) -> int:
    """Run ``dagster sensor cursor`` on the instance of DAGSTER_HOME; its code-server chatter
    is shown only when it fails."""
    import subprocess

    home = dagster_home()
    executable = str(Path(sys.executable).parent / command[0])
    done = subprocess.run(
        [executable, *command[1:]],
        env={**os.environ, "DAGSTER_HOME": str(home)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        print(done.stdout + done.stderr, end="", file=sys.stderr)
        print_error("replay", f"dagster sensor cursor failed (exit status {done.returncode})")
        return 1
    print(f"cursor set in the Dagster instance at {home}")
    return 0
