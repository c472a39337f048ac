"""A node's side of the locator: blind each person's identifiers, have the gateway evaluate them, unblind,
and enrol the tokens; later, enrol what is new and withdraw what no one held yields any more.

The node never sends an identifier: the gateway sees only blinded elements and finished tokens. The
inputs are those of `gateway.locator.inputs` over the identifiers as this agency records them, normalised
by `gateway.linkage` exactly as the node matches (docs/locator.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import grpc.aio
import structlog

from agency_stubs.dataset import AgencyDataset, PersonEntry
from gateway.domain import SubjectIdentifiers
from gateway.generated.mash.gateway.v1 import agency_service_pb2 as agency_pb
from gateway.generated.mash.gateway.v1 import locator_service_pb2 as locator_pb
from gateway.generated.mash.gateway.v1 import locator_service_pb2_grpc as locator_grpc
from gateway.linkage import normalise_subject
from gateway.locator import oprf
from gateway.locator.inputs import locator_inputs, token_from_output

EVALUATE_BATCH = 1_000
TOKEN_BATCH = 10_000

log = structlog.get_logger("agency_stubs.locator")


def person_inputs(entry: PersonEntry) -> list[bytes]:
    """The OPRF inputs for one person as this agency holds them (NHS number if held; name and date of birth)."""
    subject = SubjectIdentifiers(nhs_number=entry.nhs_number, given_name=entry.given_name,
                                 family_name=entry.family_name, date_of_birth=entry.date_of_birth.isoformat())
    return [data for _, data in locator_inputs(normalise_subject(subject))]


def dataset_inputs(dataset: AgencyDataset) -> set[bytes]:
    """Every distinct OPRF input of the people in `dataset` (people sharing a name and birth date share one)."""
    return {data for entry in dataset.persons.values() for data in person_inputs(entry)}


@dataclass
class EnrolmentReport:
    key_id: str = ""
    evaluated: int = 0
    added: int = 0
    removed: int = 0
    enrolled: int = 0


@dataclass
class LocatorEnrolment:
    """Keeps one node's enrolment in step with its dataset; `sync` is idempotent and incremental."""

    channel: grpc.aio.Channel
    _tokens: dict[bytes, bytes] = field(default_factory=dict)  # input → token, under `_key_id`
    _key_id: str = ""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pending: set[asyncio.Task[EnrolmentReport]] = field(default_factory=set)  # updates after dataset changes

    @property
    def stub(self) -> locator_grpc.LocatorServiceAsyncStub:
        return locator_grpc.LocatorServiceStub(self.channel)

    async def _evaluate(self, inputs: list[bytes]) -> tuple[str, dict[bytes, bytes]]:
        """Tokens for `inputs` via the gateway, which sees only blinded elements."""
        out: dict[bytes, bytes] = {}
        key_id = ""
        for i in range(0, len(inputs), EVALUATE_BATCH):
            chunk = inputs[i:i + EVALUATE_BATCH]
            blinded = [oprf.blind(data) for data in chunk]
            answer = await self.stub.Evaluate(locator_pb.EvaluateRequest(blinded_elements=[b for _, b in blinded]))
            if key_id and answer.key_id != key_id:
                raise RuntimeError("the gateway's locator key changed during enrolment; sync again")
            key_id = answer.key_id
            if len(answer.evaluated_elements) != len(chunk):
                raise RuntimeError("the gateway answered a different number of elements")
            for data, (r, _), evaluated in zip(chunk, blinded, answer.evaluated_elements, strict=True):
                out[data] = token_from_output(oprf.finalize(data, r, evaluated))
        return key_id, out

    def tokens_of(self, entry: PersonEntry) -> tuple[str, tuple[bytes, ...]]:
        """(key id, tokens) the node enrolled for one person; ("", ()) for a person not (yet) enrolled."""
        tokens = tuple(t for data in person_inputs(entry) if (t := self._tokens.get(data)) is not None)
        return (self._key_id, tokens) if tokens else ("", ())

    async def sync(self, dataset: AgencyDataset) -> EnrolmentReport:
        """Make the gateway's enrolment of this node equal to `dataset`, then mark it complete."""
        async with self._lock:
            return await self._sync(dataset)

    async def _sync(self, dataset: AgencyDataset) -> EnrolmentReport:
        state = await self.stub.GetEnrolmentState(locator_pb.GetEnrolmentStateRequest())
        wanted = dataset_inputs(dataset)
        if state.active_key_id != self._key_id:
            # First sync, or the gateway rotated its key: start again under the active key.
            self._tokens, self._key_id = {}, state.active_key_id
        report = EnrolmentReport(key_id=self._key_id)
        new_inputs = sorted(wanted - self._tokens.keys())
        if new_inputs:
            key_id, fresh = await self._evaluate(new_inputs)
            if key_id != self._key_id:
                raise RuntimeError("the gateway's locator key changed during enrolment; sync again")
            report.evaluated = len(fresh)
        else:
            fresh = {}
        gone = [self._tokens[data] for data in self._tokens.keys() - wanted]
        keep = {data: token for data, token in self._tokens.items() if data in wanted}
        still = set(keep.values()) | set(fresh.values())
        gone = [t for t in gone if t not in still]
        for i in range(0, len(gone), TOKEN_BATCH):
            withdrawn = await self.stub.Withdraw(locator_pb.WithdrawRequest(key_id=self._key_id,
                                                                            tokens=gone[i:i + TOKEN_BATCH]))
            report.removed += withdrawn.removed
        tokens = sorted(set(fresh.values()))
        chunks = [tokens[i:i + TOKEN_BATCH] for i in range(0, len(tokens), TOKEN_BATCH)] or [[]]
        for n, chunk in enumerate(chunks):
            last = n == len(chunks) - 1
            answer = await self.stub.Enrol(locator_pb.EnrolRequest(
                key_id=self._key_id, tokens=chunk,
                completeness=locator_pb.COMPLETENESS_COMPLETE if last else locator_pb.COMPLETENESS_UNSPECIFIED))
            report.added += answer.added
            report.enrolled = answer.enrolled
        self._tokens = {**keep, **fresh}
        log.info("locator_enrolment", agency=dataset.agency, key_id=self._key_id, evaluated=report.evaluated,
                 added=report.added, removed=report.removed, enrolled=report.enrolled)
        return report


