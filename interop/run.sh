#!/usr/bin/env bash
# Foreign clients against a running esignflow: Java (Apache kafka-clients +
# Apache Avro), Python (confluent-kafka + its Avro serdes) and Node (KafkaJS +
# @kafkajs/confluent-schema-registry). Each sends one SigningRequest in the
# Confluent wire format and follows its envelope on esignflow.status.v1
# (read_committed) to a terminal status, checking versions 1, 2, 3...
#
#   interop/run.sh [--brokers 127.0.0.1:9092] [--registry http://127.0.0.1:8081]
#                  [--only java|python|js] [--timeout 120] [--sequential]
#                  [--reinstall] [--verbose]
#
# Installs what each client needs inside interop/ first (mvn package, a venv
# with pip install -r, npm ci), skipping a step whose inputs have not changed
# since it last succeeded. Exits 0 when every selected client passed, 1 when
# any failed (named on the last line), 2 on a usage or preflight error.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
brokers=127.0.0.1:9092
registry=http://127.0.0.1:8081
timeout=120
only=""
parallel=1
reinstall=0
verbose=0

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "interop: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
  case "$1" in
    --brokers) brokers=${2:?--brokers needs a value}; shift 2 ;;
    --brokers=*) brokers=${1#*=}; shift ;;
    --registry) registry=${2:?--registry needs a value}; shift 2 ;;
    --registry=*) registry=${1#*=}; shift ;;
    --only) only=${2:?--only needs a value}; shift 2 ;;
    --only=*) only=${1#*=}; shift ;;
    --timeout) timeout=${2:?--timeout needs a value}; shift 2 ;;
    --timeout=*) timeout=${1#*=}; shift ;;
    --sequential) parallel=0; shift ;;
    --reinstall) reinstall=1; shift ;;
    -v|--verbose) verbose=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
registry=${registry%/}
[[ $timeout =~ ^[0-9]+$ ]] && [ "$timeout" -gt 0 ] || die "--timeout wants whole seconds > 0, not '$timeout'"

clients=(java python js)
if [ -n "$only" ]; then
  clients=()
  IFS=', ' read -r -a wanted <<<"$only"
  for c in "${wanted[@]}"; do
    case "$c" in java|python|js) clients+=("$c") ;; *) die "--only: unknown client '$c' (java, python or js)" ;; esac
  done
fi

logs="$here/.logs"
mkdir -p "$logs"
declare -A result   # client -> PASS/FAIL line
declare -A failed   # client -> 1

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
fail() { failed[$1]=1; result[$1]="$1: FAIL: $2"; }

# ---- preflight: is esignflow there? ---------------------------------------
preflight() {
  local subj body
  for subj in esignflow.requests.v1-value esignflow.status.v1-value; do
    if ! body=$(curl -fsS --max-time 5 "$registry/subjects/$subj/versions/latest" 2>&1); then
      die "schema registry at $registry has no latest version of $subj ($body): is esignflow running, and has it registered its schemas?"
    fi
  done
  local b host port ok=0
  IFS=',' read -r -a bs <<<"$brokers"
  for b in "${bs[@]}"; do
    host=${b%:*}; port=${b##*:}
    if timeout 3 bash -c "exec 3<>/dev/tcp/$host/$port" 2>/dev/null; then ok=1; break; fi
  done
  [ $ok = 1 ] || die "no Kafka broker answers at $brokers"
}

# ---- install steps -------------------------------------------------------
# A step runs quietly into .logs/<client>-install.log; on failure its log is
# shown. A stamp holding a hash of the step's inputs lets a later run skip it.
inputs_hash() { (cd "$here" && cat "$@" 2>/dev/null | sha256sum | cut -c1-16); }

install_step() { # client stamp-file hash command...
  local c=$1 stamp=$2 hash=$3; shift 3
  if [ $reinstall = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$hash" ]; then
    echo "interop: $c: install up to date"
    return 0
  fi
  local t0; t0=$(now)
  if ! "$@" >"$logs/$c-install.log" 2>&1; then
    echo "interop: $c: install FAILED ($*); its output:" >&2
    tail -n 40 "$logs/$c-install.log" | sed "s/^/  $c| /" >&2
    fail "$c" "install failed: $* (log: $logs/$c-install.log)"
    return 1
  fi
  echo "$hash" >"$stamp"
  echo "interop: $c: installed in $(secs "$t0" "$(now)")s"
}

need() { # client tool...
  local c=$1 t; shift
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || { fail "$c" "'$t' is not installed"; echo "interop: $c: '$t' is not installed" >&2; return 1; }
  done
}

install_java() {
  need java java mvn || return 1
  local srcs; srcs=$(cd "$here" && find java/pom.xml java/src -type f | sort)
  # shellcheck disable=SC2086
  install_step java "$here/java/target/.installed" "$(inputs_hash $srcs)" \
    mvn -B -q -f "$here/java/pom.xml" package
}

install_python() {
  need python python3 || return 1
  local venv="$here/python/.venv"
  if [ $reinstall = 1 ] || [ ! -x "$venv/bin/python" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv" >"$logs/python-venv.log" 2>&1 || {
      echo "interop: python: python3 -m venv failed:" >&2; sed 's/^/  python| /' "$logs/python-venv.log" >&2
      fail python "python3 -m venv $venv failed"; return 1; }
  fi
  install_step python "$venv/.installed" "$(inputs_hash python/requirements.txt)" \
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/python/requirements.txt"
}

install_js() {
  need js node npm || return 1
  install_step js "$here/js/node_modules/.installed" "$(inputs_hash js/package.json js/package-lock.json)" \
    npm ci --prefix "$here/js" --no-audit --no-fund --loglevel=error
}

# ---- running -------------------------------------------------------------
cmd_of() {
  local c=$1 v=()
  [ $verbose = 1 ] && v=(--verbose)
  case "$c" in
    java) echo java -jar "$here/java/target/interop-java.jar" ;;
    python) echo "$here/python/.venv/bin/python" "$here/python/client.py" ;;
    js) echo node "$here/js/client.js" ;;
  esac
  echo --brokers "$brokers" --registry "$registry" --timeout "$timeout" "${v[@]}"
}

