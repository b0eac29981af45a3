#!/usr/bin/env bash
# The bounce-mailbox tests read a real IMAP server: Debian's Dovecot, started by the tests
# themselves (tests/imap_server.py) on a loopback port; the system service is never used.
set -euo pipefail
if [ -x /usr/sbin/dovecot ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "Dovecot is missing: run 'apt-get update && apt-get install -y dovecot-imapd' as root" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dovecot-imapd >/dev/null
