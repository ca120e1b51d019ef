#!/usr/bin/env bash
# One entry point for a fresh machine:
#   bash infra/run.sh demo    # install what is missing, then run the live demo
#   bash infra/run.sh test    # install what is missing, then lint and run every test
#   bash infra/run.sh setup   # only install
#   bash infra/run.sh bench   # the benchmark (prints figures; see docs/benchmarks.md)
#   bash infra/run.sh faults  # the fault suite: real processes killed mid-stream (~6 min)
# Installs are incremental: the virtualenv lives outside the checkout
# ($SWINGDIAL_VENV, default ~/.cache/swingdial/venv) and its dependencies are reinstalled
# only when pyproject.toml changes, so torch (pinned, several GB) is not fetched again.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${SWINGDIAL_VENV:-$HOME/.cache/swingdial/venv}
PYTHON=${SWINGDIAL_PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '\033[1m[swingdial]\033[0m %s\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    say "need root for: $*"; return 1; fi
}

apt_install() {
  # Debian packages the project needs, installed only when missing.
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

setup_system() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless
  command -v mvn >/dev/null || apt_install maven
}

setup_python() {
  if [ ! -x "$VENV/bin/python" ]; then
    say "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  local want have
  want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
  have=$(cat "$VENV/.swingdial-deps" 2>/dev/null || true)
  if [ "$want" != "$have" ]; then
    say "installing Python dependencies (first time: torch is large; pip's cache keeps it)"
    "$VENV/bin/pip" install -q --upgrade pip
    # (PYTHONWARNINGS: setuptools' editable-install notices are not for our users)
    PYTHONWARNINGS=ignore "$VENV/bin/pip" install -q -e "$ROOT[dev]"
    echo "$want" >"$VENV/.swingdial-deps"
  else
    # Dependencies are current; only point the editable install at this checkout.
    PYTHONWARNINGS=ignore "$VENV/bin/pip" install -q --no-deps --no-build-isolation -e "$ROOT" >/dev/null
  fi
}

setup_broker_jars() {
  # Resolve Apache Kafka from Maven Central once (jars stay in ~/.m2).
  "$VENV/bin/python" -c "from infra.broker import prefetch; from stream.config import get_settings; prefetch(get_settings().kafka_dir)"
}

setup() {
  setup_system
  setup_python
  setup_broker_jars
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup ;;
  demo)
    setup
    exec "$VENV/bin/swingdial" demo "$@"
    ;;
  test)
    setup
    apt_install chromium chromium-driver
    cd "$ROOT"
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"  # the package, as configured in pyproject.toml
    exec "$VENV/bin/pytest" -ra "$@"
    ;;
  faults)
    setup
    cd "$ROOT"
    exec "$VENV/bin/pytest" -m faults -s -ra "$@"
    ;;
  bench)
    setup
    exec "$VENV/bin/swingdial" bench "$@"
    ;;
  *)
    sed -n '2,8p' "$0"
    exit 2
    ;;
esac
