"""An SFTP folder as a file-drop inbox (asyncssh), for `kind: files` with `directory: sftp://…`.

Settings (beside the file-drop settings of adapters/files.py):

    directory: sftp://wsjkw@10.1.2.3:22/export/cases   # user, host, port (default 22) and the remote folder
    password_env: CQ_WSJKW_SFTP_PASSWORD              # the environment variable holding the password, and/or
    private_key_env: CQ_WSJKW_SFTP_KEY                # … holding a private key: a file path or the key text itself
    private_key_passphrase_env: CQ_WSJKW_SFTP_KEY_PASSPHRASE   # optional, for an encrypted key
    known_hosts: /etc/tongban/known_hosts             # default: ~/.ssh/known_hosts
    insecure_skip_host_check: false                   # see below
    timeout: 30                                       # seconds for connecting and for each metadata operation
    retry: {attempts: 3, initial_wait: 0.5, max_wait: 10}
    download_dir: .tongban/tmp/sftp                   # default: $TONGBAN_HOME/tmp/sftp

Credentials never appear in the mapping file: a password in the URL is refused. `known_hosts: none` turns the
server's host key check off and is accepted **only** together with `insecure_skip_host_check: true`; that is
for the sandbox (a test server with a throw-away host key), never for a real department's server, where it
would let anyone on the network path pose as the server and read the 办件 data.

Semantics are those of the local folder: a file is claimed by a remote rename into processing/ (SFTP renames
do not overwrite, so one claimant wins), downloaded to a temporary file while it is read (memory stays bounded;
the copy is removed afterwards), moved to done/ on commit, back on abort, to failed/ with an uploaded
`<name>.reason.txt` when it cannot be read. SFTP (v3) has no ctime, so a claim sets the file's access time to the
claim time (its modification time is kept) and `reclaim_after_seconds` measures from it. Stability is judged by
comparing the server's modification times with this machine's clock: keep the clocks in sync (NTP) or set
`stable_seconds` above the skew.

The SFTP settings are declared in adapters/sftp_settings.py (`SftpInbox.settings_model`). Connection failures and
timeouts are retried with the one retry policy (tongban.retry: exponential backoff with jitter) and then raised as
TransientSourceError; a refused login or an unknown host key is a SourceError naming the variable or file to fix.
"""
from __future__ import annotations

import asyncio
import fnmatch
import logging
import os
import posixpath
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, Awaitable, Callable, Iterator, TypeVar
from urllib.parse import unquote, urlsplit

import asyncssh

from adapters.base import SourceError, TransientSourceError
from adapters.inbox import DONE, FAILED, INBOX, PROCESSING, Entry, Inbox
from adapters.settings import validate_settings
from adapters.sftp_settings import SFTP_SETTINGS, SftpSettings
from tongban.retry import Retryable
from tongban.settings import environment_value

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures of the connection itself, worth a new connection and another try.
_CONNECTION_ERRORS = (OSError, TimeoutError, asyncssh.ConnectionLost, asyncssh.DisconnectError,
                      asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection, asyncssh.ChannelOpenError)


class _Transient(Retryable):
    """Internal: one attempt failed in a way worth retrying."""


class _EventLoopThread:
    """A private asyncio loop on a daemon thread, so that the adapter's synchronous methods can drive asyncssh
    whatever loop (or none) the caller runs in (Airflow tasks, the CLI, tests)."""

    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        if not self.thread.is_alive():
            self.loop.close()


def _regular(attrs: asyncssh.SFTPAttrs) -> bool:
    return attrs.type == asyncssh.FILEXFER_TYPE_REGULAR


def _entry(name: str, attrs: asyncssh.SFTPAttrs) -> Entry:
    return Entry(name, int(attrs.size or 0), float(attrs.mtime or 0), float(attrs.atime) if attrs.atime else None)


