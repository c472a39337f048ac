"""AnalysisService servicer: translate, delegate to the analysis service. Nothing else."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from gateway.analysis.service import AgencyPart, AnalysisService, PersonView, Picture, PictureCommand
from gateway.analysis.suppression import Shown, Suppression
from gateway.api.calls import Call
from gateway.api.convert import contact_to_proto, level_to_proto, receipt_to_proto, subject_from_proto
from gateway.generated.mash.gateway.v1 import analysis_service_pb2 as analysis_pb
from gateway.service.validation import QueryCommand

_SUPPRESSION = {Suppression.NONE: analysis_pb.SUPPRESSION_NONE, Suppression.SMALL: analysis_pb.SUPPRESSION_SMALL,
                Suppression.SECONDARY: analysis_pb.SUPPRESSION_SECONDARY}


def _date(when: date | None) -> str:
    return when.isoformat() if when else ""


def agency_to_proto(part: AgencyPart) -> analysis_pb.AgencySummary:
    return analysis_pb.AgencySummary(
        agency=part.agency, area=part.area,
        status=analysis_pb.SummaryStatus.Value(f"SUMMARY_STATUS_{part.status.value}"),
        level=level_to_proto(part.level), contact=contact_to_proto(part.contact), detail=part.detail,
        receipt=receipt_to_proto(part.receipt),
        categories=[analysis_pb.CategorySummary(category=c.category, level=level_to_proto(c.level), records=c.records,
                                                first_date=_date(c.first), last_date=_date(c.last))
                    for c in part.categories],
    )


def person_to_proto(view: PersonView) -> analysis_pb.DescribePersonResponse:
    return analysis_pb.DescribePersonResponse(
        request_id=view.request_id, policy_version=view.policy_version,
        agencies=[agency_to_proto(p) for p in view.agencies],
        areas=[analysis_pb.AreaSummary(area=a.area, agencies=list(a.agencies), records=a.records,
                                       first_date=_date(a.first), last_date=_date(a.last)) for a in view.areas],
        domestic_abuse=analysis_pb.DomesticAbuseSummary(
            as_victim=view.as_victim, as_perpetrator=view.as_perpetrator,
            switches_role=bool(view.as_victim and view.as_perpetrator)),
        years=[analysis_pb.YearSummary(year=y.year, main_area=y.main_area, moved_from=y.moved_from,
                                       areas=[analysis_pb.AreaCount(area=a, records=n) for a, n in y.areas])
               for y in view.years],
        moves=view.moves,
    )


def _count(shown: Shown) -> analysis_pb.SuppressedCount:
    return analysis_pb.SuppressedCount(shown=shown.text, suppression=_SUPPRESSION[shown.suppression])


def _row(area: str, counts: Mapping[str, Shown]) -> analysis_pb.PictureRow:
    return analysis_pb.PictureRow(area=area, **{m: _count(s) for m, s in counts.items()})


def picture_to_proto(picture: Picture) -> analysis_pb.GetPartnershipPictureResponse:
    return analysis_pb.GetPartnershipPictureResponse(
        request_id=picture.request_id, policy_version=picture.policy_version,
        period_start=picture.period_start.isoformat(), period_end=picture.period_end.isoformat(),
        areas=[_row(a, row) for a, row in picture.areas.items()], total=_row("", picture.total),
        agencies_counted=list(picture.counted),
        agencies_left_out=[analysis_pb.AgencyLeftOut(agency=a, reason=r) for a, r in picture.left_out],
        receipt=receipt_to_proto(picture.receipt),
    )


class AnalysisServicer:
    def __init__(self, service: AnalysisService) -> None:
        self._service = service

    async def DescribePerson(self, request: analysis_pb.DescribePersonRequest,
                             call: Call) -> analysis_pb.DescribePersonResponse:
        command = QueryCommand(
            request_id=request.request_id, subject=subject_from_proto(request.subject), purpose=request.purpose,
            legal_basis=request.legal_basis, agreement=request.agreement, case_reference=request.case_reference,
            categories=tuple(request.categories))
        return person_to_proto(await self._service.describe_person(call.caller, command,
                                                                   timeout=call.time_remaining()))

    async def GetPartnershipPicture(self, request: analysis_pb.GetPartnershipPictureRequest,
                                    call: Call) -> analysis_pb.GetPartnershipPictureResponse:
        command = PictureCommand(
            request_id=request.request_id, purpose=request.purpose, legal_basis=request.legal_basis,
            agreement=request.agreement, case_reference=request.case_reference,
            period_start=request.period_start, period_end=request.period_end)
        return picture_to_proto(await self._service.partnership_picture(call.caller, command,
                                                                        timeout=call.time_remaining()))
