#!/usr/bin/env bash
# Brings up (and down) a real Redis, a real 3-master Redis Cluster, a real single-node
# Kafka and a real bilibili discovery on loopback for tests and development.
# Idempotent; keeps all state in the repo's .services/.
#
#   scripts/services.sh up     [redis|cluster|kafka|discovery]   start (default: all); no-op if healthy
#   scripts/services.sh down   [redis|cluster|kafka|discovery]   stop what we started (by recorded PID)
#   scripts/services.sh restart [redis|cluster|kafka|discovery]  down, then up
#   scripts/services.sh status [redis|cluster|kafka|discovery]   what runs; exit 0 if all running, 3 if not
#   scripts/services.sh reset  [redis|cluster|kafka|discovery]   down, then delete data (jars, binary stay)
#   scripts/services.sh env                                      print export lines for tests
#
# Redis (and the cluster's nodes) come from Debian's redis-server package; Kafka is
# assembled from Maven Central jars (scripts/kafka/pom.xml) and runs in KRaft mode;
# discovery (goim's registry) is built with `go install`. See docs/SERVICES.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_CONF_SRC="$ROOT/scripts/kafka"
STATE="${SERVICES_DIR:-$ROOT/.services}"

REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_WAIT_SECS="${REDIS_WAIT_SECS:-30}"

# Three masters, no replicas: the smallest cluster whose slots span several nodes.
CLUSTER_PORTS="${CLUSTER_PORTS:-7001 7002 7003}"
CLUSTER_WAIT_SECS="${CLUSTER_WAIT_SECS:-30}"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx512m}"
KAFKA_NUM_PARTITIONS="${KAFKA_NUM_PARTITIONS:-4}"
KAFKA_WAIT_SECS="${KAFKA_WAIT_SECS:-120}"

DISCOVERY_VERSION="${DISCOVERY_VERSION:-v1.0.1}"
DISCOVERY_PORT="${DISCOVERY_PORT:-7171}"
DISCOVERY_WAIT_SECS="${DISCOVERY_WAIT_SECS:-30}"
DISCOVERY_PKG="github.com/bilibili/discovery/cmd/discovery"

STOP_WAIT_SECS="${STOP_WAIT_SECS:-30}"

REDIS_DIR="$STATE/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

CLUSTER_DIR="$STATE/cluster"

KAFKA_DIR="$STATE/kafka"
KAFKA_LIB="$KAFKA_DIR/lib"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"

DISCOVERY_DIR="$STATE/discovery"
DISCOVERY_BIN="$DISCOVERY_DIR/bin/discovery"
DISCOVERY_CONF="$DISCOVERY_DIR/discovery.toml"
DISCOVERY_PIDFILE="$DISCOVERY_DIR/discovery.pid"
DISCOVERY_LOG="$DISCOVERY_DIR/discovery.log"

# ----------------------------------------------------------------------------- helpers

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

now() { echo "${EPOCHREALTIME/,/.}"; }
# elapsed START -> seconds since START with one decimal
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Who listens on a port (best effort, for error messages).
port_owner() {
  command -v ss >/dev/null || return 0
  ss -Hltnp "sport = :$1" 2>/dev/null | sed -n 's/.*users:(\(.*\))$/\1/p' | head -1
}

# pid_matches PID PATTERN: PID is alive and its command line contains PATTERN.
pid_matches() {
  local pid="$1" pattern="$2" cmd
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *"$pattern"* ]]
}

# running_pid PIDFILE PATTERN: prints the recorded PID if it runs; removes a stale pidfile.
running_pid() {
  local pidfile="$1" pattern="$2" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  if pid_matches "$pid" "$pattern"; then
    echo "$pid"
    return 0
  fi
  warn "removing stale pidfile $pidfile (pid '${pid}' is not running)"
  rm -f "$pidfile"
  return 1
}

# stop_pid NAME PIDFILE PATTERN: SIGTERM the recorded process, SIGKILL after STOP_WAIT_SECS.
stop_pid() {
  local name="$1" pidfile="$2" pattern="$3" pid t0 deadline
  if ! pid="$(running_pid "$pidfile" "$pattern")"; then
    say "$name: not running"
    return 0
  fi
  t0="$(now)"
  say "$name: stopping pid $pid (SIGTERM)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + STOP_WAIT_SECS))
  while pid_matches "$pid" "$pattern" && ((SECONDS < deadline)); do sleep 0.1; done
  if pid_matches "$pid" "$pattern"; then
    warn "$name: pid $pid still alive after ${STOP_WAIT_SECS}s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while pid_matches "$pid" "$pattern" && ((SECONDS < deadline)); do sleep 0.1; done
    pid_matches "$pid" "$pattern" && die "$name: pid $pid survived SIGKILL"
  fi
  rm -f "$pidfile"
  say "$name: stopped in $(elapsed "$t0")s"
}

