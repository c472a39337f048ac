"""The tamper-evident audit log: RFC 6962 Merkle log of canonical entries, signed checkpoints, proofs, stores."""

from __future__ import annotations

from gateway.audit.backends import open_store
from gateway.audit.checkpoint import (
    CheckpointKeyError,
    CheckpointSignatureError,
    CheckpointSigner,
    PublicKeys,
    SignedCheckpoint,
    generate_signing_key,
    load_public_keys,
    load_signer,
    rotate_signing_key,
)
from gateway.audit.encoding import SCHEMA_VERSION, EncodingError, decode_entry, encode_event
from gateway.audit.log import AuditLog, CheckpointUnavailable
from gateway.audit.memory_store import MemoryStore
from gateway.audit.merkle import MerkleTree, ProofError, verify_consistency, verify_inclusion
from gateway.audit.review import (
    AuditRecord,
    AuditReview,
    ConsistencyProof,
    ExportSummary,
    InclusionProof,
    read_chunks,
    verify_export,
)
from gateway.audit.sealing import IdentifierSealer, SealingError
from gateway.audit.store import (
    CheckpointConflict,
    DisclosureStore,
    EntryFilter,
    StoreError,
    StoreUnavailable,
    StoreUrlError,
)
from gateway.audit.verify import Problem, VerifyReport, verify_store

__all__ = [
    "SCHEMA_VERSION",
    "AuditLog",
    "AuditRecord",
    "AuditReview",
    "CheckpointConflict",
    "CheckpointKeyError",
    "CheckpointSignatureError",
    "CheckpointSigner",
    "CheckpointUnavailable",
    "ConsistencyProof",
    "DisclosureStore",
    "EncodingError",
    "EntryFilter",
    "ExportSummary",
    "IdentifierSealer",
    "InclusionProof",
    "MemoryStore",
    "MerkleTree",
    "Problem",
    "ProofError",
    "PublicKeys",
    "SealingError",
    "SignedCheckpoint",
    "StoreError",
    "StoreUnavailable",
    "StoreUrlError",
    "VerifyReport",
    "decode_entry",
    "encode_event",
    "generate_signing_key",
    "load_public_keys",
    "load_signer",
    "open_store",
    "read_chunks",
    "rotate_signing_key",
    "verify_consistency",
    "verify_export",
    "verify_inclusion",
    "verify_store",
]