async def enrol_running_node(node: object, channel: grpc.aio.Channel) -> tuple[LocatorEnrolment, EnrolmentReport]:
    """Declare FEATURE_LOCATOR_ENROLMENT on a running node, enrol its people, and re-enrol (incrementally)
    whenever its dataset is replaced. `node` is an `agency_stubs.node.RunningNode`."""
    from agency_stubs.node import RunningNode

    assert isinstance(node, RunningNode)
    enrolment = LocatorEnrolment(channel)
    if agency_pb.FEATURE_LOCATOR_ENROLMENT not in node.servicer.features:
        node.servicer.features = (*node.servicer.features, agency_pb.FEATURE_LOCATOR_ENROLMENT)
    report = await enrolment.sync(node.servicer.dataset)
    node.servicer.tokens_of = enrolment.tokens_of  # cohort summaries are keyed by the enrolled tokens

    def changed(dataset: AgencyDataset) -> None:
        task = asyncio.get_running_loop().create_task(enrolment.sync(dataset))
        enrolment.pending.add(task)
        task.add_done_callback(enrolment.pending.discard)

    node.on_change.append(changed)
    return enrolment, report


async def settle(enrolment: LocatorEnrolment) -> None:
    """Wait for enrolment updates started by dataset changes."""
    for task in list(enrolment.pending):
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def keep_enrolled(node: object, gateway: str, tls_dir: Path, *, retry: float = 2.0) -> None:
    """For `python -m agency_stubs --locator`: enrol the node with the gateway at `gateway`, retrying until
    the gateway answers, then keep the enrolment current. Runs until cancelled."""
    from gateway.pki.authority import gateway_server_name

    credentials = grpc.ssl_channel_credentials(
        root_certificates=(tls_dir / "ca.pem").read_bytes(),
        private_key=(tls_dir / "nodes" / f"{getattr(node, 'agency', '')}.key").read_bytes(),
        certificate_chain=(tls_dir / "nodes" / f"{getattr(node, 'agency', '')}.pem").read_bytes())
    channel = grpc.aio.secure_channel(gateway, credentials,
                                      options=[("grpc.ssl_target_name_override", gateway_server_name())])
    try:
        while True:
            try:
                await enrol_running_node(node, channel)
                break
            except grpc.aio.AioRpcError as exc:  # the gateway is not up yet, or refused: say which, retry
                log.warning("locator_enrolment_failed", code=exc.code().name)
                await asyncio.sleep(retry)
        await asyncio.Event().wait()
    finally:
        await channel.close()
