# Helpers for workloads (sourced by /init with the mount as working directory).
# Each check prints one line the host parses:
#   OPENEFS-STEP <name> ok|fail <detail>      OPENEFS-METRIC <name> <value>
#   OPENEFS-PAUSE <name>   (then waits for the host to answer "continue")

_ok() { echo "OPENEFS-STEP $1 ok"; }
_fail() {
  echo "OPENEFS-STEP $1 fail $2"
  echo "$1" >>/tmp/openefs-fails
}
_flat() { tail -n 3 | tr '\n' ' '; }

# step NAME CMD... -- CMD must exit 0.
step() {
  _name=$1; shift
  if _out=$("$@" 2>&1); then _ok "$_name"; else _fail "$_name" "rc=$? $(echo "$_out" | _flat)"; fi
}

# expect_eq NAME EXPECTED ACTUAL
expect_eq() {
  if [ "$2" = "$3" ]; then _ok "$1"; else _fail "$1" "expected '$2' got '$3'"; fi
}

# expect_err NAME MESSAGE CMD... -- CMD must fail with the errno whose
# strerror text is MESSAGE (e.g. "No such file or directory").
expect_err() {
  _name=$1 _want=$2; shift 2
  if _out=$("$@" 2>&1); then
    _fail "$_name" "succeeded, expected '$_want'"
  else
    case "$_out" in
      *"$_want"*) _ok "$_name" ;;
      *) _fail "$_name" "expected '$_want' got '$(echo "$_out" | _flat)'" ;;
    esac
  fi
}

metric() { echo "OPENEFS-METRIC $1 $2"; }

# section NAME -- marks where time goes (guest uptime), for the console.
section() { echo "OPENEFS-SECTION $1 $(now)"; }

# Seconds since boot with centiseconds; busybox date has only whole seconds.
now() { cut -d' ' -f1 /proc/uptime; }

# mbps BYTES START END -- MB/s (10^6) with one decimal.
mbps() { awk -v b="$1" -v s="$2" -v e="$3" 'BEGIN { d = e - s; if (d <= 0) d = 0.01; printf "%.1f", b / d / 1e6 }'; }

sha() { sha256sum "$1" | cut -d' ' -f1; }

# pause NAME -- hands control to the host (e.g. to restart the server) and
# resumes when it answers.
pause() {
  echo "OPENEFS-PAUSE $1"
  read -r _reply </dev/console
  case "$_reply" in
    *continue*) _ok "pause-$1" ;;
    *) _fail "pause-$1" "host answered '$_reply'" ;;
  esac
}

# wait_file FILE -- until FILE is non-empty, at most 20 s.
wait_file() {
  _i=0
  while [ ! -s "$1" ] && [ "$_i" -lt 200 ]; do usleep 100000; _i=$((_i + 1)); done
  [ -s "$1" ]
}

# flock ARGS... -- util-linux's flock: busybox has no flock applet, so the
# host ships it with its libraries (RunOptions::binaries in e2e/src/qemu.rs).
flock() {
  /openefs/bin/flock "$@"
}
# Exit status of a refused non-blocking flock (-E), distinct from failures.
DENIED=75
