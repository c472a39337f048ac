"""A youth offending service node written only from agency_service.proto: no import from the gateway's packages.

Run with the protoc output on PYTHONPATH: `python yos_node.py --tls-dir PKI` prints `listening on PORT`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from concurrent import futures
from pathlib import Path

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from mash.gateway.v1 import agency_service_pb2 as pb
from mash.gateway.v1 import agency_service_pb2_grpc as pb_grpc
from mash.gateway.v1 import common_pb2

GATEWAY = "spiffe://mash.local/gateway"
AGENCY = "yos"
CONTACT = common_pb2.AgencyContact(agency=AGENCY, team="YOS MASH officer", phone="020 7946 0107")
NHS_NUMBER = "9990007004"
CATEGORIES = {
    "yos.court_order": (common_pb2.RECORD_KIND_INVOLVEMENT, ["record.status", "record.date", "justice.offence",
                                                             "staff.contact", "record.detail"]),
    "yos.assessment": (common_pb2.RECORD_KIND_STATE, ["record.risk", "record.date"]),
}


def _at(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


RECORDS = [
    common_pb2.Record(
        agency=AGENCY, record_id="YOS-R-0001", record_type="youth_court_order", category="yos.court_order",
        kind=common_pb2.RECORD_KIND_INVOLVEMENT, occurred_at=_at("2026-09-01T09:30:00Z"),
        summary="Referral order, 9 months, supervised by the youth offending service",
        fields=[
            common_pb2.Field(name="order_type", category="record.status", value="referral order"),
            common_pb2.Field(name="start_date", category="record.date", value="2026-09-01"),
            common_pb2.Field(name="offence", category="justice.offence", value="possession of a bladed article"),
            common_pb2.Field(name="case_manager", category="staff.contact", value="Priya Shah, YOS"),
            common_pb2.Field(name="notes", category="record.detail", value="carried the knife to the park"),
        ],
    ),
    common_pb2.Record(
        agency=AGENCY, record_id="YOS-R-0002", record_type="assetplus_assessment", category="yos.assessment",
        kind=common_pb2.RECORD_KIND_STATE, occurred_at=_at("2026-09-15T14:00:00Z"),
        summary="AssetPlus assessment completed",
        fields=[
            common_pb2.Field(name="risk_of_serious_harm", category="record.risk", value="medium"),
            common_pb2.Field(name="assessed", category="record.date", value="2026-09-15"),
        ],
    ),
]


def _caller(context: grpc.ServicerContext) -> set[str]:
    auth = context.auth_context()
    return {v.decode() for v in auth.get("x509_subject_alternative_name", ()) if v.startswith(b"spiffe://")}


class YouthOffendingNode(pb_grpc.AgencyServiceServicer):
    def _check(self, context: grpc.ServicerContext) -> None:
        if GATEWAY not in _caller(context):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "only the gateway may ask")

    def Lookup(self, request: pb.LookupRequest, context: grpc.ServicerContext) -> pb.LookupResponse:
        self._check(context)
        unknown = [c for c in (*request.categories, *request.existence_categories) if c not in CATEGORIES]
        if unknown:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "categories: not held here")
        response = pb.LookupResponse(agency=AGENCY, mash_contact=CONTACT)
        if "".join(request.subject.nhs_number.split()) != NHS_NUMBER:
            return response
        records = [r for r in RECORDS if r.category in request.categories]
        known = any(r.category in request.existence_categories for r in RECORDS)
        if records or known:
            response.matches.append(pb.PersonMatch(
                person_ref="YOS-000042", method=pb.MATCH_METHOD_NHS_NUMBER, records=records,
                known_in_existence_categories=known,
            ))
        return response

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> pb.DescribeResponse:
        self._check(context)
        return pb.DescribeResponse(agency=AGENCY, mash_contact=CONTACT, record_categories=[
            pb.RecordCategory(category=name, kind=kind, field_categories=fields)
            for name, (kind, fields) in CATEGORIES.items()
        ])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tls-dir", type=Path, required=True)
    args = parser.parse_args()
    credentials = grpc.ssl_server_credentials(
        [((args.tls_dir / "nodes" / "yos.key").read_bytes(), (args.tls_dir / "nodes" / "yos.pem").read_bytes())],
        root_certificates=(args.tls_dir / "ca.pem").read_bytes(), require_client_auth=True,
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_AgencyServiceServicer_to_server(YouthOffendingNode(), server)
    port = server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    print(f"listening on {port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(0.5).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
