#!/usr/bin/env bash
# kafka.sh runs a real single-node Apache Kafka (KRaft, broker and controller
# in one JVM) on 127.0.0.1 for the test suites, from the jars pom.xml pins.
#
#   kafka.sh fetch            fetch the jars into the cache (fast when done)
#   kafka.sh version          print the pinned Kafka version
#   kafka.sh start DIR [PORT] start a broker in DIR, print its address when ready
#   kafka.sh stop DIR         stop the broker started in DIR (idempotent)
#
# Environment:
#   ESIGNFLOW_KAFKA_CACHE     jar cache, default <repo root>/.cache/kafka
#   ESIGNFLOW_KAFKA_JVM_OPTS  JVM options, default a bounded heap and SerialGC
#   ESIGNFLOW_KAFKA_START_TIMEOUT  seconds start waits for readiness, default 90
#   KAFKATEST_OWNER_PID       if set, start also runs a watchdog that kills the
#                             broker once that process is gone (a test binary
#                             that dies without running its cleanup)
#
# start writes DIR/server.properties, DIR/data (the log dirs), DIR/kafka.log
# (the broker's stdout and stderr), DIR/pid and DIR/brokers (host:port).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pom=$here/pom.xml
root=$(cd "$here/../.." && pwd)
cache=${ESIGNFLOW_KAFKA_CACHE:-$root/.cache/kafka}

die() {
	echo "kafkatest: $*" >&2
	exit 1
}

usage() {
	echo "usage: kafka.sh fetch | version | start DIR [PORT] | stop DIR" >&2
	exit 2
}

version() {
	local v
	v=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$pom" | head -n1)
	[[ -n $v ]] || die "no <kafka.version> in $pom"
	echo "$v"
}

need_java() {
	command -v java >/dev/null 2>&1 ||
		die "java not found: install a Java 17+ JDK (Debian: apt-get install openjdk-17-jdk-headless)"
	local v major
	v=$(java -version 2>&1 | sed -n 's/.* version "\([^"]*\)".*/\1/p' | head -n1)
	major=${v%%.*}
	if [[ $major == 1 ]]; then # 1.8.0_x
		major=$(echo "$v" | cut -d. -f2)
	fi
	[[ $major =~ ^[0-9]+$ && $major -ge 17 ]] ||
		die "java is version ${v:-unknown}, Kafka $(version) needs 17+: install a Java 17+ JDK (Debian: apt-get install openjdk-17-jdk-headless)"
}

need_mvn() {
	command -v mvn >/dev/null 2>&1 ||
		die "mvn not found: install Apache Maven 3.6+ (Debian: apt-get install maven)"
}

stamp() {
	sha256sum "$pom" | cut -d' ' -f1
}

fetched() {
	[[ -f $cache/stamp && $(cat "$cache/stamp") == "$(stamp)" && -d $cache/lib ]]
}

fetch() {
	fetched && return 0
	need_java
	need_mvn
	mkdir -p "$cache"
	# One fetch at a time: test packages run in parallel, each may start a
	# broker, and each would fetch on a cold cache.
	exec 9>"$cache/lock"
	if command -v flock >/dev/null 2>&1; then
		flock 9
	fi
	if fetched; then
		exec 9>&-
		return 0
	fi
	local tmp=$cache/lib.tmp.$$
	rm -rf "$tmp"
	echo "kafkatest: fetching Kafka $(version) jars into $cache/lib" >&2
	# Maven 3.8 -q still writes bare colour resets; keep its errors only.
	if ! mvn -q -B -Dstyle.color=never -f "$pom" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$tmp" 2>&1 |
		sed -e 's/\x1b\[[0-9;]*m//g' -e '/^[[:space:]]*$/d' >&2; then
		rm -rf "$tmp"
		die "mvn could not fetch the jars of $pom (is Maven Central reachable?)"
	fi
	rm -rf "$cache/lib"
	mv "$tmp" "$cache/lib"
	stamp >"$cache/stamp"
	exec 9>&-
}

# free_port prints a TCP port nothing listens on at 127.0.0.1.
free_port() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
		return
	fi
	local p i
	for i in $(seq 1 100); do
		p=$((20000 + RANDOM % 40000))
		if ! (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port found on 127.0.0.1"
}

