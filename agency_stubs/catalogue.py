"""The record categories and fields each simulated agency holds, exactly as docs/catalogue.md lists them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from gateway.domain import AgencyContact, RecordKind

SIMULATED_AGENCIES: tuple[str, ...] = ("police", "health", "csc", "education", "housing", "probation")
"""The agencies the synthetic world generates records for; any other declared agency is served from a file."""


@dataclass(frozen=True, slots=True)
class CategorySpec:
    """One record category: its kind, the agency's record type name, and its fields with field categories."""

    category: str
    kind: RecordKind
    record_type: str
    description: str
    fields: tuple[tuple[str, str], ...]

    @property
    def agency(self) -> str:
        return self.category.split(".", 1)[0]

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    @property
    def field_categories(self) -> tuple[str, ...]:
        """Distinct field categories in first-seen order."""
        return tuple(dict.fromkeys(cat for _, cat in self.fields))

    def field_category(self, name: str) -> str:
        for field_name, cat in self.fields:
            if field_name == name:
                return cat
        raise KeyError(f"{self.category} has no field {name!r}")


def _spec(category: str, kind: RecordKind, record_type: str, description: str, fields: str) -> CategorySpec:
    pairs = tuple(
        (name.strip(), cat.strip())
        for name, cat in (item.split(":") for item in fields.split(";"))
    )
    return CategorySpec(category, kind, record_type, description, pairs)


_I, _S, _E = RecordKind.INVOLVEMENT, RecordKind.STATE, RecordKind.EVENT

_SPECS: tuple[CategorySpec, ...] = (
    # police
    _spec("police.domestic_abuse", _E, "domestic_abuse_incident", "Domestic abuse incidents attended",
          "incident_date: record.date; dash_risk: record.risk; child_present: record.status; "
          "location_postcode: person.postcode; perpetrator: third_party.identity; narrative: record.detail; "
          "officer_in_case: staff.contact"),
    _spec("police.missing_person", _E, "missing_person_episode", "Missing-person episodes",
          "reported_date: record.date; duration_hours: record.status; found_postcode: person.postcode; "
          "return_interview: record.outcome; narrative: record.detail"),
    _spec("police.crime", _E, "crime_report", "Crimes with the person as victim, suspect or offender",
          "crime_date: record.date; offence: justice.offence; role_in_crime: record.status; "
          "other_party: third_party.identity; narrative: record.detail; outcome: record.outcome"),
    _spec("police.arrest", _E, "arrest", "Arrests and bail conditions",
          "arrest_date: record.date; offence: justice.offence; bail_conditions: justice.conditions; "
          "outcome: record.outcome"),
    _spec("police.exploitation", _S, "exploitation_concern", "Child sexual or criminal exploitation concerns",
          "concern_type: record.status; risk_level: record.risk; associates: third_party.identity; "
          "narrative: record.detail"),
    _spec("police.marac", _E, "marac_referral", "MARAC referrals",
          "referral_date: record.date; risk_level: record.risk; victim: third_party.identity; "
          "actions: record.outcome"),
    _spec("police.intelligence", _E, "intelligence_report", "Intelligence reports graded 3x5x2",
          "report_date: record.date; grading: police.grading; handling_code: police.handling_code; "
          "conditions: police.handling_conditions; informant: third_party.identity; intelligence: record.detail"),
    # health
    _spec("health.gp_registration", _I, "gp_registration", "GP registration and practice",
          "practice: service.name; registered_since: record.date; gp: staff.contact; "
          "home_address: person.address; postcode: person.postcode"),
    _spec("health.attendance", _E, "ae_attendance", "A&E and urgent-care attendances",
          "attendance_date: record.date; hospital: service.name; presenting_complaint: health.clinical; "
          "injury_type: health.clinical; attendances_12m: record.status; accompanied_by: household.member; "
          "notes: record.detail"),
    _spec("health.maternity", _I, "health_visiting", "Maternity and health-visiting contact",
          "health_visitor: staff.contact; last_contact: record.date; was_not_brought_count: record.status; "
          "concerns: record.detail"),
    _spec("health.mental_health", _I, "mental_health_involvement", "Mental health services involvement",
          "service: service.name; diagnosis: health.clinical; status: record.status; clinician: staff.contact; "
          "notes: record.detail"),
    _spec("health.substance_misuse", _I, "substance_misuse_treatment", "Substance-misuse treatment",
          "service: service.name; substance: health.clinical; treatment_status: record.status"),
    _spec("health.immunisation", _S, "immunisation_status", "Immunisation status",
          "status: record.status; last_updated: record.date"),
    _spec("health.sexual_health", _E, "sexual_health_attendance", "Sexual-health attendances (protected)",
          "clinic: service.name; attendance_date: record.date; reason: health.clinical; notes: record.detail"),
    # csc
    _spec("csc.case", _I, "csc_case", "Children's social care case status and allocation",
          "case_status: record.status; legal_status: record.status; allocated_team: staff.contact; "
          "allocated_worker: staff.contact; opened: record.date"),
    _spec("csc.cp_plan", _S, "child_protection_plan", "Child protection plans",
          "plan_category: record.risk; start_date: record.date; review_date: record.date; key_worker: staff.contact"),
    _spec("csc.referral", _E, "referral", "Referrals to children's social care and their outcomes",
          "referral_date: record.date; referrer: third_party.identity; concern: record.detail; "
          "outcome: record.outcome"),
    _spec("csc.assessment", _E, "assessment", "Assessments",
          "assessment_type: record.status; completed: record.date; outcome: record.outcome; narrative: record.detail"),
    # education
    _spec("education.enrolment", _I, "school_enrolment", "School enrolment",
          "school: education.school; year_group: record.status; date_of_birth: person.date_of_birth; "
          "home_address: person.address; postcode: person.postcode; dsl_contact: staff.contact"),
    _spec("education.attendance", _S, "attendance", "School attendance",
          "term: record.date; attendance_pct: record.status; persistent_absence: record.status"),
    _spec("education.exclusion", _E, "exclusion", "Exclusions",
          "exclusion_date: record.date; exclusion_type: record.status; reason: record.detail"),
    _spec("education.sen", _S, "special_educational_needs", "Special educational needs",
          "sen_status: record.status; needs: record.detail"),
    _spec("education.missing_education", _S, "children_missing_education",
          "Children missing education and elective home education", "status: record.status; since: record.date"),
    # housing
    _spec("housing.tenancy", _I, "tenancy", "Tenancies",
          "address: person.address; postcode: person.postcode; tenancy_start: record.date; tenure: record.status; "
          "household: household.member"),
    _spec("housing.arrears", _S, "rent_arrears", "Rent arrears", "arrears_band: record.status; since: record.date"),
    _spec("housing.asb", _E, "asb_complaint", "Anti-social behaviour complaints",
          "complaint_date: record.date; complainant: third_party.identity; allegation: record.detail; "
          "outcome: record.outcome"),
    _spec("housing.homelessness", _E, "homelessness_application", "Homelessness applications",
          "application_date: record.date; temporary_postcode: person.postcode; decision: record.outcome"),
    _spec("housing.refuge", _I, "refuge_placement", "Refuge placements (protected)",
          "refuge_address: location.protected; placement_date: record.date; support_worker: staff.contact"),
    # probation
    _spec("probation.supervision", _I, "supervision", "Supervision by the probation service",
          "supervision_status: record.status; offence: justice.offence; start_date: record.date; "
          "practitioner: staff.contact"),
    _spec("probation.risk", _S, "risk_assessment", "Risk of serious harm and MAPPA",
          "rosh_level: record.risk; mappa_category: record.risk; mappa_level: record.risk; assessed: record.date"),
    _spec("probation.licence", _S, "licence_conditions", "Licence conditions",
          "conditions: justice.conditions; expires: record.date"),
    _spec("probation.sex_offender_household", _S, "registered_sex_offender_in_household",
          "A registered sex offender in the household",
          "registered_person: household.member; registration_date: record.date; victim: third_party.identity; "
          "notes: record.detail"),
)

