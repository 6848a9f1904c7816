#!/usr/bin/env bash
# Installs the system packages Portico needs, only when missing (Debian/Ubuntu, apt-get).
#   run   unixODBC and the SQLite ODBC driver, sqlite3 to build the demo database, libsqlite3
#         for Portico's own state store,
#         OpenSSL headers and pkg-config for the TLS of JWKS fetches
#   test  + PostgreSQL and MariaDB servers and their ODBC drivers, mdbtools and its ODBC driver
#         (an Access file served through a weak driver), PyJWT (tokens from an
#         independent implementation), Chromium, tinyproxy (a real HTTP proxy), and .venv with
#         openapi-spec-validator and openapi-python-client from PyPI, and standardwebhooks (an
#         independent webhook verifier); Node.js and tests/idp's oidc-provider from npm (a real
#         OpenID Connect provider), tests/lint's OpenAPI linters from npm (@redocly/cli,
#         @stoplight/spectral-cli), and tests/browser's playwright-core (drives the Chromium
#         above; it downloads no browser of its own)
#   bench + wrk and curl, PostgreSQL (pgbench) and MariaDB servers and clients with their ODBC
#         drivers, and libmariadb's headers and gcc for bench/own_client.c
set -euo pipefail
cd "$(dirname "$0")/.."
want=(unixodbc unixodbc-dev libsqliteodbc sqlite3 libsqlite3-dev libssl-dev pkg-config)
case "${1:-run}" in
  run) ;;
  test)
    want+=(odbc-postgresql odbc-mariadb odbc-mdbtools mdbtools postgresql mariadb-server python3 python3-jwt python3-cryptography python3-venv chromium tinyproxy)
    # Node.js from Debian unless the machine has one already (oidc-provider needs 18 or later).
    command -v node >/dev/null && command -v npm >/dev/null || want+=(nodejs npm) ;;
  bench) want+=(wrk curl postgresql postgresql-client odbc-postgresql mariadb-server mariadb-client odbc-mariadb libmariadb-dev gcc libc6-dev) ;;
  *) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Python tools from PyPI that Debian does not package, in the repository's own .venv.
if [ "${1:-run}" = test ] && ! .venv/bin/python -c "import openapi_spec_validator, openapi_python_client, standardwebhooks, hypothesis, hypothesis_jsonschema" 2>/dev/null; then
  echo "installing .venv: openapi-spec-validator, openapi-python-client, standardwebhooks, hypothesis, hypothesis-jsonschema"
  /usr/bin/python3 -m venv .venv
  .venv/bin/pip install -q --disable-pip-version-check \
    openapi-spec-validator==0.9.0 openapi-python-client==0.29.1 standardwebhooks==1.1.0 \
    hypothesis==6.170.15 hypothesis-jsonschema==0.23.1
fi
# The OpenID Connect provider the auth tests run (tests/idp), pinned by its package-lock.json.
if [ "${1:-run}" = test ] && [ ! tests/idp/node_modules/.package-lock.json -nt tests/idp/package-lock.json ]; then
  echo "installing tests/idp: oidc-provider"
  npm ci --prefix tests/idp --no-audit --no-fund --loglevel=error
fi
# The OpenAPI linters the document tests run (tests/lint), pinned by its package-lock.json.
if [ "${1:-run}" = test ] && [ ! tests/lint/node_modules/.package-lock.json -nt tests/lint/package-lock.json ]; then
  echo "installing tests/lint: @redocly/cli, @stoplight/spectral-cli"
  # @redocly/cli 2 runs on Node.js 20.19 or later (Debian 12's own nodejs is 18).
  node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
    || { echo "tests/lint needs Node.js 20.19 or later; this machine has $(node --version)" >&2; exit 1; }
  npm ci --prefix tests/lint --no-audit --no-fund --loglevel=error
fi
# The browser driver of the dashboard example's test (tests/browser), pinned by its package-lock.json.
if [ "${1:-run}" = test ] && [ ! tests/browser/node_modules/.package-lock.json -nt tests/browser/package-lock.json ]; then
  echo "installing tests/browser: playwright-core"
  npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi
