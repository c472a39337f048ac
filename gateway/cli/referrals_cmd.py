"""`mash-gateway referrals …`: the MASH team's commands (submit, list, show, rate, decide, close) over mTLS.

Every command is a ReferralService call made with an agency system's client certificate, as the user and
role given, so the gateway checks and audits it like any other call. Exit codes: 0 success, 1 the gateway
refused the call (its status and field violations are printed), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf.json_format import MessageToDict
from google.rpc import error_details_pb2, status_pb2
from rich.console import Console
from rich.table import Table

from gateway.api.tls import client_credentials
from gateway.generated.mash.gateway.v1 import common_pb2
from gateway.generated.mash.gateway.v1 import referral_service_pb2 as ref_pb
from gateway.generated.mash.gateway.v1 import referral_service_pb2_grpc as ref_grpc
from gateway.pki import DEFAULT_TRUST_DOMAIN, PkiLayout
from gateway.pki.authority import gateway_server_name
from gateway.workflow.referral import State

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
STATES = [s.value for s in State]

def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--gateway", required=True, help="gateway address, e.g. 127.0.0.1:8443")
    common.add_argument("--pki-dir", type=Path, required=True, help="the partnership's PKI directory")
    common.add_argument("--agency", default="hub", help="the agency whose system certificate is used (hub)")
    common.add_argument("--system", default="mash-console", help="the system certificate name (mash-console)")
    common.add_argument("--user", required=True, help="your user id (x-mash-user)")
    common.add_argument("--role", required=True, help="the role you act in (x-mash-role)")
    common.add_argument("--json", action="store_true", help="print JSON instead of tables")

    referrals = sub.add_parser("referrals", help="submit, list and work referrals (the MASH workflow)")
    actions = referrals.add_subparsers(dest="referrals_command", required=True, metavar="ACTION")

    p = actions.add_parser("submit", parents=[common], help="submit a notification to the MASH")
    p.add_argument("--mash", default="children", help="which MASH (children, adults)")
    for name in ("nhs-number", "given-name", "family-name", "date-of-birth", "postcode", "address-line"):
        p.add_argument(f"--{name}", default="")
    p.add_argument("--concern", required=True, help="the concern, as text")
    p.add_argument("--category", action="append", default=[], required=True, help="concern category (repeatable)")
    p.add_argument("--borough", default="")
    p.add_argument("--received-at", help="when your agency received it (ISO 8601; UTC if no offset)")
    p.set_defaults(func=run, call=_submit)

    p = actions.add_parser("list", parents=[common], help="list the queue, soonest deadline first")
    p.add_argument("--mash", default="")
    p.add_argument("--state", action="append", default=[], choices=STATES, help="(repeatable)")
    p.add_argument("--rating", action="append", default=[], help="(repeatable)")
    p.add_argument("--team", default="")
    p.add_argument("--borough", default="")
    p.add_argument("--overdue", action="store_true", help="only referrals past their deadline")
    p.add_argument("--page-size", type=int, default=50)
    p.add_argument("--page-token", default="")
    p.set_defaults(func=run, call=_list)

    p = actions.add_parser("show", parents=[common], help="one referral with its history")
    p.add_argument("referral_id")
    p.set_defaults(func=run, call=_show)

    p = actions.add_parser("rate", parents=[common], help="rate a referral (e.g. red, amber, green, blue)")
    p.add_argument("referral_id")
    p.add_argument("rating")
    p.set_defaults(func=run, call=_rate)

    p = actions.add_parser("decide", parents=[common], help="record the decision and route the referral")
    p.add_argument("referral_id")
    p.add_argument("decision", help="e.g. s47_strategy_discussion, early_help, no_further_action")
    p.add_argument("--reason", required=True)
    p.add_argument("--team", default="", help="the receiving team (required when the decision routes)")
    p.set_defaults(func=run, call=_decide)

    p = actions.add_parser("close", parents=[common], help="close a decided or routed referral")
    p.add_argument("referral_id")
    p.set_defaults(func=run, call=_close)

    p = actions.add_parser("purge", parents=[common],
                           help="list the referrals past retention; with --confirm, delete them (audited)")
    p.add_argument("--confirm", action="store_true", help="delete them (default: a dry run that deletes nothing)")
    p.set_defaults(func=run, call=_purge)


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    value = datetime.fromisoformat(text)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _when(msg: Any, field: str) -> str:
    return getattr(msg, field).ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M") if msg.HasField(field) else ""


def _print_referrals(console: Console, referrals: list[ref_pb.Referral], title: str) -> None:
    table = Table(title=title, title_justify="left")
    table.add_column("referral", no_wrap=True, min_width=36)  # ids are copied into the next command: never cut
    for column in ("mash", "state", "rating", "due (UTC)", "overdue", "team", "screening", "subject"):
        table.add_column(column, overflow="fold")
    for r in referrals:
        name = f"{r.subject.given_name} {r.subject.family_name}".strip() if r.content_visible else "(not shown)"
        table.add_row(r.referral_id, r.mash, ref_pb.ReferralState.Name(r.state).removeprefix("REFERRAL_STATE_"),
                      r.rating, _when(r, "due"), "yes" if r.overdue else "", r.team, r.screening, name)
    console.print(table)


def _emit(args: argparse.Namespace, message: Any, console: Console) -> None:
    if args.json:
        print(json.dumps(MessageToDict(message, preserving_proto_field_name=True), sort_keys=True))
        return
    if isinstance(message, ref_pb.PurgeReferralsResponse):
        cutoff = message.cutoff.ToDatetime(tzinfo=UTC).strftime("%Y-%m-%d %H:%M")
        done = "would be deleted (dry run; add --confirm to delete them)" if message.dry_run else "deleted"
        console.print(f"{len(message.referral_ids)} referral(s) closed before {cutoff} UTC {done}", markup=False)
        for referral_id in message.referral_ids:
            console.print(referral_id, markup=False)
        return
    if isinstance(message, ref_pb.ListReferralsResponse):
        _print_referrals(console, list(message.referrals), f"{message.total} referral(s)")
        if message.next_page_token:
            console.print(f"more: --page-token {message.next_page_token}", markup=False)
        return
    referral = message.referral
    _print_referrals(console, [referral], "referral")
    if isinstance(message, ref_pb.GetReferralResponse):
        if referral.content_visible:
            console.print(f"concern: {referral.concern}", markup=False)
        table = Table(title="history", title_justify="left")
        for column in ("#", "when (UTC)", "action", "from", "to", "user", "role", "reason"):
            table.add_column(column)
        for h in message.history:
            table.add_row(str(h.version), _when(h, "at"), h.action,
                          ref_pb.ReferralState.Name(h.from_state).removeprefix("REFERRAL_STATE_"),
                          ref_pb.ReferralState.Name(h.to_state).removeprefix("REFERRAL_STATE_"), h.user, h.role,
                          h.reason)
        console.print(table)


def refusal_text(exc: grpc.aio.AioRpcError) -> str:
    """The refusal as lines for a terminal: status, field violations and the error reason with its metadata."""
    lines = [f"refused: {exc.code().name}: {exc.details()}"]
    for key, value in exc.trailing_metadata() or ():
        if key != "grpc-status-details-bin":
            continue
        status = status_pb2.Status()
        status.ParseFromString(value if isinstance(value, bytes) else value.encode())
        for detail in status.details:
            if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                lines += [f"  {v.field}: {v.description}" for v in bad.field_violations]
            elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                extra = ", ".join(f"{k}={v}" for k, v in sorted(info.metadata.items()))
                lines.append(f"  reason: {info.reason}" + (f" ({extra})" if extra else ""))
    return "\n".join(lines)


async def run_async(args: argparse.Namespace) -> int:
    """Make the one call the arguments describe and print its answer (or the refusal)."""
    layout = PkiLayout(args.pki_dir)
    try:
        credentials = client_credentials(layout, args.agency, args.system)
    except OSError:
        print(f"error: no certificate for {args.agency}/{args.system} under --pki-dir", file=sys.stderr)
        return EXIT_USAGE
    metadata = (("x-mash-user", args.user), ("x-mash-role", args.role))
    options = [("grpc.ssl_target_name_override", gateway_server_name(DEFAULT_TRUST_DOMAIN))]
    async with grpc.aio.secure_channel(args.gateway, credentials, options=options) as channel:
        stub = ref_grpc.ReferralServiceStub(channel)
        try:
            message = await args.call(stub, metadata, args)
        except grpc.aio.AioRpcError as exc:
            print(refusal_text(exc), file=sys.stderr)
            return EXIT_REFUSED
    _emit(args, message, Console())
    return EXIT_OK


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_async(args))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


async def _submit(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    subject = common_pb2.SubjectIdentifiers(
        nhs_number=args.nhs_number, given_name=args.given_name, family_name=args.family_name,
        date_of_birth=args.date_of_birth, postcode=args.postcode, address_line=args.address_line)
    request = ref_pb.SubmitReferralRequest(mash=args.mash, subject=subject, concern=args.concern,
                                           categories=args.category, borough=args.borough)
    if (received := _time(args.received_at)) is not None:
        request.received_at.FromDatetime(received)
    return await stub.SubmitReferral(request, metadata=metadata, timeout=30)


async def _list(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    request = ref_pb.ListReferralsRequest(
        mash=args.mash, states=[ref_pb.ReferralState.Value(f"REFERRAL_STATE_{s}") for s in args.state],
        ratings=args.rating, team=args.team, borough=args.borough, overdue_only=args.overdue,
        page_size=args.page_size, page_token=args.page_token)
    return await stub.ListReferrals(request, metadata=metadata, timeout=30)


async def _show(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    return await stub.GetReferral(ref_pb.GetReferralRequest(referral_id=args.referral_id), metadata=metadata,
                                  timeout=30)


async def _rate(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    return await stub.RateReferral(ref_pb.RateReferralRequest(referral_id=args.referral_id, rating=args.rating),
                                   metadata=metadata, timeout=30)


async def _decide(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    request = ref_pb.DecideReferralRequest(referral_id=args.referral_id, decision=args.decision,
                                           reason=args.reason, receiving_team=args.team)
    return await stub.DecideReferral(request, metadata=metadata, timeout=30)


async def _close(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    return await stub.CloseReferral(ref_pb.CloseReferralRequest(referral_id=args.referral_id), metadata=metadata,
                                    timeout=30)


async def _purge(stub: Any, metadata: Any, args: argparse.Namespace) -> Any:
    return await stub.PurgeReferrals(ref_pb.PurgeReferralsRequest(confirm=args.confirm), metadata=metadata,
                                     timeout=30)
