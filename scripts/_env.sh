# Shared by scripts/demo and scripts/test: make .venv with car2mqtt and its dev tools.
# Re-installs only when pyproject.toml changes, so repeated runs start in a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CAR2MQTT_VENV:-$ROOT/.venv}"

pick_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "car2mqtt needs Python 3.11 or newer; none was found on PATH." >&2
  return 1
}

ensure_venv() {
  local stamp="$VENV/.car2mqtt-installed" want
  want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  local py; py="$(pick_python)"
  echo "==> preparing $VENV with $("$py" --version)" >&2
  rm -f "$stamp"
  # Explicit checks: set -e does not fire inside functions called from a && list.
  "$py" -m venv "$VENV" || return 1
  "$VENV/bin/python" -m pip install --quiet --upgrade pip || return 1
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[dev]" || return 1
  echo "$want" > "$stamp"
}

ensure_apt() {
  # Installs Debian packages the tests need, when they are missing and we are allowed to.
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "==> installing ${missing[*]} with apt-get" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

offer_apt() {
  # Installs optional Debian packages when that needs no password: as root, or with sudo that
  # asks for none. Never fails: what is missing is said, and the caller carries on without it.
  local missing=()
  command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 || return 0
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local sudo=""
  if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
      sudo="sudo -n"
    else
      echo "==> not installing ${missing[*]} (needs root); the demo says what to use instead" >&2
      return 0
    fi
  fi
  echo "==> installing ${missing[*]} with apt-get" >&2
  if ! { $sudo apt-get update -qq &&
         $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" \
           >/dev/null; }
  then
    echo "==> could not install ${missing[*]}; the demo says what to use instead" >&2
  fi
  return 0
}
