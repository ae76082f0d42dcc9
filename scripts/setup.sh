#!/usr/bin/env bash
# Makes a fresh Debian host ready to run tapas: missing Debian packages,
# npm ci, the native addon and the TypeScript build. Safe to run again: each
# step is skipped when its result is already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*" >&2; }

missing=()
while read -r package; do
  [[ -z "$package" || "$package" == \#* ]] && continue
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done < scripts/packages.txt
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]} (run as root, or install them)"
    exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -qq
  # tshark asks whether non-root users may capture: answer no, without a prompt.
  echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

stamp=node_modules/.tapas-lock-stamp
if [[ ! -f "$stamp" ]] || ! cmp -s package-lock.json "$stamp"; then
  say "npm ci"
  npm ci --no-audit --no-fund >&2
  cp package-lock.json "$stamp"
fi

newest_source=$(find native binding.gyp -newer build/Release/tapas.node 2>/dev/null | grep -v '^native/build' | head -1 || true)
if [[ ! -f build/Release/tapas.node || -n "$newest_source" ]]; then
  say "building the native engine"
  # An incremental build replaces tapas.node only when the new one is linked,
  # so a daemon or test starting meanwhile still finds the old one (rebuild
  # would delete it first).
  if [[ ! -f build/Makefile || binding.gyp -nt build/Makefile ]]; then npx --no-install node-gyp configure >&2; fi
  npx --no-install node-gyp build >&2
fi

if [[ ! -d dist ]] || [[ -n "$(find src tsconfig.json -newer dist/.stamp 2>/dev/null | head -1)" ]] || [[ ! -f dist/.stamp ]]; then
  say "compiling TypeScript"
  npx --no-install tsc -p tsconfig.json >&2
  touch dist/.stamp
fi

# The operator's page (web/, served by tapas serve at /): bundled by esbuild from node_modules into dist/web.
if [[ ! -f dist/web/.stamp ]] || [[ -n "$(find web src/model src/engine/plan.ts package-lock.json -newer dist/web/.stamp 2>/dev/null | head -1)" ]]; then
  say "building the web page"
  node web/build.mjs >&2
fi
