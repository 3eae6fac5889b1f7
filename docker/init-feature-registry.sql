-- The feature registry's own role and database, next to Airflow's metadata database.
--
-- The postgres image runs this once, when its data volume is new (/docker-entrypoint-initdb.d), as
-- the superuser POSTGRES_USER. The password comes from the container's environment
-- (FEATURE_REGISTRY_DB_PASSWORD, set by docker-compose.yaml), so no secret is written here.
-- Changing the password later needs ALTER ROLE (or a new volume): this script does not run again.

\set ON_ERROR_STOP on
\getenv registry_password FEATURE_REGISTRY_DB_PASSWORD
\getenv airflow_db POSTGRES_DB

\if :{?registry_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'FEATURE_REGISTRY_DB_PASSWORD is not set in the postgres container'; END $$;
\endif

CREATE ROLE feature_rollout LOGIN PASSWORD :'registry_password';
-- The registry role owns its database (the registry's Alembic migrations create its tables) and
-- cannot connect to Airflow's.
CREATE DATABASE feature_registry OWNER feature_rollout;
REVOKE CONNECT, TEMPORARY ON DATABASE feature_registry FROM PUBLIC;
REVOKE CONNECT, TEMPORARY ON DATABASE :"airflow_db" FROM PUBLIC;
