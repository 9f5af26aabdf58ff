"""Property: a signed webhook whose body is any JSON at all (NUL characters, unpaired surrogates,
deep nesting, huge numbers) gets a 2xx or a 4xx, never a 5xx; when it is acknowledged it is
stored. Stripe retries a 5xx for days, so one such body would be retried for days."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from adapters.db.tables import webhook_events
from tests.factories.stripe_events import TEST_WEBHOOK_SECRET, new_event_id, stripe_signature
from tests.harness import Databases
from tests.webhooks.test_stripe_webhooks import URL

_ODD = st.sampled_from(["\x00", "\ud800", "\udfff", "\ud83d", "\u2028", "\uffff", "\\"])
_TEXT = st.text(alphabet=st.characters(exclude_categories=()) | _ODD, max_size=20)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**300), max_value=10**300)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=25,
)


def _signed(body: bytes) -> dict[str, str]:
    return {
        "Stripe-Signature": stripe_signature(body, TEST_WEBHOOK_SECRET, timestamp=int(time.time())),
        "Content-Type": "application/json",
    }


async def _post(api: httpx.AsyncClient, body: bytes) -> httpx.Response:
    response = await api.post(URL, content=body, headers=_signed(body))
    assert response.status_code < 500, (response.status_code, response.text, body[:300])
    if response.status_code >= 400:
        assert "error" in response.json()
    return response


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(payload=_JSON, event_type=_TEXT | st.sampled_from(["invoice.paid", "charge.refunded"]))
async def test_any_signed_json_body_is_never_a_5xx(
    api: httpx.AsyncClient, dbs: Databases, payload: Any, event_type: str
) -> None:
    event_id = new_event_id()
    event = {"id": event_id, "object": "event", "type": event_type, "data": {"object": payload}}
    body = json.dumps(event).encode()  # ensure_ascii: NUL and surrogates arrive as \\u escapes
    response = await _post(api, body)
    if response.status_code == 200:
        async with dbs.admin.transaction() as conn:
            stored = await conn.scalar(
                select(webhook_events.c.stripe_event_id).where(
                    webhook_events.c.stripe_event_id == event_id
                )
            )
        assert stored == event_id


async def test_bodies_json_modules_choke_on_are_4xx(api: httpx.AsyncClient) -> None:
    prefix = '{"id": "%s", "object": "event", "type": "invoice.paid", "data": {"object": '
    for inner in (
        "1e999999",  # past numeric's range in Postgres
        "-1e999999",
        "9" * 5000,  # past Python's integer digit limit
        "[" * 100_000 + "]" * 100_000,  # past the parser's stack
        "[" * 900 + "]" * 900,
        '"\\u0000"',
        '"\\ud800"',
        '{"\\u0000": 1}',
    ):
        body = (prefix % new_event_id() + inner + "}}").encode()
        response = await _post(api, body)
        assert response.status_code in (200, 400), (inner[:20], response.text)
