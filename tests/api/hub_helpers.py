"""Helpers for the hub API tests: subjects from the cast, request templates, reading rich errors."""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2, status_pb2

from agency_stubs.cast import KAI_MERCER, CastMember


def subject(member: CastMember = KAI_MERCER) -> dict[str, str]:
    return {"nhs_number": member.nhs_number, "given_name": member.given_name,
            "family_name": member.family_name, "date_of_birth": member.date_of_birth}


SCREENING = {"purpose": "safeguarding_screening", "legal_basis": "dpa_2018_sch1_para18",
             "agreement": "mash-isa-2026", "case_reference": "MASH-2026-0001"}
S47 = {"purpose": "s47_enquiry", "legal_basis": "children_act_1989_s47", "agreement": "mash-isa-2026",
       "case_reference": "MASH-2026-0002"}


def rich_status(exc: grpc.aio.AioRpcError) -> status_pb2.Status:
    """The google.rpc.Status the gateway attached to an error."""
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status()
            status.ParseFromString(value if isinstance(value, bytes) else value.encode())
            return status
    raise AssertionError(f"no rich status on {exc.code().name}: {exc.details()}")


def field_violations(exc: grpc.aio.AioRpcError) -> dict[str, str]:
    for detail in rich_status(exc).details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            return {v.field: v.description for v in bad.field_violations}
    raise AssertionError("no BadRequest detail in the status")


def error_reason(exc: grpc.aio.AioRpcError) -> str:
    for detail in rich_status(exc).details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    raise AssertionError("no ErrorInfo detail in the status")
