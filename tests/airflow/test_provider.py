"""Provider registration, the connection type, and FeatureRegistryHook (DESIGN §12)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from feature_rollout.core.errors import RepoConfigError
from feature_rollout.get_provider_info import get_provider_info
from feature_rollout.hooks.feature_registry import FeatureRegistryHook, StoreSettings
from tests.airflow.conftest import connection_json


def test_provider_info_is_complete():
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-feature-rollout"
    [conn_type] = info["connection-types"]
    assert conn_type["connection-type"] == "feature_rollout"
    assert conn_type["hook-class-name"] == "feature_rollout.hooks.feature_registry.FeatureRegistryHook"
    assert {"repo_path", "workspace", "registry_url", "online_store_url", "pool_size"} <= set(conn_type["conn-fields"])
    assert conn_type["ui-field-behaviour"]["relabeling"]["host"] == "Registry host (PostgreSQL)"
    for group in ("hooks", "operators", "sensors", "triggers"):
        for module in info[group][0]["python-modules"]:
            __import__(module)


def test_airflow_sees_the_provider_and_its_connection_type():
    result = subprocess.run([sys.executable, "-m", "airflow", "providers", "list", "-o", "json"],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr
    assert "airflow-provider-feature-rollout" in result.stdout
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hook = ProvidersManagerTaskRuntime().hooks["feature_rollout"]
    assert hook is not None and hook.hook_class_name.endswith("FeatureRegistryHook")


class Conn:
    """The attributes of an Airflow Connection that the hook reads."""

    def __init__(self, **kwargs):
        self.conn_id = kwargs.pop("conn_id", "c")
        self.host, self.port, self.login = kwargs.pop("host", None), kwargs.pop("port", None), kwargs.pop("login", None)
        self.password, self.schema = kwargs.pop("password", None), kwargs.pop("schema", None)
        self.extra_dejson = kwargs


def test_settings_from_the_connection_fields():
    settings = StoreSettings.from_connection(Conn(host="db.internal", port=5433, login="fr", password="p@ss:w/rd",
                                                  schema="features", repo_path="/repo", workspace="prod",
                                                  online_store_url="redis://r:6379/0", pool_size="7"))
    assert settings.registry_url == "postgresql+psycopg://fr:p%40ss%3Aw%2Frd@db.internal:5433/features"
    assert (settings.repo_path, settings.workspace, settings.online_store_url) == ("/repo", "prod", "redis://r:6379/0")
    assert settings.registry_pool == {"pool_size": 7}
    assert "p@ss" not in settings.describe() and "fr:***@db.internal" in settings.describe()
    # registry_url wins over the fields; repo_path/workspace given by the task win over the extras.
    settings = StoreSettings.from_connection(Conn(host="ignored", registry_url="sqlite:////tmp/r.db", repo_path="/a"),
                                             repo_path="/b", workspace="dev")
    assert (settings.registry_url, settings.repo_path, settings.workspace) == ("sqlite:////tmp/r.db", "/b", "dev")


def test_settings_errors():
    with pytest.raises(RepoConfigError, match="has no 'repo_path' extra"):
        StoreSettings.from_connection(Conn())
    with pytest.raises(RepoConfigError, match="Extra 'pool_size' of connection 'c' must be a whole number"):
        StoreSettings.from_connection(Conn(repo_path="/r", pool_size="many"))


def test_hook_builds_a_store_and_tests_the_connection(rollout_repo, monkeypatch):
    hook = FeatureRegistryHook()
    store = hook.get_conn()
    assert store.repo_path == rollout_repo and store.workspace == "demo"
    assert hook.test_connection() == (True, "Connected to the registry (0 workspace(s): none yet).")
    store.apply()
    assert FeatureRegistryHook().test_connection()[1] == "Connected to the registry (1 workspace(s): demo)."
    monkeypatch.setenv("AIRFLOW_CONN_BROKEN", json.dumps({
        "conn_type": "feature_rollout", "host": "127.0.0.1", "port": 1, "login": "u", "password": "hunter2",
        "extra": {"repo_path": str(rollout_repo)}}))
    ok, message = FeatureRegistryHook("broken").test_connection()
    assert not ok and "Cannot reach the registry at postgresql+psycopg://u:***@127.0.0.1:1" in message
    assert "hunter2" not in message


def test_connection_json_helper(tmp_path):
    assert json.loads(connection_json(tmp_path))["extra"]["repo_path"] == str(tmp_path)
