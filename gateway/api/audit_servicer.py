"""AuditService servicer: translate, delegate to the auditor use cases."""

from __future__ import annotations

from collections.abc import AsyncIterator

from gateway.api.calls import Call
from gateway.api.convert import (
    audit_record_to_proto,
    checkpoint_to_proto,
    entry_filter_from_proto,
    subject_from_proto,
    verify_report_to_proto,
)
from gateway.generated.mash.gateway.v1 import audit_service_pb2 as audit_pb
from gateway.service.audit_reads import AuditReads, ListRequest


def list_request_from_proto(msg: audit_pb.ListEntriesRequest) -> ListRequest:
    """A ListEntries request: its filter, order (newest first unless OLDEST_FIRST), start, limit and paging."""
    return ListRequest(where=entry_filter_from_proto(msg),
                       newest_first=msg.order != audit_pb.LIST_ENTRIES_ORDER_OLDEST_FIRST,
                       start=msg.start_index, limit=msg.limit, page_size=msg.page_size, page_token=msg.page_token)


class AuditServicer:
    def __init__(self, reads: AuditReads) -> None:
        self._reads = reads

    async def ListEntries(
        self, request: audit_pb.ListEntriesRequest, call: Call
    ) -> AsyncIterator[audit_pb.ListEntriesResponse]:
        async for listed in self._reads.list_entries(call.caller, lambda: list_request_from_proto(request)):
            response = audit_pb.ListEntriesResponse(entry=audit_record_to_proto(listed.record),
                                                    next_page_token=listed.next_page_token)
            if listed.total is not None:
                response.total_size = listed.total
            yield response

    async def GetEntry(self, request: audit_pb.GetEntryRequest, call: Call) -> audit_pb.GetEntryResponse:
        record = await self._reads.get_entry(call.caller, request.index)
        return audit_pb.GetEntryResponse(entry=audit_record_to_proto(record))

    async def GetLatestCheckpoint(
        self, request: audit_pb.GetLatestCheckpointRequest, call: Call
    ) -> audit_pb.GetLatestCheckpointResponse:
        checkpoint, cosignatures = await self._reads.latest_checkpoint(call.caller)
        return audit_pb.GetLatestCheckpointResponse(checkpoint=checkpoint_to_proto(checkpoint, cosignatures))

    async def GetCheckpoint(self, request: audit_pb.GetCheckpointRequest, call: Call) -> audit_pb.GetCheckpointResponse:
        checkpoint, cosignatures = await self._reads.checkpoint(call.caller, request.tree_size)
        return audit_pb.GetCheckpointResponse(checkpoint=checkpoint_to_proto(checkpoint, cosignatures))

    async def GetVerifierKeys(
        self, request: audit_pb.GetVerifierKeysRequest, call: Call
    ) -> audit_pb.GetVerifierKeysResponse:
        keys = await self._reads.verifier_keys(call.caller)
        return audit_pb.GetVerifierKeysResponse(origin=keys.origin or "", verifier_keys=keys.vkeys())

    async def GetInclusionProof(
        self, request: audit_pb.GetInclusionProofRequest, call: Call
    ) -> audit_pb.GetInclusionProofResponse:
        proof = await self._reads.inclusion_proof(call.caller, request.index, request.tree_size or None)
        response = audit_pb.GetInclusionProofResponse(
            index=proof.index, tree_size=proof.tree_size, leaf_hash=proof.leaf_hash, path=list(proof.path),
            root_hash=proof.root_hash, root_signed=proof.root_signed(self._reads.keys),
        )
        if proof.checkpoint is not None:
            response.checkpoint.CopyFrom(checkpoint_to_proto(proof.checkpoint))
        return response

    async def GetConsistencyProof(
        self, request: audit_pb.GetConsistencyProofRequest, call: Call
    ) -> audit_pb.GetConsistencyProofResponse:
        proof = await self._reads.consistency_proof(call.caller, request.first_tree_size,
                                                    request.second_tree_size or None)
        first_signed, second_signed = proof.roots_signed(self._reads.keys)
        return audit_pb.GetConsistencyProofResponse(
            first_tree_size=proof.size1, second_tree_size=proof.size2, first_root_hash=proof.root1,
            second_root_hash=proof.root2, path=list(proof.path), first_root_signed=first_signed,
            second_root_signed=second_signed,
        )

    async def VerifyLog(self, request: audit_pb.VerifyLogRequest, call: Call) -> audit_pb.VerifyLogResponse:
        return verify_report_to_proto(await self._reads.verify(call.caller))

    async def SubjectAccess(
        self, request: audit_pb.SubjectAccessRequest, call: Call
    ) -> AsyncIterator[audit_pb.SubjectAccessResponse]:
        async for record in self._reads.subject_access(call.caller, subject_from_proto(request.subject)):
            yield audit_pb.SubjectAccessResponse(entry=audit_record_to_proto(record))

    async def Export(self, request: audit_pb.ExportRequest, call: Call) -> AsyncIterator[audit_pb.ExportResponse]:
        async for chunk in self._reads.export(call.caller):
            yield audit_pb.ExportResponse(chunk=chunk)
