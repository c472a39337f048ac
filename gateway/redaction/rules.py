"""Redaction rules: loading, validating and pre-compiling `policies/redaction.yaml` into fast lookups.

Every mistake an IG officer can make in the file is reported as a Finding with file and line, and all of
them are reported together, so one run of `policy check` shows everything to fix.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.domain import AgencyContact
from gateway.errors import Finding, PolicyError
from gateway.redaction import operators as ops

Transform = Callable[[str, str, date, ops.Pseudonymiser], "str | None"]
"""A compiled field operator: (held value, record summary, disclosure date, pseudonymiser) → released
value, or None when the field is withheld."""

FIELD_OPERATORS = (
    "keep",
    "drop",
    "replace",
    "mask",
    "pseudonymise",
    "generalise_date",
    "generalise_postcode",
    "agency_summary",
)
RECORD_OPERATORS = ("existence_only",)


@dataclass(frozen=True, slots=True)
class FieldRule:
    """What happens at PERTINENT to fields of one field category at one agency, and where that is written."""

    operator: str
    params: Mapping[str, object]
    source: str  # "redaction.yaml:42"
    apply: Transform = field(repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class RecordRule:
    """What happens at PERTINENT to whole records of one record category (e.g. existence only)."""

    operator: str
    source: str


@dataclass(frozen=True, slots=True)
class Safeguarding:
    """Protections applied at every disclosure level, whatever the field rules say."""

    pseudonymise_outside_mash: frozenset[str]  # field categories
    pseudonym_domain: str
    # Protected record categories and the roles that may read them, as the vocabulary declares them
    # (sub-categories included), so the policy and the redactor can never disagree about what is protected.
    protected_readers: Mapping[str, frozenset[str]]
    handling_code_record_categories: frozenset[str]
    handling_code_field: str
    handling_conditions_field: str
    source: str

    @property
    def protected_record_categories(self) -> frozenset[str]:
        """Every protected record category, whoever its readers."""
        return frozenset(self.protected_readers)


class RedactionRules:
    """A validated, pre-compiled set of redaction rules; lookups are plain dictionary reads."""

    __slots__ = ("_contacts", "_fields", "_records", "safeguarding", "source_name")

    def __init__(
        self,
        *,
        fields: Mapping[str, Mapping[str, FieldRule]],
        records: Mapping[str, Mapping[str, RecordRule]],
        contacts: Mapping[str, AgencyContact],
        safeguarding: Safeguarding,
        source_name: str,
    ) -> None:
        self._fields = {a: dict(rules) for a, rules in fields.items()}
        self._records = {a: dict(rules) for a, rules in records.items()}
        self._contacts = dict(contacts)
        self.safeguarding = safeguarding
        self.source_name = source_name

    def covers(self, agency: str, field_category: str) -> bool:
        """Whether a rule says what happens to `field_category` fields of `agency` at PERTINENT."""
        return field_category in self._fields.get(agency, {})

    def rule_for(self, agency: str, field_category: str) -> FieldRule | None:
        """The field rule for `agency` and `field_category` (the agency's own, else the default), if any."""
        return self._fields.get(agency, {}).get(field_category)

    def record_rule_for(self, agency: str, record_category: str) -> RecordRule | None:
        """A whole-record rule (such as existence only) for `record_category` at `agency`, if any."""
        return self._records.get(agency, {}).get(record_category)

    @property
    def agencies(self) -> frozenset[str]:
        """The agencies the rules were validated against (each has at least the default rules)."""
        return frozenset(self._fields)

    def contact_for(self, agency: str) -> AgencyContact | None:
        """The agency's MASH contact as written in the rules, if any."""
        return self._contacts.get(agency)

    def field_rules(self, agency: str) -> Mapping[str, FieldRule]:
        """Every field rule that applies to `agency`, by field category (read-only)."""
        return MappingProxyType(self._fields.get(agency, {}))

    def record_rules(self, agency: str) -> Mapping[str, RecordRule]:
        """Every whole-record rule that applies to `agency`, by record category (read-only)."""
        return MappingProxyType(self._records.get(agency, {}))


# ---------------------------------------------------------------------------------------------------------
# Loading


def load_rules(
    path: Path,
    *,
    agencies: Collection[str],
    field_categories: Collection[str],
    record_categories: Collection[str],
    protected: Mapping[str, Collection[str]],
    source_name: str | None = None,
) -> RedactionRules:
    """Load and validate a redaction rule file; PolicyError lists every problem as file:line.

    `protected` maps each protected record category to the roles that may read it (from the vocabulary).
    `source_name` is how the file is named in findings and rule sources (default: the file's name).
    """
    name = source_name if source_name is not None else path.name
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        finding = Finding(name, 0, f"cannot read the redaction rules: {exc.__class__.__name__}")
        raise PolicyError([finding]) from exc
    return parse_rules(
        text,
        source_name=name,
        agencies=agencies,
        field_categories=field_categories,
        record_categories=record_categories,
        protected=protected,
    )


def parse_rules(
    text: str,
    *,
    source_name: str,
    agencies: Collection[str],
    field_categories: Collection[str],
    record_categories: Collection[str],
    protected: Mapping[str, Collection[str]],
) -> RedactionRules:
    """Validate and compile redaction rules given as YAML text; PolicyError lists every problem."""
    loader = yaml.SafeLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 0
            raise PolicyError(
                [Finding(source_name, line, f"not valid YAML: {exc.problem or exc.context}")],
                "redaction rules are not valid YAML",
            ) from None
        except yaml.YAMLError as exc:
            raise PolicyError([Finding(source_name, 0, f"not valid YAML: {exc}")]) from None
        compiler = _Compiler(
            loader,
            source_name,
            agencies=frozenset(agencies),
            field_categories=frozenset(field_categories),
            record_categories=frozenset(record_categories),
            protected=MappingProxyType({c: frozenset(r) for c, r in protected.items()}),
        )
        rules = compiler.compile(root)
    finally:
        loader.dispose()
    if compiler.errors:
        raise PolicyError(compiler.errors, f"{len(compiler.errors)} problem(s) in {source_name}")
    assert rules is not None
    return rules


@dataclass(frozen=True, slots=True)
class _Param:
    kind: str  # "text", "count", "char", "domain", "date_to", "postcode_to", "bands"
    required: bool = False
    default: object = None


_OPERATOR_PARAMS: dict[str, dict[str, _Param]] = {
    "keep": {},
    "drop": {},
    "replace": {"text": _Param("text", required=True)},
    "mask": {
        "keep_first": _Param("count", default=0),
        "keep_last": _Param("count", default=0),
        "char": _Param("char", default="*"),
    },
    "pseudonymise": {"domain": _Param("domain", required=True)},
    "generalise_date": {"to": _Param("date_to", required=True), "bands": _Param("bands")},
    "generalise_postcode": {"to": _Param("postcode_to", required=True)},
    "agency_summary": {},
    "existence_only": {},
}

_BAD = object()  # a value the safe loader would not construct

_TOP_KEYS = ("version", "safeguarding", "default", "agencies")
_AGENCY_KEYS = ("contact", "fields", "records")
_CONTACT_KEYS = ("team", "phone", "email")
_SAFEGUARDING_KEYS = ("pseudonymise_outside_mash", "handling_codes")
_MOVED_TO_VOCABULARY = "protected_record_categories"
_OUTSIDE_MASH_KEYS = ("field_categories", "domain")
_HANDLING_KEYS = ("record_categories", "code_field", "conditions_field")


class _Compiler:
    """Walks the YAML node tree (which keeps line numbers), collecting findings and compiling rules."""

    def __init__(
        self,
        loader: yaml.SafeLoader,
        source_name: str,
        *,
        agencies: frozenset[str],
        field_categories: frozenset[str],
        record_categories: frozenset[str],
        protected: Mapping[str, frozenset[str]],
    ) -> None:
        self.loader = loader
        self.file = source_name
        self.agencies = agencies
        self.field_categories = field_categories
        self.record_categories = record_categories
        self.protected = protected
        self.errors: list[Finding] = []

    # -- helpers -------------------------------------------------------------------------------------------

    def error(self, node: Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 1
        self.errors.append(Finding(self.file, line, message))

    def where(self, node: Node) -> str:
        return f"{self.file}:{node.start_mark.line + 1}"

    def mapping(
        self, node: Node, what: str, allowed: tuple[str, ...] | None = None
    ) -> dict[str, tuple[Node, Node]]:
        """The entries of a mapping node by key; reports non-mappings, non-text keys and duplicate keys."""
        if isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null":
            return {}  # a heading with everything under it commented out
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping of names to values")
            return {}
        entries: dict[str, tuple[Node, Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag != "tag:yaml.org,2002:str":
                self.error(key_node, f"{what}: keys must be plain names")
                continue
            key = key_node.value
            if key in entries:
                self.error(key_node, f"{what}: {key!r} is given twice")
                continue
            if allowed is not None and key not in allowed:
                self.error(key_node, f"{what}: unknown key {key!r} (expected one of: {', '.join(allowed)})")
                continue
            entries[key] = (key_node, value_node)
        return entries

    def scalar(self, node: Node, label: str) -> Any:
        """The plain value of a node, or _BAD (with a finding) for a tag the safe loader refuses."""
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            self.error(node, f"{label}: unsupported YAML tag or value")
            return _BAD

    def text(self, node: Node, what: str, *, allow_empty: bool = False) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:str":
            self.error(node, f"{what} must be text")
            return None
        value = str(node.value)
        if not allow_empty and not value.strip():
            self.error(node, f"{what} must not be empty")
            return None
        return value

    def name_list(self, node: Node, what: str, declared: frozenset[str], kind: str) -> frozenset[str]:
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} must be a list")
            return frozenset()
        names: set[str] = set()
        for item in node.value:
            name = self.text(item, f"{what} entry")
            if name is None:
                continue
            if name not in declared:
                self.error(item, f"{what}: {kind} {name!r} is not declared")
                continue
            names.add(name)
        return frozenset(names)

    # -- the document --------------------------------------------------------------------------------------

    def compile(self, root: Node | None) -> RedactionRules | None:
        if root is None:
            self.error(None, "the redaction rules file is empty")
            return None
        top = self.mapping(root, "redaction rules", _TOP_KEYS)
        if not isinstance(root, MappingNode):
            return None
        if "version" not in top:
            self.error(root, "missing 'version: 1'")
        else:
            vnode = top["version"][1]
            is_int = isinstance(vnode, ScalarNode) and vnode.tag == "tag:yaml.org,2002:int"
            if not (is_int and vnode.value == "1"):
                self.error(vnode, "version must be 1")

        safeguarding = None
        if "safeguarding" not in top:
            self.error(root, "missing the 'safeguarding' block (protections that apply at every level)")
        else:
            safeguarding = self.safeguarding(*top["safeguarding"])

        default_fields: dict[str, FieldRule] = {}
        if "default" in top:
            default = self.mapping(top["default"][1], "default", ("fields",))
            if "fields" in default:
                default_fields = self.field_rules(default["fields"][1], "default fields")

        fields: dict[str, dict[str, FieldRule]] = {a: dict(default_fields) for a in self.agencies}
        records: dict[str, dict[str, RecordRule]] = {a: {} for a in self.agencies}
        contacts: dict[str, AgencyContact] = {}
        if "agencies" in top:
            for agency, (key_node, body) in self.mapping(top["agencies"][1], "agencies").items():
                if agency not in self.agencies:
                    self.error(key_node, f"agency {agency!r} is not declared")
                    continue
                entries = self.mapping(body, f"agency {agency}", _AGENCY_KEYS)
                if "fields" in entries:
                    fields[agency].update(self.field_rules(entries["fields"][1], f"{agency} fields"))
                if "records" in entries:
                    records[agency] = self.record_rules(entries["records"][1], agency)
                if "contact" in entries:
                    contact = self.contact(entries["contact"][1], agency)
                    if contact is not None:
                        contacts[agency] = contact

        if safeguarding is None:
            return None
        return RedactionRules(
            fields=fields,
            records=records,
            contacts=contacts,
            safeguarding=safeguarding,
            source_name=self.file,
        )

    def safeguarding(self, key_node: Node, node: Node) -> Safeguarding | None:
        node = self.without_moved_protection(node)
        entries = self.mapping(node, "safeguarding", _SAFEGUARDING_KEYS)
        missing = [k for k in _SAFEGUARDING_KEYS if k not in entries]
        for key in missing:
            self.error(node, f"safeguarding: missing {key!r}")
        if missing:
            return None
        outside_node = entries["pseudonymise_outside_mash"][1]
        outside = self.mapping(outside_node, "pseudonymise_outside_mash", _OUTSIDE_MASH_KEYS)
        for key in _OUTSIDE_MASH_KEYS:
            if key not in outside:
                self.error(outside_node, f"pseudonymise_outside_mash: missing {key!r}")
        handling_node = entries["handling_codes"][1]
        handling = self.mapping(handling_node, "handling_codes", _HANDLING_KEYS)
        for key in _HANDLING_KEYS:
            if key not in handling:
                self.error(handling_node, f"handling_codes: missing {key!r}")
        incomplete = any(k not in outside for k in _OUTSIDE_MASH_KEYS) or any(
            k not in handling for k in _HANDLING_KEYS
        )
        if incomplete:
            return None
        outside_fields = self.name_list(
            outside["field_categories"][1], "pseudonymise_outside_mash field_categories",
            self.field_categories, "field category",
        )
        domain = self.param_value(
            _OPERATOR_PARAMS["pseudonymise"]["domain"],
            outside["domain"][1],
            "pseudonymise_outside_mash domain",
        )
        coded = self.name_list(
            handling["record_categories"][1], "handling_codes record_categories",
            self.record_categories, "record category",
        )
        code_field = self.field_category(handling["code_field"][1], "handling_codes code_field")
        conditions_field = self.field_category(
            handling["conditions_field"][1], "handling_codes conditions_field"
        )
        if not isinstance(domain, str) or code_field is None or conditions_field is None:
            return None
        return Safeguarding(
            pseudonymise_outside_mash=outside_fields,
            pseudonym_domain=domain,
            protected_readers=self.protected,
            handling_code_record_categories=coded,
            handling_code_field=code_field,
            handling_conditions_field=conditions_field,
            source=self.where(key_node),
        )

    def without_moved_protection(self, node: Node) -> Node:
        """The safeguarding block minus the protected-category list it used to hold (reported if present).

        Protection has one source, the vocabulary, so the policy and the redactor cannot disagree.
        """
        if not isinstance(node, MappingNode):
            return node
        kept = []
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == _MOVED_TO_VOCABULARY:
                self.error(key_node, f"safeguarding: {_MOVED_TO_VOCABULARY!r} is no longer read here; mark "
                           "the category 'protected: true' with its 'readers' in "
                           "vocabulary/record_categories.yaml and remove this entry")
            else:
                kept.append((key_node, value_node))
        return MappingNode(node.tag, kept, node.start_mark, node.end_mark)

    def field_category(self, node: Node, what: str) -> str | None:
        name = self.text(node, what)
        if name is not None and name not in self.field_categories:
            self.error(node, f"{what}: field category {name!r} is not declared")
            return None
        return name

    def contact(self, node: Node, agency: str) -> AgencyContact | None:
        entries = self.mapping(node, f"{agency} contact", _CONTACT_KEYS)
        values: dict[str, str] = {}
        for key, (_, value_node) in entries.items():
            value = self.text(value_node, f"{agency} contact {key}")
            if value is not None:
                values[key] = value
        if not values:
            self.error(node, f"{agency} contact: give at least one of team, phone, email")
            return None
        return AgencyContact(agency=agency, **values)

    def field_rules(self, node: Node, what: str) -> dict[str, FieldRule]:
        rules: dict[str, FieldRule] = {}
        for category, (key_node, rule_node) in self.mapping(node, what).items():
            if category not in self.field_categories:
                self.error(key_node, f"{what}: field category {category!r} is not declared")
                continue
            rule = self.field_rule(rule_node, f"{what} {category}")
            if rule is not None:
                rules[category] = rule
        return rules

    def record_rules(self, node: Node, agency: str) -> dict[str, RecordRule]:
        rules: dict[str, RecordRule] = {}
        for category, (key_node, rule_node) in self.mapping(node, f"{agency} records").items():
            if category not in self.record_categories:
                self.error(key_node, f"{agency} records: record category {category!r} is not declared")
                continue
            if not category.startswith(agency + "."):
                self.error(
                    key_node, f"{agency} records: record category {category!r} belongs to another agency"
                )
                continue
            parsed = self.operator_and_params(rule_node, f"{agency} records {category}")
            if parsed is None:
                continue
            operator, _params, op_node = parsed
            if operator not in RECORD_OPERATORS:
                hint = " (a field operator: put it under fields)" if operator in FIELD_OPERATORS else ""
                self.error(
                    op_node,
                    f"{agency} records {category}: unknown record operator {operator!r}{hint}; "
                    f"expected one of: {', '.join(RECORD_OPERATORS)}",
                )
                continue
            rules[category] = RecordRule(operator, self.where(rule_node))
        return rules

    def operator_and_params(self, node: Node, what: str) -> tuple[str, dict[str, Any], Node] | None:
        """A rule written either as a bare operator name or as {operator: name, <parameters>}."""
        if isinstance(node, ScalarNode):
            name = self.text(node, f"{what}: operator")
            return None if name is None else (name, {}, node)
        entries = self.mapping(node, what)
        if not isinstance(node, MappingNode):
            return None
        if "operator" not in entries:
            self.error(node, f"{what}: missing 'operator'")
            return None
        op_node = entries["operator"][1]
        name = self.text(op_node, f"{what}: operator")
        if name is None:
            return None
        params = {k: v for k, v in entries.items() if k != "operator"}
        return name, params, op_node

    def field_rule(self, node: Node, what: str) -> FieldRule | None:
        parsed = self.operator_and_params(node, what)
        if parsed is None:
            return None
        operator, raw_params, op_node = parsed
        if operator not in FIELD_OPERATORS:
            hint = " (a whole-record operator: put it under records)" if operator in RECORD_OPERATORS else ""
            self.error(op_node, f"{what}: unknown operator {operator!r}{hint}; expected one of: "
                       f"{', '.join(FIELD_OPERATORS)}")
            return None
        spec = _OPERATOR_PARAMS[operator]
        params: dict[str, object] = {}
        ok = True
        for pname, (pkey, pnode) in raw_params.items():
            if pname not in spec:
                allowed = ", ".join(spec) if spec else "none"
                self.error(pkey, f"{what}: {operator} has no parameter {pname!r} (parameters: {allowed})")
                ok = False
                continue
            value = self.param_value(spec[pname], pnode, f"{what}: {operator} parameter {pname!r}")
            if value is None:
                ok = False
            else:
                params[pname] = value
        for pname, pspec in spec.items():
            if pname not in params and pname not in raw_params:
                if pspec.required:
                    self.error(node, f"{what}: {operator} needs the parameter {pname!r}")
                    ok = False
                elif pspec.default is not None:
                    params[pname] = pspec.default
        bands_misplaced = params.get("to") not in (None, "age_band")
        if operator == "generalise_date" and "bands" in raw_params and bands_misplaced:
            self.error(raw_params["bands"][0], f"{what}: 'bands' applies only with 'to: age_band'")
            ok = False
        if not ok:
            return None
        return FieldRule(operator, MappingProxyType(params), self.where(node), _transform(operator, params))

    def param_value(self, spec: _Param, node: Node, label: str) -> object | None:
        """A validated parameter value, or None (with a finding) when it is bad."""
        if spec.kind == "bands":
            if not isinstance(node, SequenceNode):
                self.error(node, f"{label} must be a list of ages, e.g. [0, 1, 5, 11, 16, 18]")
                return None
            try:
                edges = self.scalar(node, label)
                return None if edges is _BAD else ops.AgeBands.from_edges(edges)
            except ValueError as exc:
                self.error(node, f"{label}: {exc}")
                return None
        if not isinstance(node, ScalarNode):
            self.error(node, f"{label} must be a single value")
            return None
        value = self.scalar(node, label)
        if value is _BAD:
            return None
        if spec.kind == "count":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 64:
                self.error(node, f"{label} must be a whole number from 0 to 64")
                return None
            return value
        if not isinstance(value, str):
            self.error(node, f"{label} must be text")
            return None
        if spec.kind == "text":
            if not value.strip():
                self.error(node, f"{label} must not be empty")
                return None
            return value
        if spec.kind == "char":
            if len(value) != 1 or value.isspace():
                self.error(node, f"{label} must be exactly one visible character")
                return None
            return value
        if spec.kind == "domain":
            if not ops.DOMAIN_PATTERN.match(value):
                self.error(node, f"{label} must be a short lower-case name (letters, digits, '_', '.', '-')")
                return None
            return value
        if spec.kind == "date_to":
            if value not in ops.DATE_GRANULARITIES:
                self.error(node, f"{label} must be one of: {', '.join(ops.DATE_GRANULARITIES)}")
                return None
            return value
        if spec.kind == "postcode_to":
            if value not in ops.POSTCODE_GRANULARITIES:
                self.error(node, f"{label} must be one of: {', '.join(ops.POSTCODE_GRANULARITIES)}")
                return None
            return value
        raise AssertionError(f"unhandled parameter kind {spec.kind}")  # pragma: no cover


def _transform(operator: str, params: Mapping[str, object]) -> Transform:
    """Bind an operator to its validated parameters once, so applying it is a single call."""
    if operator == "keep":
        return lambda value, summary, on, pseudonyms: value
    if operator == "drop":
        return lambda value, summary, on, pseudonyms: None
    if operator == "agency_summary":
        return lambda value, summary, on, pseudonyms: summary
    if operator == "replace":
        text = str(params["text"])
        return lambda value, summary, on, pseudonyms: text
    if operator == "mask":
        first, last, char = int(str(params["keep_first"])), int(str(params["keep_last"])), str(params["char"])
        return lambda value, summary, on, pseudonyms: ops.mask(
            value, keep_first=first, keep_last=last, char=char
        )
    if operator == "pseudonymise":
        domain = str(params["domain"])
        return lambda value, summary, on, pseudonyms: pseudonyms.pseudonym(value, domain)
    if operator == "generalise_date":
        to = str(params["to"])
        bands = params.get("bands")
        age_bands = bands if isinstance(bands, ops.AgeBands) else ops.DEFAULT_AGE_BANDS
        return lambda value, summary, on, pseudonyms: ops.generalise_date(
            value, to=to, on=on, bands=age_bands
        )
    if operator == "generalise_postcode":
        granularity = str(params["to"])
        return lambda value, summary, on, pseudonyms: ops.generalise_postcode(value, to=granularity)
    raise AssertionError(f"unhandled operator {operator}")  # pragma: no cover