CATEGORIES: Mapping[str, CategorySpec] = MappingProxyType({s.category: s for s in _SPECS})
"""Every record category of every agency, by name."""

CATALOGUE: Mapping[str, tuple[CategorySpec, ...]] = MappingProxyType(
    {agency: tuple(s for s in _SPECS if s.agency == agency) for agency in SIMULATED_AGENCIES}
)
"""Record categories per agency, in catalogue order."""

FIELD_CATEGORIES: tuple[str, ...] = (
    "person.name", "person.nhs_number", "person.date_of_birth", "person.address", "person.postcode",
    "person.phone", "household.member", "third_party.identity", "staff.contact", "record.date",
    "record.status", "record.risk", "record.detail", "record.outcome", "service.name", "location.protected",
    "police.grading", "police.handling_code", "police.handling_conditions", "health.clinical",
    "education.school", "justice.offence", "justice.conditions",
)
"""Every field category of the catalogue."""

PROTECTED_CATEGORIES: frozenset[str] = frozenset({"health.sexual_health", "housing.refuge"})
"""Categories that answer at most EXISTS and never reveal which service or where."""

MASH_CONTACTS: Mapping[str, AgencyContact] = MappingProxyType({
    "police": AgencyContact("police", "Public Protection Unit, MASH desk", "020 7946 0101",
                            "mash.ppu@police.example.org.uk"),
    "health": AgencyContact("health", "Named Nurse for Safeguarding Children", "020 7946 0102",
                            "safeguarding.children@health.example.nhs.uk"),
    "csc": AgencyContact("csc", "MASH Social Work Team", "020 7946 0103", "mash@csc.example.gov.uk"),
    "education": AgencyContact("education", "Education Safeguarding Officer", "020 7946 0104",
                               "education.safeguarding@example.gov.uk"),
    "housing": AgencyContact("housing", "Housing Safeguarding Lead", "020 7946 0105",
                             "housing.safeguarding@example.gov.uk"),
    "probation": AgencyContact("probation", "Probation MASH Liaison", "020 7946 0106",
                               "mash.liaison@probation.example.gov.uk"),
})
"""Who each agency's MASH contact is (fictional numbers in Ofcom's drama range)."""
