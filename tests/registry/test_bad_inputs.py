"""Every bad input of the control plane: the right error type, a message that says what to do, and a
registry left exactly as it was (a dump of every table before and after), on both backends."""

from __future__ import annotations

import textwrap

import pytest

from feature_rollout.core.errors import (
    DuplicateObjectError,
    EmptySchemaError,
    FeatureViewPinConflict,
    FeatureViewVersionNotFound,
    InvalidDefinitionError,
    InvalidNameError,
    InvalidReferenceError,
    InvalidVersionError,
    RepoConfigError,
    UnknownReferenceError,
)
from feature_rollout.store import FeatureStore
from tests.conftest import dump_registry

HEADER = """
from datetime import timedelta
from feature_rollout import Entity, FeatureService, FeatureView, Field, FileSource
from feature_rollout.types import Float32, Int64
driver = Entity(name="driver", join_keys=["driver_id"])
source = FileSource(name="driver_stats_source", path="data/driver_stats.parquet")
"""


def view(features: str = 'Field(name="conv_rate", dtype=Float32)', name: str = '"driver_stats"', **kwargs: str) -> str:
    extra = "".join(f", {k}={v}" for k, v in kwargs.items())
    return (f"driver_stats = FeatureView(name={name}, entities=[driver], source=source, "
            f'schema=[Field(name="driver_id", dtype=Int64), {features}]{extra})\n')


CASES = {
    "name with @": (view(name='"driver@stats"'), InvalidNameError, "reserved for references"),
    "name with :": ('e = Entity(name="a:b")\n', InvalidNameError, "reserved for references"),
    "name with a dash": ('e = Entity(name="bad-name")\n', InvalidNameError, r"pattern \^\[A-Za-z\]"),
    "name too long": (f'e = Entity(name="{"a" * 64}")\n', InvalidNameError, "at most 63 characters"),
    "field name": (view('Field(name="1st", dtype=Float32)'), InvalidNameError, "The field name '1st'"),
    "version v-1": (view(version='"v-1"'), InvalidVersionError, "'v-1' is not a valid version"),
    "version v": (view(version='"v"'), InvalidVersionError, "'v' is not a valid version"),
    "version 2": (view(version='"2"'), InvalidVersionError, "'2' is not a valid version"),
    "version 'latest '": (view(version='"latest "'), InvalidVersionError, "'latest ' is not a valid version"),
    "unknown type": (view('Field(name="x", dtype="Float128")'), InvalidDefinitionError, "'Float128' is not a feature"),
    "empty schema": ("v = FeatureView(name='v', entities=[driver], source=source, schema=[])\n", EmptySchemaError,
                     "has no features"),
    "only join keys": (
        "v = FeatureView(name='v', entities=['driver'], source=source, "
        "schema=[Field(name='driver_id', dtype=Int64)])\n", EmptySchemaError, "no features besides its join keys"),
    "unknown entity": ("v = FeatureView(name='v', entities=['rider'], source=source, "
                       "schema=[Field(name='x', dtype=Float32)])\n", UnknownReferenceError,
                       "uses entity 'rider', which is not defined"),
    "duplicate names": (view() + 'other = Entity(name="driver", join_keys=["other_id"])\n', DuplicateObjectError,
                        "Two different entity definitions are named 'driver'"),
    "bad reference": ('svc = FeatureService(name="svc", features=["driver_stats"])\n', InvalidReferenceError,
                      "is not a feature reference"),
    "pin to a far version": (view(version='"v3"'), FeatureViewVersionNotFound,
                             r"has no version v3; existing versions: v0. .*declare the next one \(v1\)"),
    "new view pinned to v2": (view(name='"fresh"', version='"v2"'), FeatureViewVersionNotFound,
                              "A new view starts at v0"),
    "syntax error": ("def broken(:\n", RepoConfigError, "SyntaxError"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_repo_changes_nothing(case, registry_url, tmp_path):
    body, error, message = CASES[case]
    store = FeatureStore(tmp_path, config={"project": "demo", "registry": registry_url})
    (tmp_path / "features.py").write_text(textwrap.dedent(HEADER) + view(), encoding="utf-8")
    store.apply()
    before = dump_registry(registry_url)
    (tmp_path / "features.py").write_text(textwrap.dedent(HEADER) + body, encoding="utf-8")
    with pytest.raises(error, match=message):
        store.plan()
    with pytest.raises(error, match=message):
        store.apply()
    assert dump_registry(registry_url) == before


def test_pin_conflict_from_a_repo_changes_nothing(registry_url, tmp_path):
    store = FeatureStore(tmp_path, config={"project": "demo", "registry": registry_url})
    path = tmp_path / "features.py"
    path.write_text(textwrap.dedent(HEADER) + view(), encoding="utf-8")
    store.apply()
    path.write_text(textwrap.dedent(HEADER) + view('Field(name="acc_rate", dtype=Float32)'), encoding="utf-8")
    store.apply()
    before = dump_registry(registry_url)
    path.write_text(textwrap.dedent(HEADER) + view('Field(name="city", dtype=Float32)', version='"v0"'))
    with pytest.raises(FeatureViewPinConflict, match="differs from both the active definition and the v0 snapshot"):
        store.apply()
    assert dump_registry(registry_url) == before