run_client() { # client: writes .logs/<c>.out (stdout), .err (stderr), .rc, .secs
  local c=$1 t0 rc
  t0=$(now)
  # The clients time themselves out; the outer bound is a safety net.
  # shellcheck disable=SC2046
  timeout --kill-after=10 $((timeout + 60)) $(cmd_of "$c") >"$logs/$c.out" 2>"$logs/$c.err" </dev/null
  rc=$?
  echo "$rc" >"$logs/$c.rc"
  secs "$t0" "$(now)" >"$logs/$c.secs"
}

collect() {
  local c=$1 rc line
  rc=$(cat "$logs/$c.rc" 2>/dev/null || echo 99)
  line=$(grep -E "^$c: " "$logs/$c.out" 2>/dev/null | tail -n 1)
  if [ "$rc" = 0 ]; then
    result[$c]="$line [$(cat "$logs/$c.secs")s]"
    return
  fi
  [ "$rc" = 124 ] || [ "$rc" = 137 ] && line="$c: FAIL: killed after $((timeout + 60))s (the client did not stop by itself)"
  [ -n "$line" ] || line="$c: FAIL: exited $rc without a summary"
  failed[$c]=1
  result[$c]="$line [exit $rc, $(cat "$logs/$c.secs")s]"
  if [ -s "$logs/$c.err" ]; then
    echo "interop: $c: stderr (last lines, full log $logs/$c.err):" >&2
    tail -n 15 "$logs/$c.err" | sed "s/^/  $c| /" >&2
  fi
}

preflight
echo "interop: esignflow at brokers $brokers, registry $registry; clients: ${clients[*]}"

runnable=()
for c in "${clients[@]}"; do
  "install_$c" && runnable+=("$c")
done

t0=$(now)
if [ ${#runnable[@]} -gt 0 ]; then
  echo "interop: running ${runnable[*]} ($([ $parallel = 1 ] && echo "in parallel" || echo "one after another"), timeout ${timeout}s each)"
  pids=()
  for c in "${runnable[@]}"; do
    rm -f "$logs/$c.out" "$logs/$c.err" "$logs/$c.rc" "$logs/$c.secs"
    if [ $parallel = 1 ]; then
      run_client "$c" & pids+=($!)
    else
      run_client "$c"
    fi
  done
  for p in "${pids[@]}"; do wait "$p"; done
  for c in "${runnable[@]}"; do collect "$c"; done
fi

echo "interop: results (${#runnable[@]} run in $(secs "$t0" "$(now)")s):"
bad=()
for c in "${clients[@]}"; do
  echo "  ${result[$c]}"
  [ -n "${failed[$c]:-}" ] && bad+=("$c")
done
if [ ${#bad[@]} -gt 0 ]; then
  echo "interop: FAILED: ${bad[*]}"
  exit 1
fi
echo "interop: all passed: ${clients[*]}"
