"""Settings: every environment variable read and validated in one place, and documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from catalog_assets.settings import SETTINGS, ContentSourceKind, SettingError, Settings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_setting_is_documented_in_the_readme_with_its_default():
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `") and "|" in line[1:]:
            first, default = (cell.strip() for cell in line.strip("|").split("|")[:2])
            for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", first):
                rows[name] = default
    documented = set(rows)
    assert {s.name for s in SETTINGS} <= documented, "settings missing from the README"
    for setting in SETTINGS:
        if setting.default and "," not in rows[setting.name]:
            assert setting.default in rows[setting.name], setting.name


def test_defaults_are_the_embedded_setup():
    settings = Settings.from_env({})
    assert settings.content_source is ContentSourceKind.SAMPLE
    assert settings.store_url == "duckdb:///data/catalog.duckdb"
    assert not settings.kafka_enabled
    assert settings.content_topics() == ["course-catalog-info-changed", "content-metadata-changed"]


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({"CONTENT_SOURCE": "s3"}, "CONTENT_SOURCE='s3' is not one of sample, discovery"),
        ({"CONTENT_SOURCE": "discovery"}, "needs DISCOVERY_API_URL, LMS_OAUTH2_URL"),
        ({"KAFKA_START_FROM": "middle"}, "KAFKA_START_FROM='middle'"),
        ({"KAFKA_MAX_RUNS_PER_TICK": "ten"}, "KAFKA_MAX_RUNS_PER_TICK='ten' is not a int"),
        ({"KAFKA_SENSOR_INTERVAL_SECONDS": "0"}, "must be greater than 0"),
        ({"FULL_REFRESH_CRON": "daily"}, "not a 5-field cron"),
    ],
)
def test_a_bad_value_names_the_variable(env, problem):
    with pytest.raises(SettingError, match=re.escape(problem)):
        Settings.from_env(env)


def test_secrets_are_not_handed_out_as_values():
    settings = Settings.from_env({"KAFKA_SASL_PASSWORD": "pw", "KAFKA_BOOTSTRAP_SERVERS": "b:1"})
    with pytest.raises(KeyError, match="secret"):
        settings.value("KAFKA_SASL_PASSWORD")


def test_kafka_client_config_maps_every_setting():
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "catalog",
        "KAFKA_SASL_PASSWORD": "s3cret ",
        "KAFKA_GROUP_ID": "not-a-client-setting",
    }
    assert Settings.from_env(env).kafka().client_config() == {
        "bootstrap.servers": "b1:9092,b2:9092",
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "catalog",
        "sasl.password": "s3cret ",
    }


def test_kafka_client_config_passes_only_settings_that_are_set():
    env = {"KAFKA_BOOTSTRAP_SERVERS": " 127.0.0.1:9092 ", "KAFKA_SASL_USERNAME": ""}
    assert Settings.from_env(env).kafka().client_config() == {"bootstrap.servers": "127.0.0.1:9092"}


@pytest.mark.parametrize("env", [{}, {"KAFKA_BOOTSTRAP_SERVERS": "  "}])
def test_kafka_needs_bootstrap_servers(env):
    with pytest.raises(SettingError, match="KAFKA_BOOTSTRAP_SERVERS"):
        Settings.from_env(env).kafka()


def test_the_topic_prefix_is_prepended_as_open_edx_does():
    settings = Settings.from_env({"KAFKA_TOPIC_PREFIX": "dev"})
    assert settings.content_topics() == [
        "dev-course-catalog-info-changed",
        "dev-content-metadata-changed",
    ]
    custom = Settings.from_env({"KAFKA_TOPIC_PREFIX": "stage", "KAFKA_CONTENT_TOPICS": "a, b"})
    assert custom.content_topics() == ["stage-a", "stage-b"]


def test_registry_credentials_are_a_pair_of_secrets_and_never_in_the_url():
    base = {"KAFKA_SCHEMA_REGISTRY_URL": "https://registry.example.com"}
    with pytest.raises(SettingError, match="set both or neither"):
        Settings.from_env({**base, "KAFKA_SCHEMA_REGISTRY_API_KEY": "k"})
    with pytest.raises(SettingError, match="holds credentials") as caught:
        Settings.from_env({"KAFKA_SCHEMA_REGISTRY_URL": "https://user:pw-9931@registry:8081"})
    assert "pw-9931" not in str(caught.value)
    env = {**base, "KAFKA_SCHEMA_REGISTRY_API_KEY": "key", "KAFKA_SCHEMA_REGISTRY_API_SECRET": "s"}
    settings = Settings.from_env({**env, "KAFKA_SCHEMA_REGISTRY_CA_LOCATION": "/etc/ca.pem"})
    registry = settings.schema_registry()
    assert registry.client_config()["basic.auth.user.info"] == "key:s"
    assert registry.client_config()["ssl.ca.location"] == "/etc/ca.pem"
    for name in ("KAFKA_SCHEMA_REGISTRY_API_KEY", "KAFKA_SCHEMA_REGISTRY_API_SECRET"):
        with pytest.raises(KeyError, match="secret"):
            settings.value(name)
    assert Settings.from_env({}).schema_registry() is None
    with pytest.raises(SettingError, match="must start with http"):
        Settings.from_env({"KAFKA_SCHEMA_REGISTRY_URL": "registry:8081"})
