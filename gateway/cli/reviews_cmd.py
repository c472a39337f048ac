"""`mash-gateway reviews list|show|approve|decline|outcome`: an agency reviewer's commands over mTLS.

Every command is a ReviewService call made with an agency system's client certificate, as the user and role
given, so the gateway checks and audits it like any other call. Exit codes: 0 success, 1 the gateway refused
the call (its status and field violations are printed), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.table import Table

from gateway.api.tls import client_credentials
from gateway.cli.referrals_cmd import refusal_text
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb
from gateway.generated.mash.gateway.v1 import review_service_pb2 as review_pb
from gateway.generated.mash.gateway.v1 import review_service_pb2_grpc as review_grpc
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout
from gateway.pki.authority import gateway_server_name

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
LEVELS = ["EXISTS", "PERTINENT", "FULL"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateway", required=True, help="gateway address, e.g. 127.0.0.1:8443")
    common.add_argument("--pki-dir", type=Path, required=True, help="the partnership's PKI directory")
    common.add_argument("--agency", required=True, help="the agency whose system certificate is used")
    common.add_argument("--system", default="review-console", help="the system certificate name (review-console)")
    common.add_argument("--user", required=True, help="your user id (x-mash-user)")
    common.add_argument("--role", required=True, help="the role you act in (x-mash-role)")
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")

    reviews = sub.add_parser("reviews", help="list, open and decide your agency's reviews")
    actions = reviews.add_subparsers(dest="reviews_command", required=True, metavar="ACTION")

    p = actions.add_parser("list", parents=[common], help="your agency's pending reviews, nearest deadline first")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=run, call=_list)

    p = actions.add_parser("show", parents=[common], help="open a review: the request and your agency's records")
    p.add_argument("review_id")
    p.set_defaults(func=run, call=_show)

    p = actions.add_parser("approve", parents=[common], help="approve as requested, lower, or some categories")
    p.add_argument("review_id")
    p.add_argument("--level", choices=LEVELS, help="approve at this level at most (default: as requested)")
    p.add_argument("--category", action="append", default=[], help="approve only this category (repeatable)")
    p.add_argument("--reason", default="", help="a note kept with the decision")
    p.set_defaults(func=run, call=_approve)

    p = actions.add_parser("decline", parents=[common], help="decline a review, with a reason")
    p.add_argument("review_id")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=run, call=_decline)

    p = actions.add_parser("outcome", parents=[common], help="(requesters) a review's outcome and released answer")
    p.add_argument("review_id")
    p.add_argument("--wait", type=float, default=0, metavar="SECONDS",
                   help="if still pending, wait up to this long for the decision (WatchReviewOutcome)")
    p.set_defaults(func=run, call=_outcome)


def _state(value: hub_pb.ReviewState.ValueType) -> str:
    return hub_pb.ReviewState.Name(value).removeprefix("REVIEW_STATE_")


def _levels(items: Any) -> str:
    return ", ".join(f"{c.category} {common_pb2.DisclosureLevel.Name(c.level).removeprefix('DISCLOSURE_LEVEL_')}"
                     for c in items)


def _when(msg: Any, field: str) -> str:
    return getattr(msg, field).ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M") if msg.HasField(field) else ""


def _print_reviews(console: Console, reviews: list[review_pb.Review], title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("review", no_wrap=True, min_width=40)  # ids are copied into the next command: never cut
    for column in ("state", "deadline (UTC)", "rating", "requested", "requester", "purpose", "agreement", "case"):
        table.add_column(column, overflow="fold")
    for r in reviews:
        table.add_row(r.review_id, _state(r.state), _when(r, "deadline"), r.rating, _levels(r.requested),
                      f"{r.requester_role} ({r.requester_agency}) {r.requester_user}", r.purpose, r.agreement,
                      r.case_reference)
    console.print(table)


def _print_answer(console: Console, answer: hub_pb.AgencyAnswer, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for column in ("record", "category", "when", "summary", "fields"):
        table.add_column(column, overflow="fold")
    for record in answer.records:
        fields = "; ".join(f"{f.name}: {f.value}" for f in record.fields if f.value)
        table.add_row(record.record_id, record.category, record.occurred_at, record.summary, fields)
    console.print(table)


def _emit(args: argparse.Namespace, message: Any, console: Console) -> None:
    if args.json:
        print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), sort_keys=True))
        return
    if isinstance(message, review_pb.ListReviewsResponse):
        _print_reviews(console, list(message.reviews), f"{len(message.reviews)} pending review(s)")
        return
    review = message.review
    _print_reviews(console, [review], "review")
    if review.approved or review.reason:
        console.print(f"decided by {review.decided_role} {review.decided_by} at {_when(review, 'decided_at')}: "
                      f"{_levels(review.approved) or 'nothing released'}"
                      + (f" ({review.reason})" if review.reason else ""), markup=False)
    if isinstance(message, review_pb.OpenReviewResponse):
        _print_answer(console, message.records, "your agency's records under review")
    elif isinstance(message, review_pb.GetReviewOutcomeResponse) and message.HasField("answer"):
        _print_answer(console, message.answer, "released")


async def run_async(args: argparse.Namespace) -> int:
    """Make the one call the arguments describe and print its answer (or the refusal)."""
    try:
        credentials = client_credentials(PkiLayout(args.pki_dir), args.agency, args.system)
    except OSError:
        print(f"error: no certificate for {args.agency}/{args.system} under --pki-dir", file=sys.stderr)
        return EXIT_USAGE
    metadata = (("x-mash-user", args.user), ("x-mash-role", args.role))
    options = [("grpc.ssl_target_name_override", gateway_server_name(DEFAULT_TRUST_DOMAIN))]
    async with grpc.aio.secure_channel(args.gateway, credentials, options=options) as channel:
        stub = review_grpc.ReviewServiceStub(channel)
        try:
            message = await args.call(stub, metadata, args)
        except grpc.aio.AioRpcError as exc:
            print(refusal_text(exc), file=sys.stderr)
            return EXIT_REFUSED
    _emit(args, message, Console())
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    return asyncio.run(run_async(args))


async def _list(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    return await stub.ListReviews(review_pb.ListReviewsRequest(limit=max(args.limit, 0)), metadata=metadata,
                                  timeout=30)


async def _show(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    return await stub.OpenReview(review_pb.OpenReviewRequest(review_id=args.review_id), metadata=metadata, timeout=30)


async def _approve(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    level = common_pb2.DisclosureLevel.Value(f"DISCLOSURE_LEVEL_{args.level or 'UNSPECIFIED'}")
    request = review_pb.DecideReviewRequest(review_id=args.review_id, verdict=review_pb.REVIEW_VERDICT_APPROVE,
                                            level=level, categories=args.category, reason=args.reason)
    return await stub.DecideReview(request, metadata=metadata, timeout=30)


async def _decline(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    request = review_pb.DecideReviewRequest(review_id=args.review_id, verdict=review_pb.REVIEW_VERDICT_DECLINE,
                                            reason=args.reason)
    return await stub.DecideReview(request, metadata=metadata, timeout=30)


async def _outcome(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    if args.wait <= 0:
        return await stub.GetReviewOutcome(review_pb.GetReviewOutcomeRequest(review_id=args.review_id),
                                           metadata=metadata, timeout=30)
    last = None
    stream = stub.WatchReviewOutcome(review_pb.WatchReviewOutcomeRequest(review_id=args.review_id),
                                     metadata=metadata, timeout=args.wait)
    try:
        async for message in stream:
            last = message
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.DEADLINE_EXCEEDED or last is None:
            raise
    # Still pending when the wait ran out: show it as it stands, like `outcome` without --wait.
    assert last is not None
    return review_pb.GetReviewOutcomeResponse(review=last.review, answer=last.answer if last.HasField("answer")
                                              else None)
