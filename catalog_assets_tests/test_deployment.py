"""The deployment files: the production instance loads against PostgreSQL, the local instance
queues store writers, the Helm values carry the same settings and a run launcher block that
dagster-k8s accepts, and the image runs the code server as the Helm values expect.

What cannot be checked offline (building the image, rendering the chart) is in
docs/deployment.md, with what was checked by hand instead.
"""

from __future__ import annotations

import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dagster as dg
import psycopg2
import pytest
import yaml
from psycopg2 import sql as pgsql

from catalog_assets.defs.resources import STORE_POOL

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PRODUCTION = DEPLOY / "dagster.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture
def dagster_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new database on the test PostgreSQL, named to the instance by ``DAGSTER_PG_*``."""
    name = f"dagster_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(postgres_url)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(pgsql.SQL("CREATE DATABASE {}").format(pgsql.Identifier(name)))
    url = urlsplit(postgres_url)
    monkeypatch.setenv("DAGSTER_PG_HOST", url.hostname or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    monkeypatch.setenv("DAGSTER_PG_USER", url.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "unused-by-trust-auth")
    monkeypatch.setenv("DAGSTER_PG_DB", name)
    try:
        yield
    finally:
        with admin.cursor() as cursor:
            cursor.execute(
                pgsql.SQL("DROP DATABASE {} WITH (FORCE)").format(pgsql.Identifier(name))
            )
        admin.close()


def instance_home(tmp_path: Path, config: dict[str, Any] | Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir(exist_ok=True)
    if isinstance(config, Path):
        shutil.copy(config, home / "dagster.yaml")
    else:
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return home


# --- deploy/dagster.yaml ------------------------------------------------------------------------


def test_the_production_instance_keeps_secrets_in_the_environment():
    text = PRODUCTION.read_text(encoding="utf-8")
    database = load_yaml(PRODUCTION)["storage"]["postgres"]["postgres_db"]
    assert database == {
        "hostname": {"env": "DAGSTER_PG_HOST"},
        "port": {"env": "DAGSTER_PG_PORT"},
        "username": {"env": "DAGSTER_PG_USER"},
        "password": {"env": "DAGSTER_PG_PASSWORD"},
        "db_name": {"env": "DAGSTER_PG_DB"},
    }
    assert "postgres_url" not in text
    # Public import paths only (`dagster._core...` is Dagster's private package).
    assert not re.search(r"module:\s*dagster\._", text)


def test_the_production_instance_loads_against_postgresql(tmp_path, dagster_database):
    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, PRODUCTION))) as instance:
        from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.run_coordinator, dg.QueuedRunCoordinator)
        assert isinstance(instance.run_launcher, dg.DefaultRunLauncher)
        assert instance.event_log_storage.supports_global_concurrency_limits
        assert instance.global_op_concurrency_default_limit == 2
        assert instance.run_monitoring_enabled
        assert instance.run_monitoring_max_resume_run_attempts == 0
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert not instance.run_retries_retry_on_asset_or_op_failure
        assert not instance.telemetry_enabled


def test_the_local_instance_queues_store_writers_one_at_a_time(tmp_path):
    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, ROOT / "dagster.yaml"))) as i:
        assert i.global_op_concurrency_default_limit == 1
        assert isinstance(i.run_coordinator, dg.QueuedRunCoordinator)
        assert i.event_log_storage.supports_global_concurrency_limits
    local, production = load_yaml(ROOT / "dagster.yaml"), load_yaml(PRODUCTION)
    # The same pool semantics as production, so runs queue the same way under `make dev`.
    assert local["concurrency"]["pools"]["granularity"] == "run"
    assert production["concurrency"]["pools"]["granularity"] == "run"


def test_every_op_that_writes_the_store_is_in_the_pool():
    from catalog_assets.definitions import defs

    definitions = defs()
    pools = {
        (job, node.name): node.definition.pool
        for job in ("full_refresh", "apply_content_item", "apply_content_events")
        for node in definitions.resolve_job_def(job).nodes
    }
    writers = {
        ("full_refresh", "catalog_queries"),
        ("full_refresh", "content_metadata"),
        ("full_refresh", "catalog_content_associations"),
        ("apply_content_item", "content_item"),
        ("apply_content_events", "apply_content_updates"),
    }
    assert {key: pools[key] for key in writers} == dict.fromkeys(writers, STORE_POOL)
    # Only the store writers: the read-only check is not held back by the pool.
    assert {key for key, pool in pools.items() if pool} == writers
    assert definitions.resolve_job_def("full_refresh").tags["catalog/lane"] == "bulk"


# --- deploy/helm/values.yaml -------------------------------------------------------------------


def test_the_helm_values_carry_the_production_instance_settings():
    helm, production = load_yaml(HELM_VALUES), load_yaml(PRODUCTION)
    daemon = helm["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    concurrency = production["concurrency"]
    assert helm["concurrency"] == {
        "enabled": True,
        "runs": {
            "maxConcurrentRuns": concurrency["runs"]["max_concurrent_runs"],
            "tagConcurrencyLimits": concurrency["runs"]["tag_concurrency_limits"],
        },
        "pools": {
            "defaultLimit": concurrency["pools"]["default_limit"],
            "granularity": concurrency["pools"]["granularity"],
        },
    }
    monitoring = production["run_monitoring"]
    assert daemon["runMonitoring"]["enabled"] is monitoring["enabled"] is True
    for helm_key, key in (
        ("startTimeoutSeconds", "start_timeout_seconds"),
        ("cancelTimeoutSeconds", "cancel_timeout_seconds"),
        ("maxRuntimeSeconds", "max_runtime_seconds"),
        ("pollIntervalSeconds", "poll_interval_seconds"),
    ):
        assert daemon["runMonitoring"][helm_key] == monitoring[key], helm_key
    # Kubernetes resumes a run in a new pod; the one-server launcher cannot.
    assert daemon["runMonitoring"]["maxResumeRunAttempts"] > monitoring["max_resume_run_attempts"]
    retries = production["run_retries"]
    assert daemon["runRetries"] == {
        "enabled": retries["enabled"],
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }
    for kind in ("sensors", "schedules"):
        assert daemon[kind] == {
            "useThreads": production[kind]["use_threads"],
            "numWorkers": production[kind]["num_workers"],
        }
    retention = production["retention"]
    assert helm["retention"]["sensor"]["purgeAfterDays"] == retention["sensor"]["purge_after_days"]
    assert (
        helm["retention"]["schedule"]["purgeAfterDays"]
        == (retention["schedule"]["purge_after_days"])
    )
    assert helm["telemetry"] == production["telemetry"] == {"enabled": False}


def test_the_helm_values_take_secrets_from_kubernetes_secrets():
    helm = load_yaml(HELM_VALUES)
    assert helm["postgresql"]["enabled"] is False
    assert helm["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in helm["postgresql"]
    assert helm["global"]["postgresqlSecretName"]
    (deployment,) = helm["dagster-user-deployments"]["deployments"]
    secret_names = {"LMS_OAUTH2_CLIENT_SECRET", "KAFKA_SASL_PASSWORD", "CATALOG_STORE_URL"}
    assert not secret_names & {variable["name"] for variable in deployment["env"]}
    secrets = {secret["name"] for secret in deployment["envSecrets"]}
    launcher = helm["runLauncher"]["config"]["k8sRunLauncher"]
    # Run pods get the code's secrets too: they run the assets.
    assert secrets and secrets <= {secret["name"] for secret in launcher["envSecrets"]}


def test_the_image_serves_the_code_location_the_helm_values_name():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim\b", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1] not in ("root", "0")
    (command,) = re.findall(r"^CMD (\[.*\])$", dockerfile, re.M)
    assert yaml.safe_load(command) == [
        "dagster", "code-server", "start", "-m", "catalog_assets.definitions",
        "-h", "0.0.0.0", "-p", "4000",
    ]  # fmt: skip
    assert 'pip install --no-compile ".[k8s]"' in dockerfile  # the pins of pyproject.toml
    (deployment,) = load_yaml(HELM_VALUES)["dagster-user-deployments"]["deployments"]
    assert deployment["port"] == 4000
    assert deployment["codeServerArgs"] == ["-m", "catalog_assets.definitions"]
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {".git", ".venv", ".dagster_home", "data", "catalog_assets_tests"} <= set(ignored)


def k8s_run_launcher_block(helm: dict[str, Any], kubeconfig: Path) -> dict[str, Any]:
    """The ``run_launcher`` block the chart renders from ``runLauncher.config.k8sRunLauncher``
    (its keys in snake case, Secrets and ConfigMaps by name, plus what the chart fills in:
    the instance ConfigMap, the service account, DAGSTER_HOME and the password Secret).
    Outside a cluster the test loads a kubeconfig instead of the in-cluster config."""
    launcher = helm["runLauncher"]["config"]["k8sRunLauncher"]
    config = {
        "instance_config_map": "catalog-dagster-instance",
        "service_account_name": "catalog-dagster",
        "dagster_home": "/opt/dagster/dagster_home",
        "postgres_password_secret": helm["global"]["postgresqlSecretName"],
        "image_pull_policy": launcher["imagePullPolicy"],
        "load_incluster_config": False,
        "kubeconfig_file": str(kubeconfig),
        "env_config_maps": [source["name"] for source in launcher["envConfigMaps"]],
        "env_secrets": [source["name"] for source in launcher["envSecrets"]],
        "env_vars": launcher["envVars"],
        "volume_mounts": launcher["volumeMounts"],
        "volumes": launcher["volumes"],
        "labels": launcher["labels"],
        "resources": launcher["resources"],
    }
    assert launcher["loadInclusterConfig"] is True  # in the cluster
    return {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": config}


def test_the_helm_run_launcher_block_validates_against_dagster_k8s(tmp_path, dagster_database):
    dagster_k8s = pytest.importorskip("dagster_k8s", reason="the `k8s` extra is not installed")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                # Never contacted: the launcher only builds its clients when it loads.
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "unused"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    helm = load_yaml(HELM_VALUES)
    config = {
        **load_yaml(PRODUCTION),
        "run_launcher": k8s_run_launcher_block(helm, kubeconfig),
    }
    with dg.DagsterInstance.from_config(str(instance_home(tmp_path, config))) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, dagster_k8s.K8sRunLauncher)
        assert launcher.supports_check_run_worker_health and launcher.supports_resume_run
        requested = helm["runLauncher"]["config"]["k8sRunLauncher"]["resources"]
        assert launcher.resources == requested
        assert launcher.env_secrets == ["catalog-assets-env"]

    broken = dict(config)
    broken["run_launcher"] = {
        **config["run_launcher"],
        "config": {**config["run_launcher"]["config"], "resources": "2Gi"},
    }
    with (
        dg.DagsterInstance.from_config(str(instance_home(tmp_path, broken))) as instance,
        pytest.raises(dg.DagsterInvalidConfigError, match="resources"),
    ):
        instance.run_launcher  # noqa: B018 (loading the block is the check)