# service_status NAME PORT PIDFN PROBEFN UP DOWN: prints one status line; returns 1 unless the
# process PIDFN finds runs and PROBEFN succeeds (UP and DOWN say what the probe saw).
service_status() {
  local name="$1" port="$2" pidfn="$3" probe="$4" up="$5" down="$6" pid other=""
  if pid="$("$pidfn" 2>/dev/null)"; then
    if "$probe"; then
      say "$name: running (pid $pid, 127.0.0.1:$port $up)"
      return 0
    fi
    say "$name: process running (pid $pid) but 127.0.0.1:$port $down"
    return 1
  fi
  port_open "$port" && other=" (port $port is open, but not by our instance: $(port_owner "$port"))"
  say "$name: not running$other"
  return 1
}

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install manually: $*"
  local sudo=""
  if ((EUID != 0)); then
    command -v sudo >/dev/null || die "need root (or sudo) to install: $*"
    sudo="sudo"
  fi
  if ((APT_UPDATED == 0)); then
    say "apt-get update"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    APT_UPDATED=1
  fi
  # Packages must not start their own services (we run our own instance); the
  # policy-rc.d convention tells invoke-rc.d so. Only add one if none exists.
  local policy=/usr/sbin/policy-rc.d added_policy=0
  if [[ ! -e "$policy" ]]; then
    $sudo sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod 755 $policy"
    added_policy=1
  fi
  say "apt-get install $*"
  local rc=0
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    >/dev/null || rc=$?
  ((added_policy)) && $sudo rm -f "$policy"
  ((rc == 0)) || die "apt-get install $* failed (exit $rc)"
}

# ----------------------------------------------------------------------------- redis

redis_pid() { running_pid "$REDIS_PIDFILE" "redis-server"; }

redis_ping() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]; }

redis_wait() {
  local deadline=$((SECONDS + REDIS_WAIT_SECS))
  until redis_ping; do
    if ((SECONDS >= deadline)); then
      warn "redis: no PONG on 127.0.0.1:$REDIS_PORT after ${REDIS_WAIT_SECS}s; log tail:"
      tail -n 30 "$REDIS_LOG" >&2 2>/dev/null || true
      die "redis did not become ready"
    fi
    if [[ -n "${1:-}" ]] && ! kill -0 "$1" 2>/dev/null; then
      warn "redis: process exited; log tail:"
      tail -n 30 "$REDIS_LOG" >&2 2>/dev/null || true
      die "redis failed to start"
    fi
    sleep 0.1
  done
}

redis_up() {
  local t0 pid
  t0="$(now)"
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server
  fi
  mkdir -p "$REDIS_DIR"
  if pid="$(redis_pid)"; then
    redis_wait "$pid"
    say "redis: already running (pid $pid, 127.0.0.1:$REDIS_PORT), nothing to do"
    return 0
  fi
  if port_open "$REDIS_PORT"; then
    die "redis: port $REDIS_PORT is taken by a process we did not start ($(port_owner "$REDIS_PORT")); stop it or set REDIS_PORT"
  fi
  : >"$REDIS_LOG"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --daemonize yes --pidfile "$REDIS_PIDFILE" --logfile "$REDIS_LOG" --dir "$REDIS_DIR" \
    --save "" --appendonly no 9>&- \
    || { tail -n 30 "$REDIS_LOG" >&2 2>/dev/null || true; die "redis-server failed to start"; }
  # daemonize: the pidfile appears a moment after the parent exits
  local deadline=$((SECONDS + 10))
  until [[ -s "$REDIS_PIDFILE" ]] || ((SECONDS >= deadline)); do sleep 0.05; done
  pid="$(tr -dc '0-9' <"$REDIS_PIDFILE" 2>/dev/null || true)"
  redis_wait "$pid"
  say "redis: up (pid $pid, 127.0.0.1:$REDIS_PORT, $(redis-server --version | awk '{print $3}')) in $(elapsed "$t0")s"
}

redis_down() { stop_pid redis "$REDIS_PIDFILE" "redis-server"; }

redis_status() {
  service_status redis "$REDIS_PORT" redis_pid redis_ping "answers PONG" "does not answer PING"
}

redis_reset() {
  redis_down
  rm -rf "$REDIS_DIR"
  say "redis: state deleted"
}

# ----------------------------------------------------------------------------- cluster

