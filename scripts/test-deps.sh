#!/usr/bin/env bash
# Installs the real peers the tests talk to, when they are missing.
set -euo pipefail
need=()
command -v ssh >/dev/null || need+=(openssh-client)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v openssl >/dev/null || need+=(openssl)
command -v git >/dev/null || need+=(git)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${need[@]}"
fi
command -v go >/dev/null || { echo "Go is required (https://go.dev/dl/); see README.md" >&2; exit 1; }
