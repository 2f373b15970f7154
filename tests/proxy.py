"""Network trouble on demand: a TCP proxy a test can cut and restore, and a server that hangs."""

from __future__ import annotations

import asyncio


class OutageProxy:
    """While cut, open connections are dropped and new ones are closed at once. While silent,
    connections stay open but nothing crosses in either direction, as when a network path dies
    without a reset. ``bytes_to_server`` counts what clients sent through it, ``connections``
the connections they opened through it."""

    def __init__(self, host: str, port: int) -> None:
        self.up = True
        self.silent = False
        self.bytes_to_server = 0
        self.connections = 0
        self._target = (host, port)
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        self.connections += 1
        up_reader, up_writer = await asyncio.open_connection(*self._target)
        self._writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            try:
                while data := await src.read(65536):
                    if self.silent:
                        continue
                    if up:
                        self.bytes_to_server += len(data)
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer, True), pipe(up_reader, writer, False))

    def cut(self) -> None:
        self.up = False
        for writer in self._writers:
            writer.close()
        self._writers.clear()

    def restore(self) -> None:
        self.up = True
        self.silent = False

    async def stop(self) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()


class SilentServer:
    """Accepts connections and never answers: a hung Redis, the case where timeouts cost most."""

    def __init__(self) -> None:
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> int:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            self._writers.append(writer)
            await reader.read()  # until the client gives up

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
