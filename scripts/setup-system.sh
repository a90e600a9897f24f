#!/usr/bin/env bash
# System packages the project needs, installed once by `make demo`, `make test` and .ci/run.
# Each entry is "command:package": the package is installed when the command is missing.
# ROOPIK_SKIP_SYSTEM_PACKAGES=1 skips this step (for whoever manages packages himself).
set -euo pipefail

REQUIRED=(
  make:make                  # the README's commands
  bwrap:bubblewrap           # sandbox isolation level `bwrap`
  unshare:util-linux         # levels netns+uid / netns / uid
  setpriv:util-linux         # running sandboxed code as uid 65534
  chromium:chromium          # UI capture: the headless browser (driven by playwright, never `playwright install`)
  node:nodejs                # UI capture: the build worker (esbuild + Tailwind)
  npm:npm                    # UI capture: `npm ci` of roopik_rl_mcp/ui/runtime
  fc-list:fontconfig         # fonts for screenshots
)
# Packages without a command of their own: installed when this check fails.
FONTS_CHECK='fc-list 2>/dev/null | grep -qi "liberation"'
FONTS_PACKAGE=fonts-liberation

if [ "${ROOPIK_SKIP_SYSTEM_PACKAGES:-}" = "1" ]; then
  echo "setup-system: skipped (ROOPIK_SKIP_SYSTEM_PACKAGES=1); the sandbox may run at a weaker isolation level"
  exit 0
fi

missing_packages() {
  local entry seen=" "
  for entry in "${REQUIRED[@]}"; do
    if ! command -v "${entry%%:*}" >/dev/null 2>&1 && [[ "$seen" != *" ${entry##*:} "* ]]; then
      seen+="${entry##*:} "
    fi
  done
  if ! sh -c "$FONTS_CHECK"; then
    seen+="$FONTS_PACKAGE "
  fi
  echo "$seen" | xargs
}

missing=$(missing_packages)
[ -z "$missing" ] && exit 0

install="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "setup-system: missing system packages: $missing (no apt-get here: install them with your package manager, or set ROOPIK_SKIP_SYSTEM_PACKAGES=1)" >&2
  exit 1
elif [ "$(id -u)" = "0" ]; then
  echo "setup-system: installing $missing"
  sh -c "$install"
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  echo "setup-system: installing $missing (sudo)"
  sudo -n sh -c "$install"
else
  echo "setup-system: missing system packages: $missing; install them as root: sudo sh -c '$install' (or set ROOPIK_SKIP_SYSTEM_PACKAGES=1 to go on without them)" >&2
  exit 1
fi

still=$(missing_packages)
if [ -n "$still" ]; then
  echo "setup-system: still missing after the install: $still" >&2
  exit 1
fi
