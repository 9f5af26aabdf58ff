"""A minimal keep-alive HTTP/1.1 client for the benchmarks: the same one for a route and its
baseline, and light enough that the client's own CPU does not dominate on a 2-core machine
(httpx cost ~1-2 ms of CPU per request, which capped a bare route at ~260 requests/s)."""

from __future__ import annotations

import asyncio


class Http:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        for attempt in range(2):
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(head.encode() + body)
            assert self.reader is not None
            status_line = await self.reader.readline()
            if status_line or attempt:
                break
            # The server closed the idle keep-alive connection (uvicorn: after 5 s): reconnect.
            self.close()
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
