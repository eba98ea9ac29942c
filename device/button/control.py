"""The agent's control socket: a Unix stream socket under the state directory.

Line protocol, one request per connection: the client sends a command word and a
newline (`ring`, `status`), the server answers with one line and closes. The socket is
created mode 0600 (the umask is tightened around `bind`, so it is never reachable by
anyone else, not even for an instant); a stale socket left by a crash is replaced, a
live one (another agent running) is an error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from device.button.errors import ControlError

log = logging.getLogger(__name__)

MAX_REQUEST = 64  # bytes: a command word and a newline
CLIENT_TIMEOUT_S = 2.0
ACCEPT_POLL_S = 0.2

CommandHandler = Callable[[], str]


class ControlServer:
    """Serve `commands` (word -> handler returning one line) on `path` in a thread.

    A handler's exception is answered as ``error <message>`` and logged; it never stops
    the server. Raises ControlError from `start` when the socket cannot be bound.
    """

    def __init__(self, path: Path, commands: Mapping[str, CommandHandler]) -> None:
        self._path = path
        self._commands = dict(commands)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def path(self) -> Path:
        return self._path

    def start(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(str(self._path))
        except OSError as exc:
            sock.close()
            raise ControlError(f"cannot create control socket {self._path}: {exc}") from exc
        finally:
            os.umask(old)
        os.chmod(self._path, 0o600)
        sock.listen(8)
        sock.settimeout(ACCEPT_POLL_S)
        self._sock = sock
        self._stopping.clear()
        self._thread = threading.Thread(target=self._serve, name="control-socket", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    def _remove_stale(self) -> None:
        try:
            mode = self._path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ControlError(f"{self._path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self._path))
        except OSError:
            self._path.unlink()  # nobody listens: a crash left it behind
            return
        finally:
            probe.close()
        raise ControlError(f"another agent is listening on {self._path}")

    def _serve(self) -> None:
        assert self._sock is not None
        sock = self._sock
        while not self._stopping.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                log.exception("control socket accept failed")
                continue
            with conn:
                self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(CLIENT_TIMEOUT_S)
        try:
            request = _read_line(conn)
        except (OSError, ValueError) as exc:
            _send(conn, f"error {exc}")
            return
        handler = self._commands.get(request)
        if handler is None:
            known = ", ".join(sorted(self._commands))
            _send(conn, f"error unknown command {request[:32]!r}; known: {known}")
            return
        try:
            reply = handler()
        except Exception as exc:  # a handler bug must not stop the socket
            log.exception("control command %s failed", request)
            reply = f"error {exc}"
        _send(conn, reply)


def _read_line(conn: socket.socket) -> str:
    data = b""
    while b"\n" not in data:
        chunk = conn.recv(MAX_REQUEST)
        if not chunk:
            break
        data += chunk
        if len(data) > MAX_REQUEST:
            raise ValueError(f"request longer than {MAX_REQUEST} bytes")
    line = data.split(b"\n", 1)[0]
    try:
        return line.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise ValueError("request is not ASCII") from exc


def _send(conn: socket.socket, line: str) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(line.replace("\n", " ").encode("utf-8") + b"\n")


def send_command(path: Path, command: str, *, timeout_s: float = 5.0) -> str:
    """Send one command to a running agent and return its one-line answer.

    Raises ControlError when no agent listens on `path`, or the answer is an error.
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(path))
        sock.sendall(command.encode("ascii") + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except FileNotFoundError as exc:
        raise ControlError(f"no agent control socket at {path}: is the agent running?") from exc
    except OSError as exc:
        raise ControlError(f"cannot reach the agent at {path}: {exc}") from exc
    finally:
        sock.close()
    reply = data.decode("utf-8", errors="replace").strip()
    if reply.startswith("error "):
        raise ControlError(f"the agent answered: {reply[6:]}")
    if not reply:
        raise ControlError(f"the agent at {path} closed the connection without answering")
    return reply
