#!/usr/bin/env bash
# `npm run bench [-- --quick] [...]`: sets the host up, installs the bench's
# own Debian packages when missing, compiles the harness and runs it.
# Arguments go to the harness (bench/main.ts; --help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bench] %s\n' "$*" >&2; }

bash scripts/setup.sh

# The contenders and tools only the benchmark needs (not in scripts/packages.txt):
# daemonlogger and netsniff-ng are soft taps to compare with, trafgen comes
# with netsniff-ng, nftables and iproute2 are the kernel's own mirroring.
# linux-perf is optional: only for profiling a missed target.
required=(daemonlogger netsniff-ng nftables iproute2 tcpdump python3)
optional=(linux-perf)
missing=()
for package in "${required[@]}" "${optional[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    say "missing Debian packages: ${missing[*]} (the benchmark builds namespaces: run it as root)"
    exit 1
  fi
  say "installing ${missing[*]}"
  apt-get update -qq >&2 || true
  for package in "${missing[@]}"; do
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$package" >&2; then
      if [[ " ${optional[*]} " == *" $package "* ]]; then
        say "optional $package could not be installed; going on without it"
      else
        say "cannot install $package"; exit 1
      fi
    fi
  done
fi

npx --no-install tsc -p bench/tsconfig.json
exec node dist/bench/main.js "$@"
