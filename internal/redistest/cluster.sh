#!/usr/bin/env bash
# cluster.sh runs a real three-master Redis Cluster on 127.0.0.1 for the test
# suites (ESIGNFLOW_TEST_REDIS_CLUSTER), no replicas, no persistence.
#
#   cluster.sh start DIR PORT0  start nodes on PORT0, PORT0+1, PORT0+2, create
#                               the cluster, wait for cluster_state:ok on every
#                               node and print the addresses, comma-separated
#   cluster.sh stop DIR         stop the nodes started in DIR (idempotent)
#
# Environment:
#   ESIGNFLOW_REDIS_CLUSTER_START_TIMEOUT  seconds start waits, default 30
#
# Each node also listens on its cluster bus port, its port + 10000. start
# writes DIR/nodeN.pid, DIR/nodeN.port, DIR/nodeN.log, DIR/nodesN.conf (the
# node's cluster state), DIR/create.log (redis-cli --cluster create) and
# DIR/addrs. stop kills by the PIDs in the pidfiles, never by name. A start
# that fails stops the nodes it started.
set -euo pipefail

die() {
	echo "redistest: $*" >&2
	exit 1
}

usage() {
	echo "usage: cluster.sh start DIR PORT0 | stop DIR" >&2
	exit 2
}

need_redis() {
	local bin
	for bin in redis-server redis-cli; do
		command -v "$bin" >/dev/null 2>&1 ||
			die "$bin not found: install Redis (Debian: apt-get install redis-server, which has redis-cli)"
	done
	# redis-cli --cluster create is in redis-cli 5 and later.
	local v
	v=$(redis-cli --version | sed -n 's/^redis-cli \([0-9]*\)\..*/\1/p')
	[[ $v =~ ^[0-9]+$ && $v -ge 5 ]] ||
		die "$(redis-cli --version) has no --cluster create: install Redis 5 or later (Debian: apt-get install redis-server)"
}

# alive PID: the process exists and is not a zombie nobody reaped yet.
alive() {
	local state
	[[ -r /proc/$1/stat ]] || { kill -0 "$1" 2>/dev/null; return; }
	state=$(sed 's/^.*) \(.\).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $state && $state != Z && $state != X ]]
}

# ours PID PORT: PID is the redis-server of PORT, not a process that reused
# the PID (redis-server sets its title to "redis-server 127.0.0.1:PORT [cluster]").
ours() {
	alive "$1" || return 1
	[[ -r /proc/$1/cmdline ]] || return 0
	tr '\0' ' ' <"/proc/$1/cmdline" | grep -qE -- ":$2( |\$)"
}

# cli PORT ARGS...: one redis-cli command to the node of PORT.
cli() {
	local port=$1
	shift
	redis-cli -h 127.0.0.1 -p "$port" "$@"
}

stop() {
	local dir=$1 f n pid port i
	for f in "$dir"/node*.pid; do
		[[ -f $f ]] || continue
		n=$(basename "$f" .pid)
		pid=$(cat "$f" 2>/dev/null || true)
		port=$(cat "$dir/$n.port" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ && -n $port ]] && ours "$pid" "$port"; then
			kill "$pid" 2>/dev/null || true
			for i in $(seq 1 50); do
				alive "$pid" || break
				sleep 0.1
			done
			if alive "$pid"; then
				kill -KILL "$pid" 2>/dev/null || true
			fi
		fi
		rm -f "$f"
	done
}

start() {
	local dir=$1 port0=$2
	[[ $port0 =~ ^[0-9]+$ && $port0 -ge 1 && $port0 -le 55533 ]] ||
		die "PORT0 $port0 is not a port from 1 to 55533 (the cluster bus listens on port + 10000)"
	need_redis
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	local f
	for f in "$dir"/node*.pid; do
		[[ -f $f ]] || continue
		local pid port
		pid=$(cat "$f" 2>/dev/null || true)
		port=$(cat "${f%.pid}.port" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ && -n $port ]] && ours "$pid" "$port"; then
			die "a node started in $dir still runs (pid $pid, port $port): cluster.sh stop $dir first"
		fi
		rm -f "$f"
	done
	local ports=() addrs=() i p
	for i in 0 1 2; do
		p=$((port0 + i))
		if (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			die "127.0.0.1:$p is in use"
		fi
		if (: <"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null; then
			die "127.0.0.1:$((p + 10000)) (the cluster bus of port $p) is in use"
		fi
		ports+=("$p")
		addrs+=("127.0.0.1:$p")
	done
	trap 'stop "$dir"' ERR
	local timeout=${ESIGNFLOW_REDIS_CLUSTER_START_TIMEOUT:-30}
	for i in 0 1 2; do
		p=${ports[$i]}
		# A cluster state left by an earlier run would make the node join
		# that cluster again instead of a new one.
		rm -f "$dir/nodes$i.conf" "$dir/node$i.log"
		echo "$p" >"$dir/node$i.port"
		if ! redis-server --port "$p" --bind 127.0.0.1 --save '' --appendonly no \
			--cluster-enabled yes --cluster-config-file "$dir/nodes$i.conf" --cluster-node-timeout 5000 \
			--daemonize yes --pidfile "$dir/node$i.pid" --dir "$dir" --logfile "$dir/node$i.log"; then
			stop "$dir"
			die "redis-server on 127.0.0.1:$p did not start; see $dir/node$i.log"
		fi
	done
	local deadline=$((SECONDS + timeout)) info
	for i in 0 1 2; do
		p=${ports[$i]}
		until [[ $(cli "$p" ping 2>/dev/null) == PONG ]]; do
			if ((SECONDS >= deadline)); then
				tail -20 "$dir/node$i.log" >&2 2>/dev/null || true
				stop "$dir"
				die "redis-server on 127.0.0.1:$p did not answer PING within ${timeout}s; see $dir/node$i.log"
			fi
			sleep 0.1
		done
		info=$(cli "$p" info cluster | tr -d '\r')
		if [[ $info != *cluster_enabled:1* ]]; then
			stop "$dir"
			die "$(redis-server --version | cut -d' ' -f1-3) on 127.0.0.1:$p runs without cluster mode (INFO cluster: ${info//$'\n'/ }); install a Redis with cluster support (Debian: apt-get install redis-server)"
		fi
	done
	if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes >"$dir/create.log" 2>&1; then
		tail -20 "$dir/create.log" >&2
		stop "$dir"
		die "redis-cli --cluster create ${addrs[*]} failed; see $dir/create.log"
	fi
	for i in 0 1 2; do
		p=${ports[$i]}
		until info=$(cli "$p" cluster info 2>/dev/null | tr -d '\r') &&
			[[ $info == *cluster_state:ok* && $info == *cluster_known_nodes:3* ]]; do
			if ((SECONDS >= deadline)); then
				stop "$dir"
				die "127.0.0.1:$p did not reach cluster_state:ok with 3 known nodes within ${timeout}s (CLUSTER INFO: $(echo "$info" | grep -E '^cluster_(state|known_nodes|slots_assigned):' | tr '\n' ' '))"
			fi
			sleep 0.1
		done
	done
	trap - ERR
	local IFS=,
	echo "${addrs[*]}" >"$dir/addrs"
	echo "${addrs[*]}"
}

case ${1:-} in
start)
	[[ $# -eq 3 ]] || usage
	start "$2" "$3"
	;;
stop)
	[[ $# -eq 2 ]] || usage
	[[ -d $2 ]] || exit 0
	stop "$(cd "$2" && pwd)"
	;;
*) usage ;;
esac
