#!/usr/bin/env bash
# The roles and database that `after_start` in fabric/stack/postgres.py creates for the local
# stack, for the Postgres of docker-compose.yml. The image runs this once, on an empty data volume,
# against its socket-only setup server. It is a shell script rather than SQL because an init SQL
# file cannot read the environment, where the passwords come from; psql variables quote them.
# The image may source this file instead of running it, so it neither calls `exit` nor changes
# shell options.

psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v app_password="${FABRIC_PG_APP_PASSWORD:?FABRIC_PG_APP_PASSWORD is empty}" \
    -v cdc_password="${FABRIC_PG_CDC_PASSWORD:?FABRIC_PG_CDC_PASSWORD is empty}" <<'SQL'
CREATE ROLE fabric_app LOGIN PASSWORD :'app_password';
CREATE ROLE fabric_cdc LOGIN REPLICATION PASSWORD :'cdc_password';
CREATE DATABASE auction OWNER fabric_app ENCODING 'UTF8' TEMPLATE template0;
-- A filtered publication may only be created by the tables' owner: the CDC role inherits the
-- application role's ownership, and may create the publication.
GRANT fabric_app TO fabric_cdc;
GRANT CREATE, CONNECT ON DATABASE auction TO fabric_cdc;
SQL
