#!/usr/bin/env bash
# Brings up (and down) a real Redis and a real single-node Kafka on loopback for
# tests and development. Idempotent; keeps all state in the repo's .services/.
#
#   scripts/services.sh up     [redis|kafka]   start (default: both); no-op if healthy
#   scripts/services.sh down   [redis|kafka]   stop what we started (by recorded PID)
#   scripts/services.sh restart [redis|kafka]  down, then up
#   scripts/services.sh status [redis|kafka]   what runs; exit 0 if all running, 3 if not
#   scripts/services.sh reset  [redis|kafka]   down, then delete data (Kafka jars stay)
#   scripts/services.sh env                    print export lines for tests
#
# Redis comes from Debian's redis-server package; Kafka is assembled from Maven
# Central jars (scripts/kafka/pom.xml) and runs in KRaft mode. See docs/SERVICES.md.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_CONF_SRC="$ROOT/scripts/kafka"
STATE="${SERVICES_DIR:-$ROOT/.services}"

REDIS_PORT="${REDIS_PORT:-6379}"
REDIS_WAIT_SECS="${REDIS_WAIT_SECS:-30}"

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
KAFKA_HEAP="${KAFKA_HEAP:--Xms256m -Xmx512m}"
KAFKA_NUM_PARTITIONS="${KAFKA_NUM_PARTITIONS:-4}"
KAFKA_WAIT_SECS="${KAFKA_WAIT_SECS:-120}"

STOP_WAIT_SECS="${STOP_WAIT_SECS:-30}"

REDIS_DIR="$STATE/redis"
REDIS_PIDFILE="$REDIS_DIR/redis.pid"
REDIS_LOG="$REDIS_DIR/redis.log"

KAFKA_DIR="$STATE/kafka"
KAFKA_LIB="$KAFKA_DIR/lib"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PIDFILE="$KAFKA_DIR/kafka.pid"
KAFKA_LOG="$KAFKA_DIR/kafka.log"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
KAFKA_CLUSTER_ID_FILE="$KAFKA_DIR/cluster.id"

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
  local pid
  if pid="$(redis_pid 2>/dev/null)"; then
    if redis_ping; then
      say "redis: running (pid $pid, 127.0.0.1:$REDIS_PORT, answers PONG)"
    else
      say "redis: process running (pid $pid) but 127.0.0.1:$REDIS_PORT does not answer PING"
      return 1
    fi
  else
    local other=""
    port_open "$REDIS_PORT" && other=" (port $REDIS_PORT is open, but not by our instance: $(port_owner "$REDIS_PORT"))"
    say "redis: not running$other"
    return 1
  fi
}

redis_reset() {
  redis_down
  rm -rf "$REDIS_DIR"
  say "redis: state deleted"
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
    head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n' >"$KAFKA_CLUSTER_ID_FILE"
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

kafka_status() {
  local pid
  if pid="$(kafka_pid 2>/dev/null)"; then
    if port_open "$KAFKA_PORT"; then
      say "kafka: running (pid $pid, Kafka $(cat "$KAFKA_DIR/running.version" 2>/dev/null || echo '?'), 127.0.0.1:$KAFKA_PORT accepts connections)"
    else
      say "kafka: process running (pid $pid) but 127.0.0.1:$KAFKA_PORT is not accepting connections"
      return 1
    fi
  else
    local other=""
    port_open "$KAFKA_PORT" && other=" (port $KAFKA_PORT is open, but not by our broker: $(port_owner "$KAFKA_PORT"))"
    say "kafka: not running$other"
    return 1
  fi
}

kafka_reset() {
  kafka_down
  rm -rf "$KAFKA_DATA" "$KAFKA_CLUSTER_ID_FILE"
  say "kafka: data deleted (jar cache kept in ${KAFKA_LIB#"$ROOT"/})"
}

# ----------------------------------------------------------------------------- main

usage() {
  sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

cmd="${1:-}"
target="${2:-all}"
case "$target" in
redis | kafka | all) ;;
*) usage ;;
esac
services=(redis kafka)
[[ "$target" != all ]] && services=("$target")

if [[ "$cmd" == env ]]; then
  printf 'export REDIS_ADDR=127.0.0.1:%s\n' "$REDIS_PORT"
  printf 'export REDIS_URL=redis://127.0.0.1:%s\n' "$REDIS_PORT"
  printf 'export KAFKA_BROKERS=127.0.0.1:%s\n' "$KAFKA_PORT"
  # The same addresses as the server's own config keys (docs/CONFIG.md):
  printf 'export GOIM_REDIS__URL=redis://127.0.0.1:%s\n' "$REDIS_PORT"
  printf 'export GOIM_QUEUE__KAFKA__BROKERS=127.0.0.1:%s\n' "$KAFKA_PORT"
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
  for s in kafka redis; do
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
