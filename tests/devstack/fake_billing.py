"""Stand-in for the `billing` CLI in launcher tests: the same subcommands, minimal behaviour.

`migrate` and `operator-key` use the database the launcher hands over, so a second run on the same
data sees the key of the first. FAKE_BILLING_CRASH=worker makes the worker die after starting.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

import asyncpg


async def _sql(query: str) -> list[asyncpg.Record]:
    url = os.environ["BILLING_DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(query)
    finally:
        await conn.close()


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 404)
        self.end_headers()


def main(command: str) -> int:
    if command == "migrate":
        asyncio.run(_sql("CREATE TABLE IF NOT EXISTS fake_keys (key text)"))
        print("migrated")
    elif command == "seed":
        print("seeded 3 plans")
    elif command == "operator-key":
        print("looking for an operator key", file=sys.stderr)
        if asyncio.run(_sql("SELECT key FROM fake_keys")):
            print("An operator key exists already (it was shown when it was created).")
        else:
            asyncio.run(_sql("INSERT INTO fake_keys VALUES ('op_fake_key_1')"))
            print("op_fake_key_1")
    elif command == "worker":
        for name in sorted(os.environ):
            if name.startswith("BILLING_") and name != "BILLING_STRIPE_API_KEY":
                print(f"{name}={os.environ[name]}", flush=True)
        if os.environ.get("FAKE_BILLING_CRASH") == "worker":
            return 3
        signal.pause()
    elif command == "api":
        HTTPServer(("127.0.0.1", int(os.environ["BILLING_API_PORT"])), _Health).serve_forever()
    else:
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
