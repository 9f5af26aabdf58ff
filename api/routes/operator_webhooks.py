"""Operator endpoints for the Stripe webhook inbox: list dead letters, replay (audited)."""

from __future__ import annotations

from fastapi import APIRouter, Query

from adapters.db import webhook_inbox as inbox
from adapters.dispatch import DispatchConfig, Dispatcher, replay_stripe_events
from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.errors import NotFound, ServiceError, error_responses
from api.schemas import WebhookEventOut, WebhookReplayOut, WebhookReplayRequest

router = APIRouter(
    route_class=AuthFirstRoute, prefix="/api/billing/operator/webhooks", tags=["operator"]
)


@router.get(
    "/dead-letters",
    response_model=list[WebhookEventOut],
    responses=error_responses(401, 403),
)
async def list_dead_letters(
    _: OperatorPrincipal, services: ServicesDep, limit: int = Query(100, ge=1, le=1000)
) -> list[WebhookEventOut]:
    async with services.system_db.transaction() as conn:
        rows = await inbox.list_by_status(conn, inbox.DEAD_LETTERED, limit=limit)
    return [WebhookEventOut.model_validate(r, from_attributes=True) for r in rows]


@router.get(
    "/events/{event_id}", response_model=WebhookEventOut, responses=error_responses(401, 403, 404)
)
async def get_event(event_id: str, _: OperatorPrincipal, services: ServicesDep) -> WebhookEventOut:
    async with services.system_db.transaction() as conn:
        row = await inbox.get_event(conn, event_id)
    if row is None:
        raise NotFound(f"no webhook event {event_id}")
    return WebhookEventOut.model_validate(row, from_attributes=True)


@router.post(
    "/replay",
    response_model=list[WebhookReplayOut],
    responses=error_responses(400, 401, 403, 404, 422),
)
async def replay(
    body: WebhookReplayRequest, principal: OperatorPrincipal, services: ServicesDep
) -> list[WebhookReplayOut]:
    if (body.event_ids is None) == (not body.all_dead_lettered):
        raise ServiceError("give either `event_ids` or `all_dead_lettered: true`")
    dispatcher = Dispatcher(
        services.system_db, services.temporal, DispatchConfig.from_settings(services.settings)
    )
    if body.event_ids is not None:
        async with services.system_db.transaction() as conn:
            missing = [e for e in body.event_ids if await inbox.get_event(conn, e) is None]
        if missing:
            raise NotFound(f"no webhook events {', '.join(missing[:10])}")
    results = await replay_stripe_events(
        services.system_db, dispatcher, body.event_ids, actor=principal.actor, reason=body.reason
    )
    return [WebhookReplayOut(**r.__dict__) for r in results]
