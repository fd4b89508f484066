"""uvicorn inside ``serve``'s event loop, started and stopped with the SMTP side."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.types import ASGIApp


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # ``serve`` owns SIGTERM/SIGINT and stops every part in order; uvicorn must not take them over.
        yield


class WebServer:
    def __init__(self, app: ASGIApp, host: str, port: int, trusted_proxies: Sequence[str] = ()) -> None:
        config = uvicorn.Config(
            app,
            http="httptools",
            lifespan="off",
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=bool(trusted_proxies),  # X-Forwarded-For/-Proto only from these addresses
            forwarded_allow_ips=list(trusted_proxies),
        )
        self.server = _Server(config)
        self.host, self.port = host, port
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        """Listen, serve in the background, return the port (useful when configured as 0)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not the default 0: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listener says TCP, and without it Nagle held every page body ~40 ms for the client's delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.set_inheritable(True)
        port = int(sock.getsockname()[1])
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]), name="web")
        while not self.server.started:
            if self._task.done():
                await self._task  # raises what stopped it
            await asyncio.sleep(0.01)
        return port

    async def stop(self) -> None:
        if self._task is None:
            return
        self.server.should_exit = True
        await self._task
