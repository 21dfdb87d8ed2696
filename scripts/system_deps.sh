#!/usr/bin/env bash
# Install the Debian packages sideman needs when root and missing; otherwise say what to install.
# With CI=true a package that cannot be installed is a failure.
set -u
missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    && exit 0
  echo "error: apt-get could not install: ${missing[*]}" >&2
  exit 1
fi
echo "sideman needs these Debian packages: ${missing[*]}" >&2
echo "  install them with: sudo apt-get install ${missing[*]}" >&2
case "${CI:-}" in true|1|yes) exit 1 ;; esac
exit 0
