"""The UI plugin inside Airflow's own API server app (``airflow.api_fastapi.app.create_app``): found
through the ``airflow.plugins`` entry point, mounted at ``/feature-rollout``, every route behind
Airflow's authentication (401 without a token; the UI's ``_token`` cookie or a Bearer JWT works),
the registry taken from the Airflow connection, and the operators' extra links landing on a page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.airflow.conftest import connection_json
from tests.ui.conftest import history_at

ROUTES = ["/feature-rollout/", "/feature-rollout/workspaces/demo",
          "/feature-rollout/workspaces/demo/views/driver_stats",
          "/feature-rollout/workspaces/demo/plans", "/feature-rollout/dags/feature_rollout_manual",
          "/feature-rollout/api/workspaces", "/feature-rollout/api/workspaces/demo/views",
          "/feature-rollout/api/workspaces/demo/views/driver_stats", "/feature-rollout/api/dags/x",
          "/feature-rollout/api/openapi.json", "/feature-rollout/workspaces/demo/views/driver_stats/coverage.svg"]


@pytest.fixture(scope="module")
def served(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Airflow's API server app, with the default connection on a registry with real history."""
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    base = tmp_path_factory.mktemp("ui_plugin")
    history = history_at(base, f"sqlite:///{base / 'registry.db'}")
    patch = pytest.MonkeyPatch()
    patch.setenv("AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT", connection_json(
        history.repo, registry_url=f"sqlite:///{base / 'registry.db'}"))
    client = TestClient(create_app(apps="core"))
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    yield client, token, history
    patch.undo()


def test_the_entry_point_registers_the_plugin():
    from importlib.metadata import entry_points

    from airflow import plugins_manager

    [entry] = [e for e in entry_points(group="airflow.plugins") if e.name == "feature_rollout"]
    assert entry.value == "feature_rollout.plugins.feature_rollout:FeatureRolloutPlugin"
    info = {p["name"]: p for p in plugins_manager.get_plugin_info()}
    plugin = info["feature_rollout"]
    assert [a["url_prefix"] for a in plugin["fastapi_apps"]] == ["/feature-rollout"]
    views = {v["destination"]: v for v in plugin["external_views"]}
    assert views["nav"]["href"] == "/feature-rollout/" and views["nav"]["url_route"] == "feature-rollout"
    assert views["dag"]["href"] == "/feature-rollout/dags/{DAG_ID}"
    assert plugins_manager.get_import_errors() == {}


def test_every_route_needs_an_authenticated_user(served):
    client, _, _ = served
    for route in ROUTES:
        reply = client.get(route)
        assert reply.status_code == 401, route
        assert reply.json() == {"detail": "Not authenticated"}
    assert client.get(ROUTES[0], headers={"Authorization": "Bearer not-a-token"}).status_code in (401, 403)


def test_a_bearer_token_or_the_ui_cookie_is_enough(served):
    client, token, _ = served
    for route in ROUTES:
        assert client.get(route, headers={"Authorization": f"Bearer {token}"}).status_code == 200, route
    page = client.get("/feature-rollout/workspaces/demo/views/driver_stats", cookies={"_token": token})
    assert page.status_code == 200 and "Materialization coverage" in page.text
    # links into the Airflow UI are absolute from the API server's root, and open in the whole window
    assert 'target="_top" href="/dags/feature_rollout_manual/runs/' in page.text
    workspaces = client.get("/feature-rollout/api/workspaces", cookies={"_token": token}).json()
    assert [w["name"] for w in workspaces["workspaces"]] == ["demo"]


def test_the_operators_extra_link_lands_on_the_view_page(served):
    from feature_rollout.operators.feature_rollout import feature_view_path

    client, token, _ = served
    page = client.get(feature_view_path("demo", "driver_stats"), cookies={"_token": token})
    assert page.status_code == 200 and "<h1>driver_stats" in page.text


def test_the_plugin_is_listed_by_the_rest_api(served):
    client, token, _ = served
    plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {token}"}).json()["plugins"]
    [ours] = [p for p in plugins if p["name"] == "feature_rollout"]
    assert {v["name"] for v in ours["external_views"]} == {"Feature rollout"}


def test_a_missing_connection_is_explained(served, monkeypatch: pytest.MonkeyPatch):
    from feature_rollout.plugins import feature_rollout as plugin

    client, token, _ = served
    monkeypatch.delenv("AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT")
    monkeypatch.setattr(plugin, "SETTINGS_TTL_SECONDS", 0.0)
    reply = client.get("/feature-rollout/api/workspaces", cookies={"_token": token})
    assert reply.status_code == 503
    assert "connection 'feature_rollout_default' does not exist" in reply.json()["detail"]
    page = client.get("/feature-rollout/", cookies={"_token": token})
    assert page.status_code == 503 and "ui_conn_id" in page.text


def test_the_registry_can_come_from_the_repo_path(served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    from feature_rollout.plugins import feature_rollout as plugin

    client, token, history = served
    monkeypatch.setenv("AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT", connection_json(tmp_path / "missing-repo"))
    monkeypatch.setattr(plugin, "SETTINGS_TTL_SECONDS", 0.0)
    reply = client.get("/feature-rollout/api/workspaces", cookies={"_token": token})
    assert reply.status_code == 503 and "feature_store.yaml" in reply.json()["detail"]
    # The repo's feature_store.yaml names the registry data/registry.db: a copy of the history's.
    import shutil
    import sqlite3

    repo = tmp_path / "repo"
    shutil.copytree(history.repo, repo)
    with sqlite3.connect(history.store.registry.url.database) as source, \
            sqlite3.connect(repo / "data" / "registry.db") as target:
        source.backup(target)  # (a file copy would miss what is still in the WAL)
    monkeypatch.setenv("AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT", connection_json(repo))
    reply = client.get("/feature-rollout/api/workspaces/demo/views", cookies={"_token": token})
    assert reply.status_code == 200, reply.text
    assert [v["name"] for v in reply.json()["views"]] == ["driver_stats"]
