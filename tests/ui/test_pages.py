"""Every page and JSON endpoint of the UI app on a registry with real history, on SQLite and
PostgreSQL: the values shown, links to Airflow, escaping of hostile strings, pagination, errors,
and that nothing a request does changes the registry."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from tests.conftest import dump_registry
from tests.ui.history import DAG, HOSTILE, RUN

pytestmark = pytest.mark.parametrize("module_registry_url", ["sqlite", "postgresql"], indirect=True, scope="module")

VIEW = "/workspaces/demo/views/driver_stats"


def pages(client: Any) -> dict[str, str]:
    plan_id = client.get("/api/workspaces/demo/plans").json()["plans"][0]["id"]
    return {path: client.get(path).text for path in (
        "/", "/workspaces/demo", VIEW, "/workspaces/demo/plans", f"/workspaces/demo/plans/{plan_id}",
        f"/dags/{DAG}", f"{VIEW}?versions_page=1&events_page=2&runs_page=1")}


def test_workspaces(client):
    [ws] = client.get("/api/workspaces").json()["workspaces"]
    assert (ws["name"], ws["live"], ws["feature_views"], ws["staged_versions"]) == ("demo", True, 1, 1)
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'href="/feature-rollout/workspaces/demo"' in page.text


def test_views_list(client):
    data = client.get("/api/workspaces/demo/views").json()
    [view] = data["views"]
    assert view["name"] == "driver_stats" and view["active_version"] == 0 and view["staged_versions"] == [2]
    assert view["versions"] == 3 and view["hold"] is None and view["prevent_destroy"] is False
    assert view["last_materialization"]["version"] == 2 and view["last_materialization"]["status"] == "succeeded"
    assert view["last_parity"]["passed"] is False and view["last_parity"]["candidate"] == "demo/driver_stats@v2"
    assert data["page"] == {"page": 1, "per_page": 50, "total": 1, "pages": 1}
    assert client.get("/api/workspaces/demo/views?q=nothing_like_it").json()["views"] == []
    text = client.get("/workspaces/demo").text
    assert ">v0</span>" in text and ">v2</span>" in text and ">failed</a>" in text


def test_view_versions_diffs_and_coverage(client):
    data = client.get(f"/api{VIEW}").json()
    versions = {v["version"]: v for v in data["versions"]}
    assert [v["version"] for v in data["versions"]] == ["v2", "v1", "v0"]
    assert {k: v["state"] for k, v in versions.items()} == {"v2": "staged", "v1": "retired", "v0": "active"}
    assert versions["v1"]["diff"] == ["+ feature avg_daily_trips: Int64"]
    assert versions["v2"]["diff"] == ["~ source path: 'data/driver_stats.parquet' -> 'data/driver_stats_v2.parquet'"]
    assert versions["v0"]["diff"] == [] and versions["v0"]["previous_version"] is None
    # v0: two covered intervals with the gap between them, the failed chunk inside the gap.
    assert versions["v0"]["covered"] == [
        {"start": "2026-01-06T00:00:00+00:00", "end": "2026-01-06T12:00:00+00:00"},
        {"start": "2026-01-07T00:00:00+00:00", "end": "2026-01-08T00:00:00+00:00"},
    ]
    assert [i["start"][:16] for i in versions["v0"]["failed"]] == ["2026-01-06T12:00"]
    assert [i["end"][:16] for i in versions["v1"]["covered"]] == ["2026-01-08T00:00"]
    assert versions["v1"]["last_parity"]["passed"] is True and versions["v2"]["last_parity"]["passed"] is False
    assert versions["v1"]["airflow"] == {"dag_id": DAG, "run_id": RUN, "task_id": "rollout.apply"}

    text = client.get(VIEW).text
    svg = re.search(r"<svg class=\"coverage\".*?</svg>", text, re.S)
    assert svg is not None
    bars = re.findall(r'<rect class="covered" x="([\d.]+)" y="(\d+)" width="([\d.]+)"', svg.group(0))
    # rows top to bottom: v2, v1 (one full bar each), v0 (two bars with a gap)
    assert [int(y) for _, y, _ in bars] == [4, 30, 56, 56]
    (x1, _, w1), (x2, _, _) = bars[2], bars[3]
    assert float(x1) + float(w1) < float(x2)  # the gap is visible
    assert len(re.findall(r'<rect class="failed"', svg.group(0))) == 1


def test_view_timeline_links_and_parity(client):
    data = client.get(f"/api{VIEW}").json()
    kinds = [(e["kind"], e["from_version"], e["to_version"]) for e in data["timeline"]]
    assert kinds == [("staged", None, 2), ("release", 1, None), ("hold", 1, None), ("rollback", 1, 0),
                     ("promote", 0, 1), ("staged", None, 1), ("promote", None, 0), ("created", None, 0)]
    rollback = data["timeline"][3]
    assert rollback["airflow"] == {"dag_id": "feature_rollout_rollback", "run_id": RUN, "task_id": "rollback"}
    assert rollback["actor"] == "airflow:feature_rollout_manual (alice)"
    [failed, passed] = data["parity_reports"]
    assert (failed["passed"], failed["mismatches"]["conv_rate"], failed["rows_compared"]) == (False, 40, 40)
    assert len(failed["examples"]) == 5 and failed["examples"][0]["column"] == "conv_rate"
    assert abs(failed["examples"][0]["candidate"] - failed["examples"][0]["baseline"] - 0.5) < 1e-3
    assert passed["passed"] is True and passed["mismatched_rows"] == 0
    statuses = sorted(r["status"] for r in data["runs"])
    assert statuses == ["failed", "succeeded", "succeeded", "succeeded", "succeeded"]

    text = client.get(VIEW).text
    run = RUN.replace(":", "%3A").replace("+", "%2B")
    assert f'href="/dags/feature_rollout_rollback/runs/{run}/tasks/rollback"' in text
    assert 'target="_top"' in text
    labels = re.findall(r'<li class="(\w+)"><span class="badge \w+">([^<]+)</span>', text)
    assert labels == [("staged", "staged"), ("release", "released"), ("hold", "held"), ("rollback", "rolled back"),
                      ("promote", "promoted"), ("staged", "staged"), ("promote", "promoted"), ("created", "created")]
    assert 'id="parity-' in text and "Worst mismatches" in text and "conv_rate" in text
    assert "~ source path: &#39;data/driver_stats.parquet&#39;" in text


def test_plans(client):
    data = client.get("/api/workspaces/demo/plans").json()
    assert data["page"]["total"] == 3 and all(p["applied_at"] for p in data["plans"])
    newest = data["plans"][0]
    assert newest["no_promote"] is True and newest["summary"] == {"new_version": 1, "recreate": 1, "unchanged": 2}
    assert newest["airflow"]["task_id"] == "rollout.apply"
    detail = client.get(f"/api/workspaces/demo/plans/{newest['id']}").json()
    assert detail["json"]["id"] == newest["id"] and detail["json"]["format_version"] == 1
    assert "new version v2 (staged) of feature view driver_stats" in detail["rendered"]
    page = client.get(f"/workspaces/demo/plans/{newest['id']}").text
    assert "new version v2 (staged)" in page and "&#34;format_version&#34;: 1" in page


def test_dag_page(client):
    data = client.get(f"/api/dags/{DAG}").json()["activity"]
    assert {m["kind"] for m in data["pointer_moves"]} == {"promote"}
    assert len(data["plans"]) == 3 and len(data["parity_reports"]) == 2 and len(data["materializations"]) == 5
    other = client.get("/api/dags/feature_rollout_rollback").json()["activity"]
    assert [m["kind"] for m in other["pointer_moves"]] == ["hold", "rollback"]
    # '_' is a LIKE wildcard: a DAG id that matches only as a pattern finds nothing
    assert client.get("/api/dags/feature%rollout_manual").json()["activity"]["plans"] == []
    assert client.get("/api/dags/feature_rollout_manuaX").json()["activity"]["plans"] == []
    assert "What feature_rollout_manual did" in client.get(f"/dags/{DAG}").text


def test_hostile_strings_are_escaped_everywhere(client):
    for path, text in pages(client).items():
        assert HOSTILE not in text, path
        assert "<b>rides</b>" not in text, path
    view = client.get(VIEW).text
    escaped = html.escape(HOSTILE)
    assert view.count(escaped) >= 4  # description, tag, field description, rollback/hold reasons, run error
    assert "&lt;b&gt;rides&lt;/b&gt;" in view


def test_not_found_and_bad_input(client):
    assert client.get("/workspaces/nope").status_code == 404
    assert client.get("/api/workspaces/nope/views").json() == {"detail": "Workspace 'nope' does not exist in the "
                                                                          "registry."}
    assert client.get("/workspaces/demo/views/nope").status_code == 404
    assert client.get("/api/workspaces/demo/plans/0123456789abcdef").status_code == 404
    assert client.get("/api/workspaces/demo/views?page=0").status_code == 422
    page = client.get("/workspaces/%3Cscript%3E").text
    assert "<script>" not in page.split("</script>", 1)[1]  # only the theme script itself


def test_requests_change_nothing(client, history):
    url = history.store.registry.url.render_as_string(hide_password=False)
    before = dump_registry(url)
    pages(client)
    for path in ("/api/workspaces", "/api/workspaces/demo/views", f"/api{VIEW}", "/api/workspaces/demo/plans",
                 f"/api/dags/{DAG}", f"{VIEW}/coverage.svg"):
        assert client.get(path).status_code == 200, path
    assert dump_registry(url) == before
    methods = {m for route in client.app.routes for m in getattr(route, "methods", ())}
    assert methods <= {"GET", "HEAD"}


def test_json_endpoints_are_documented(client):
    schema = client.get("/api/openapi.json").json()
    assert set(schema["paths"]) == {
        "/api/workspaces", "/api/workspaces/{workspace}/views", "/api/workspaces/{workspace}/views/{view}",
        "/api/workspaces/{workspace}/plans", "/api/workspaces/{workspace}/plans/{plan_id}", "/api/dags/{dag_id}"}
