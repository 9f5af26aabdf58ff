"""`billing webhooks dead-letters` and `billing webhooks replay EVENT_ID... | --all`: the
operator's command-line view of the Stripe webhook inbox (replays audited, actor `cli:{user}`)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Sequence
from typing import TextIO

from adapters.db import webhook_inbox as inbox
from adapters.db.session import Database
from adapters.dispatch import DispatchConfig, Dispatcher, replay_stripe_events
from config import WORKER_ROLE, Settings


async def print_dead_letters(settings: Settings, out: TextIO, *, limit: int = 100) -> int:
    db = Database(settings.role_url(WORKER_ROLE), pool_size=1)
    try:
        async with db.transaction() as conn:
            rows = await inbox.list_by_status(conn, inbox.DEAD_LETTERED, limit=limit)
    finally:
        await db.dispose()
    for row in rows:
        out.write(
            f"{row.stripe_event_id}\t{row.type}\t{row.received_at.isoformat()}\t"
            f"attempts={row.attempts}\treplays={row.replay_count}\t{row.last_error or ''}\n"
        )
    out.write(f"{len(rows)} dead-lettered event(s)\n")
    return 0


async def replay(
    settings: Settings, out: TextIO, event_ids: Sequence[str] | None, *, actor: str | None = None
) -> int:
    from adapters.temporal import connect_temporal

    db = Database(settings.role_url(WORKER_ROLE), pool_size=1)
    try:
        if event_ids is not None:
            async with db.transaction() as conn:
                missing = [e for e in event_ids if await inbox.get_event(conn, e) is None]
            if missing:
                out.write(f"unknown event id(s): {' '.join(missing)}\n")
                return 2
        client = await connect_temporal(settings, lazy=True)
        dispatcher = Dispatcher(db, client, DispatchConfig.from_settings(settings))
        results = await replay_stripe_events(
            db,
            dispatcher,
            list(event_ids) if event_ids is not None else None,
            actor=actor or f"cli:{getpass.getuser()}",
        )
    finally:
        await db.dispose()
    for r in results:
        state = "started" if r.started else "queued (Temporal unavailable; the worker retries)"
        out.write(f"{r.event_id}\t{r.workflow_id}\t{state}\n")
    out.write(f"{len(results)} event(s) replayed\n")
    return 0


def dead_letters_cli(settings: Settings, out: TextIO, *, limit: int) -> int:
    return asyncio.run(print_dead_letters(settings, out, limit=limit))


def replay_cli(settings: Settings, out: TextIO, event_ids: Sequence[str], *, all_: bool) -> int:
    if bool(event_ids) == all_:
        out.write("give event ids or --all, not both\n")
        return 2
    return asyncio.run(replay(settings, out, None if all_ else event_ids))
