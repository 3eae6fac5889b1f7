"""docker/: the image and the compose deployment agree with the repository and with how the provider reads
its connection.

- the compose file: the services, a healthcheck on every long-running one, start order, one image built
  from docker/Dockerfile, the example DAGs mounted read-only, psycopg 3 metadata URLs, one JWT secret and
  Execution API URL, and a ``feature_rollout_default`` connection that the provider's own code turns into
  the registry database created by docker/init-feature-registry.sql and the Redis online store;
- the Dockerfile: an Airflow 3.3 base image, COPY sources that exist in the build context (and are not
  excluded by its .dockerignore), and everything the provider's wheel build reads;
- ``docker compose config`` resolves the file, when a Compose implementation is installed (it reads only
  files: no Docker engine, no image pull, no network).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Mapping
from fnmatch import fnmatch
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "docker-compose.yaml"
DOCKERFILE = DOCKER / "Dockerfile"
ENV_EXAMPLE = DOCKER / ".env.example"
INIT_SQL = DOCKER / "init-feature-registry.sql"

AIRFLOW_SERVICES = ("airflow-init", "api-server", "scheduler", "dag-processor", "triggerer")
LONG_RUNNING = ("postgres", "redis", "api-server", "scheduler", "dag-processor", "triggerer")
JOB_CHECKS = {"scheduler": "SchedulerJob", "dag-processor": "DagProcessorJob", "triggerer": "TriggererJob"}
CONN_VAR = "AIRFLOW_CONN_FEATURE_ROLLOUT_DEFAULT"
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


# --- helpers ---------------------------------------------------------------------------------------


def interpolate(value: Any, env: Mapping[str, str] | None = None) -> Any:
    """Compose's interpolation of ``${VAR}``, ``${VAR:-default}`` and ``$$``, over nested values."""
    env = env or {}
    if isinstance(value, str):
        return _VARIABLE.sub(lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1)) or m.group(2) or "",
                             value)
    if isinstance(value, Mapping):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    return value


@cache
def compose_file() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@cache
def compose() -> dict[str, Any]:
    """The compose file with YAML merge keys applied (by the loader) and every variable at its default."""
    return interpolate(compose_file())


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def env_of(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in service(name).get("environment", {}).items()}


def volume_mounts(name: str) -> list[tuple[str, str, str]]:
    """``(source, target, mode)`` of a service's short-form volumes."""
    mounts = []
    for spec in service(name).get("volumes", []):
        source, target, *mode = spec.split(":")
        mounts.append((source, target, mode[0] if mode else "rw"))
    return mounts


def init_script() -> str:
    entrypoint, command = service("airflow-init")["entrypoint"], service("airflow-init")["command"]
    assert entrypoint in ("/bin/bash", ["/bin/bash"]) and command[0] == "-c", "airflow-init runs one bash script"
    return str(command[1])


