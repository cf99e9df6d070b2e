#!/usr/bin/env bash
# Local Apache Kafka for development and tests: one KRaft node (broker + controller) on 127.0.0.1.
#
#   kafka.sh fetch                 resolve the broker jars from Maven Central into .cache/libs (once)
#   kafka.sh up   [--port P] [--controller-port C] [--dir D]   start (idempotent), print bootstrap
#   kafka.sh down [--dir D]        stop the broker started with that dir, by PID
#   kafka.sh status [--dir D]      print the bootstrap address if running
#
# Defaults: port 9092, controller port 9093, dir deploy/kafka/.run. Env: KAFKA_HEAP (default 512m),
# KAFKA_START_TIMEOUT (seconds, default 90).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIBS="$HERE/.cache/libs"
cmd="${1:-}"; shift || true
port=9092; cport=9093; dir="$HERE/.run"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --controller-port) cport="$2"; shift 2 ;;
    --dir) dir="$2"; shift 2 ;;
    *) echo "kafka.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

die() { echo "kafka.sh: $*" >&2; exit 1; }

require_java() {
  command -v java >/dev/null || die "java not found: install a JRE 17+ (e.g. apt-get install openjdk-17-jre-headless)"
  local major
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1)
  [[ "${major:-0}" -ge 17 ]] || die "Kafka 4 needs Java 17+, found ${major:-unknown}"
}

fetch() {
  if [[ -f "$LIBS/.complete" && "$LIBS/.complete" -nt "$HERE/pom.xml" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found: install Maven (e.g. apt-get install maven)"
  echo "kafka.sh: fetching Kafka jars from Maven Central into $LIBS" >&2
  rm -rf "$LIBS"
  mvn -q -B -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DincludeScope=runtime -DoutputDirectory="$LIBS" >&2
  touch "$LIBS/.complete"
}

pid_alive() { [[ -f "$dir/kafka.pid" ]] && kill -0 "$(cat "$dir/kafka.pid")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

write_config() {
  mkdir -p "$dir/data"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/data
num.partitions=4
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
  cat > "$dir/log4j2.properties" <<'PROPS'
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
PROPS
}

up() {
  require_java
  fetch
  if pid_alive; then
    echo "127.0.0.1:$(cat "$dir/port")"
    return 0
  fi
  port_open "$port" && die "port $port is taken by another process"
  write_config
  local cp="$LIBS/*"
  if [[ ! -f "$dir/data/meta.properties" ]]; then
    local cluster_id
    cluster_id=$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    # A fixed controller.quorum.voters list means no --standalone here.
    java -cp "$cp" -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$dir/server.properties" >"$dir/format.log" 2>&1 \
      || die "storage format failed: $(tail -5 "$dir/format.log")"
  fi
  : > "$dir/server.log"
  nohup java -Xms"${KAFKA_HEAP:-512m}" -Xmx"${KAFKA_HEAP:-512m}" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -Dkafka.logs.dir="$dir" \
    -cp "$cp" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 &
  echo $! > "$dir/kafka.pid"
  echo "$port" > "$dir/port"
  local timeout="${KAFKA_START_TIMEOUT:-90}" waited=0
  until grep -q "Kafka Server started" "$dir/server.log" 2>/dev/null && port_open "$port"; do
    pid_alive || die "broker exited during start: $(tail -20 "$dir/stdout.log" "$dir/server.log" 2>/dev/null)"
    (( waited >= timeout * 5 )) && { down; die "broker not ready after ${timeout}s"; }
    sleep 0.2; waited=$((waited + 1))
  done
  echo "127.0.0.1:$port"
}

down() {
  if ! pid_alive; then
    rm -f "$dir/kafka.pid"
    echo "kafka.sh: not running" >&2
    return 0
  fi
  local pid; pid=$(cat "$dir/kafka.pid")
  kill -TERM "$pid"
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$dir/kafka.pid"
  echo "kafka.sh: stopped" >&2
}

status() {
  pid_alive && echo "127.0.0.1:$(cat "$dir/port")" || { echo "kafka.sh: not running" >&2; return 1; }
}

case "$cmd" in
  fetch) fetch ;;
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: kafka.sh fetch|up|down|status [--port P] [--controller-port C] [--dir D]" >&2; exit 2 ;;
esac
