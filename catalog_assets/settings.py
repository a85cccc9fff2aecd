"""Every environment variable the platform reads, in one place: name, default and meaning.

``Settings.from_env`` reads and validates them once (when definitions load, or when a command
starts; never at import) and says which variable is wrong and why. Secrets are never copied
out of the environment here: Dagster resources get ``dg.EnvVar`` references to them (see
``catalog_assets.defs.resources``) and resolve them at run time. The README's Configuration
tables are checked against ``SETTINGS`` by a test.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from catalog_assets.core.catalog_contents import (
    DEFAULT_COURSE_TYPES,
    DEFAULT_PRODUCT_SOURCES,
    AllowLists,
    split_names,
)
from catalog_assets.core.events.schemas import RegistrySettings, url_has_credentials


class ContentSourceKind(StrEnum):
    SAMPLE = "sample"
    DISCOVERY = "discovery"


class CatalogQueriesSourceKind(StrEnum):
    FILE = "file"
    ENTERPRISE_CATALOG = "enterprise-catalog"


class StartFrom(StrEnum):
    EARLIEST = "earliest"
    LATEST = "latest"


@dataclass(frozen=True)
class Setting:
    """One environment variable: its default (as text; empty: unset) and what it means."""

    name: str
    default: str
    meaning: str
    secret: bool = False


DEFAULT_STORE_URL = "duckdb:///data/catalog.duckdb"
DEFAULT_TOPICS = "course-catalog-info-changed,content-metadata-changed"
LOCAL_DAGSTER_HOME = ".dagster_home"

SETTINGS: tuple[Setting, ...] = (
    # The bulk lane
    Setting("CONTENT_SOURCE", "sample", "`sample` (bundled dataset, no network) or `discovery`"),
    Setting("SAMPLE_CONTENT_PATH", "", "with `sample`: a JSON array of search documents"),
    Setting("DISCOVERY_API_URL", "", "with `discovery`: course-discovery's API root"),
    Setting("LMS_OAUTH2_URL", "", "with `discovery` or `enterprise-catalog`: the LMS OAuth2 root"),
    Setting("LMS_OAUTH2_CLIENT_ID", "", "with `discovery` or `enterprise-catalog`: client id"),
    Setting("LMS_OAUTH2_CLIENT_SECRET", "", "the client id's secret", secret=True),
    Setting(
        "CATALOG_QUERIES_SOURCE",
        "file",
        "`file` (`CATALOG_QUERIES_PATH`) or `enterprise-catalog` (its REST API)",
    ),
    Setting("CATALOG_QUERIES_PATH", "", "JSON file of catalog queries and enterprise catalogs"),
    Setting("ENTERPRISE_CATALOG_API_URL", "", "with `enterprise-catalog`: its API root"),
    Setting("CATALOG_STORE_URL", DEFAULT_STORE_URL, "`duckdb:///<path>` or `postgresql://...`"),
    Setting("FULL_REFRESH_CRON", "0 4 * * *", "the `full_refresh_schedule` (UTC)"),
    Setting(
        "CATALOG_QUERIES_POLL_SECONDS",
        "30",
        "minimum interval between `catalog_queries_sensor` ticks (the query lane)",
    ),
    # What a catalog admits (both lanes; enterprise-catalog's allow-lists by default)
    Setting(
        "CONTENT_PRODUCT_SOURCE_ALLOW_LIST",
        ",".join(DEFAULT_PRODUCT_SOURCES),
        "product sources stored and associated, comma-separated, compared lower-cased",
    ),
    Setting(
        "CONTENT_COURSE_TYPE_ALLOW_LIST",
        ",".join(DEFAULT_COURSE_TYPES),
        "course types of courses stored and associated, comma-separated",
    ),
    # The event lane
    Setting("KAFKA_BOOTSTRAP_SERVERS", "", "the Kafka cluster; unset: the event sensor is off"),
    Setting("KAFKA_CONTENT_TOPICS", DEFAULT_TOPICS, "content topics, comma-separated"),
    Setting(
        "KAFKA_TOPIC_PREFIX",
        "",
        "prepended as `PREFIX-` to every content topic, as Open edX's `EVENT_BUS_TOPIC_PREFIX`",
    ),
    Setting("KAFKA_SCHEMA_REGISTRY_URL", "", "Confluent schema registry for Avro writer schemas"),
    Setting("KAFKA_SCHEMA_REGISTRY_API_KEY", "", "registry basic-auth user", secret=True),
    Setting("KAFKA_SCHEMA_REGISTRY_API_SECRET", "", "registry basic-auth password", secret=True),
    Setting("KAFKA_SCHEMA_REGISTRY_CA_LOCATION", "", "CA file (PEM) for the registry's TLS"),
    Setting("KAFKA_CONSUMER_GROUP", "catalog-assets", "offsets mirrored here for lag tools"),
    Setting("KAFKA_START_FROM", "earliest", "where a first start reads: `earliest` or `latest`"),
    Setting("KAFKA_SECURITY_PROTOCOL", "", "passed to the Kafka client"),
    Setting("KAFKA_SASL_MECHANISM", "", "passed to the Kafka client"),
    Setting("KAFKA_SASL_USERNAME", "", "passed to the Kafka client"),
    Setting("KAFKA_SASL_PASSWORD", "", "passed to the Kafka client", secret=True),
    Setting("KAFKA_MAX_MESSAGES_PER_TICK", "5000", "tick bound: messages read"),
    Setting("KAFKA_MAX_SECONDS_PER_TICK", "20", "tick bound: seconds spent reading"),
    Setting("KAFKA_MAX_RUNS_PER_TICK", "10", "tick bound: runs asked for"),
    Setting("KAFKA_SENSOR_INTERVAL_SECONDS", "1", "minimum interval between sensor ticks"),
    # Commands
    Setting("DAGSTER_HOME", LOCAL_DAGSTER_HOME, "the Dagster instance the commands use"),
)
BY_NAME: Mapping[str, Setting] = {setting.name: setting for setting in SETTINGS}


class SettingError(ValueError):
    """An environment variable holds a value that cannot be used; the message names it."""


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka client settings; ``client_config`` is the one mapping to confluent-kafka."""

    bootstrap_servers: str = ""
    security_protocol: str = ""
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = ""

    def client_config(self) -> dict[str, str]:
        """confluent-kafka settings: the bootstrap servers and the security settings given."""
        config = {"bootstrap.servers": self.bootstrap_servers.strip()}
        for setting, value in (
            ("security.protocol", self.security_protocol),
            ("sasl.mechanism", self.sasl_mechanism),
            ("sasl.username", self.sasl_username),
            ("sasl.password", self.sasl_password),
        ):
            if value:
                config[setting] = value
        return config