# Each node lives in $CLUSTER_DIR/<port>/: redis.pid, redis.log, nodes.conf (the
# cluster's own state file: node ids, slots, peers; kept across down/up).
read -r -a CLUSTER_PORT_LIST <<<"$CLUSTER_PORTS"
cluster_node_dir() { echo "$CLUSTER_DIR/$1"; }
cluster_node_pattern() { echo "redis-server 127.0.0.1:$1"; }
cluster_node_pid() { running_pid "$(cluster_node_dir "$1")/redis.pid" "$(cluster_node_pattern "$1")"; }
cluster_cli() { local p="$1"; shift; redis-cli -h 127.0.0.1 -p "$p" "$@" 2>/dev/null; }
# cluster_info PORT FIELD: one field of CLUSTER INFO (e.g. cluster_state).
cluster_info() { cluster_cli "$1" cluster info | tr -d '\r' | sed -n "s/^$2://p"; }
cluster_seeds() { local p; for p in "${CLUSTER_PORT_LIST[@]}"; do printf '127.0.0.1:%s\n' "$p"; done; }

# Every node answers and says the cluster is ok (all 16384 slots served).
cluster_ok() {
  local p
  for p in "${CLUSTER_PORT_LIST[@]}"; do
    [[ "$(cluster_info "$p" cluster_state)" == ok ]] || return 1
  done
}

cluster_log_tail() {
  local p
  for p in "${CLUSTER_PORT_LIST[@]}"; do
    warn "cluster: last lines of $(cluster_node_dir "$p")/redis.log:"
    tail -n 10 "$(cluster_node_dir "$p")/redis.log" >&2 2>/dev/null || true
  done
}

cluster_node_up() {
  local p="$1" dir deadline
  dir="$(cluster_node_dir "$p")"
  mkdir -p "$dir"
  cluster_node_pid "$p" >/dev/null && return 0
  if port_open "$p"; then
    die "cluster: port $p is taken by a process we did not start ($(port_owner "$p")); stop it or set CLUSTER_PORTS"
  fi
  : >"$dir/redis.log"
  redis-server --bind 127.0.0.1 --port "$p" --cluster-enabled yes \
    --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
    --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --dir "$dir" \
    --save "" --appendonly no 9>&- >&2 \
    || { tail -n 30 "$dir/redis.log" >&2 2>/dev/null || true; die "cluster: redis-server on port $p failed to start"; }
  deadline=$((SECONDS + 10))
  until [[ -s "$dir/redis.pid" ]] || ((SECONDS >= deadline)); do sleep 0.05; done
}

cluster_pid_list() {
  local p pids=()
  for p in "${CLUSTER_PORT_LIST[@]}"; do pids+=("$(cluster_node_pid "$p" || echo '?')"); done
  echo "${pids[*]}"
}

# cluster_wait WHAT TEST: until TEST succeeds, dying after CLUSTER_WAIT_SECS or when a node exits.
cluster_wait() {
  local what="$1" test="$2" deadline=$((SECONDS + CLUSTER_WAIT_SECS)) p
  until "$test"; do
    for p in "${CLUSTER_PORT_LIST[@]}"; do
      cluster_node_pid "$p" >/dev/null || { cluster_log_tail; die "cluster: node $p exited during startup"; }
    done
    if ((SECONDS >= deadline)); then
      cluster_log_tail
      die "cluster: $what not reached after ${CLUSTER_WAIT_SECS}s (nodes left running; 'scripts/services.sh reset cluster' starts over)"
    fi
    sleep 0.1
  done
}

cluster_pinged() {
  local p
  for p in "${CLUSTER_PORT_LIST[@]}"; do [[ "$(cluster_cli "$p" ping)" == PONG ]] || return 1; done
}

# No node has a slot or knows a peer: a fresh set of nodes that `--cluster create` may join.
cluster_blank() {
  local p
  for p in "${CLUSTER_PORT_LIST[@]}"; do
    [[ "$(cluster_info "$p" cluster_slots_assigned)" == 0 ]] || return 1
    [[ "$(cluster_info "$p" cluster_known_nodes)" == 1 ]] || return 1
  done
}