def feature_rollout_commands(script: str) -> list[list[str]]:
    return [shlex.split(line.strip())[1:] for line in script.splitlines()
            if line.strip().startswith("feature-rollout ")]


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` in order, with continuation lines joined and comments dropped."""
    instructions, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        current = ""
    return instructions


def copy_sources(arguments: str) -> list[str]:
    if arguments.startswith("["):
        parts = json.loads(arguments)
    else:
        parts = [p for p in shlex.split(arguments) if not p.startswith("--")]
    return parts[:-1]


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Whether the .dockerignore ``patterns`` exclude ``path`` (last match wins; a directory pattern covers
    everything under it), as Docker evaluates them."""
    excluded = False
    parts = PurePosixPath(path.rstrip("/")).parts
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        for depth in range(1, len(parts) + 1):
            prefix = "/".join(parts[:depth])
            if fnmatch(prefix, pattern) or (pattern.startswith("**/") and fnmatch(parts[depth - 1], pattern[3:])):
                excluded = not negate
                break
    return excluded


def build_context() -> Path:
    build = service("api-server")["build"]
    return (COMPOSE_FILE.parent / build["context"]).resolve()


# --- the compose file ------------------------------------------------------------------------------


def test_the_expected_services_are_defined():
    assert set(compose()["services"]) == {"postgres", "redis", *AIRFLOW_SERVICES}
    assert {"postgres-data", "redis-data", "feature-repo", "airflow-logs"} <= set(compose()["volumes"])


def test_every_long_running_service_has_a_healthcheck():
    from airflow.cli.cli_parser import get_parser

    parser = get_parser()
    for name in LONG_RUNNING:
        check = service(name).get("healthcheck")
        assert check and not check.get("disable") and check["test"][0] in ("CMD", "CMD-SHELL"), name
        assert service(name).get("restart") == "unless-stopped", name
    assert "pg_isready" in service("postgres")["healthcheck"]["test"][1]
    assert "redis-cli ping" in service("redis")["healthcheck"]["test"][1]
    assert service("api-server")["healthcheck"]["test"][-1] == "http://localhost:8080/api/v2/monitor/health"
    for name, job_type in JOB_CHECKS.items():
        test = service(name)["healthcheck"]["test"]
        assert test[:2] == ["CMD", "airflow"], name
        args = parser.parse_args(test[2:])  # the installed Airflow's own CLI accepts it
        assert (args.subcommand, args.job_type, args.local) == ("check", job_type, True), name
    assert "healthcheck" not in service("airflow-init") and service("airflow-init")["restart"] == "no"


def test_redis_healthcheck_authenticates_with_the_server_password():
    redis = service("redis")
    assert redis["command"][:2] == ["redis-server", "--requirepass"]
    assert env_of("redis")["REDISCLI_AUTH"] == redis["command"][2]


def test_services_start_in_order():
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        depends = service(name)["depends_on"]
        assert depends["postgres"] == {"condition": "service_healthy"}, name
        assert depends["airflow-init"] == {"condition": "service_completed_successfully"}, name
        assert all("condition" in d for d in depends.values()), name
    for name in ("scheduler", "triggerer"):  # tasks and triggers call the api-server's Execution API
        assert service(name)["depends_on"]["api-server"] == {"condition": "service_healthy"}
        assert service(name)["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert service("airflow-init")["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_airflow_services_run_the_image_built_from_docker_dockerfile():
    from airflow.cli.cli_parser import get_parser

    images = {service(name)["image"] for name in AIRFLOW_SERVICES}
    assert len(images) == 1
    for name in AIRFLOW_SERVICES:
        build = service(name)["build"]
        assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT, name
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE, name
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        command = service(name)["command"]
        assert command == name
        get_parser().parse_args([command])
    assert "127.0.0.1:8080:8080" in service("api-server")["ports"]


def test_the_example_dags_are_mounted_read_only():
    for name in AIRFLOW_SERVICES:
        [dags] = [(s, t, m) for s, t, m in volume_mounts(name) if t == env_of(name)["AIRFLOW__CORE__DAGS_FOLDER"]]
        source, _, mode = dags
        assert (COMPOSE_FILE.parent / source).resolve() == ROOT / "dags", name
        assert mode == "ro", name
    assert list((ROOT / "dags").glob("feature_rollout_*.py"))


def test_every_airflow_service_shares_the_metadata_urls_jwt_secret_and_execution_api():
    shared = ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC",
              "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__EXECUTION_API_SERVER_URL",
              "AIRFLOW__CORE__EXECUTOR", "AIRFLOW__CORE__FERNET_KEY", CONN_VAR, "FEATURE_ROLLOUT_REGISTRY_URL",
              "FEATURE_ROLLOUT_ONLINE_STORE_URL")
    reference = env_of("scheduler")
    for name in AIRFLOW_SERVICES:
        env = env_of(name)
        assert {k: env.get(k) for k in shared} == {k: reference[k] for k in shared}, name
    sync = make_url(reference["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    async_ = make_url(reference["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"])
    assert sync.drivername == async_.drivername == "postgresql+psycopg"  # psycopg 3, also for the async engine
    assert sync == async_
    postgres = env_of("postgres")
    assert (sync.host, sync.username, sync.password, sync.database) == (
        "postgres", postgres["POSTGRES_USER"], postgres["POSTGRES_PASSWORD"], postgres["POSTGRES_DB"])
    assert reference["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert reference["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://api-server:8080/execution/"
    assert len(reference["AIRFLOW__API_AUTH__JWT_SECRET"]) >= 32
    assert reference["AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"] == "True"


def test_the_connection_gives_the_registry_database_and_the_redis_online_store():
    """The provider's own code reads the connection: the registry is the database and role the init SQL
    creates, with the postgres service's password; the online store is the Redis service."""
    from airflow.sdk import Connection

    from feature_rollout.config import POOL_SETTINGS, load_config
    from feature_rollout.hooks.feature_registry import StoreSettings

    spec = json.loads(env_of("scheduler")[CONN_VAR])
    assert spec["conn_type"] == "feature_rollout"
    conn = Connection(conn_id="feature_rollout_default", conn_type=spec["conn_type"], extra=json.dumps(spec["extra"]))
    settings = StoreSettings.from_connection(conn)

    sql = INIT_SQL.read_text(encoding="utf-8")
    [role] = re.findall(r"CREATE ROLE (\w+) LOGIN", sql)
    [database] = re.findall(r"CREATE DATABASE (\w+) OWNER (\w+)", sql)
    registry = make_url(settings.registry_url)
    assert registry.drivername == "postgresql+psycopg"
    assert (registry.host, registry.port, registry.username, registry.database) == ("postgres", 5432, role,
                                                                                    database[0])
    assert database[1] == role
    assert registry.password == env_of("postgres")["FEATURE_REGISTRY_DB_PASSWORD"]
    assert registry.database != env_of("postgres")["POSTGRES_DB"]  # its own database, not Airflow's

    # What the hook does with the extra: it overrides the repo's online store.
    online = load_config(settings.repo_path, config={"project": "demo"}).with_overrides(
        online_store_url=settings.online_store_url).online_store
    redis_url = urlsplit(settings.online_store_url)
    assert online.type == "redis"
    assert (redis_url.hostname, redis_url.port, redis_url.password) == ("redis", 6379, service("redis")["command"][2])

    assert set(settings.registry_pool) == set(POOL_SETTINGS)
    assert settings.workspace == "demo"
    repo_mounts = {t for s, t, _ in volume_mounts("scheduler") if s == "feature-repo"}
    assert settings.repo_path in repo_mounts
    for name in ("triggerer", "api-server"):  # triggers and the UI open the same repo
        assert settings.repo_path in {t for s, t, _ in volume_mounts(name) if s == "feature-repo"}


def test_the_init_service_migrates_creates_the_demo_repo_once_and_upgrades_the_registry():
    from airflow.sdk import Connection

    from feature_rollout.cli import build_parser
    from feature_rollout.hooks.feature_registry import StoreSettings

    script = init_script()
    assert "airflow db migrate" in script and script.startswith("set -euo pipefail")
    spec = json.loads(env_of("airflow-init")[CONN_VAR])
    init, upgrade = feature_rollout_commands(script)
    init_args = build_parser().parse_args(init)
    assert init_args.handler.__name__ == "cmd_init"
    assert init_args.directory == spec["extra"]["repo_path"] and init_args.project == spec["extra"]["workspace"]
    assert {t for s, t, _ in volume_mounts("airflow-init") if s == "feature-repo"} == {init_args.directory}
    # Only when the repo is not there yet: the guard tests the last file `feature-rollout init` writes.
    [guarded] = re.findall(r"if \[ ! -f (\S+) \]; then\s+feature-rollout init", script)
    assert guarded == f"{init_args.directory}/data/driver_stats.parquet"

    upgrade_args = build_parser().parse_args(upgrade)
    assert upgrade_args.handler.__name__ == "cmd_registry_upgrade"
    assert upgrade_args.registry_url == "${FEATURE_ROLLOUT_REGISTRY_URL}"  # expanded by bash in the container
    conn = Connection(conn_id="feature_rollout_default", conn_type="feature_rollout", extra=json.dumps(spec["extra"]))
    assert env_of("airflow-init")["FEATURE_ROLLOUT_REGISTRY_URL"] == StoreSettings.from_connection(conn).registry_url


def test_the_demo_repo_config_reads_the_same_stores_as_the_connection(tmp_path, monkeypatch):
    """The feature_store.yaml that airflow-init writes (for `feature-rollout` commands in a container) names,
    through ${ENV} references, the registry and online store of the connection."""
    from airflow.sdk import Connection

    from feature_rollout.config import load_config
    from feature_rollout.hooks.feature_registry import StoreSettings

    [(path, text)] = re.findall(r"cat > (\S+) <<'YAML'\n(.*?)\nYAML\n", init_script(), flags=re.DOTALL)
    spec = json.loads(env_of("scheduler")[CONN_VAR])
    assert path == f"{spec['extra']['repo_path']}/feature_store.yaml"
    (tmp_path / "feature_store.yaml").write_text(text, encoding="utf-8")
    for name in AIRFLOW_SERVICES:
        env = env_of(name)
        for variable in ("FEATURE_ROLLOUT_REGISTRY_URL", "FEATURE_ROLLOUT_ONLINE_STORE_URL"):
            monkeypatch.setenv(variable, env[variable])
        config = load_config(tmp_path)
        conn = Connection(conn_id="feature_rollout_default", conn_type="feature_rollout",
                          extra=json.dumps(json.loads(env[CONN_VAR])["extra"]))
        settings = StoreSettings.from_connection(conn)
        assert config.project == settings.workspace
        assert config.registry_url == settings.registry_url
        assert (config.online_store.type, config.online_store.url) == ("redis", settings.online_store_url)


def test_the_registry_database_is_created_by_the_init_sql():
    assert ("./init-feature-registry.sql", "/docker-entrypoint-initdb.d/10-init-feature-registry.sql", "ro") in \
        volume_mounts("postgres")
    sql = INIT_SQL.read_text(encoding="utf-8")
    assert r"\getenv registry_password FEATURE_REGISTRY_DB_PASSWORD" in sql  # no secret in the file
    assert "PASSWORD :'registry_password'" in sql


def test_env_example_names_every_variable_the_compose_file_reads():
    # $${VAR} is left to the container's shell (or feature_store.yaml): not Compose's to fill in.
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", COMPOSE_FILE.read_text(encoding="utf-8")))
    example = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
               if line and not line.startswith("#")}
    assert used == example


# --- the Dockerfile --------------------------------------------------------------------------------


def test_the_base_image_is_airflow_3_3():
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    first_from = next(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    args = {}
    for _, spec in instructions[:first_from]:
        name, _, default = spec.partition("=")
        args[name] = default
    image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], instructions[first_from][1])
    assert re.fullmatch(r"apache/airflow:3\.3\.\d+-python3\.1[1-3]", image), image
    assert sum(keyword == "FROM" for keyword, _ in instructions) == 1


def test_the_provider_is_installed_by_the_airflow_user_with_airflow_pinned():
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    users = [spec for keyword, spec in instructions if keyword == "USER"]
    assert users == ["airflow"]
    [pip] = [spec for keyword, spec in instructions if keyword == "RUN" and "pip install" in spec]
    assert instructions.index(("USER", "airflow")) < instructions.index(("RUN", pip))
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in pip
    assert re.search(r'"/opt/feature-rollout\[postgres,redis\]"', pip)
    assert ("ARG", "AIRFLOW_VERSION") in instructions  # re-declared after FROM, so that the pin sees it


def test_copy_sources_exist_in_the_build_context_and_cover_the_wheel_build():
    context = build_context()
    assert context == ROOT
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    sources = [s for keyword, spec in instructions if keyword in ("COPY", "ADD") for s in copy_sources(spec)]
    assert sources
    for source in sources:
        assert not source.startswith(("http://", "https://", "/", "..")), source
        assert (context / source).exists(), f"COPY source {source} is not in the build context {context}"
    # What hatchling reads to build the wheel is copied.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", project["project"]["readme"], *project["project"]["license-files"],
              *project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]}
    copied = {s.rstrip("/") for s in sources}
    for path in needed:
        assert any(path == c or path.startswith(c + "/") for c in copied), f"{path} is not copied into the image"
    # ... and not excluded from the context by the Dockerfile's own .dockerignore.
    ignore = [line.strip() for line in (DOCKER / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
              if line.strip() and not line.startswith("#")]
    for source in sources:
        assert not dockerignore_excludes(source, ignore), f"{source} is excluded by Dockerfile.dockerignore"
    for heavy in (".venv", "build", "tests", "dags"):
        assert dockerignore_excludes(heavy, ignore), heavy


def test_dockerignore_evaluation():
    patterns = ["*", "!pyproject.toml", "!provider/", "**/__pycache__"]
    assert not dockerignore_excludes("provider/", patterns)
    assert not dockerignore_excludes("provider/feature_rollout/store.py", patterns)
    assert dockerignore_excludes("provider/feature_rollout/__pycache__", patterns)
    assert dockerignore_excludes(".venv", patterns)
    assert not dockerignore_excludes("pyproject.toml", patterns)


# --- docker compose config ---------------------------------------------------------------------------


def compose_command() -> list[str] | None:
    """``docker compose`` (the CLI plugin), else a standalone ``docker-compose`` of version 2 or later."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30).returncode == 0:
        return [docker, "compose"]
    standalone = shutil.which("docker-compose")
    if standalone:
        version = subprocess.run([standalone, "version", "--short"], capture_output=True, text=True, timeout=30)
        if version.returncode == 0 and re.match(r"v?([2-9]|\d\d)\.", version.stdout.strip()):
            return [standalone]
    return None


def run_compose_config(env_file: Path) -> dict[str, Any]:
    command = compose_command()
    if command is None:
        pytest.skip("no Docker Compose here: neither the `docker compose` plugin nor a docker-compose v2+")
    # Only what finding the plugin needs: no COMPOSE_* or password variable of the caller leaks in.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_CONFIG")}
    result = subprocess.run([*command, "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config",
                             "--format", "json"], capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_docker_compose_config_resolves_the_file(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("", encoding="utf-8")
    resolved = run_compose_config(empty)
    assert set(resolved["services"]) == {"postgres", "redis", *AIRFLOW_SERVICES}
    for name in AIRFLOW_SERVICES:
        svc = resolved["services"][name]
        assert Path(svc["build"]["context"]) == ROOT and svc["build"]["dockerfile"] == "docker/Dockerfile"
        [dags] = [v for v in svc["volumes"] if v["target"] == "/opt/airflow/dags"]
        assert (dags["type"], Path(dags["source"]), dags.get("read_only")) == ("bind", ROOT / "dags", True)
        # Compose's own interpolation gives what the checks above computed from the defaults.
        assert {k: str(v) for k, v in svc["environment"].items()} == env_of(name), name
    for name in LONG_RUNNING:
        assert resolved["services"][name]["healthcheck"]["test"] == service(name)["healthcheck"]["test"]


def test_docker_compose_config_takes_the_secrets_from_the_env_file():
    resolved = run_compose_config(ENV_EXAMPLE)
    example = dict(line.split("=", 1) for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
                   if line and not line.startswith("#"))
    env = resolved["services"]["scheduler"]["environment"]
    assert make_url(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"]).password == example["AIRFLOW_DB_PASSWORD"]
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == example["AIRFLOW_JWT_SECRET"]
    extra = json.loads(env[CONN_VAR])["extra"]
    assert make_url(extra["registry_url"]).password == example["FEATURE_REGISTRY_DB_PASSWORD"]
    assert urlsplit(extra["online_store_url"]).password == example["REDIS_PASSWORD"]
    assert resolved["services"]["postgres"]["environment"]["FEATURE_REGISTRY_DB_PASSWORD"] == \
        example["FEATURE_REGISTRY_DB_PASSWORD"]
    assert resolved["services"]["redis"]["command"][2] == example["REDIS_PASSWORD"]
