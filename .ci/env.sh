# Sourced by the .ci scripts: shared settings and helpers. Not executable on its own.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT

# One build cache outside the clone, shared by every script and by fresh clones.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/sdxl-web/target}"
export PATH="$HOME/.cargo/bin:$PATH"

# Which toolchain builds wasm32: rustup's when it has the target, else Debian's rustc-web
# (linked into rustup as `debian-web`, or used directly when there is no rustup at all).
wasm_toolchain_env() {
  if command -v rustup >/dev/null 2>&1; then
    if rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
      return 0
    fi
    export RUSTUP_TOOLCHAIN=debian-web
  else
    export PATH="/usr/bin:$PATH"
  fi
}

# `stage NAME CMD...`: run a command, print how long it took, remember it for the summary.
STAGES=()
stage() {
  local name="$1"; shift
  local t0=$SECONDS
  echo "==> [$name] $*"
  "$@"
  local dt=$((SECONDS - t0))
  STAGES+=("$(printf '%-28s %4dm%02ds' "$name" $((dt / 60)) $((dt % 60)))")
  echo "<== [$name] done in ${dt}s"
}
stage_summary() {
  echo "---- stage timings ----"
  printf '%s\n' "${STAGES[@]}"
}