cluster_up() {
  local t0 p created=""
  t0="$(now)"
  if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    apt_install redis-server
  fi
  ((${#CLUSTER_PORT_LIST[@]} >= 3)) || die "cluster: CLUSTER_PORTS needs 3 ports or more (redis-cli --cluster create wants 3 masters)"
  mkdir -p "$CLUSTER_DIR"
  if cluster_pinged && cluster_ok; then
    say "cluster: already running (pids $(cluster_pid_list), 127.0.0.1:${CLUSTER_PORTS// /,}), nothing to do"
    return 0
  fi
  for p in "${CLUSTER_PORT_LIST[@]}"; do cluster_node_up "$p"; done
  cluster_wait "PONG from every node" cluster_pinged
  if cluster_blank; then
    # Assigns the 16384 slots evenly over the masters and joins them (it waits for the join).
    # shellcheck disable=SC2046 # one seed per word
    redis-cli --cluster create $(cluster_seeds) --cluster-replicas 0 --cluster-yes \
      >"$CLUSTER_DIR/create.log" 2>&1 \
      || { tail -n 20 "$CLUSTER_DIR/create.log" >&2; die "cluster: redis-cli --cluster create failed (see $CLUSTER_DIR/create.log)"; }
    created=", created"
  fi
  # Restarted nodes rejoin from their nodes.conf; a new cluster spreads its config by gossip.
  cluster_wait "cluster_state:ok on every node" cluster_ok
  say "cluster: up (pids $(cluster_pid_list), 127.0.0.1:${CLUSTER_PORTS// /,}, 3 masters$created) in $(elapsed "$t0")s"
}

cluster_down() {
  local p
  for p in "${CLUSTER_PORT_LIST[@]}"; do
    stop_pid "cluster node $p" "$(cluster_node_dir "$p")/redis.pid" "$(cluster_node_pattern "$p")"
  done
}

cluster_status() {
  local p pid pids=() missing=() other=""
  for p in "${CLUSTER_PORT_LIST[@]}"; do
    if pid="$(cluster_node_pid "$p" 2>/dev/null)"; then
      pids+=("$pid")
    else
      missing+=("$p")
      port_open "$p" && other+=" (port $p is open, but not by our instance: $(port_owner "$p"))"
    fi
  done
  if ((${#missing[@]} > 0)); then
    say "cluster: not running (nodes ${missing[*]} down${other})"
    return 1
  fi
  if cluster_ok; then
    say "cluster: running (pids ${pids[*]}, 127.0.0.1:${CLUSTER_PORTS// /,} cluster_state ok)"
    return 0
  fi
  say "cluster: processes running (pids ${pids[*]}) but cluster_state is not ok on every node"
  return 1
}

cluster_reset() {
  cluster_down
  rm -rf "$CLUSTER_DIR"
  say "cluster: state deleted"
}

# ----------------------------------------------------------------------------- kafka

JAVA=""
find_java() {
  [[ -n "$JAVA" ]] && return 0
  if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
    JAVA="$JAVA_HOME/bin/java"
  elif command -v java >/dev/null; then
    JAVA="$(command -v java)"
  else
    apt_install openjdk-17-jre-headless
    JAVA="$(command -v java)" || die "java not found after install"
  fi
  local major
  major="$("$JAVA" -version 2>&1 | sed -nE '1s/.*version "([0-9]+).*/\1/p')"
  if ! [[ "$major" =~ ^[0-9]+$ ]] || ((major < 17)); then
    die "Kafka $KAFKA_VERSION needs Java 17+, $JAVA is '${major:-unknown}'; set JAVA_HOME"
  fi
}

# Class path for the broker and tools; the JVM expands the lib/* wildcard itself.
kafka_cp() { echo "$KAFKA_LIB/*"; }

kafka_stamp() {
  printf 'kafka.version=%s\npom.sha256=%s\n' "$KAFKA_VERSION" \
    "$(sha256sum "$KAFKA_CONF_SRC/pom.xml" | cut -d' ' -f1)"
}

# The jar cache is complete when the stamp written after a successful resolve
# matches this version and pom, and every jar it lists is still there.
kafka_lib_complete() {
  local stamp="$KAFKA_LIB/.complete" jar
  [[ -f "$stamp" ]] || return 1
  [[ "$(head -n 2 "$stamp")" == "$(kafka_stamp)" ]] || return 1
  while read -r jar; do
    [[ -f "$KAFKA_LIB/$jar" ]] || return 1
  done < <(tail -n +3 "$stamp")
}

kafka_fetch_jars() {
  local t0 tmp="$KAFKA_DIR/lib.tmp" mvnlog="$KAFKA_DIR/mvn.log"
  if kafka_lib_complete; then
    say "kafka: jars for $KAFKA_VERSION cached in ${KAFKA_LIB#"$ROOT"/}"
    return 0
  fi
  t0="$(now)"
  command -v mvn >/dev/null || apt_install maven
  say "kafka: resolving Kafka $KAFKA_VERSION jars from Maven Central (mvn, log: ${mvnlog#"$ROOT"/})"
  rm -rf "$tmp"
  # shellcheck disable=SC2086 # MVN_ARGS is a user-supplied word list
  if ! mvn -B -f "$KAFKA_CONF_SRC/pom.xml" ${MVN_ARGS:-} \
    -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$tmp" \
    dependency:copy-dependencies >"$mvnlog" 2>&1; then
    grep -E '^\[(ERROR|WARNING)\]' "$mvnlog" | tail -n 20 >&2 || tail -n 20 "$mvnlog" >&2
    die "kafka: mvn could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see $mvnlog)"
  fi
  [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka: kafka_2.13-$KAFKA_VERSION.jar missing after mvn (see $mvnlog)"
  { kafka_stamp; (cd "$tmp" && ls -1 -- *.jar); } >"$tmp/.complete"
  rm -rf "$KAFKA_LIB"
  mv "$tmp" "$KAFKA_LIB"
  say "kafka: $(($(wc -l <"$KAFKA_LIB/.complete") - 2)) jars ($(du -sh "$KAFKA_LIB" | cut -f1)) resolved in $(elapsed "$t0")s"
}

kafka_render_config() {
  sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
    -e "s|@KAFKA_CONTROLLER_PORT@|$KAFKA_CONTROLLER_PORT|g" \
    -e "s|@KAFKA_DATA_DIR@|$KAFKA_DATA|g" \
    -e "s|@KAFKA_NUM_PARTITIONS@|$KAFKA_NUM_PARTITIONS|g" \
    "$KAFKA_CONF_SRC/server.properties.in" >"$KAFKA_PROPS.tmp"
  mv "$KAFKA_PROPS.tmp" "$KAFKA_PROPS"
  # Client settings of the readiness probe: fail fast, the caller retries.
  printf 'request.timeout.ms=3000\ndefault.api.timeout.ms=5000\n' >"$KAFKA_DIR/probe.properties"
}

kafka_tool() {
  "$JAVA" -Xmx256m -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Dlog4j2.configurationFile="$KAFKA_CONF_SRC/log4j2-tools.properties" \
    -cp "$(kafka_cp)" "$@"
}

KAFKA_FRESH=0
kafka_format() {
  [[ -f "$KAFKA_DATA/meta.properties" ]] && return 0
  KAFKA_FRESH=1
  local t0 id
  t0="$(now)"
  if [[ ! -s "$KAFKA_CLUSTER_ID_FILE" ]]; then
    # A Kafka cluster id is 16 random bytes in URL-safe base64 without padding.
    # One that starts with "-" reads as an option to kafka-storage (1 in 64
    # draws; Kafka's own Uuid.randomUuid() redraws those too), so redraw.
    id="-"
    while [[ "$id" == -* ]]; do
      id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
    done
    printf '%s' "$id" >"$KAFKA_CLUSTER_ID_FILE"
  fi
  id="$(cat "$KAFKA_CLUSTER_ID_FILE")"
  mkdir -p "$KAFKA_DATA"
  kafka_tool kafka.tools.StorageTool format -t "$id" -c "$KAFKA_PROPS" --ignore-formatted \
    >"$KAFKA_DIR/format.log" 2>&1 \
    || { cat "$KAFKA_DIR/format.log" >&2; die "kafka: formatting $KAFKA_DATA failed"; }
  say "kafka: formatted ${KAFKA_DATA#"$ROOT"/} (cluster id $id) in $(elapsed "$t0")s"
}

kafka_pattern() { echo "kafka.Kafka $KAFKA_PROPS"; }
kafka_pid() { running_pid "$KAFKA_PIDFILE" "$(kafka_pattern)"; }

kafka_probe() {
  timeout 30 "$JAVA" -Xmx128m -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$KAFKA_CONF_SRC/log4j2-tools.properties" \
    -cp "$(kafka_cp)" org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "127.0.0.1:$KAFKA_PORT" --command-config "$KAFKA_DIR/probe.properties" \
    --list >"$KAFKA_DIR/probe.log" 2>&1
}

kafka_log_tail() {
  warn "kafka: last lines of ${KAFKA_LOG}:"
  tail -n 40 "$KAFKA_LOG" >&2 2>/dev/null || true
}

# kafka_wait PID: until the broker listens and answers a metadata request (topic list).
kafka_wait() {
  local pid="$1" deadline=$((SECONDS + KAFKA_WAIT_SECS))
  while :; do
    if ! pid_matches "$pid" "$(kafka_pattern)"; then
      kafka_log_tail
      rm -f "$KAFKA_PIDFILE"
      die "kafka: broker process $pid exited during startup"
    fi
    if port_open "$KAFKA_PORT" && kafka_probe; then
      return 0
    fi
    if ((SECONDS >= deadline)); then
      kafka_log_tail
      warn "kafka: last probe output:"
      tail -n 10 "$KAFKA_DIR/probe.log" >&2 2>/dev/null || true
      die "kafka: not ready on 127.0.0.1:$KAFKA_PORT after ${KAFKA_WAIT_SECS}s (broker pid $pid left running; 'scripts/services.sh down kafka' stops it)"
    fi
    sleep 0.3
  done
}

kafka_up() {
  local t0 t1 pid p
  t0="$(now)"
  mkdir -p "$KAFKA_DIR"
  find_java
  if pid="$(kafka_pid)"; then
    kafka_wait "$pid"
    say "kafka: already running (pid $pid, 127.0.0.1:$KAFKA_PORT), nothing to do"
    return 0
  fi
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "kafka: port $p is taken by a process we did not start ($(port_owner "$p")); stop it or set KAFKA_PORT/KAFKA_CONTROLLER_PORT"
    fi
  done
  kafka_fetch_jars
  kafka_render_config
  kafka_format
  [[ -f "$KAFKA_LOG" ]] && mv -f "$KAFKA_LOG" "$KAFKA_LOG.1"
  t1="$(now)"
  rm -f "$KAFKA_PIDFILE"
  # New session (no terminal signals); the child records its own PID, then execs the JVM.
  # shellcheck disable=SC2016,SC2086 # $$ and "$@" belong to the inner shell; KAFKA_HEAP is a word list
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$KAFKA_PIDFILE" \
    "$JAVA" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dkafka.logs.dir="$KAFKA_DIR" \
    -Dlog4j2.configurationFile="$KAFKA_CONF_SRC/log4j2.properties" \
    -cp "$(kafka_cp)" kafka.Kafka "$KAFKA_PROPS" \
    </dev/null >"$KAFKA_LOG" 2>&1 9>&- &
  local deadline=$((SECONDS + 10))
  until [[ -s "$KAFKA_PIDFILE" ]] || ((SECONDS >= deadline)); do sleep 0.05; done
  pid="$(tr -dc '0-9' <"$KAFKA_PIDFILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || { kafka_log_tail; die "kafka: broker did not start"; }
  echo "$KAFKA_VERSION" >"$KAFKA_DIR/running.version"
  kafka_wait "$pid"
  if ((KAFKA_FRESH)); then
    # A new cluster creates __consumer_offsets on the first FindCoordinator; do it
    # now so the first consumer group of a test does not wait for it.
    kafka_tool org.apache.kafka.tools.consumer.group.ConsumerGroupCommand \
      --bootstrap-server "127.0.0.1:$KAFKA_PORT" --command-config "$KAFKA_DIR/probe.properties" \
      --describe --group services-warmup >"$KAFKA_DIR/warmup.log" 2>&1 || true
  fi
  say "kafka: up (pid $pid, Kafka $KAFKA_VERSION, 127.0.0.1:$KAFKA_PORT, controller :$KAFKA_CONTROLLER_PORT); ready $(elapsed "$t1")s after start, $(elapsed "$t0")s in all"
}

kafka_down() { stop_pid kafka "$KAFKA_PIDFILE" "$(kafka_pattern)"; }

kafka_port_open() { port_open "$KAFKA_PORT"; }
kafka_status() {
  service_status kafka "$KAFKA_PORT" kafka_pid kafka_port_open \
    "accepts connections, Kafka $(cat "$KAFKA_DIR/running.version" 2>/dev/null || echo '?')" \
    "is not accepting connections"
}

kafka_reset() {
  kafka_down
  rm -rf "$KAFKA_DATA" "$KAFKA_CLUSTER_ID_FILE"
  say "kafka: data deleted (jar cache kept in ${KAFKA_LIB#"$ROOT"/})"
}

# ----------------------------------------------------------------------------- discovery

# The binary is cached when the stamp written after a successful build names this version.
discovery_stamp() { printf '%s@%s\n' "$DISCOVERY_PKG" "$DISCOVERY_VERSION"; }
discovery_bin_complete() {
  [[ -x "$DISCOVERY_BIN" && -f "$DISCOVERY_BIN.version" ]] &&
    [[ "$(cat "$DISCOVERY_BIN.version")" == "$(discovery_stamp)" ]]
}

discovery_install() {
  local t0 tmp="$DISCOVERY_DIR/bin.tmp" build="$DISCOVERY_DIR/build" golog="$DISCOVERY_DIR/go.log"
  if discovery_bin_complete; then
    say "discovery: $DISCOVERY_VERSION binary cached in ${DISCOVERY_BIN#"$ROOT"/}"
    return 0
  fi
  t0="$(now)"
  command -v go >/dev/null || apt_install golang-go
  rm -rf "$tmp"
  mkdir -p "$tmp"
  say "discovery: go install $DISCOVERY_PKG@$DISCOVERY_VERSION (log: ${golog#"$ROOT"/})"
  if ! GOBIN="$tmp" go install "$DISCOVERY_PKG@$DISCOVERY_VERSION" >"$golog" 2>&1; then
    # `go install pkg@version` also asks the proxy for the module's version list
    # (its deprecation check); a proxy that refuses lists fails it. A throwaway
    # module that requires the version needs only the version itself.
    warn "discovery: go install pkg@version failed ($(tail -n 1 "$golog")); building it in a module"
    rm -rf "$build"
    mkdir -p "$build"
    if ! (cd "$build" && go mod init goim-deno.local/discovery-build &&
      go get "$DISCOVERY_PKG@$DISCOVERY_VERSION" && GOBIN="$tmp" go install "$DISCOVERY_PKG") \
      >>"$golog" 2>&1; then
      tail -n 20 "$golog" >&2
      die "discovery: could not build $DISCOVERY_PKG@$DISCOVERY_VERSION (see $golog)"
    fi
  fi
  [[ -x "$tmp/discovery" ]] || die "discovery: no binary after go install (see $golog)"
  mkdir -p "$(dirname "$DISCOVERY_BIN")"
  mv -f "$tmp/discovery" "$DISCOVERY_BIN"
  discovery_stamp >"$DISCOVERY_BIN.version"
  rm -rf "$tmp" "$build"
  say "discovery: built $DISCOVERY_VERSION ($(du -h "$DISCOVERY_BIN" | cut -f1), $(go version | awk '{print $3}')) in $(elapsed "$t0")s"
}

# One node, its own only peer: zone sh001 of region sh, env dev (tests use envs of their own).
discovery_render_config() {
  cat >"$DISCOVERY_CONF.tmp" <<EOF
# Written by scripts/services.sh; changes are overwritten on the next up.
nodes = ["127.0.0.1:$DISCOVERY_PORT"]

[env]
region = "sh"
zone = "sh001"
host = "goim-deno-services"
DeployEnv = "dev"

[httpServer]
addr = "127.0.0.1:$DISCOVERY_PORT"

[httpClient]
dial = "1s"
keepAlive = "120s"
EOF
  mv "$DISCOVERY_CONF.tmp" "$DISCOVERY_CONF"
}

discovery_pattern() { echo "$DISCOVERY_BIN -conf $DISCOVERY_CONF"; }
discovery_pid() { running_pid "$DISCOVERY_PIDFILE" "$(discovery_pattern)"; }

# An HTTP/1.0 GET of /discovery/nodes (bash only, 3 s bound) that answers code 0.
discovery_probe() {
  local resp
  # shellcheck disable=SC2016 # $1 belongs to the inner shell
  resp="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
    printf "GET /discovery/nodes HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3 && cat <&3' \
    _ "$DISCOVERY_PORT" 2>/dev/null)" || return 1
  [[ "$resp" == *'"code":0'* ]]
}

discovery_log_tail() {
  warn "discovery: last lines of ${DISCOVERY_LOG}:"
  tail -n 30 "$DISCOVERY_LOG" >&2 2>/dev/null || true
}

# discovery_wait PID: until the process answers /discovery/nodes.
discovery_wait() {
  local pid="$1" deadline=$((SECONDS + DISCOVERY_WAIT_SECS))
  until discovery_probe; do
    if ! pid_matches "$pid" "$(discovery_pattern)"; then
      discovery_log_tail
      rm -f "$DISCOVERY_PIDFILE"
      die "discovery: process $pid exited during startup"
    fi
    if ((SECONDS >= deadline)); then
      discovery_log_tail
      die "discovery: not ready on 127.0.0.1:$DISCOVERY_PORT after ${DISCOVERY_WAIT_SECS}s (pid $pid left running; 'scripts/services.sh down discovery' stops it)"
    fi
    sleep 0.1
  done
}

discovery_up() {
  local t0 t1 pid
  t0="$(now)"
  mkdir -p "$DISCOVERY_DIR"
  if pid="$(discovery_pid)"; then
    discovery_wait "$pid"
    say "discovery: already running (pid $pid, 127.0.0.1:$DISCOVERY_PORT), nothing to do"
    return 0
  fi
  if port_open "$DISCOVERY_PORT"; then
    die "discovery: port $DISCOVERY_PORT is taken by a process we did not start ($(port_owner "$DISCOVERY_PORT")); stop it or set DISCOVERY_PORT"
  fi
  discovery_install
  discovery_render_config
  [[ -f "$DISCOVERY_LOG" ]] && mv -f "$DISCOVERY_LOG" "$DISCOVERY_LOG.1"
  rm -f "$DISCOVERY_PIDFILE"
  t1="$(now)"
  # Own session, in its folder (it reads ./scheduler.json if there is one), glog to its log
  # file; the child records its own PID, then execs the server.
  # shellcheck disable=SC2016 # $$, $0, $1 and "$@" belong to the inner shell
  setsid bash -c 'cd "$1" && echo $$ >"$0" && shift && exec "$@"' "$DISCOVERY_PIDFILE" \
    "$DISCOVERY_DIR" "$DISCOVERY_BIN" -conf "$DISCOVERY_CONF" -logtostderr=true \
    </dev/null >"$DISCOVERY_LOG" 2>&1 9>&- &
  local deadline=$((SECONDS + 10))
  until [[ -s "$DISCOVERY_PIDFILE" ]] || ((SECONDS >= deadline)); do sleep 0.05; done
  pid="$(tr -dc '0-9' <"$DISCOVERY_PIDFILE" 2>/dev/null || true)"
  [[ -n "$pid" ]] || { discovery_log_tail; die "discovery: did not start"; }
  discovery_wait "$pid"
  say "discovery: up (pid $pid, $DISCOVERY_VERSION, 127.0.0.1:$DISCOVERY_PORT); ready $(elapsed "$t1")s after start, $(elapsed "$t0")s in all"
}

discovery_down() { stop_pid discovery "$DISCOVERY_PIDFILE" "$(discovery_pattern)"; }

discovery_status() {
  service_status discovery "$DISCOVERY_PORT" discovery_pid discovery_probe \
    "answers /discovery/nodes" "does not answer /discovery/nodes"
}

# discovery keeps its registrations in memory only: reset removes its config and logs.
discovery_reset() {
  discovery_down
  rm -f "$DISCOVERY_CONF" "$DISCOVERY_LOG" "$DISCOVERY_LOG.1"
  say "discovery: state deleted (binary kept in ${DISCOVERY_BIN#"$ROOT"/})"
}

# ----------------------------------------------------------------------------- main

usage() {
  sed -n '2,16p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

cmd="${1:-}"
target="${2:-all}"
case "$target" in
redis | cluster | kafka | discovery | all) ;;
*) usage ;;
esac
services=(redis cluster kafka discovery)
[[ "$target" != all ]] && services=("$target")

if [[ "$cmd" == env ]]; then
  printf 'export REDIS_ADDR=127.0.0.1:%s\n' "$REDIS_PORT"
  printf 'export REDIS_URL=redis://127.0.0.1:%s\n' "$REDIS_PORT"
  printf 'export KAFKA_BROKERS=127.0.0.1:%s\n' "$KAFKA_PORT"
  # The same addresses as the server's own config keys (docs/CONFIG.md):
  printf 'export GOIM_REDIS__URL=redis://127.0.0.1:%s\n' "$REDIS_PORT"
  printf 'export GOIM_QUEUE__KAFKA__BROKERS=127.0.0.1:%s\n' "$KAFKA_PORT"
  printf 'export DISCOVERY_NODES=127.0.0.1:%s\n' "$DISCOVERY_PORT"
  printf 'export GOIM_DISCOVERY__NODES=127.0.0.1:%s\n' "$DISCOVERY_PORT"
  printf 'export GOIM_TEST_REDIS_CLUSTER_NODES=%s\n' "$(cluster_seeds | paste -sd,)"
  printf 'export GOIM_REDIS__CLUSTER__NODES=%s\n' "$(cluster_seeds | paste -sd,)"
  exit 0
fi

if [[ "$cmd" == status ]]; then
  rc=0
  for s in "${services[@]}"; do "${s}_status" || rc=3; done
  exit "$rc"
fi

mkdir -p "$STATE"
# One changing invocation at a time (parallel test files may restart services).
# Children must not inherit fd 9 (see the 9>&- where services start), or they
# would hold the lock for as long as they run.
exec 9>"$STATE/.lock"
flock -w "${LOCK_WAIT_SECS:-300}" 9 || die "another scripts/services.sh up/down is still running (lock $STATE/.lock)"

T0="$(now)"
case "$cmd" in
up)
  for s in "${services[@]}"; do "${s}_up"; done
  say "up ${target}: done in $(elapsed "$T0")s"
  ;;
down)
  # Kafka first: it is the slower one, and nothing of ours depends on Redis to stop.
  for s in kafka discovery cluster redis; do
    [[ " ${services[*]} " == *" $s "* ]] && "${s}_down"
  done
  say "down ${target}: done in $(elapsed "$T0")s"
  ;;
restart)
  for s in "${services[@]}"; do "${s}_down"; done
  for s in "${services[@]}"; do "${s}_up"; done
  say "restart ${target}: done in $(elapsed "$T0")s"
  ;;
reset)
  for s in "${services[@]}"; do "${s}_reset"; done
  ;;
*) usage ;;
esac
