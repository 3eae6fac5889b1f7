"""feature_store.yaml: Feast's keys, ${ENV} expansion, defaults, and errors that say what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from feature_rollout.config import OnlineStoreConfig, load_config
from feature_rollout.core.errors import InvalidNameError, RepoConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "feature_store.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_defaults(tmp_path):
    config = load_config(write(tmp_path, "project: demo\n"))
    assert config.project == "demo"
    assert config.registry_url == f"sqlite:///{tmp_path.resolve() / 'data/registry.db'}"
    assert config.online_store == OnlineStoreConfig("sqlite", str(tmp_path.resolve() / "data/online.db"))
    assert config.offline_store == "file"


def test_feast_forms_and_env_expansion(tmp_path, monkeypatch):
    monkeypatch.setenv("PGHOST_FOR_TEST", "127.0.0.1")
    config = load_config(write(tmp_path, """
project: prod
registry:
  registry_type: sql
  path: postgresql+psycopg://postgres@${PGHOST_FOR_TEST}:5432/test
online_store:
  type: redis
  connection_string: "127.0.0.1:6379"
offline_store:
  type: file
"""))
    assert config.registry_url == "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    assert config.online_store == OnlineStoreConfig("redis", "redis://127.0.0.1:6379")


def test_relative_sqlite_urls_are_relative_to_the_repo(tmp_path):
    config = load_config(write(tmp_path, "project: demo\nregistry: sqlite:///state/reg.db\n"
                                        "online_store:\n  type: postgres\n  url: postgresql://u@127.0.0.1/db\n"))
    assert config.registry_url == f"sqlite:///{tmp_path.resolve() / 'state/reg.db'}"
    assert config.online_store.type == "postgres"


def test_overrides_for_the_airflow_connection(tmp_path):
    config = load_config(write(tmp_path, "project: demo\n")).with_overrides(
        registry_url="postgresql://u@127.0.0.1/r", online_store_url="redis://127.0.0.1:6379/2", project="staging")
    assert (config.registry_url, config.online_store.type, config.project) == (
        "postgresql://u@127.0.0.1/r", "redis", "staging")


def test_a_config_mapping_instead_of_the_file(tmp_path):
    config = load_config(tmp_path, {"project": "demo", "registry": "reg.db"})
    assert config.registry_url.endswith("/reg.db")


@pytest.mark.parametrize(("text", "error", "message"), [
    ("registry: x.db\n", RepoConfigError, "needs 'project: <name>'"),
    ("project: [unclosed\n", RepoConfigError, "is not valid YAML"),
    ("- a\n- b\n", RepoConfigError, "must be a mapping"),
    ("project: bad-name\n", InvalidNameError, "'bad-name' is not allowed"),
    ("project: demo\nregistry: ${NOT_SET_ANYWHERE_42}\n", RepoConfigError, "NOT_SET_ANYWHERE_42 is not set"),
    ("project: demo\nonline_store:\n  type: dynamodb\n", RepoConfigError, "'dynamodb' .* not supported"),
    ("project: demo\nonline_store:\n  type: postgres\n", RepoConfigError, "needs 'url'"),
    ("project: demo\noffline_store: spark\n", RepoConfigError, "must be 'file'"),
    ("project: demo\nregistry: [1, 2]\n", RepoConfigError, "must be a path or URL"),
])
def test_bad_configs(tmp_path, text, error, message):
    with pytest.raises(error, match=message):
        load_config(write(tmp_path, text))


def test_missing_file_says_how_to_make_one(tmp_path):
    with pytest.raises(RepoConfigError, match=r"No feature_store.yaml in .* Run `feature-rollout init"):
        load_config(tmp_path / "nowhere")
