#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the adapter's tests.
#   postgres_server.sh start DIR [PORT]   initdb + start on 127.0.0.1, the first free port
#                                         from PORT (default 54320); writes DIR/conninfo
#   postgres_server.sh stop DIR           stop it (immediate) and remove DIR
# start always exits 0 once it has written its verdict: DIR/conninfo when the server
# runs, DIR/unavailable with the reason when it cannot (no PostgreSQL installed, no
# postgres user, initdb or pg_ctl failed). The tests skip with that reason, so a
# machine without PostgreSQL reports skipped tests instead of passing silently.
# As root the cluster runs as the postgres user (initdb refuses root): DIR is chowned
# to it and every folder above DIR is made traversable (o+x) if it is not.
# Environment: PG_BINDIR overrides where initdb and pg_ctl are looked up.
set -uo pipefail

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR" >&2
  exit 2
}
[[ $# -ge 2 ]] || usage
action=$1
dir=$2
base_port=${3:-54320}
[[ "$dir" == /* ]] || dir="$PWD/$dir"

log() { printf '[postgres_server] %s\n' "$*"; }

find_bindir() {
  if [[ -n "${PG_BINDIR:-}" && -x "$PG_BINDIR/initdb" ]]; then
    echo "$PG_BINDIR"
    return 0
  fi
  # Prefer PostgreSQL 15 (what the tests target), then the newest installed.
  local candidate
  for candidate in /usr/lib/postgresql/15/bin \
      $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -x "$candidate/initdb" && -x "$candidate/pg_ctl" ]]; then
      echo "$candidate"
      return 0
    fi
  done
  local initdb
  initdb=$(command -v initdb 2>/dev/null) || return 1
  dirname "$initdb"
}

# Runs a command as the cluster's owner.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

stop_server() {
  local bindir
  if [[ -f "$dir/data/postmaster.pid" ]] && bindir=$(find_bindir); then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1
    return $?
  fi
  return 0
}

unavailable() {
  log "PostgreSQL unavailable: $1"
  printf '%s\n' "$1" >"$dir/unavailable"
  exit 0
}

start() {
  stop_server  # a cluster left behind by an interrupted run
  rm -rf "$dir"
  mkdir -p "$dir" || { log "cannot create $dir"; exit 1; }

  local bindir
  bindir=$(find_bindir) ||
    unavailable "initdb not found (install the Debian package postgresql, or set PG_BINDIR)"

  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 ||
      unavailable "running as root and there is no postgres user to own the cluster"
    command -v runuser >/dev/null 2>&1 || unavailable "running as root and runuser is missing"
    chown postgres: "$dir" || unavailable "cannot chown $dir to postgres"
    local up
    up=$(dirname "$dir")
    while :; do
      if ! runuser -u postgres -- test -x "$up"; then
        log "making $up traversable for postgres (o+x)"
        chmod o+x "$up" || unavailable "cannot make $up traversable for the postgres user"
      fi
      [[ "$up" == / ]] && break
      up=$(dirname "$up")
    done
  fi

  local t0=$SECONDS
  if ! as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust --no-sync -E UTF8 \
      --locale=C >"$dir/initdb.log" 2>&1; then
    unavailable "initdb failed: $(tail -n 3 "$dir/initdb.log" | tr '\n' ' ')"
  fi

  # The socket path must fit in sun_path (107 bytes); the tests connect over TCP.
  local sockets="$dir"
  if [[ ${#dir} -gt 90 ]]; then sockets=""; fi

  local port=$base_port attempt
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    while port_in_use "$port"; do port=$((port + 1)); done
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k '$sockets' -c fsync=off \
            -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
        start >"$dir/pg_ctl.log" 2>&1; then
      printf 'host=127.0.0.1 port=%s user=postgres dbname=postgres\n' "$port" >"$dir/conninfo"
      log "PostgreSQL $("$bindir/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port" \
          "in $((SECONDS - t0)) s, data in $dir/data"
      exit 0
    fi
    # Another process took the port between the probe and the bind: try the next one.
    if grep -q 'Address already in use' "$dir/server.log" 2>/dev/null; then
      log "port $port taken (attempt $attempt)"
      port=$((port + 1))
      continue
    fi
    break
  done
  local why
  why=$(grep -hE 'FATAL|ERROR|could not' "$dir/server.log" "$dir/pg_ctl.log" 2>/dev/null |
    sed -E 's/^[0-9-]+ [0-9:.]+ [A-Z]+ \[[0-9]+\] //' | head -n 3 | tr '\n' ' ')
  unavailable "pg_ctl start failed on port $port: ${why:-see $dir/server.log}"
}

case $action in
  start) start ;;
  stop)
    rc=0
    stop_server || { log "pg_ctl stop failed"; rc=1; }
    rm -rf "$dir"
    exit $rc
    ;;
  *) usage ;;
esac