@dataclass(frozen=True)
class Settings:
    """The validated environment. Values of secret settings are not kept here."""

    env: Mapping[str, str]
    content_source: ContentSourceKind
    store_url: str
    full_refresh_cron: str
    kafka_enabled: bool
    kafka_start_from: StartFrom
    max_messages_per_tick: int
    max_seconds_per_tick: float
    max_runs_per_tick: int
    sensor_interval_seconds: int
    catalog_queries_poll_seconds: int
    dagster_home: str
    allow_lists: AllowLists = field(default_factory=AllowLists)
    catalog_queries_source: CatalogQueriesSourceKind = CatalogQueriesSourceKind.FILE

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        # Only this project's variables, each read by name.
        env = {s.name: value for s in SETTINGS if (value := source.get(s.name))}

        def text(name: str) -> str:
            return env.get(name) or BY_NAME[name].default

        content_source = _choice(text("CONTENT_SOURCE"), ContentSourceKind, "CONTENT_SOURCE")
        if content_source is ContentSourceKind.DISCOVERY:
            _check_api(env, "CONTENT_SOURCE=discovery", "DISCOVERY_API_URL")
        queries_source = _choice(
            text("CATALOG_QUERIES_SOURCE"), CatalogQueriesSourceKind, "CATALOG_QUERIES_SOURCE"
        )
        if queries_source is CatalogQueriesSourceKind.ENTERPRISE_CATALOG:
            _check_api(
                env, "CATALOG_QUERIES_SOURCE=enterprise-catalog", "ENTERPRISE_CATALOG_API_URL"
            )
        _check_registry(env)
        cron = text("FULL_REFRESH_CRON")
        if len(cron.split()) != 5:
            raise SettingError(f"FULL_REFRESH_CRON={cron!r} is not a 5-field cron expression")
        return cls(
            env=env,
            content_source=content_source,
            store_url=text("CATALOG_STORE_URL"),
            full_refresh_cron=cron,
            kafka_enabled=bool(env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()),
            kafka_start_from=_choice(text("KAFKA_START_FROM"), StartFrom, "KAFKA_START_FROM"),
            max_messages_per_tick=_number(text, "KAFKA_MAX_MESSAGES_PER_TICK", int),
            max_seconds_per_tick=_number(text, "KAFKA_MAX_SECONDS_PER_TICK", float),
            max_runs_per_tick=_number(text, "KAFKA_MAX_RUNS_PER_TICK", int),
            sensor_interval_seconds=_number(text, "KAFKA_SENSOR_INTERVAL_SECONDS", int),
            catalog_queries_poll_seconds=_number(text, "CATALOG_QUERIES_POLL_SECONDS", int),
            dagster_home=text("DAGSTER_HOME"),
            allow_lists=AllowLists(
                _names(text, "CONTENT_PRODUCT_SOURCE_ALLOW_LIST"),
                _names(text, "CONTENT_COURSE_TYPE_ALLOW_LIST"),
            ),
            catalog_queries_source=queries_source,
        )

    def is_set(self, name: str) -> bool:
        return bool(self.env.get(name))

    def value(self, name: str) -> str:
        """A non-secret setting's value, or its default."""
        if BY_NAME[name].secret:
            raise KeyError(f"{name} is a secret: pass a dg.EnvVar reference to it instead")
        return self.env.get(name) or BY_NAME[name].default

    def kafka(self) -> KafkaSettings:
        """The Kafka client settings, for commands (the sensor resolves its own at run time)."""
        if not self.kafka_enabled:
            raise SettingError(
                "KAFKA_BOOTSTRAP_SERVERS is not set. Point it at a Kafka cluster, or start a "
                "local broker with `catalog-assets broker` and export the value it prints."
            )
        get = self.env.get
        return KafkaSettings(
            get("KAFKA_BOOTSTRAP_SERVERS", ""),
            get("KAFKA_SECURITY_PROTOCOL", ""),
            get("KAFKA_SASL_MECHANISM", ""),
            get("KAFKA_SASL_USERNAME", ""),
            get("KAFKA_SASL_PASSWORD", ""),
        )

    def content_topics(self) -> list[str]:
        """The topics the sensor reads: ``KAFKA_CONTENT_TOPICS``, each prefixed."""
        return content_topics(self.value("KAFKA_CONTENT_TOPICS"), self.value("KAFKA_TOPIC_PREFIX"))

    def schema_registry(self) -> RegistrySettings | None:
        """The registry settings, for commands (the sensor resolves its own at run time); None
        when ``KAFKA_SCHEMA_REGISTRY_URL`` is not set."""
        get = self.env.get
        if not get("KAFKA_SCHEMA_REGISTRY_URL"):
            return None
        return RegistrySettings(
            get("KAFKA_SCHEMA_REGISTRY_URL", ""),
            get("KAFKA_SCHEMA_REGISTRY_API_KEY", ""),
            get("KAFKA_SCHEMA_REGISTRY_API_SECRET", ""),
            get("KAFKA_SCHEMA_REGISTRY_CA_LOCATION", ""),
        )


