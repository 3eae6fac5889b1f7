"""open_online_store: the store a config names, options read by name, no I/O and no driver import up front."""

from __future__ import annotations

import subprocess
import sys

import pytest

from feature_rollout.config import OnlineStoreConfig
from feature_rollout.core.errors import RepoConfigError
from feature_rollout.online import OnlineStore, open_online_store
from feature_rollout.online.base import masked_url
from feature_rollout.online.postgres import libpq_url


@pytest.mark.parametrize(("config", "kind"), [
    (OnlineStoreConfig("sqlite", "/tmp/never-opened/online.db"), "sqlite"),
    (OnlineStoreConfig("postgres", "postgresql+psycopg://u:p@127.0.0.1:1/db", {"connect_timeout": 3}), "postgres"),
    (OnlineStoreConfig("redis", "redis://127.0.0.1:1/0", {"key_prefix": "feast", "connect_timeout": 0.5}), "redis"),
])
def test_the_config_picks_the_store(config, kind):
    store = open_online_store(config)
    assert store.kind == kind
    assert isinstance(store, OnlineStore)
    store.close()


def test_a_sqlite_url_is_a_path(tmp_path):
    store = open_online_store(OnlineStoreConfig("sqlite", f"sqlite:///{tmp_path}/sub/online.db"))
    try:
        assert not store.table_exists("anything")
        assert (tmp_path / "sub" / "online.db").is_file()
    finally:
        store.close()


@pytest.mark.parametrize(("config", "message"), [
    (OnlineStoreConfig("dynamodb", "x"), "type 'dynamodb' is not supported; use one of sqlite, postgres, redis"),
    (OnlineStoreConfig("redis", "redis://127.0.0.1", {"key_prefx": "x"}), "key_prefx are not understood by the redis"),
    (OnlineStoreConfig("sqlite", "a.db", {"timeout": 3}), r"takes: none\)"),
    (OnlineStoreConfig("postgres", "postgresql://h/db", {"connect_timeout": "soon"}), "must be a number of seconds"),
    (OnlineStoreConfig("redis", "redis://127.0.0.1", {"connect_timeout": 0}), "must be positive"),
])
def test_bad_configs_say_what_to_change(config, message):
    with pytest.raises(RepoConfigError, match=message):
        open_online_store(config)


def test_importing_the_package_imports_no_driver():
    code = ("import sys, feature_rollout.online; "
            "print(sorted(m for m in ('psycopg', 'redis') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize(("url", "shown"), [
    ("postgresql+psycopg://feast:pw@db:5432/f?options=-csearch_path%3Dx",
     "postgresql+psycopg://feast:***@db:5432/f?options=-csearch_path%3Dx"),
    ("postgresql://feast@db/f", "postgresql://feast@db/f"),
    ("postgresql://db/f?user=feast&password=pw&sslmode=require",
     "postgresql://db/f?user=feast&password=***&sslmode=require"),
    ("redis://:p%40ss@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("rediss://default:p@ss@cache:6380", "rediss://default:***@cache:6380"),
    ("/var/lib/online.db", "/var/lib/online.db"),
    ("sqlite:////var/lib/registry.db", "sqlite:////var/lib/registry.db"),
])
def test_masked_url(url, shown):
    assert masked_url(url) == shown


@pytest.mark.parametrize(("url", "libpq"), [
    ("postgresql+psycopg://u@h:5432/db?options=-csearch_path%3Ds", "postgresql://u@h:5432/db?options=-csearch_path%3Ds"),
    ("postgresql+psycopg2://u@h/db", "postgresql://u@h/db"),
    ("postgres://u@h/db", "postgres://u@h/db"),
])
def test_libpq_url(url, libpq):
    assert libpq_url(url) == libpq
