#!/usr/bin/env bash
# Debian packages the test suite uses: Chromium for the web-page tests, PostgreSQL for the
# platform's database tests. Best effort: tests that need them skip with a reason when absent.
set -uo pipefail
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    need=()
    [ -x /usr/bin/chromium ] || need+=(chromium chromium-driver)
    command -v pg_ctlcluster >/dev/null || need+=(postgresql)
    if [ ${#need[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
    fi
    if command -v pg_ctlcluster >/dev/null; then
        ver=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -1)
        if [ -n "$ver" ]; then
            pg_ctlcluster "$ver" main start 2>/dev/null || true
            su postgres -c "psql -qc \"DO \\\$\\\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='covseg') THEN CREATE ROLE covseg LOGIN PASSWORD 'covseg' CREATEDB; END IF; END\\\$\\\$;\"" 2>/dev/null || true
            su postgres -c "createdb -O covseg covseg_test" 2>/dev/null || true
            echo "COVSEG_TEST_POSTGRES_URL=postgresql+psycopg://covseg:covseg@localhost/covseg_test" > .ci/postgres.env
        fi
    fi
fi
exit 0
