"""Something for the console to show on a fresh development partnership, made through the gateway's own API:
a researcher's query about the demo child (disclosures, and a health review), a refused query, and a police
notification in the referral queue. Also the demo accounts, one per group of console users."""

from __future__ import annotations

import uuid
from pathlib import Path

import grpc
import grpc.aio

from agency_stubs import cast
from gateway.console.accounts import add_user
from gateway.generated.mash.gateway.v1 import (
    common_pb2,
    hub_service_pb2,
    hub_service_pb2_grpc,
    referral_service_pb2,
    referral_service_pb2_grpc,
)

# The roles `policies/bindings.yaml` binds the console's certificate (hub/system/console) to.
CONSOLE_ROLES = ("auditor", "policy_admin", "mash_manager", "mash_social_worker", "police_mash_supervisor",
                 "health_designated_professional", "health_caldicott_guardian")
DEMO_ACCOUNTS = {
    "dpo.ada": ["auditor"],
    "ig.ian": ["policy_admin"],
    "manager.mo": ["mash_manager"],
    "reviewer.hana": ["health_designated_professional"],
}
DEMO_PASSWORD = "mash-demo-only"  # noqa: S105 - the demo's published password, for a loopback demo only


def add_demo_accounts(accounts: Path, password: str = DEMO_PASSWORD) -> None:
    for user, roles in DEMO_ACCOUNTS.items():
        add_user(accounts, user, password, roles)


def _subject(member: cast.CastMember) -> common_pb2.SubjectIdentifiers:
    return common_pb2.SubjectIdentifiers(nhs_number=member.nhs_number, given_name=member.given_name,
                                         family_name=member.family_name, date_of_birth=member.date_of_birth)


def _request_id() -> str:
    return f"console-demo-{uuid.uuid4().hex[:12]}"


async def seed(gateway: str, pki: Path) -> str:
    """Seed the partnership as the police case system; returns the new referral's id."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(pki / "ca.pem").read_bytes(),
        private_key=(pki / "clients" / "police-case-system.key").read_bytes(),
        certificate_chain=(pki / "clients" / "police-case-system.pem").read_bytes())
    async with grpc.aio.secure_channel(gateway, credentials) as channel:
        hub = hub_service_pb2_grpc.HubServiceStub(channel)
        await hub.Query(hub_service_pb2.QueryRequest(
            request_id=_request_id(), subject=_subject(cast.KAI_MERCER), purpose="safeguarding_screening",
            legal_basis="dpa_2018_sch1_para18", agreement="mash-isa-2026", case_reference="MASH-2026-0412"),
            metadata=(("x-mash-user", "researcher.police.7"), ("x-mash-role", "mash_researcher_police")), timeout=20)
        try:  # a role the police case system is not bound to: refused, and audited as a refusal
            await hub.Query(hub_service_pb2.QueryRequest(
                request_id=_request_id(), subject=_subject(cast.KAI_MERCER), purpose="safeguarding_screening",
                legal_basis="dpa_2018_sch1_para18", agreement="mash-isa-2026", case_reference="MASH-2026-0413"),
                metadata=(("x-mash-user", "pc.4471"), ("x-mash-role", "social_worker")), timeout=20)
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
        referrals = referral_service_pb2_grpc.ReferralServiceStub(channel)
        submitted = await referrals.SubmitReferral(referral_service_pb2.SubmitReferralRequest(
            mash="children", subject=_subject(cast.NOAH_FENWICK), categories=["neglect"], borough="hackney",
            concern="Officers attended a disturbance; the child was found alone at night"),
            metadata=(("x-mash-user", "pc.4471"), ("x-mash-role", "police_officer")), timeout=20)
        return submitted.referral.referral_id
