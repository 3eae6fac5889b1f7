"""DESIGN §9: online reads mixing versions, historical reads honouring @vN, through the public API."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pytest

from feature_rollout.core.errors import EntityKeyError, InvalidReferenceError, UnknownReferenceError
from tests.conftest import DEMO_END, add_feature

START = DEMO_END - timedelta(days=3)


@pytest.mark.parametrize("online_config", ["sqlite", "postgres", "redis"], indirect=True)
def test_online_reads_mix_versions_and_unknown_keys_are_null(demo_store, demo_repo):
    add_feature(demo_repo)
    demo_store.apply(no_promote=True)
    demo_store.materialize(START, DEMO_END)
    demo_store.materialize(START, DEMO_END, ["driver_stats"], version="v1")
    response = demo_store.get_online_features(
        ["driver_stats:conv_rate", "driver_stats@v1:conv_rate", "driver_stats@v1:avg_daily_trips"],
        [{"driver_id": 1001}, {"driver_id": 999999}], full_feature_names=True)
    data = response.to_dict()
    assert list(data) == ["driver_id", "driver_stats__conv_rate", "driver_stats@v1__conv_rate",
                          "driver_stats@v1__avg_daily_trips"]
    assert data["driver_id"] == [1001, 999999]
    assert data["driver_stats__conv_rate"][0] == pytest.approx(data["driver_stats@v1__conv_rate"][0])
    assert data["driver_stats__conv_rate"][1] is None and data["driver_stats@v1__avg_daily_trips"][1] is None
    assert isinstance(data["driver_stats@v1__avg_daily_trips"][0], int)
    assert list(response.to_df().columns) == list(data)


def test_online_reads_through_a_feature_service(demo_store):
    demo_store.materialize(START, DEMO_END)
    from feature_rollout.core.definitions import FeatureService

    service = demo_store.get_feature_service("driver_activity")
    assert isinstance(service, FeatureService)
    data = demo_store.get_online_features(service, [{"driver_id": 1002}]).to_dict()
    assert list(data) == ["driver_id", "conv_rate", "trips_today"]


def test_online_read_errors(demo_store):
    with pytest.raises(InvalidReferenceError, match="full_feature_names=True"):
        demo_store.get_online_features(["driver_stats:conv_rate", "driver_stats@v0:conv_rate"], [{"driver_id": 1}])
    with pytest.raises(EntityKeyError, match="have no driver_id"):
        demo_store.get_online_features(["driver_stats:conv_rate"], [{"rider": 1}])
    with pytest.raises(UnknownReferenceError, match="has no feature 'nope'"):
        demo_store.get_online_features(["driver_stats:nope"], [{"driver_id": 1}])
    with pytest.raises(EntityKeyError, match="are not Int64"):
        demo_store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": "x"}])


def test_historical_reads_honour_versions(demo_store, demo_repo):
    add_feature(demo_repo)
    demo_store.apply(no_promote=True)
    at = DEMO_END - timedelta(hours=2, minutes=30)
    spine = pd.DataFrame({"driver_id": [1003, 1001, 424242], "event_timestamp": [at, at, at]})
    job = demo_store.get_historical_features(spine, ["driver_stats:conv_rate", "driver_stats@v1:avg_daily_trips"])
    frame = job.to_df()
    assert list(frame.columns) == ["driver_id", "event_timestamp", "conv_rate", "avg_daily_trips"]
    assert list(frame["driver_id"]) == [1003, 1001, 424242]  # spine order, one row per spine row
    assert frame["conv_rate"].isna().tolist() == [False, False, True]
    assert job.to_arrow().num_rows == 3
    with pytest.raises(UnknownReferenceError):
        demo_store.get_historical_features(spine, ["driver_stats:avg_daily_trips"])  # v0 does not have it


def test_at_latest_reads_the_active_version(demo_store):
    demo_store.materialize(START, DEMO_END)
    latest = demo_store.get_online_features(["driver_stats@latest:conv_rate"], [{"driver_id": 1004}]).to_dict()
    active = demo_store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": 1004}]).to_dict()
    assert latest == active and latest["conv_rate"][0] is not None


def test_online_reads_cost_one_registry_query_until_something_changes(demo_store, demo_repo):
    import sqlalchemy as sa

    demo_store.materialize(START, DEMO_END)
    demo_store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": 1001}])
    statements: list[str] = []
    sa.event.listen(demo_store.registry.engine, "before_cursor_execute",
                    lambda conn, cursor, statement, *args: statements.append(statement))
    for _ in range(5):
        demo_store.get_online_features(["driver_stats:conv_rate"], [{"driver_id": 1001}])
    queries = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(queries) == 5  # the workspace revision, once per read
    add_feature(demo_repo)
    demo_store.apply()  # v1 promoted: the next read must see it at once
    data = demo_store.get_online_features(["driver_stats:avg_daily_trips"], [{"driver_id": 1001}]).to_dict()
    assert data == {"driver_id": [1001], "avg_daily_trips": [None]}  # v1 exists, not materialized yet
