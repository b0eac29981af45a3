"""A real IMAP server for the tests: Debian's Dovecot on 127.0.0.1, in a throw-away folder.

One Dovecot per test session (``dovecot`` fixture), started from its own config with a
``passwd-file`` of users and Maildir mailboxes under a temporary folder; each test gets a fresh
user (``imap_user``), so mailboxes never mix. Messages go in with IMAP APPEND. ``scripts/test.sh``
installs Dovecot (``scripts/install-dovecot.sh``) when ``/usr/sbin/dovecot`` is missing; without it
the tests marked ``imap`` skip, except in CI (``CI=true``), where a skip fails the run.

Run as root, Dovecot wants its login and internal processes unprivileged (the ``dovenull`` and
``dovecot`` users the package creates) and mail owned by a non-root user (``dovecot``); run as
anyone else, everything is that user.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from newsletter.events.imap import Mailbox

DOVECOT = Path("/usr/sbin/dovecot")
#: Mailbox users made for one session: one per test that asks.
USERS = 500

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = 1
mail_location = maildir:{root}/mail/%u
auth_cache_size = 0
mail_fsync = never
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={root}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ImapUser:
    server: Dovecot
    name: str
    password: str

    def mailbox(self, **kwargs: Any) -> Mailbox:
        options: dict[str, Any] = {"tls": "none", "username": self.name, "password": self.password}
        options.update(kwargs)
        return Mailbox("127.0.0.1", self.server.port, **options)

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        with self.mailbox(folder="INBOX") as box:
            for raw in messages:
                box.append(raw, folder)

    def count(self, folder: str) -> int:
        """Messages in ``folder`` (0 if it does not exist)."""
        with self.mailbox(folder="INBOX") as box:
            client = box._client
            if not client.folder_exists(folder):
                return 0
            return int(client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])

    def settings(self, **bounces: Any) -> dict[str, Any]:
        """The ``[bounces]`` table reading this user's mailbox."""
        table = {
            "imap_host": "127.0.0.1",
            "port": self.server.port,
            "tls": "none",
            "username": self.name,
            "password_env": "TEST_IMAP_PASSWORD",
            "timeout": 10,
        }
        table.update(bounces)
        return table


class Dovecot:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.passwd = root / "passwd"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        root = self.root
        for name in ("run", "state", "mail"):
            (root / name).mkdir(parents=True, exist_ok=True)
        # Every user is written before the server starts: Dovecot notices a changed passwd-file by
        # its modification time, in whole seconds, so users added later could go unseen.
        self.users = [ImapUser(self, f"u{n}", secrets.token_hex(8)) for n in range(USERS)]
        self.passwd.write_text(
            "".join(f"{u.name}:{{PLAIN}}{u.password}\n" for u in self.users), encoding="utf-8"
        )
        if os.geteuid() == 0:
            internal, login = "dovecot", "dovenull"
            uid, gid = pwd.getpwnam("dovecot").pw_uid, grp.getgrnam("dovecot").gr_gid
            os.chown(root / "mail", uid, gid)
            root.chmod(0o755)  # the mail user walks into it
        else:
            internal = login = pwd.getpwuid(os.getuid()).pw_name
            uid, gid = os.getuid(), os.getgid()
        group = grp.getgrgid(gid).gr_name if os.geteuid() == 0 else grp.getgrgid(os.getgid()).gr_name
        config = CONFIG.format(
            root=root,
            port=self.port,
            internal_user=internal,
            internal_group=group,
            login_user=login,
            uid=uid,
            gid=gid,
        )
        (root / "dovecot.conf").write_text(config, encoding="utf-8")
        self.process = subprocess.Popen(
            [str(DOVECOT), "-F", "-c", str(root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_for_greeting()

    def _wait_for_greeting(self, within: float = 20.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot exited: {self.log()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(64).startswith(b"* OK"):
                        return
            except OSError:
                pass
            time.sleep(0.05)  # a readiness poll while the server starts, not a wait for a result
        raise RuntimeError(f"dovecot did not greet within {within} s: {self.log()}")

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(encoding="utf-8", errors="replace")[-2000:] if path.exists() else ""

    def user(self) -> ImapUser:
        """A user whose mailbox no test has used yet."""
        if not self.users:
            raise RuntimeError(f"more than {USERS} IMAP users asked for in one session")
        return self.users.pop(0)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed (scripts/install-dovecot.sh installs it)")
    root = Path(tempfile.mkdtemp(prefix="newsletter-dovecot-"))
    server = Dovecot(root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def imap_user(dovecot: Dovecot) -> ImapUser:
    return dovecot.user()