# cluster_id prints a random KRaft cluster id: 16 bytes, base64url, unpadded.
cluster_id() {
	if command -v python3 >/dev/null 2>&1; then
		python3 -c 'import base64, os
print(base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="))'
		return
	fi
	java -cp "$cache/lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1
}

# alive PID: the process exists and is not a zombie nobody reaped yet.
alive() {
	local state
	[[ -r /proc/$1/stat ]] || { kill -0 "$1" 2>/dev/null; return; }
	state=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

# ours PID DIR: PID is the broker started in DIR, not a process that reused it.
ours() {
	alive "$1" || return 1
	[[ -r /proc/$1/cmdline ]] || return 0
	tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2/server.properties"
}

# ready ADDR: the broker answers a Metadata request (v0) listing a broker.
ready() {
	if ! command -v python3 >/dev/null 2>&1; then
		(: <"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
		return
	fi
	python3 - "$1" <<'EOF'
import socket, struct, sys
host, port = sys.argv[1].rsplit(":", 1)
try:
    s = socket.create_connection((host, int(port)), timeout=2)
    s.settimeout(2)
    client = b"kafkatest"
    # Metadata v0: api key 3, version 0, correlation id 1, client id, topics [] (all).
    body = struct.pack(">hhih", 3, 0, 1, len(client)) + client + struct.pack(">i", 0)
    s.sendall(struct.pack(">i", len(body)) + body)
    def read(n):
        b = b""
        while len(b) < n:
            c = s.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b
    size, = struct.unpack(">i", read(4))
    resp = read(size)
    corr, brokers = struct.unpack(">ii", resp[:8])
    sys.exit(0 if corr == 1 and brokers > 0 else 1)
except Exception:
    sys.exit(1)
EOF
}

start() {
	local dir=$1 port=${2:-}
	fetch
	need_java
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	if [[ -f $dir/pid ]] && ours "$(cat "$dir/pid")" "$dir"; then
		die "a broker already runs in $dir (pid $(cat "$dir/pid")): kafka.sh stop $dir"
	fi
	# A port free_port picked may be taken before the broker binds it: then
	# try again with others, a few times.
	local attempt rc
	for attempt in 1 2 3; do
		rc=0
		# (launch runs without errexit here; it checks what it runs.)
		launch "$dir" "${port:-$(free_port)}" || rc=$?
		((rc == 3)) || break
		if [[ -n $port ]] && grep -qF "127.0.0.1:$port: Address already in use" "$dir/kafka.log"; then
			failure "$dir/kafka.log"
			die "port $port on 127.0.0.1 is taken"
		fi
		if ((attempt == 3)); then
			failure "$dir/kafka.log"
			break
		fi
		echo "kafkatest: a port was taken, starting again" >&2
	done
	((rc == 0)) || die "broker in $dir did not start (log: $dir/kafka.log)"
}

# launch DIR PORT formats DIR and starts a broker on PORT, printing its address
# once ready. It returns 3 if a port was taken (and the caller may pick other
# ports), 1 if the broker failed otherwise.
launch() {
	local dir=$1 port=$2 cport
	cport=$(free_port)
	while [[ $cport == "$port" ]]; do
		cport=$(free_port)
	done
	rm -rf "$dir/data" "$dir/pid" "$dir/brokers" "$dir/kafka.log"

	cat >"$dir/server.properties" <<EOF
# Written by kafka.sh start: a single-node KRaft cluster for tests.
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$dir/data

# One node: every internal topic has one replica.
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=4

# Tests create their topics and want groups to form at once.
auto.create.topics.enable=false
num.partitions=1
group.initial.rebalance.delay.ms=0

# Small: two cores and a 1 GiB heap, shared with the tests.
num.network.threads=2
num.io.threads=4
background.threads=4
num.recovery.threads.per.data.dir=1
num.replica.fetchers=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.segment.bytes=67108864

# The broker registers with its own controller and is unfenced sooner.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=9000
EOF

	local cid
	cid=$(cluster_id)
	[[ -n $cid ]] || die "could not make a cluster id"
	local cp="$cache/lib/*"
	local jvm=${ESIGNFLOW_KAFKA_JVM_OPTS:--Xmx1g -Xms256m -XX:+UseSerialGC}
	# shellcheck disable=SC2086 # jvm is a list of options
	if ! java $jvm -cp "$cp" kafka.tools.StorageTool format --standalone \
		-t "$cid" -c "$dir/server.properties" >"$dir/format.log" 2>&1; then
		cat "$dir/format.log" >&2
		die "kafka-storage format failed in $dir"
	fi

	# shellcheck disable=SC2086
	java $jvm -Djava.awt.headless=true \
		-Dorg.slf4j.simpleLogger.showDateTime=true \
		-Dorg.slf4j.simpleLogger.dateTimeFormat="yyyy-MM-dd'T'HH:mm:ss.SSS" \
		-cp "$cp" kafka.Kafka "$dir/server.properties" \
		</dev/null >"$dir/kafka.log" 2>&1 &
	local pid=$!
	echo "$pid" >"$dir/pid"

	if [[ -n ${KAFKATEST_OWNER_PID:-} ]]; then
		watchdog "$KAFKATEST_OWNER_PID" "$pid" "$dir" </dev/null >/dev/null 2>&1 &
	fi

	local timeout=${ESIGNFLOW_KAFKA_START_TIMEOUT:-90}
	local deadline=$((SECONDS + timeout)) addr=127.0.0.1:$port
	while :; do
		if ! alive "$pid"; then
			rm -f "$dir/pid"
			if grep -q 'Address already in use' "$dir/kafka.log"; then
				return 3
			fi
			failure "$dir/kafka.log"
			echo "kafkatest: broker in $dir exited during startup" >&2
			return 1
		fi
		if grep -q 'Kafka Server started' "$dir/kafka.log" && ready "$addr"; then
			break
		fi
		if ((SECONDS >= deadline)); then
			failure "$dir/kafka.log"
			stop "$dir" >/dev/null 2>&1 || true
			echo "kafkatest: broker in $dir not ready after ${timeout}s" >&2
			return 1
		fi
		sleep 0.2
	done
	echo "$addr" >"$dir/brokers"
	echo "$addr"
}

# failure LOG shows why a broker failed: its first errors and its last lines.
failure() {
	{
		if grep -q -E '\] (ERROR|FATAL) ' "$1"; then
			echo "kafkatest: first errors in $1:"
			grep -m 3 -A 2 -E '\] (ERROR|FATAL) ' "$1" | cut -c1-500
		fi
		echo "kafkatest: last lines of $1:"
		tail -n 20 "$1" | cut -c1-500
	} >&2
}

# watchdog OWNER PID DIR ends the broker when OWNER is gone, and itself when
# the broker is.
watchdog() {
	while alive "$1" && alive "$2"; do
		sleep 1
	done
	if ours "$2" "$3"; then
		stop "$3"
	fi
}

stop() {
	local dir=$1 pid i
	[[ -d $dir ]] || return 0
	dir=$(cd "$dir" && pwd)
	[[ -f $dir/pid ]] || return 0
	pid=$(cat "$dir/pid")
	if ! ours "$pid" "$dir"; then
		rm -f "$dir/pid"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	kill -CONT "$pid" 2>/dev/null || true # a paused broker cannot handle TERM
	for ((i = 0; i < 300; i++)); do
		alive "$pid" || break
		sleep 0.1
	done
	if alive "$pid"; then
		echo "kafkatest: broker $pid in $dir still runs after 30s, killing it" >&2
		kill -KILL "$pid" 2>/dev/null || true
		for ((i = 0; i < 50; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
	fi
	rm -f "$dir/pid"
}

case ${1:-} in
fetch)
	[[ $# -eq 1 ]] || usage
	fetch
	;;
version)
	[[ $# -eq 1 ]] || usage
	version
	;;
start)
	[[ $# -eq 2 || $# -eq 3 ]] || usage
	start "$2" "${3:-}"
	;;
stop)
	[[ $# -eq 2 ]] || usage
	stop "$2"
	;;
*)
	usage
	;;
esac