class SftpInbox(Inbox):
    """A drop folder on an SFTP server (see the module docstring for settings and semantics)."""

    settings_model = SftpSettings

    def __init__(self, system: str, url: str, settings: dict[str, Any]):
        super().__init__(system)
        # Only the SFTP part of the file-drop section is this class's to check (the rest is the files adapter's).
        config = validate_settings(SftpSettings, system, {k: v for k, v in settings.items() if k in SFTP_SETTINGS})
        parts = urlsplit(url)
        if parts.password is not None:
            raise SourceError(system, "the sftp:// URL must not hold a password: name an environment variable in "
                                      "password_env instead")
        if not parts.hostname or not parts.username:
            raise SourceError(system, f"directory {url!r} must look like sftp://user@host:port/path")
        self.host, self.username = parts.hostname, unquote(parts.username)
        try:
            self.port = parts.port or 22
        except ValueError as exc:
            raise SourceError(system, f"directory {url!r}: {exc}") from exc
        self.root = unquote(parts.path) or "."
        self.url = f"sftp://{self.username}@{self.host}:{self.port}{parts.path}"

        self.password_env = settings.get("password_env")
        self.private_key_env = settings.get("private_key_env")
        self.passphrase_env = settings.get("private_key_passphrase_env")
        if not self.password_env and not self.private_key_env:
            raise SourceError(system, "an sftp:// inbox needs password_env and/or private_key_env (the environment "
                                      "variables holding the credentials)")
        known_hosts = settings.get("known_hosts", ())
        if known_hosts is None or (isinstance(known_hosts, str) and known_hosts.strip().lower() == "none"):
            if settings.get("insecure_skip_host_check") is not True:
                raise SourceError(system, "known_hosts: none turns off the server's host key check; it needs "
                                          "insecure_skip_host_check: true as well (sandbox servers only)")
            log.warning("%s: host key check is off for %s (insecure_skip_host_check)", system, self.url)
            self.known_hosts: Any = None
        elif known_hosts == ():
            self.known_hosts = ()  # asyncssh's default: ~/.ssh/known_hosts
        else:
            self.known_hosts = os.path.expanduser(str(known_hosts))
            if not os.path.isfile(self.known_hosts):
                raise SourceError(system, f"known_hosts file {self.known_hosts} does not exist")
        self.timeout = config.timeout
        self.policy = config.retry.policy()
        self._download_dir = settings.get("download_dir")

        self._loop: _EventLoopThread | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    # --- paths and messages -----------------------------------------------------------------------
    def _path(self, folder: str, name: str = "") -> str:
        return posixpath.join(self.root, folder, name) if name else posixpath.join(self.root, folder)

    def describe(self, folder: str = INBOX) -> str:
        return self.url.rstrip("/") + (f"/{folder}" if folder else "")

    def download_dir(self) -> Path:
        if self._download_dir:
            return Path(self._download_dir)
        from tongban.settings import Settings

        return Settings().home / "tmp" / "sftp"

    # --- credentials: from the environment, named in the mapping file ---------------------------------
    def _secret(self, variable: str, role: str) -> str:
        value = environment_value(variable)
        if not value:
            raise SourceError(self.system, f"environment variable {variable} ({role}) is not set")
        return value

    def _client_key(self) -> asyncssh.SSHKey | None:
        if not self.private_key_env:
            return None
        value = self._secret(self.private_key_env, "private_key_env")
        passphrase = self._secret(self.passphrase_env, "private_key_passphrase_env") if self.passphrase_env else None
        try:
            # Key text (PEM, OpenSSH or PuTTY format) rather than a path to a key file.
            if value.lstrip().startswith(("-----BEGIN ", "PuTTY", "openssh-key")):
                return asyncssh.import_private_key(value, passphrase)
            return asyncssh.read_private_key(os.path.expanduser(value), passphrase)
        except (OSError, asyncssh.KeyImportError) as exc:
            raise SourceError(self.system, f"the private key in {self.private_key_env} (private_key_env) cannot be "
                                           f"read: {exc}") from exc

    def _credential_names(self) -> str:
        named = (("password_env", self.password_env), ("private_key_env", self.private_key_env))
        return " and ".join(f"{variable} ({setting})" for setting, variable in named if variable)

    # --- connection -----------------------------------------------------------------------------------
    async def _connect(self, password: str | None, key: asyncssh.SSHKey | None) -> None:
        options: dict[str, Any] = {}
        if password is not None:
            options["password"] = password
        conn = await asyncssh.connect(
            self.host, self.port, username=self.username, known_hosts=self.known_hosts,
            client_keys=[key] if key is not None else None, agent_path=None, config=None,
            connect_timeout=self.timeout, login_timeout=self.timeout,
            # A dead server is noticed during a long download, not only when the OS gives up on the socket.
            keepalive_interval=max(1.0, self.timeout / 3), keepalive_count_max=3, **options)
        try:
            sftp = await asyncio.wait_for(conn.start_sftp_client(), self.timeout)
        except BaseException:
            conn.close()
            raise
        self._conn, self._sftp = conn, sftp

    def _client(self) -> asyncssh.SFTPClient:
        if self._sftp is not None:
            return self._sftp
        password = self._secret(self.password_env, "password_env") if self.password_env else None
        key = self._client_key()
        if self._loop is None:
            self._loop = _EventLoopThread(f"sftp-{self.system}")
        try:
            self._loop.run(self._connect(password, key))
        except asyncssh.PermissionDenied as exc:
            raise SourceError(self.system, f"{self.url} refused the login of {self.username!r}: check the "
                                           f"credentials in {self._credential_names()}") from exc
        except asyncssh.HostKeyNotVerifiable as exc:
            where = self.known_hosts or "~/.ssh/known_hosts"
            raise SourceError(self.system, f"the host key of {self.host}:{self.port} is not trusted by {where}: "
                                           f"{exc.reason}") from exc
        except _CONNECTION_ERRORS as exc:
            raise _Transient(f"connect: {type(exc).__name__}: {exc}") from exc
        assert self._sftp is not None
        return self._sftp

    def _drop_connection(self) -> None:
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None and self._loop is not None:
            self._loop.loop.call_soon_threadsafe(conn.close)  # asyncssh objects belong to their loop's thread

    def _run(self, what: str, operation: Callable[[asyncssh.SFTPClient, int], Awaitable[T]],
             timeout: float | None = -1.0) -> T:
        """Run `operation(sftp, attempt)` on the connection (made when needed), retrying connection failures.

        SFTP status errors are mapped to what the adapter expects: no such file → FileNotFoundError, already
        exists → FileExistsError, anything else → SourceError (permission denied, quota …: not worth a retry).
        """
        limit = self.timeout if timeout == -1.0 else timeout
        attempts = 0

        def attempt() -> T:
            nonlocal attempts
            attempts += 1
            sftp = self._client()
            call = operation(sftp, attempts)
            try:
                assert self._loop is not None
                return self._loop.run(asyncio.wait_for(call, limit) if limit else call)
            except asyncssh.SFTPNoSuchFile as exc:
                raise FileNotFoundError(f"{what}: {exc.reason}") from exc
            except asyncssh.SFTPFileAlreadyExists as exc:
                raise FileExistsError(f"{what}: {exc.reason}") from exc
            except (asyncssh.SFTPConnectionLost, asyncssh.SFTPNoConnection, asyncssh.ConnectionLost,
                    asyncssh.DisconnectError, TimeoutError) as exc:
                self._drop_connection()
                raise _Transient(f"{what}: {type(exc).__name__}: {exc}") from exc
            except asyncssh.SFTPError as exc:
                raise SourceError(self.system, f"{what} on {self.url} failed: {exc.reason}") from exc
            except OSError as exc:  # this machine's side (a full disk under the download folder)
                raise SourceError(self.system, f"{what}: {type(exc).__name__}: {exc}") from exc

        try:
            return self.policy.call(attempt, retry_if=lambda e: isinstance(e, _Transient))
        except _Transient as exc:
            raise TransientSourceError(self.system, f"{self.url}: {exc} (gave up after {attempts} attempts)") from exc

    # --- the inbox operations -------------------------------------------------------------------------
    def exists(self) -> bool:
        return self._run("check the inbox", lambda sftp, _n: sftp.isdir(self.root))

    def prepare(self) -> None:
        async def make(sftp: asyncssh.SFTPClient, _n: int) -> None:
            for folder in (PROCESSING, DONE, FAILED):
                path = self._path(folder)
                if not await sftp.isdir(path):
                    try:
                        await sftp.mkdir(path)
                    except asyncssh.SFTPError:
                        if not await sftp.isdir(path):  # another worker made it meanwhile: fine
                            raise

        self._run("make processing/, done/ and failed/", make)

    async def _list(self, sftp: asyncssh.SFTPClient, folder: str, pattern: str | None) -> list[Entry]:
        path = self._path(folder)
        if folder and not await sftp.isdir(path):
            return []
        return [_entry(name.filename, name.attrs) for name in await sftp.readdir(path)
                if name.filename not in (".", "..") and _regular(name.attrs)
                and (pattern is None or fnmatch.fnmatchcase(name.filename, pattern))]

    def scan(self, pattern: str) -> list[Entry]:
        return self._run("list the inbox", lambda sftp, _n: self._list(sftp, INBOX, pattern))

    def files(self, folder: str) -> list[Entry]:
        return self._run(f"list {folder}/", lambda sftp, _n: self._list(sftp, folder, None))

    def stat(self, folder: str, name: str) -> Entry | None:
        async def stat(sftp: asyncssh.SFTPClient, _n: int) -> Entry | None:
            try:
                attrs = await sftp.stat(self._path(folder, name))
            except asyncssh.SFTPNoSuchFile:
                return None
            return _entry(name, attrs) if _regular(attrs) else None

        return self._run(f"stat {name}", stat)

    def has(self, folder: str, name: str) -> bool:
        return self._run(f"look for {name}", lambda sftp, _n: sftp.exists(self._path(folder, name)))

    def rename(self, folder: str, name: str, to_folder: str, to_name: str) -> None:
        source, target = self._path(folder, name), self._path(to_folder, to_name)

        async def rename(sftp: asyncssh.SFTPClient, attempt: int) -> None:
            try:
                await sftp.rename(source, target)  # SFTP rename never overwrites: one claimant wins
            except asyncssh.SFTPNoSuchFile:
                # A retried rename whose first try went through before the connection broke.
                if attempt > 1 and await sftp.exists(target):
                    return
                raise

        self._run(f"move {name} to {to_folder or 'the inbox'}/", rename)

    def mark_claimed(self, folder: str, name: str, entry: Entry) -> None:
        try:
            self._run(f"mark {name} claimed",
                      lambda sftp, _n: sftp.utime(self._path(folder, name), (time.time(), entry.mtime)))
        except SourceError as exc:  # a server that refuses setstat: reclaim then goes by the last access
            log.warning("%s: cannot note the claim time of %s: %s", self.system, name, exc)

    @contextmanager
    def local_copy(self, folder: str, name: str) -> Iterator[Path]:
        directory = self.download_dir()
        directory.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(prefix="sftp-", suffix=PurePosixPath(name).suffix, dir=directory)
        os.close(handle)
        try:
            # asyncssh streams the download block by block into the file: memory stays bounded. No overall
            # timeout (large exports take long); keepalives notice a dead server.
            self._run(f"download {name}", lambda sftp, _n: sftp.get(self._path(folder, name), temp), timeout=None)
            yield Path(temp)
        finally:
            Path(temp).unlink(missing_ok=True)

    def write_text(self, folder: str, name: str, text: str) -> None:
        async def write(sftp: asyncssh.SFTPClient, _n: int) -> None:
            async with sftp.open(self._path(folder, name), "wb") as remote:
                await remote.write(text.encode("utf-8"))

        self._run(f"write {name}", write)

    def close(self) -> None:
        if self._loop is None:
            return
        conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None:
            async def disconnect() -> None:
                conn.close()
                await conn.wait_closed()

            try:
                self._loop.run(asyncio.wait_for(disconnect(), 5))
            except (TimeoutError, asyncssh.Error, OSError):
                pass
        self._loop.stop()
        self._loop = None
