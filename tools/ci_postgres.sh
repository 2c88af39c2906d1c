#!/usr/bin/env bash
# A PostgreSQL server on localhost for the SQL-input tests (tests/test_sql_inputs.py): installs
# Debian's postgresql package when missing, starts the cluster, creates the test role and database,
# and prints the connection URL on stdout (for KEYACCOUNTS_TEST_POSTGRES). Prints nothing and says
# why on stderr where it cannot; the PostgreSQL tests then skip with one line.
set -uo pipefail
ROLE=keyaccounts_test
PASSWORD=ka-test-secret   # a throwaway local test role: the tests check this never shows up in output
DB=keyaccounts_test
PORT=${KEYACCOUNTS_TEST_PG_PORT:-5432}

say() { echo "ci_postgres: $*" >&2; }
# Only the URL may reach stdout (the caller captures it whole): pg_ctlcluster and apt-get print notices on
# stdout ("Removed stale pid file.", the systemd warning), which once made the URL unparseable, so their
# stdout goes to stderr. (Not `exec 1>&2` with a saved descriptor: the server would inherit it and the
# caller's $(...) would wait for the server to exit.)

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "PostgreSQL is not installed and cannot be installed here (needs root and apt-get): PostgreSQL tests will be skipped"
    exit 0
  fi
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 || {
    say "apt-get install postgresql failed: PostgreSQL tests will be skipped"; exit 0; }
fi
VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
if command -v pg_lsclusters >/dev/null; then
  if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main"' | grep -q .; then
    pg_createcluster "$VERSION" main -p "$PORT" >/dev/null 2>&1 || { say "pg_createcluster failed: PostgreSQL tests will be skipped"; exit 0; }
  fi
  PORT=$(pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $3}')
  if ! pg_lsclusters -h | awk -v v="$VERSION" '$1 == v && $2 == "main" {print $4}' | grep -q online; then
    pg_ctlcluster "$VERSION" main start >&2 || { say "the PostgreSQL cluster did not start: PostgreSQL tests will be skipped"; exit 0; }
  fi
else
  say "pg_lsclusters missing (not Debian's postgresql-common): PostgreSQL tests will be skipped"; exit 0
fi
psql_admin() { su postgres -c "psql -p $PORT -v ON_ERROR_STOP=1 -qAtc \"$1\"" 2>&1; }
for _ in $(seq 30); do psql_admin "select 1" >/dev/null && break; sleep 1; done
if [ "$(psql_admin "select 1 from pg_roles where rolname = '$ROLE'")" != 1 ]; then
  psql_admin "create role $ROLE login password '$PASSWORD'" >/dev/null || { say "cannot create the test role"; exit 0; }
fi
if [ "$(psql_admin "select 1 from pg_database where datname = '$DB'")" != 1 ]; then
  psql_admin "create database $DB owner $ROLE" >/dev/null || { say "cannot create the test database"; exit 0; }
fi
echo "postgresql://$ROLE:$PASSWORD@127.0.0.1:$PORT/$DB"
