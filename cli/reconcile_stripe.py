"""`billing reconcile-stripe`: run the lost-webhook sweeper now and print what it found."""

from __future__ import annotations

import asyncio
import sys
from typing import TextIO

from adapters.temporal import connect_temporal, run_stripe_sweep
from config import Settings


def reconcile_stripe(
    settings: Settings, min_age_minutes: float | None, out: TextIO = sys.stdout
) -> int:
    """Exit status 1 when the engine and Stripe differed (the findings were applied), 0 when
    every stale invoice matched."""
    minutes = settings.stripe_sweep_min_age_minutes if min_age_minutes is None else min_age_minutes

    async def run() -> int:
        client = await connect_temporal(settings)
        result = await run_stripe_sweep(client, settings, minutes * 60)
        for d in result.drift:
            print(
                f"{d.tenant_id} invoice {d.invoice_id} {d.field}: engine {d.engine}, "
                f"Stripe {d.stripe}",
                file=out,
            )
        print(
            f"{result.checked} invoices open for over {minutes:g} min re-read, "
            f"{result.applied} findings applied, {len(result.drift)} differences",
            file=out,
        )
        return 1 if result.drift else 0

    return asyncio.run(run())
