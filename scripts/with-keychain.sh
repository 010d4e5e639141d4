#!/usr/bin/env bash
# Run a command with real secret stores: an unlocked GNOME Keyring (Secret Service) on a private
# D-Bus session, and a fresh kernel session keyring (keyutils). Nothing touches the caller's own
# keychain: the keyring lives in a throwaway XDG_DATA_HOME.
set -euo pipefail
if [ -z "${SCANMINT_KEYCHAIN_READY:-}" ]; then
  export SCANMINT_KEYCHAIN_READY=1
  exec dbus-run-session -- "$0" "$@"
fi
keyring_home=$(mktemp -d)
trap 'rm -rf "$keyring_home"' EXIT
export XDG_DATA_HOME="$keyring_home"
printf 'throwaway-test-password' | gnome-keyring-daemon --unlock --components=secrets >/dev/null
keyctl session - "$@"
