"""Ask the hub about a child, as an agency system would: mutual TLS, the practitioner's user and role as metadata.

Against the development partnership (`mash-gateway dev up`), from the repository root:

    .venv/bin/python examples/query.py

prints one line per agency. Point --gateway, --ca, --cert and --key at your own gateway and certificate.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc

from gateway.generated.mash.gateway.v1 import common_pb2, hub_service_pb2, hub_service_pb2_grpc

PKI = Path("state/dev/pki")


async def query(args: argparse.Namespace) -> hub_service_pb2.QueryResponse:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=args.ca.read_bytes(),
        private_key=args.key.read_bytes(),
        certificate_chain=args.cert.read_bytes(),
    )
    async with grpc.aio.secure_channel(args.gateway, credentials) as channel:
        hub = hub_service_pb2_grpc.HubServiceStub(channel)
        response: hub_service_pb2.QueryResponse = await hub.Query(
            hub_service_pb2.QueryRequest(
                request_id="case-4711-q1",
                subject=common_pb2.SubjectIdentifiers(nhs_number=args.nhs_number),
                purpose="safeguarding_screening",  # from policies/vocabulary/purposes.yaml
                legal_basis="dpa_2018_sch1_para18",  # allowed for that purpose
                agreement="mash-isa-2026",  # the data-sharing agreement you rely on
                case_reference="MASH-2026-0412",
            ),
            metadata=(("x-mash-user", args.user), ("x-mash-role", args.role)),
            timeout=5.0,  # your deadline is carried to every agency node
        )
    return response


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateway", default="127.0.0.1:8443", help="gateway address (default: 127.0.0.1:8443)")
    parser.add_argument("--ca", type=Path, default=PKI / "ca.pem", help="CA certificate that signed the gateway's")
    parser.add_argument("--cert", type=Path, default=PKI / "clients" / "police-case-system.pem",
                        help="your system's client certificate")
    parser.add_argument("--key", type=Path, default=PKI / "clients" / "police-case-system.key",
                        help="its private key")
    parser.add_argument("--user", default="researcher.7", help="the practitioner's user id")
    parser.add_argument("--role", default="mash_researcher_police", help="a role your certificate is bound to")
    parser.add_argument("--nhs-number", default="999 000 1235", help="the child (default: the demo child)")
    args = parser.parse_args()
    try:
        response = asyncio.run(query(args))
    except grpc.aio.AioRpcError as exc:
        print(f"refused: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    print(f"request {response.request_id} under policy {response.policy_version}")
    for answer in response.answers:
        status = hub_service_pb2.AnswerStatus.Name(answer.status).removeprefix("ANSWER_STATUS_")
        level = common_pb2.DisclosureLevel.Name(answer.level).removeprefix("DISCLOSURE_LEVEL_")
        print(f"{answer.agency:<12} {status:<12} {level:<10} {len(answer.records)} record(s)  "
              f"contact: {answer.contact.team or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
