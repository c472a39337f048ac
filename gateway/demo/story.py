"""The MASH story the demo plays, step by step, checking that each step behaves as described."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from agency_stubs.cast import CastMember
from gateway.demo.partnership import Partnership
from gateway.generated.mash.gateway.v1 import hub_service_pb2 as hub_pb

AGREEMENT = "mash-isa-2026"
STATUS = {v.number: v.name.removeprefix("ANSWER_STATUS_") for v in hub_pb.AnswerStatus.DESCRIPTOR.values}
SCREEN = {v.number: v.name.removeprefix("SCREEN_RESULT_") for v in hub_pb.ScreenResult.DESCRIPTOR.values}
DISCLOSURE = {v.number: v.name.removeprefix("FIELD_DISCLOSURE_")
              for v in hub_pb.FieldDisclosure.DESCRIPTOR.values}
LEVEL = {0: "-", 1: "NONE", 2: "EXISTS", 3: "PERTINENT", 4: "FULL"}


@dataclass
class Check:
    """One expectation of the story and whether it held."""

    step: str
    description: str
    ok: bool


@dataclass
class StoryReport:
    checks: list[Check] = field(default_factory=list)

    def expect(self, step: str, description: str, ok: bool) -> bool:
        self.checks.append(Check(step, description, bool(ok)))
        return bool(ok)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def _subject(person: CastMember) -> dict[str, str]:
    return {
        "nhs_number": person.nhs_number,
        "given_name": person.given_name,
        "family_name": person.family_name,
        "date_of_birth": person.date_of_birth,
    }


def _answers_table(title: str, answers: Iterable[hub_pb.AgencyAnswer]) -> Table:
    table = Table(title=title, title_justify="left")
    for column in ("agency", "status", "level", "records", "fields full / redacted / withheld", "audit entry"):
        table.add_column(column)
    for answer in answers:
        counts: Counter[str] = Counter()
        for record in answer.records:
            counts.update(DISCLOSURE[f.disclosure] for f in record.fields)
        table.add_row(
            answer.agency, STATUS[answer.status], LEVEL[answer.level], str(len(answer.records)),
            f"{counts['FULL']} / {counts['REDACTED']} / {counts['WITHHELD']}",
            f"#{answer.receipt.entry_index}" if answer.HasField("receipt") else "-",
        )
    return table


def _values(answers: Iterable[hub_pb.AgencyAnswer]) -> str:
    """Every value, summary and condition the caller received, as one searchable string."""
    parts: list[str] = []
    for answer in answers:
        for record in answer.records:
            parts.append(record.summary)
            parts.extend(f.value for f in record.fields)
            parts.extend(record.conditions)
    return "\n".join(parts)


async def play(partnership: Partnership, console: Console) -> StoryReport:
    """Play the story against a running partnership; every step records the checks it made."""
    from agency_stubs import cast

    report = StoryReport()
    kai = cast.KAI_MERCER

    # 1. A police notification arrives.
    console.rule("[bold]1. A police notification about a child")
    console.print(Panel(
        "Police attended a domestic-abuse incident at the Mercer household. A child, "
        f"{kai.given_name} {kai.family_name}, was present. The notification reaches the MASH.",
        title="notification", expand=False,
    ))

    # 2. Screening: is the child open to children's social care?
    console.rule("[bold]2. Screening: is the child open to children's social care?")
    manager = partnership.client("hub", "mash-console", user="mash.manager.1", role="mash_manager")
    screen = await manager.screen(
        request_id="demo-screen-1", subject=_subject(kai), purpose="safeguarding_screening",
        legal_basis="dpa_2018_sch1_para18", agreement=AGREEMENT, case_reference="MASH-2026-0412",
    )
    table = Table(title="ScreenReferral", title_justify="left")
    for column in ("result", "case status", "allocated team", "allocated worker", "audit entry"):
        table.add_column(column)
    table.add_row(SCREEN[screen.result], screen.case_status, screen.allocated_team, screen.allocated_worker,
                  f"#{screen.receipt.entry_index}")
    console.print(table)
    report.expect("screening", "the child is open to children's social care",
                  SCREEN[screen.result] == "OPEN")
    report.expect("screening", "the allocated team and worker are returned",
                  bool(screen.allocated_team and screen.allocated_worker))
    console.print(f"→ The notification goes without delay to [bold]{screen.allocated_team}[/bold].")

    # 3. A MASH researcher gathers the full picture, agency by agency as each answers.
    console.rule("[bold]3. A MASH researcher's query returns the full picture")
    researcher = partnership.client("police", "case-system", user="researcher.police.7",
                                    role="mash_researcher_police")
    streamed = await researcher.stream(
        request_id="demo-research-1", subject=_subject(kai), purpose="safeguarding_screening",
        legal_basis="dpa_2018_sch1_para18", agreement=AGREEMENT, case_reference="MASH-2026-0412",
    )
    research = [m.answer for m in streamed]
    console.print(_answers_table("StreamQuery as mash_researcher_police (in order of arrival)", research))
    by_agency = {a.agency: a for a in research}
    report.expect("research", f"all {len(partnership.nodes)} agencies answered",
                  set(by_agency) == set(partnership.nodes))
    report.expect("research", "every answer carries an audit receipt",
                  all(a.HasField("receipt") for a in research))
    report.expect("research", "the researcher sees their own agency in full",
                  LEVEL[by_agency["police"].level] == "FULL" and STATUS[by_agency["police"].status] == "MATCH")
    report.expect("research", "police, health, children's social care and education all know the child",
                  all(STATUS[by_agency[a].status] == "MATCH" for a in ("police", "health", "csc", "education")))
    researcher_values = _values(research)
    await _review_step(partnership, console, report, by_agency["health"])

    # 4. An operational social worker gets only the pertinent information.
    console.rule("[bold]4. An operational social worker gets only the pertinent information")
    social_worker = partnership.client("csc", "case-system", user="sw.okafor", role="social_worker")
    operational = await social_worker.query(
        request_id="demo-operational-1", subject=_subject(kai), purpose="s47_enquiry",
        legal_basis="children_act_1989_s47", agreement=AGREEMENT, case_reference="MASH-2026-0412",
    )
    console.print(_answers_table("Query as social_worker (s47 enquiry)", operational.answers))
    police_answer = next(a for a in operational.answers if a.agency == "police")
    example = Table(title="One police record: what the researcher saw and what the social worker got",
                    title_justify="left")
    example.add_column("field", no_wrap=True, min_width=17)
    for column in ("researcher saw", "social worker got"):
        example.add_column(column, overflow="ellipsis", no_wrap=True, max_width=30)
    example.add_column("how", no_wrap=True, min_width=19)
    full_police = {r.record_id: r for r in by_agency["police"].records}
    shown = 0
    for record in police_answer.records:
        source = full_police.get(record.record_id)
        if source is None or shown:
            continue
        originals = {f.name: f.value for f in source.fields}
        for f in record.fields:
            example.add_row(f.name, originals.get(f.name, ""), f.value or "—",
                            f.operator or f.reason or DISCLOSURE[f.disclosure].lower())
            shown += DISCLOSURE[f.disclosure] != "FULL"
    console.print(example)
    operational_values = _values(operational.answers)
    narrative = [v for v in _narratives(by_agency["police"]) if v]
    report.expect("operational", "the social worker is told about police involvement",
                  STATUS[police_answer.status] == "MATCH")
    report.expect("operational", "some fields reach the social worker redacted or withheld", shown > 0)
    report.expect("operational", "no police narrative the researcher saw reaches the social worker",
                  bool(narrative) and not any(n in operational_values for n in narrative))
    report.expect("operational", "no sexual-health detail reaches anyone outside health",
                  "sexual" not in operational_values.lower() and "sexual_health" not in researcher_values)

    # 5. A housing officer asking about health for an unrelated purpose is refused.
    console.rule("[bold]5. A housing officer asking about health for an unrelated purpose is refused")
    housing = partnership.client("housing", "housing-system", user="ho.patel", role="housing_officer")
    try:
        await housing.query(
            request_id="demo-housing-1", subject=_subject(kai), purpose="housing_management",
            legal_basis="uk_gdpr_6_1_e", agreement="housing-partnership-2026", case_reference="HSG-88211",
            categories=["health"],
        )
        refused_code, refused_details = grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        refused_code, refused_details = exc.code(), exc.details() or ""
    console.print(f"gateway answered [bold red]{refused_code.name}[/bold red]: {refused_details}")
    report.expect("refusal", "the housing officer's health query is refused with PERMISSION_DENIED",
                  refused_code == grpc.StatusCode.PERMISSION_DENIED)
    return report


async def _review_step(partnership: Partnership, console: Console, report: StoryReport,
                       health: hub_pb.AgencyAnswer) -> None:
    """Health's mental-health records wait for health's designated professional, who approves at PERTINENT."""
    from gateway.api.tls import client_credentials
    from gateway.generated.mash.gateway.v1 import common_pb2
    from gateway.generated.mash.gateway.v1 import review_service_pb2 as review_pb
    from gateway.generated.mash.gateway.v1 import review_service_pb2_grpc as review_grpc

    console.rule("[bold]3b. Health reviews the request for mental-health records before they leave")
    review_id = health.review.review_id
    console.print(f"health's answer: known, with mental-health records [bold]PENDING_REVIEW[/] ({review_id}, "
                  f"decide by {health.review.deadline.ToDatetime():%Y-%m-%d %H:%M} UTC)")
    report.expect("review", "health's mental-health records are held for review, none released yet",
                  health.review.state == hub_pb.REVIEW_STATE_PENDING_REVIEW
                  and all(r.category != "health.mental_health" for r in health.records))

    def stub(agency: str, system: str) -> review_grpc.ReviewServiceAsyncStub:
        channel = partnership.channel(client_credentials(partnership.pki, agency, system))
        return review_grpc.ReviewServiceStub(channel)  # an async stub on an aio channel

    designated = (("x-mash-user", "dp.adeyemi"), ("x-mash-role", "health_designated_professional"))
    reviewer = stub("health", "review-console")
    opened = await reviewer.OpenReview(review_pb.OpenReviewRequest(review_id=review_id), metadata=designated)
    console.print(f"health's designated professional opens it: {len(opened.records.records)} record(s), "
                  f"asked by {opened.review.requester_role} for {opened.review.purpose}")
    await reviewer.DecideReview(review_pb.DecideReviewRequest(
        review_id=review_id, verdict=review_pb.REVIEW_VERDICT_APPROVE, level=common_pb2.DISCLOSURE_LEVEL_PERTINENT,
        reason="relevant to the child's safety at home"), metadata=designated)
    requester = (("x-mash-user", "researcher.police.7"), ("x-mash-role", "mash_researcher_police"))
    outcome = await stub("police", "case-system").GetReviewOutcome(
        review_pb.GetReviewOutcomeRequest(review_id=review_id), metadata=requester)
    console.print(_answers_table("GetReviewOutcome as mash_researcher_police (approved at PERTINENT)",
                                 [outcome.answer]))
    released = [r for r in outcome.answer.records if r.category == "health.mental_health"]
    original = {f.name: f.value for r in opened.records.records for f in r.fields}
    report.expect("review", "after approval the researcher receives the mental-health records",
                  outcome.review.state == hub_pb.REVIEW_STATE_APPROVED and bool(released))
    report.expect("review", "they are redacted as any PERTINENT answer: the clinical notes do not leave health",
                  bool(original.get("notes")) and original["notes"] not in str(outcome.answer))


def _narratives(answer: hub_pb.AgencyAnswer) -> list[str]:
    return [f.value for r in answer.records for f in r.fields
            if f.category == "record.detail" and len(f.value) > 20]


_IDENTIFIER_PATTERNS = (
    re.compile(r"\b\d{3} ?\d{3} ?\d{4}\b"),  # NHS numbers, with or without spaces
)


def personal_data_in(blob: str, needles: Iterable[str]) -> list[str]:
    """Which of `needles` (names, dates of birth, postcodes, NHS numbers) occur in `blob` as whole values.

    A needle counts only where it is not part of a longer run of base64, hex or token characters: a short
    name such as "Kai" turns up by chance inside long base64 sealed values, which is not a leak.
    """
    return [n for n in needles
            if n and re.search(rf"(?<![A-Za-z0-9+/=_-]){re.escape(n)}(?![A-Za-z0-9+/=_-])", blob, re.IGNORECASE)]


def store_path(partnership: Partnership) -> Path:
    return partnership.state_dir / "audit.sqlite"


async def close_the_books(partnership: Partnership, console: Console, report: StoryReport) -> None:
    """Checkpoint, verify the whole audit log, summarise it, and scan it for personal data."""
    from agency_stubs import cast
    from gateway.audit import decode_entry, load_public_keys, verify_store

    assert partnership.gateway is not None
    audit = partnership.gateway.deps.audit
    console.rule("[bold]6. The audit log: verified and summarised")
    checkpoint = await audit.checkpoint()
    verdict = await verify_store(audit.store, load_public_keys(partnership.state_dir / "keys" / "checkpoint"))
    kinds: Counter[tuple[str, str]] = Counter()
    blob: list[str] = []
    start = 0
    while rows := await audit.store.scan(start, 500):
        for row in rows:
            blob.append(row.data.decode("utf-8", errors="replace"))
            event = decode_entry(row.data).event
            kinds[(event.kind.value, event.status)] += 1
        start += len(rows)
    table = Table(title="Audit entries by kind and status", title_justify="left")
    table.add_column("kind")
    table.add_column("status")
    table.add_column("entries", justify="right")
    for (kind, status), count in sorted(kinds.items()):
        table.add_row(kind, status or "-", str(count))
    console.print(table)
    console.print(f"Signed checkpoint: size {checkpoint.tree_size}, root {checkpoint.root_hash.hex()[:16]}…, "
                  f"key {checkpoint.key_id}")
    console.print(f"Verification: {verdict.summary()}")
    report.expect("audit", "the audit log verifies (Merkle tree, every checkpoint signature)", verdict.ok)
    report.expect("audit", "refusals are audited", any(kind == "refusal" for kind, _ in kinds))
    people = (cast.KAI_MERCER, cast.JODIE_MERCER, cast.DEAN_ASHBY, cast.RUBY_MERCER, cast.NOAH_FENWICK)
    needles = [v for p in people for v in (p.nhs_number, p.given_name, p.family_name, p.date_of_birth,
                                           p.postcode)]
    leaked = personal_data_in("\n".join(blob), needles)
    report.expect("audit", "the stored entries hold no names, NHS numbers, dates of birth or postcodes",
                  not leaked)
    if leaked:
        console.print(f"[red]personal data found in the audit store: {len(leaked)} value(s)[/red]")
