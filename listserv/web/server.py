"""uvicorn inside ``serve``'s event loop, started and stopped with the SMTP side."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # ``serve`` owns SIGTERM/SIGINT and stops every part in order; uvicorn must not take them over.
        yield


def uvicorn_config(app: ASGIApp) -> uvicorn.Config:
    """The same for ``serve`` and its web workers. proxy_headers off: uvicorn would otherwise believe
    X-Forwarded-For from 127.0.0.1 (or whatever $FORWARDED_ALLOW_IPS says); which peers to believe is
    ``web.trusted_proxies``, read by the app."""
    return uvicorn.Config(
        app,
        http="httptools",
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )


class WebServer:
    def __init__(self, app: ASGIApp, host: str, port: int) -> None:
        self.server = _Server(uvicorn_config(app))
        self.host, self.port = host, port
        self._task: asyncio.Task[None] | None = None
        self.socket: socket.socket | None = None  # listening; the web workers inherit it

    async def start(self) -> int:
        """Listen, serve in the background, return the port (useful when configured as 0)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listener says TCP, and without it Nagle held every page body ~40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as error:  # say which address: serve's operator reads this one line
            sock.close()
            raise OSError(
                error.errno, f"the web archive cannot listen on {self.host}:{self.port}: {error.strerror}"
            ) from None
        sock.set_inheritable(True)
        port = int(sock.getsockname()[1])
        self.socket = sock
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="web")
        while not self.server.started:
            if self._task.done():
                await self._task  # raises what stopped it
            await asyncio.sleep(0.01)
        return port

    async def stop(self) -> None:
        if self._task is None or self._task.done():  # never started, or failed to (start raised why)
            return
        self.server.should_exit = True
        await self._task


class WebWorkers:
    """``web.workers`` - 1 processes running ``listserv web-worker`` on ``serve``'s listening socket: the
    kernel hands each new connection to whichever process accepts first. Each has its own interpreter
    lock; they share the database. Stopped (SIGTERM) before ``serve`` stops its own web side."""

    def __init__(self, command: list[str], count: int) -> None:
        self.command, self.count = command, count
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        for _ in range(self.count):
            self.processes.append(subprocess.Popen([*self.command, "--fd", str(fd)], pass_fds=[fd]))

    async def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            await asyncio.to_thread(process.wait)
        self.processes = []


async def serve_inherited(app: ASGIApp, fd: int) -> None:
    """A web worker: serve on the inherited listening socket until SIGTERM (uvicorn's own handling), or
    until ``serve`` is gone (its pid no longer our parent)."""
    server = uvicorn.Server(uvicorn_config(app))
    parent = os.getppid()

    async def orphaned() -> None:
        while os.getppid() == parent and not server.should_exit:
            await asyncio.sleep(1)
        server.should_exit = True

    watch = asyncio.create_task(orphaned())
    await server.serve(sockets=[socket.socket(fileno=fd)])
    watch.cancel()
