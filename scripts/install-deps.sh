#!/usr/bin/env bash
# Installs the system packages Portico needs, only when missing (Debian/Ubuntu, apt-get).
#   run   unixODBC and the SQLite ODBC driver, sqlite3 to build the demo database,
#         OpenSSL headers and pkg-config for the TLS of JWKS fetches
#   test  + PostgreSQL and MariaDB servers and their ODBC drivers, PyJWT (tokens from an
#         independent implementation)
#   bench + wrk
set -euo pipefail
want=(unixodbc unixodbc-dev libsqliteodbc sqlite3 libssl-dev pkg-config)
case "${1:-run}" in
  run) ;;
  test) want+=(odbc-postgresql odbc-mariadb postgresql mariadb-server python3 python3-jwt python3-cryptography) ;;
  bench) want+=(wrk curl) ;;
  *) echo "usage: $0 run|test|bench" >&2; exit 2 ;;
esac
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