def content_topics(topics: str, prefix: str = "") -> list[str]:
    """Comma-separated topic names, each ``PREFIX-name`` when a prefix is set (as Open edX's
    event-bus-kafka prefixes every topic with ``EVENT_BUS_TOPIC_PREFIX``)."""
    prefix = prefix.strip()
    names = [topic.strip() for topic in topics.split(",") if topic.strip()]
    return [f"{prefix}-{name}" if prefix else name for name in names]


OAUTH2_SETTINGS = ("LMS_OAUTH2_URL", "LMS_OAUTH2_CLIENT_ID", "LMS_OAUTH2_CLIENT_SECRET")
"""The LMS OAuth2 client-credentials grant every Open edX REST source authenticates with."""


def _check_api(env: Mapping[str, str], choice: str, url_name: str) -> None:
    """A REST source needs its API root and the LMS OAuth2 settings; URLs must be http(s)."""
    missing = [name for name in (url_name, *OAUTH2_SETTINGS) if not env.get(name)]
    if missing:
        raise SettingError(f"{choice} needs {', '.join(missing)}")
    for name in (url_name, "LMS_OAUTH2_URL"):
        if not env[name].strip().startswith(("http://", "https://")):
            raise SettingError(f"{name} must start with http:// or https:// ({choice})")


def _check_registry(env: Mapping[str, str]) -> None:
    """Registry credentials come as a pair, from their own (secret) settings, never in the URL
    (which is printed)."""
    key, secret = (bool(env.get(f"KAFKA_SCHEMA_REGISTRY_API_{part}")) for part in ("KEY", "SECRET"))
    if key != secret:
        raise SettingError(
            "KAFKA_SCHEMA_REGISTRY_API_KEY and KAFKA_SCHEMA_REGISTRY_API_SECRET go together: "
            "set both or neither"
        )
    url = env.get("KAFKA_SCHEMA_REGISTRY_URL", "").strip()
    if url and not url.startswith(("http://", "https://")):
        raise SettingError("KAFKA_SCHEMA_REGISTRY_URL must start with http:// or https://")
    if url_has_credentials(url):
        raise SettingError(
            "KAFKA_SCHEMA_REGISTRY_URL holds credentials (user:password@): move them to "
            "KAFKA_SCHEMA_REGISTRY_API_KEY and KAFKA_SCHEMA_REGISTRY_API_SECRET, which are "
            "never printed"
        )


def _choice(value: str, kind: type[StrEnum], name: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise SettingError(f"{name}={value!r} is not one of {allowed}") from None


def _number(text: Any, name: str, kind: type) -> Any:
    raw = text(name)
    try:
        number = kind(raw)
    except ValueError:
        raise SettingError(f"{name}={raw!r} is not a {kind.__name__}") from None
    if number <= 0:
        raise SettingError(f"{name}={raw!r} must be greater than 0")
    return number


def _names(text: Any, name: str) -> frozenset[str]:
    raw = text(name)
    try:
        return split_names(raw, "comma-separated")
    except ValueError:
        raise SettingError(
            f"{name}={raw!r} has an empty entry; give comma-separated names"
        ) from None
