"""What each agency holds about the fixed cast: distinctive narratives the demo and tests search for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from types import MappingProxyType

from agency_stubs.cast import (
    CAST,
    DEAN_ASHBY,
    JODIE_MERCER,
    KAI_ALLOCATED_TEAM,
    KAI_ALLOCATED_WORKER,
    KAI_MERCER,
    KAI_REFERRER,
    KAI_SCHOOL,
    NOAH_FENWICK,
    REFUGE_ADDRESS,
    RUBY_MERCER,
    CastMember,
)
from agency_stubs.dataset import PersonEntry
from agency_stubs.records import at, make_record
from gateway.domain import Record

_D = date.fromisoformat


def _police() -> dict[CastMember, list[Record]]:
    perpetrator = "Dean Ashby (born 23/11/1989), partner of the victim"
    da1 = make_record(
        "police.domestic_abuse", "POL-DA-C0001", at(_D("2026-07-04"), 23, 40),
        "Domestic abuse incident at the home address; DASH high; children present.",
        {
            "incident_date": "2026-07-04", "dash_risk": "high", "child_present": "yes",
            "location_postcode": KAI_MERCER.postcode, "perpetrator": perpetrator,
            "narrative": "Neighbour called 999 reporting screaming. Victim had a swollen left eye and said her "
                         "partner pushed her into the kitchen door. Kai (9) was found hiding behind the sofa "
                         "holding his baby sister and said 'Dean shouts at mummy every night'. The suspect had "
                         "left before officers arrived.",
            "officer_in_case": "PC 4471 Nadia Harper, Hackney Safeguarding Unit, 020 7946 0471",
        },
    )
    da2 = make_record(
        "police.domestic_abuse", "POL-DA-C0002", at(_D("2026-09-08"), 2, 15),
        "Second domestic abuse incident at the home address in ten weeks; DASH high; child present; "
        "suspect arrested.",
        {
            "incident_date": "2026-09-08", "dash_risk": "high", "child_present": "yes",
            "location_postcode": KAI_MERCER.postcode, "perpetrator": perpetrator,
            "narrative": "Victim found with a cut lip and finger-mark bruising to her neck; suspect arrested at "
                         "the scene. Kai woke and saw the assault from the landing; Ruby (4) slept through. "
                         "A kitchen knife was recovered from the hallway floor.",
            "officer_in_case": "PC 4471 Nadia Harper, Hackney Safeguarding Unit, 020 7946 0471",
        },
    )
    marac = make_record(
        "police.marac", "POL-MR-C0001", at(_D("2026-09-12"), 10),
        "Referred to MARAC as a high-risk domestic abuse victim.",
        {
            "referral_date": "2026-09-12", "risk_level": "high", "victim": "Jodie Mercer",
            "actions": "Safety plan agreed; IDVA allocated; police marker placed on the home address; "
                       "children referred to the MASH.",
        },
    )
    arrest = make_record(
        "police.arrest", "POL-AR-C0001", at(_D("2026-09-08"), 2, 40),
        "Arrested for assault; charged and bailed with conditions.",
        {
            "arrest_date": "2026-09-08", "offence": "Assault occasioning actual bodily harm",
            "bail_conditions": "Not to contact Jodie Mercer directly or indirectly; not to enter Larch Road, E8.",
            "outcome": "Charged; conditional bail to Thames Magistrates' Court on 2026-10-06.",
        },
    )
    intel_p = make_record(
        "police.intelligence", "POL-IN-C0001", at(_D("2026-05-20"), 14),
        "Intelligence report (3x5x2 graded).",
        {
            "report_date": "2026-05-20", "grading": "B2", "handling_code": "P", "conditions": "",
            "informant": "Member of the public (details held by the Intelligence Unit)",
            "intelligence": "Subject believed to be dealing cannabis from a grey Vauxhall Corsa parked outside "
                            "the Larch Road flats, often in the evenings while the children are at home.",
        },
    )
    intel_c = make_record(
        "police.intelligence", "POL-IN-C0002", at(_D("2026-08-02"), 11),
        "Intelligence report (3x5x2 graded), shared with conditions.",
        {
            "report_date": "2026-08-02", "grading": "C3", "handling_code": "C",
            "conditions": "For MASH safeguarding use only; do not disclose to the subject or the family; consult "
                          "DS Okonjo (ext 4402) before any onward sharing.",
            "informant": "Confidential source, reference CS-2291",
            "intelligence": "Source reports the subject keeps a lock-knife in the kitchen drawer and has "
                            "threatened to 'finish' his partner if she leaves.",
        },
    )
    intel_bad = make_record(
        "police.intelligence", "POL-IN-C0003", at(_D("2025-12-11"), 9),
        "Intelligence report; handling code not valid under 3x5x2.",
        {
            "report_date": "2025-12-11", "grading": "B3", "handling_code": "4", "conditions": "",
            "informant": "Anonymous caller via Crimestoppers",
            "intelligence": "Historic report: subject linked to a previous partner's facial injuries in Leyton "
                            "(2019), never reported to police at the time.",
        },
    )
    return {
        KAI_MERCER: [da1, da2],
        JODIE_MERCER: [da1, da2, marac],
        DEAN_ASHBY: [da1, da2, arrest, intel_p, intel_c, intel_bad],
    }


def _gp(member: CastMember, ref_suffix: str, practice: str, since: str) -> Record:
    return make_record(
        "health.gp_registration", f"HLT-GP-{ref_suffix}", at(_D(since)), "Registered with a GP practice.",
        {
            "practice": practice, "registered_since": since, "gp": "Dr Ananya Rao, 020 7946 0730",
            "home_address": member.address_line, "postcode": member.postcode,
        },
    )


def _health() -> dict[CastMember, list[Record]]:
    practice = "Lower Clapton Group Practice"
    kai_ae1 = make_record(
        "health.attendance", "HLT-AE-C0001", at(_D("2026-03-02"), 19, 5),
        "A&E attendance with an injury.",
        {
            "attendance_date": "2026-03-02", "hospital": "Homerton University Hospital",
            "presenting_complaint": "Fall from a bunk bed", "injury_type": "Grip-pattern bruising to left upper arm",
            "attendances_12m": "1", "accompanied_by": "Jodie Mercer (mother)",
            "notes": "Account of a fall from a bunk bed does not fit grip-pattern bruising; Kai quiet and "
                     "withdrawn, would not answer questions while his mother was present.",
        },
    )
    kai_ae2 = make_record(
        "health.attendance", "HLT-AE-C0002", at(_D("2026-08-19"), 16, 30),
        "A&E attendance with an injury, two days after it happened.",
        {
            "attendance_date": "2026-08-19", "hospital": "Homerton University Hospital",
            "presenting_complaint": "Wrist injury after tripping on the stairs",
            "injury_type": "Greenstick fracture of the right wrist", "attendances_12m": "2",
            "accompanied_by": "Dean Ashby (mother's partner)",
            "notes": "Two-day delay in presenting. Kai told the triage nurse 'Dean grabbed me', then said he fell. "
                     "Safeguarding liaison nurse informed.",
        },
    )
    kai_imm = make_record(
        "health.immunisation", "HLT-IM-C0001", at(_D("2021-06-10")), "Immunisations up to date.",
        {"status": "up to date", "last_updated": "2021-06-10"},
    )
    kai_camhs = make_record(
        "health.mental_health", "HLT-MH-C0002", at(_D("2026-09-14")), "Referred to CAMHS.",
        {
            "service": "Hackney CAMHS", "diagnosis": "Anxiety; disturbed sleep and nightmares",
            "status": "awaiting assessment", "clinician": "Dr Priya Nandakumar, CAMHS, 020 7946 0793",
            "notes": "School nurse referral: Kai is frightened to go home on days Dean is there.",
        },
    )
    jodie_mh = make_record(
        "health.mental_health", "HLT-MH-C0001", at(_D("2025-11-03")), "Open to adult mental health services.",
        {
            "service": "Hackney Community Mental Health Team", "diagnosis": "Moderate depression with anxiety",
            "status": "open", "clinician": "Dr Owen Achterberg, consultant psychiatrist, 020 7946 0791",
            "notes": "Jodie says she feels 'trapped in the flat'; medication adherence poor; protective factor: "
                     "her two children.",
        },
    )
    jodie_sh = make_record(
        "health.sexual_health", "HLT-SH-C0001", at(_D("2026-06-15"), 15), "Sexual health attendance.",
        {
            "clinic": "Clinic 9, Homerton Sexual Health Service", "attendance_date": "2026-06-15",
            "reason": "STI screening and emergency contraception",
            "notes": "Disclosed that her partner forces her to have sex; declined referral to the Havens SARC.",
        },
    )
    ruby_hv = make_record(
        "health.maternity", "HLT-HV-C0001", at(_D("2026-10-02")), "Health visiting; reviews missed.",
        {
            "health_visitor": "Helen Marsh, Health Visitor, Hackney 0-19 Service, 020 7946 0622",
            "last_contact": "2026-10-02", "was_not_brought_count": "3",
            "concerns": "Ruby was not brought to her 2-year review or two rebooked appointments; home visit on "
                        "02/10/2026 got no answer although a television could be heard inside.",
        },
    )
    ruby_imm = make_record(
        "health.immunisation", "HLT-IM-C0002", at(_D("2023-04-20")), "Immunisations overdue.",
        {"status": "overdue: second MMR dose", "last_updated": "2023-04-20"},
    )
    noah_ae = make_record(
        "health.attendance", "HLT-AE-C0003", at(_D("2026-02-14"), 21), "A&E attendance, no injury.",
        {
            "attendance_date": "2026-02-14", "hospital": "Homerton University Hospital",
            "presenting_complaint": "Acute asthma attack", "injury_type": "none", "attendances_12m": "1",
            "accompanied_by": "Claire Fenwick (mother)", "notes": "Nebulised and discharged with an inhaler plan.",
        },
    )
    noah_imm = make_record(
        "health.immunisation", "HLT-IM-C0003", at(_D("2020-10-01")), "Immunisations up to date.",
        {"status": "up to date", "last_updated": "2020-10-01"},
    )
    return {
        KAI_MERCER: [_gp(KAI_MERCER, "C0001", practice, "2017-06-01"), kai_ae1, kai_ae2, kai_imm, kai_camhs],
        JODIE_MERCER: [_gp(JODIE_MERCER, "C0002", practice, "2016-01-12"), jodie_mh, jodie_sh],
        DEAN_ASHBY: [_gp(DEAN_ASHBY, "C0003", practice, "2024-03-18")],
        RUBY_MERCER: [_gp(RUBY_MERCER, "C0004", practice, "2022-04-01"), ruby_hv, ruby_imm],
        NOAH_FENWICK: [_gp(NOAH_FENWICK, "C0005", "Sandringham Practice", "2016-10-20"), noah_ae, noah_imm],
    }


def _csc() -> dict[CastMember, list[Record]]:
    case = make_record(
        "csc.case", "CSC-CS-C0001", at(_D("2026-09-15")), "Open case: child in need.",
        {
            "case_status": "open", "legal_status": "child_in_need", "allocated_team": KAI_ALLOCATED_TEAM,
            "allocated_worker": KAI_ALLOCATED_WORKER, "opened": "2026-09-15",
        },
    )
    referral = make_record(
        "csc.referral", "CSC-RF-C0001", at(_D("2026-09-10"), 9, 20), "Referral received.",
        {
            "referral_date": "2026-09-10",
            "referrer": f"{KAI_REFERRER}, neighbour at 25 Larch Road, 07700 900461",
            "concern": "Neighbour hears a man shouting 'I'll kill you' and a child screaming through the wall on "
                       "several nights; Kai seen alone in the street after 10pm twice in September.",
            "outcome": "Accepted for a child and family assessment",
        },
    )
    assessment = make_record(
        "csc.assessment", "CSC-AS-C0001", at(_D("2026-10-20")), "Child and family assessment completed.",
        {
            "assessment_type": "child_and_family_assessment", "completed": "2026-10-20",
            "outcome": "Child in need plan; strategy discussion if there is a further incident",
            "narrative": "Kai describes hiding in the wardrobe with Ruby 'when Dean gets loud'. Mother minimises "
                         "the violence and says her partner has moved out, which neighbours dispute.",
        },
    )
    return {KAI_MERCER: [case, referral, assessment]}


def _education() -> dict[CastMember, list[Record]]:
    dsl = "Mrs Angela Brennan, Designated Safeguarding Lead, 020 7946 0388"

    def enrolment(member: CastMember, rid: str) -> Record:
        return make_record(
            "education.enrolment", rid, at(_D("2021-09-06")), "On a school roll, Year 5.",
            {
                "school": KAI_SCHOOL, "year_group": "Year 5", "date_of_birth": member.date_of_birth,
                "home_address": member.address_line, "postcode": member.postcode, "dsl_contact": dsl,
            },
        )

    kai_att = make_record(
        "education.attendance", "EDU-AT-C0001", at(_D("2026-07-22")), "Persistently absent last term.",
        {"term": "2025/26 summer term", "attendance_pct": "82%", "persistent_absence": "yes"},
    )
    kai_sen = make_record(
        "education.sen", "EDU-SN-C0001", at(_D("2025-01-15")), "Receives SEN support.",
        {
            "sen_status": "sen_support",
            "needs": "Speech and language delay; struggles to regulate emotions after weekends and holidays.",
        },
    )
    noah_att = make_record(
        "education.attendance", "EDU-AT-C0002", at(_D("2026-07-22")), "Attendance good last term.",
        {"term": "2025/26 summer term", "attendance_pct": "96%", "persistent_absence": "no"},
    )
    return {
        KAI_MERCER: [enrolment(KAI_MERCER, "EDU-EN-C0001"), kai_att, kai_sen],
        NOAH_FENWICK: [enrolment(NOAH_FENWICK, "EDU-EN-C0002"), noah_att],
    }


def _housing() -> dict[CastMember, list[Record]]:
    tenancy = make_record(
        "housing.tenancy", "HSG-TN-C0001", at(_D("2020-04-06")), "Secure council tenancy.",
        {
            "address": JODIE_MERCER.address_line, "postcode": JODIE_MERCER.postcode, "tenancy_start": "2020-04-06",
            "tenure": "secure", "household": "Kai Mercer (son), Ruby Mercer (daughter), Dean Ashby (partner, "
                                             "not on the tenancy)",
        },
    )
    arrears = make_record(
        "housing.arrears", "HSG-RA-C0001", at(_D("2026-06-01")), "In rent arrears.",
        {"arrears_band": "500-999", "since": "2026-06-01"},
    )
    refuge = make_record(
        "housing.refuge", "HSG-RG-C0001", at(_D("2019-02-11")), "Refuge placement recorded.",
        {
            "refuge_address": REFUGE_ADDRESS, "placement_date": "2019-02-11",
            "support_worker": "Lorna Pike, refuge support worker, 020 7946 0455",
        },
    )
    asb = make_record(
        "housing.asb", "HSG-AS-C0001", at(_D("2026-05-03")), "Anti-social behaviour complaint; warning issued.",
        {
            "complaint_date": "2026-05-03", "complainant": "Desmond Clarke, 29 Larch Road",
            "allegation": "Loud music and shouting late at night; the complainant was threatened on the stairwell "
                          "after asking for quiet.",
            "outcome": "Warning letter issued",
        },
    )
    return {JODIE_MERCER: [tenancy, arrears, refuge], DEAN_ASHBY: [asb]}


def _probation() -> dict[CastMember, list[Record]]:
    supervision = make_record(
        "probation.supervision", "PRB-SV-C0001", at(_D("2025-02-10")), "Supervised on licence.",
        {
            "supervision_status": "active (licence)",
            "offence": "Assault occasioning actual bodily harm (previous partner)",
            "start_date": "2025-02-10", "practitioner": "Priya Lal, Probation Practitioner, Hackney PDU, 020 7946 0612",
        },
    )
    risk = make_record(
        "probation.risk", "PRB-RK-C0001", at(_D("2026-09-15")), "Risk of serious harm: high.",
        {"rosh_level": "high", "mappa_category": "2", "mappa_level": "1", "assessed": "2026-09-15"},
    )
    licence = make_record(
        "probation.licence", "PRB-LC-C0001", at(_D("2025-02-10")), "On licence with conditions.",
        {
            "conditions": "Not to contact Leanne Cole directly or indirectly; to tell the supervising officer of "
                          "any developing intimate relationship; to live at an address approved by probation; "
                          "to complete the Building Better Relationships programme.",
            "expires": "2027-02-09",
        },
    )
    return {DEAN_ASHBY: [supervision, risk, licence]}


# The cast's parts in the records naming several people in different parts (domestic abuse).
_ROLES: Mapping[CastMember, Mapping[str, str]] = {
    JODIE_MERCER: {"POL-DA-C0001": "victim", "POL-DA-C0002": "victim"},
    DEAN_ASHBY: {"POL-DA-C0001": "perpetrator", "POL-DA-C0002": "perpetrator"},
}

_BUILDERS = {
    "police": _police, "health": _health, "csc": _csc, "education": _education, "housing": _housing,
    "probation": _probation,
}


def cast_entries(agency: str, *, holds_nhs_number: bool = True) -> list[PersonEntry]:
    """The agency's person entries for the cast members it knows, with their records."""
    by_member: Mapping[CastMember, Sequence[Record]] = _BUILDERS[agency]()
    entries: list[PersonEntry] = []
    for member in CAST:
        if member not in by_member:
            continue
        family = member.family_name.upper() if agency == "police" else member.family_name
        entries.append(
            PersonEntry(
                person_ref=member.person_refs[agency],
                given_name=member.given_name,
                family_name=family,
                date_of_birth=_D(member.date_of_birth),
                nhs_number=member.nhs_number if holds_nhs_number else "",
                postcode=member.postcode,
                records=tuple(by_member[member]),
                roles=MappingProxyType({r.record_id: _ROLES[member][r.record_id] for r in by_member[member]
                                        if r.record_id in _ROLES.get(member, {})}),
            )
        )
    return entries

