"""AuditService servicer: for certificates bound to the auditor role only; translate, delegate, map errors."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio

from gateway.api.convert import (
    audit_record_to_proto,
    checkpoint_to_proto,
    entry_filter_from_proto,
    subject_from_proto,
    verify_report_to_proto,
)
from gateway.api.errors import errors_as_status
from gateway.api.identity import caller_from_context
from gateway.audit import AuditReview, read_chunks
from gateway.errors import FieldViolation, InvalidRequest
from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb
from gateway.generated.mash.gateway.v1 import audit_service_pb2_grpc as audit_grpc
from gateway.linkage import SubjectTokeniser
from gateway.service.access import AccessGuard

AUDITOR_ROLE = "auditor"
Context = grpc.aio.ServicerContext


class AuditServicer(audit_grpc.AuditServiceServicer):
    def __init__(self, review: AuditReview, guard: AccessGuard, tokeniser: SubjectTokeniser) -> None:
        self._review = review
        self._guard = guard
        self._tokeniser = tokeniser

    async def _authorise(self, context: Context, rpc: str) -> None:  # type: ignore[type-arg]
        await self._guard.require(caller_from_context(context), AUDITOR_ROLE, rpc)

    async def _record(self, context: Context, rpc: str, *, subject_tokens: tuple[str, ...] = (),  # type: ignore[type-arg]
                      details: dict[str, str] | None = None) -> None:
        """Reads that show disclosures are themselves audited, before any result is returned."""
        await self._guard.record_access(caller_from_context(context), rpc, subject_tokens=subject_tokens,
                                        details=details)

    async def ListEntries(
        self, request: audit_pb.ListEntriesRequest, context: Context  # type: ignore[type-arg]
    ) -> AsyncIterator[audit_pb.ListEntriesResponse]:
        async with errors_as_status(context):
            await self._authorise(context, "ListEntries")
            where = entry_filter_from_proto(request)
            await self._record(context, "ListEntries", subject_tokens=tuple(where.subject_tokens), details={
                name: value for name, value in (
                    ("agency", where.agency), ("purpose", where.purpose), ("role", where.role),
                    ("user", where.user), ("case_reference", where.case_reference), ("status", where.status),
                    ("kind", where.kind)) if value
            })
            async for record in self._review.list_entries(where,
                                                          limit=request.limit or None,
                                                          start=request.start_index):
                yield audit_pb.ListEntriesResponse(entry=audit_record_to_proto(record))

    async def GetEntry(
        self, request: audit_pb.GetEntryRequest, context: Context  # type: ignore[type-arg]
    ) -> audit_pb.GetEntryResponse:
        async with errors_as_status(context):
            await self._authorise(context, "GetEntry")
            await self._record(context, "GetEntry", details={"index": str(request.index)})
            record = await self._review.get_entry(request.index)
        return audit_pb.GetEntryResponse(entry=audit_record_to_proto(record))

    async def GetLatestCheckpoint(
        self, request: audit_pb.GetLatestCheckpointRequest, context: Context  # type: ignore[type-arg]
    ) -> audit_pb.GetLatestCheckpointResponse:
        async with errors_as_status(context):
            await self._authorise(context, "GetLatestCheckpoint")
            checkpoint = await self._review.latest_checkpoint()
        return audit_pb.GetLatestCheckpointResponse(checkpoint=checkpoint_to_proto(checkpoint))

    async def GetInclusionProof(
        self, request: audit_pb.GetInclusionProofRequest, context: Context  # type: ignore[type-arg]
    ) -> audit_pb.GetInclusionProofResponse:
        async with errors_as_status(context):
            await self._authorise(context, "GetInclusionProof")
            proof = await self._review.inclusion_proof(request.index, request.tree_size or None)
        response = audit_pb.GetInclusionProofResponse(
            index=proof.index, tree_size=proof.tree_size, leaf_hash=proof.leaf_hash, path=list(proof.path),
            root_hash=proof.root_hash,
        )
        if proof.checkpoint is not None:
            response.checkpoint.CopyFrom(checkpoint_to_proto(proof.checkpoint))
        return response

    async def GetConsistencyProof(
        self, request: audit_pb.GetConsistencyProofRequest, context: Context  # type: ignore[type-arg]
    ) -> audit_pb.GetConsistencyProofResponse:
        async with errors_as_status(context):
            await self._authorise(context, "GetConsistencyProof")
            proof = await self._review.consistency_proof(request.first_tree_size,
                                                         request.second_tree_size or None)
        return audit_pb.GetConsistencyProofResponse(
            first_tree_size=proof.size1, second_tree_size=proof.size2, first_root_hash=proof.root1,
            second_root_hash=proof.root2, path=list(proof.path),
        )

    async def VerifyLog(
        self, request: audit_pb.VerifyLogRequest, context: Context  # type: ignore[type-arg]
    ) -> audit_pb.VerifyLogResponse:
        async with errors_as_status(context):
            await self._authorise(context, "VerifyLog")
            report = await self._review.verify()
        return verify_report_to_proto(report)

    async def SubjectAccess(
        self, request: audit_pb.SubjectAccessRequest, context: Context  # type: ignore[type-arg]
    ) -> AsyncIterator[audit_pb.SubjectAccessResponse]:
        async with errors_as_status(context):
            await self._authorise(context, "SubjectAccess")
            tokens = self._tokeniser.all_tokens(subject_from_proto(request.subject))
            if not tokens:
                raise InvalidRequest([FieldViolation(
                    "subject", "give a valid NHS number, or given name, family name and date of birth"
                )])
            await self._record(context, "SubjectAccess", subject_tokens=tokens)
            async for record in self._review.subject_access(tokens):
                yield audit_pb.SubjectAccessResponse(entry=audit_record_to_proto(record))

    async def Export(
        self, request: audit_pb.ExportRequest, context: Context  # type: ignore[type-arg]
    ) -> AsyncIterator[audit_pb.ExportResponse]:
        async with errors_as_status(context):
            await self._authorise(context, "Export")
            await self._record(context, "Export")
            with tempfile.TemporaryDirectory() as tmp:
                bundle = Path(tmp) / "audit-export.tar"
                await self._review.export(bundle)
                for chunk in read_chunks(bundle):
                    yield audit_pb.ExportResponse(chunk=chunk)
