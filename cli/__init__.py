"""`billing` console script: the operator's and developer's entry point. Every command's code
is in this package (`seed`, `operator_key`, `reconcile`, `webhooks`) or is the entry point of
a process (`devstack`, `worker`, `api.server`)."""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="billing", description="Workflow-orchestrated billing engine"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    dev = sub.add_parser("dev", help="run the whole engine on the embedded stack")
    dev.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help="demo clock: 720 makes a 30-day month pass in one hour (default 1 = real time)",
    )

    sub.add_parser("migrate", help="apply database migrations (alembic upgrade head)")
    sub.add_parser("seed", help="sync the plan catalog file into the plans table")
    sub.add_parser("worker", help="run the Temporal worker")
    sub.add_parser("api", help="run the HTTP API (uvicorn)")
    op = sub.add_parser("operator-key", help="create an operator API key (printed once)")
    op.add_argument(
        "--if-absent",
        action="store_true",
        help="only create one when no active operator key exists yet",
    )
    op.add_argument("--name", default="operator")
    rec = sub.add_parser(
        "reconcile-usage",
        help="recompute usage aggregates from raw events for UTC days FIRST..LAST (backfill)",
    )
    rec.add_argument("--first", required=True, help="first UTC day, YYYY-MM-DD")
    rec.add_argument("--last", required=True, help="last UTC day, YYYY-MM-DD (inclusive)")
    rec.add_argument("--dry-run", action="store_true", help="report drift, repair nothing")

    sweep = sub.add_parser(
        "reconcile-stripe",
        help="re-read from Stripe the invoices open too long, apply what changed, report drift",
    )
    sweep.add_argument(
        "--min-age-minutes",
        type=float,
        default=None,
        help="invoices unchanged for this long (default BILLING_STRIPE_SWEEP_MIN_AGE_MINUTES)",
    )

    aud = sub.add_parser("audit", help="export the audit trail (JSON lines or CSV) to stdout")
    aud.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    aud.add_argument("--tenant", default=None, help="a tenant id")
    aud.add_argument("--actor", default=None)
    aud.add_argument("--action", default=None)
    aud.add_argument("--since", default=None, help="ISO instant, inclusive")
    aud.add_argument("--until", default=None, help="ISO instant, exclusive")

    rev = sub.add_parser(
        "revenue", help="the revenue report of a month: MRR and its movements, invoiced, ..."
    )
    rev.add_argument("--month", required=True, help="calendar month in UTC, YYYY-MM")
    rev.add_argument("--json", action="store_true", help="print the report as JSON")

    hooks = sub.add_parser("webhooks", help="the Stripe webhook inbox: dead letters and replay")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    dead = hooks_sub.add_parser("dead-letters", help="list dead-lettered events")
    dead.add_argument("--limit", type=int, default=100)
    rep = hooks_sub.add_parser("replay", help="process events again (audited)")
    rep.add_argument("event_ids", nargs="*", metavar="EVENT_ID")
    rep.add_argument("--all", action="store_true", help="replay every dead-lettered event")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    from config import load_settings

    settings = load_settings()
    if args.command == "dev":
        from devstack.launcher import run_dev

        sys.exit(run_dev(settings, time_scale=args.time_scale))
    if args.command == "migrate":
        from adapters.db.migrate import upgrade_head

        upgrade_head(settings)
    elif args.command == "seed":
        from cli.seed import sync_catalog_cli

        sync_catalog_cli(settings)
    elif args.command == "worker":
        from worker import main as worker_main

        worker_main(settings)
    elif args.command == "api":
        from api.server import serve

        serve(settings)
    elif args.command == "operator-key":
        from cli.operator_key import operator_key_cli

        sys.exit(operator_key_cli(settings, if_absent=args.if_absent, name=args.name))
    elif args.command == "reconcile-usage":
        from datetime import date

        from cli.reconcile import reconcile_usage

        sys.exit(
            reconcile_usage(
                settings,
                date.fromisoformat(args.first),
                date.fromisoformat(args.last),
                repair=not args.dry_run,
            )
        )
    elif args.command == "reconcile-stripe":
        from cli.reconcile_stripe import reconcile_stripe

        sys.exit(reconcile_stripe(settings, args.min_age_minutes))
    elif args.command == "audit":
        from cli.audit import audit_export

        sys.exit(
            audit_export(
                settings, fmt=args.format, tenant=args.tenant, actor=args.actor,
                action=args.action, since=args.since, until=args.until,
            )
        )  # fmt: skip
    elif args.command == "revenue":
        from cli.revenue import revenue

        sys.exit(revenue(settings, args.month, as_json=args.json))
    elif args.command == "webhooks":
        from cli.webhooks import dead_letters_cli, replay_cli

        if args.webhooks_command == "dead-letters":
            sys.exit(dead_letters_cli(settings, sys.stdout, limit=args.limit))
        sys.exit(replay_cli(settings, sys.stdout, args.event_ids, all_=args.all))


if __name__ == "__main__":
    main()
