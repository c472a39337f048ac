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
from typing import Annotated, Any, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.domain import AgencyContact
from gateway.errors import Finding, PolicyError
from gateway.redaction import operators as ops
from gateway.schema import KeyPath, LineDict, LineList, is_internal, line_in, problems

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
    loader = _Loader(text)
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
        reader = _Reader(loader, source_name)
        document = None if root is None else reader.value(root)
    finally:
        loader.dispose()
    compiler = _Compiler(
        source_name,
        reader,
        agencies=frozenset(agencies),
        field_categories=frozenset(field_categories),
        record_categories=frozenset(record_categories),
        protected=MappingProxyType({c: frozenset(r) for c, r in protected.items()}),
    )
    rules = compiler.compile(document, root)
    if compiler.errors:
        raise PolicyError(compiler.errors, f"{len(compiler.errors)} problem(s) in {source_name}")
    assert rules is not None
    return rules


# The shape of each block of the file, as pydantic models. Operators, their parameters and every name are
# checked against the vocabulary by `_Compiler`, which validates the blocks one at a time so that a mistake
# in one block does not hide those in the others.


class Entry(BaseModel):
    """One block of the rule file: no unknown keys, and no type coerced behind the reader's back."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


def _none_is_empty(value: Any) -> Any:
    # A heading with everything under it commented out reads as null.
    return {} if value is None else value


def _bare_operator(value: Any) -> Any:
    # `record.detail: drop` is short for `record.detail: {operator: drop}`.
    return {"operator": value} if isinstance(value, str) else value


def _version_one(value: Any) -> Any:
    if isinstance(value, bool) or value != 1:
        raise ValueError("must be 1")
    return value


Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Section = Annotated[dict[str, Any], BeforeValidator(_none_is_empty)]


class RedactionFile(Entry):
    version: Annotated[int, BeforeValidator(_version_one)]
    safeguarding: dict[str, Any]
    default: Section = {}
    agencies: Section = {}


class OutsideMashBlock(Entry):
    field_categories: list[Text]
    domain: str


class HandlingCodesBlock(Entry):
    record_categories: list[Text]
    code_field: Text
    conditions_field: Text


class SafeguardingBlock(Entry):
    pseudonymise_outside_mash: OutsideMashBlock
    handling_codes: HandlingCodesBlock


class DefaultBlock(Entry):
    fields: Section = {}


class ContactBlock(Entry):
    team: Text = ""
    phone: Text = ""
    email: Text = ""

    @model_validator(mode="after")
    def _someone_to_call(self) -> ContactBlock:
        if not (self.team or self.phone or self.email):
            raise ValueError("needs at least one of team, phone, email")
        return self


class AgencyBlock(Entry):
    contact: Annotated[ContactBlock | None, BeforeValidator(_none_is_empty)] = None
    fields: Section = {}
    records: Section = {}


class RuleEntry(Entry):
    """One rule: an operator and its parameters (checked against the operator by the rules loader)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    operator: Text


Rule = Annotated[RuleEntry, BeforeValidator(_bare_operator)]

_RULE: TypeAdapter[RuleEntry] = TypeAdapter(Rule)

# libyaml's parser is several times faster than the pure-Python one; both keep node marks.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR_TAG = "tag:yaml.org,2002:str"
_BAD = object()  # a value the safe loader would not construct (already reported)


class _Reader:
    """Turns the YAML node tree into plain values that remember their lines, reporting what YAML allows
    but a rule file must not have (duplicate keys, non-text keys, unsafe tags) without stopping."""

    def __init__(self, loader: yaml.SafeLoader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.errors: list[Finding] = []
        self.bad_lines: set[int] = set()

    def value(self, node: Node) -> Any:
        if isinstance(node, MappingNode):
            mapping = LineDict()
            mapping.line, mapping.key_lines = node.start_mark.line + 1, {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if not isinstance(key_node, ScalarNode) or key_node.tag != _STR_TAG:
                    self.errors.append(Finding(self.file, line, "keys must be plain names"))
                elif key_node.value in mapping:
                    self.errors.append(Finding(self.file, line, f"{key_node.value!r} is given twice"))
                else:
                    mapping[key_node.value] = self.value(value_node)
                    mapping.key_lines[key_node.value] = line
            return mapping
        if isinstance(node, SequenceNode):
            items = LineList(self.value(child) for child in node.value)
            items.line, items.item_lines = node.start_mark.line + 1, [c.start_mark.line + 1 for c in node.value]
            return items
        try:
            return self.loader.construct_object(node, deep=True)
        except yaml.YAMLError:
            line = node.start_mark.line + 1
            self.errors.append(Finding(self.file, line, "unsupported YAML tag or value"))
            self.bad_lines.add(line)
            return _BAD


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

_MOVED_TO_VOCABULARY = "protected_record_categories"


def _expected_keys(schema: type[BaseModel], keys: KeyPath) -> tuple[str, ...]:
    """The keys the model holding the last of `keys` accepts, for an unknown-key hint."""
    model: type[BaseModel] | None = schema
    for key in keys[:-1]:
        if model is None or not isinstance(key, str) or key not in model.model_fields:
            return ()
        annotation = model.model_fields[key].annotation
        model = next((t for t in (annotation, *get_args(annotation))
                      if isinstance(t, type) and issubclass(t, BaseModel)), None)
    return tuple(model.model_fields) if model is not None else ()


class _Compiler:
    """Checks the parsed file block by block against its schema and the vocabulary, compiling the rules."""

    def __init__(
        self,
        source_name: str,
        reader: _Reader,
        *,
        agencies: frozenset[str],
        field_categories: frozenset[str],
        record_categories: frozenset[str],
        protected: Mapping[str, frozenset[str]],
    ) -> None:
        self.file = source_name
        self.bad_lines = reader.bad_lines
        self.agencies = agencies
        self.field_categories = field_categories
        self.record_categories = record_categories
        self.protected = protected
        self.errors: list[Finding] = list(reader.errors)

    # -- helpers -------------------------------------------------------------------------------------------

    def error(self, line: int, message: str) -> None:
        self.errors.append(Finding(self.file, line, message))

    def where(self, line: int) -> str:
        return f"{self.file}:{line}"

    def check(self, schema: type[BaseModel] | TypeAdapter[Any], raw: Any, what: str, line: int) -> Any:
        """`raw` validated against `schema`, or None with a finding (at its line) for each problem."""
        try:
            if isinstance(schema, TypeAdapter):
                return schema.validate_python(raw)
            return schema.model_validate(raw)
        except ValidationError as exc:
            paths = [tuple(p for p in e["loc"] if not is_internal(p)) for e in exc.errors()]
            for problem, path in zip(problems(exc, lambda keys: line_in(raw, keys) or line), paths, strict=True):
                if problem.line in self.bad_lines:
                    continue  # the unsafe value was reported where it was read
                hint = ""
                if problem.message == "is not a known key" and isinstance(schema, type):
                    hint = f" (expected one of: {', '.join(_expected_keys(schema, path))})"
                if what and problem.key:
                    self.error(problem.line, f"{what}: {problem.key} {problem.message}{hint}")
                else:
                    self.error(problem.line, f"{what or problem.key} {problem.message}{hint}".lstrip())
            return None

    def declared(self, names: LineList, what: str, declared: frozenset[str], kind: str) -> frozenset[str]:
        found = set()
        for index, name in enumerate(names):
            if name not in declared:
                self.error(names.line_of(index), f"{what}: {kind} {name!r} is not declared")
            else:
                found.add(name)
        return frozenset(found)

    # -- the document --------------------------------------------------------------------------------------

    def compile(self, document: Any, root: Node | None) -> RedactionRules | None:
        if root is None:
            self.error(1, "the redaction rules file is empty")
            return None
        if not isinstance(document, LineDict):
            self.error(root.start_mark.line + 1, "redaction rules must be a mapping of names to values")
            return None
        safeguarding_raw = document.get("safeguarding")
        if isinstance(safeguarding_raw, LineDict):
            safeguarding_raw = self.without_moved_protection(safeguarding_raw)
            checked = LineDict(document, safeguarding=safeguarding_raw)
            checked.line, checked.key_lines = document.line, document.key_lines
            document = checked
        self.check(RedactionFile, document, "", 1)

        safeguarding = None
        if isinstance(safeguarding_raw, LineDict):
            safeguarding = self.safeguarding(safeguarding_raw, document.line_of("safeguarding"))

        default_fields: dict[str, FieldRule] = {}
        default = document.get("default")
        if isinstance(default, LineDict):
            self.check(DefaultBlock, default, "default", default.line)
            if isinstance(default.get("fields"), LineDict):
                default_fields = self.field_rules(default["fields"], "default fields")

        fields: dict[str, dict[str, FieldRule]] = {a: dict(default_fields) for a in self.agencies}
        records: dict[str, dict[str, RecordRule]] = {a: {} for a in self.agencies}
        contacts: dict[str, AgencyContact] = {}
        listed = document.get("agencies")
        for agency, body in listed.items() if isinstance(listed, LineDict) else ():
            line = listed.line_of(agency)
            if agency not in self.agencies:
                self.error(line, f"agency {agency!r} is not declared")
                continue
            block = self.check(AgencyBlock, _none_is_empty(body), f"agency {agency}", line)
            if not isinstance(body, LineDict):
                continue
            if isinstance(body.get("fields"), LineDict):
                fields[agency].update(self.field_rules(body["fields"], f"{agency} fields"))
            if isinstance(body.get("records"), LineDict):
                records[agency] = self.record_rules(body["records"], agency)
            if block is not None and block.contact is not None:
                contact = block.contact
                contacts[agency] = AgencyContact(agency, contact.team, contact.phone, contact.email)

        if safeguarding is None:
            return None
        return RedactionRules(
            fields=fields,
            records=records,
            contacts=contacts,
            safeguarding=safeguarding,
            source_name=self.file,
        )

    def safeguarding(self, raw: LineDict, line: int) -> Safeguarding | None:
        block = self.check(SafeguardingBlock, raw, "safeguarding", line)
        if block is None:
            return None
        outside_raw, handling_raw = raw["pseudonymise_outside_mash"], raw["handling_codes"]
        outside = self.declared(outside_raw["field_categories"], "pseudonymise_outside_mash field_categories",
                                self.field_categories, "field category")
        domain = self.param_value(_OPERATOR_PARAMS["pseudonymise"]["domain"], block.pseudonymise_outside_mash.domain,
                                  outside_raw.line_of("domain"), "pseudonymise_outside_mash domain")
        coded = self.declared(handling_raw["record_categories"], "handling_codes record_categories",
                              self.record_categories, "record category")
        fields = {}
        for key in ("code_field", "conditions_field"):
            name = getattr(block.handling_codes, key)
            if name not in self.field_categories:
                self.error(handling_raw.line_of(key), f"handling_codes {key}: field category {name!r} is not declared")
            fields[key] = name
        if not isinstance(domain, str) or any(n not in self.field_categories for n in fields.values()):
            return None
        return Safeguarding(
            pseudonymise_outside_mash=outside,
            pseudonym_domain=domain,
            protected_readers=self.protected,
            handling_code_record_categories=coded,
            handling_code_field=fields["code_field"],
            handling_conditions_field=fields["conditions_field"],
            source=self.where(line),
        )

    def without_moved_protection(self, raw: LineDict) -> LineDict:
        """The safeguarding block minus the protected-category list it used to hold (reported if present).

        Protection has one source, the vocabulary, so the policy and the redactor cannot disagree.
        """
        if _MOVED_TO_VOCABULARY not in raw:
            return raw
        self.error(raw.line_of(_MOVED_TO_VOCABULARY), f"safeguarding: {_MOVED_TO_VOCABULARY!r} is no longer read "
                   "here; mark the category 'protected: true' with its 'readers' in "
                   "vocabulary/record_categories.yaml and remove this entry")
        kept = LineDict((k, v) for k, v in raw.items() if k != _MOVED_TO_VOCABULARY)
        kept.line, kept.key_lines = raw.line, raw.key_lines
        return kept

    def field_rules(self, raw: LineDict, what: str) -> dict[str, FieldRule]:
        rules: dict[str, FieldRule] = {}
        for category, rule_raw in raw.items():
            if category not in self.field_categories:
                self.error(raw.line_of(category), f"{what}: field category {category!r} is not declared")
                continue
            rule = self.field_rule(rule_raw, raw.line_of(category), f"{what} {category}")
            if rule is not None:
                rules[category] = rule
        return rules

    def record_rules(self, raw: LineDict, agency: str) -> dict[str, RecordRule]:
        rules: dict[str, RecordRule] = {}
        for category, rule_raw in raw.items():
            key_line = raw.line_of(category)
            if category not in self.record_categories:
                self.error(key_line, f"{agency} records: record category {category!r} is not declared")
                continue
            if not category.startswith(agency + "."):
                self.error(key_line, f"{agency} records: record category {category!r} belongs to another agency")
                continue
            what = f"{agency} records {category}"
            rule: RuleEntry | None = self.check(_RULE, rule_raw, what, key_line)
            if rule is None:
                continue
            if rule.operator not in RECORD_OPERATORS:
                hint = " (a field operator: put it under fields)" if rule.operator in FIELD_OPERATORS else ""
                self.error(
                    line_in(rule_raw, ("operator",)) or key_line,
                    f"{what}: unknown record operator {rule.operator!r}{hint}; "
                    f"expected one of: {', '.join(RECORD_OPERATORS)}",
                )
                continue
            if self.params(rule, rule_raw, key_line, what) is not None:
                rules[category] = RecordRule(rule.operator, self.where(getattr(rule_raw, "line", key_line)))
        return rules

    def field_rule(self, rule_raw: Any, key_line: int, what: str) -> FieldRule | None:
        rule: RuleEntry | None = self.check(_RULE, rule_raw, what, key_line)
        if rule is None:
            return None
        if rule.operator not in FIELD_OPERATORS:
            hint = " (a whole-record operator: put it under records)" if rule.operator in RECORD_OPERATORS else ""
            self.error(line_in(rule_raw, ("operator",)) or key_line,
                       f"{what}: unknown operator {rule.operator!r}{hint}; expected one of: "
                       f"{', '.join(FIELD_OPERATORS)}")
            return None
        params = self.params(rule, rule_raw, key_line, what)
        if params is None:
            return None
        line = getattr(rule_raw, "line", key_line)
        return FieldRule(rule.operator, MappingProxyType(params), self.where(line), _transform(rule.operator, params))

    def params(self, rule: RuleEntry, rule_raw: Any, key_line: int, what: str) -> dict[str, object] | None:
        """The rule's parameters checked against its operator, defaults filled in; None (with findings) if bad."""
        operator, given = rule.operator, rule.model_extra or {}
        spec = _OPERATOR_PARAMS[operator]
        params: dict[str, object] = {}
        ok = True
        for pname, raw_value in given.items():
            line = line_in(rule_raw, (pname,)) or key_line
            if pname not in spec:
                allowed = ", ".join(spec) if spec else "none"
                self.error(line, f"{what}: {operator} has no parameter {pname!r} (parameters: {allowed})")
                ok = False
                continue
            value = self.param_value(spec[pname], raw_value, line, f"{what}: {operator} parameter {pname!r}")
            if value is None:
                ok = False
            else:
                params[pname] = value
        for pname, pspec in spec.items():
            if pname not in given:
                if pspec.required:
                    self.error(getattr(rule_raw, "line", key_line), f"{what}: {operator} needs the parameter {pname!r}")
                    ok = False
                elif pspec.default is not None:
                    params[pname] = pspec.default
        if operator == "generalise_date" and "bands" in given and params.get("to") not in (None, "age_band"):
            self.error(line_in(rule_raw, ("bands",)) or key_line, f"{what}: 'bands' applies only with 'to: age_band'")
            ok = False
        return params if ok else None

    def param_value(self, spec: _Param, value: Any, line: int, label: str) -> object | None:
        """A validated parameter value, or None (with a finding) when it is bad."""
        if value is _BAD or (isinstance(value, list) and _BAD in value):
            return None  # reported where it was read
        if spec.kind == "bands":
            if not isinstance(value, list):
                self.error(line, f"{label} must be a list of ages, e.g. [0, 1, 5, 11, 16, 18]")
                return None
            try:
                return ops.AgeBands.from_edges(list(value))
            except ValueError as exc:
                self.error(line, f"{label}: {exc}")
                return None
        if isinstance(value, dict | list):
            self.error(line, f"{label} must be a single value")
            return None
        if spec.kind == "count":
            if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 64:
                self.error(line, f"{label} must be a whole number from 0 to 64")
                return None
            return value
        if not isinstance(value, str):
            self.error(line, f"{label} must be text")
            return None
        if spec.kind == "text":
            if not value.strip():
                self.error(line, f"{label} must not be empty")
                return None
            return value
        if spec.kind == "char":
            if len(value) != 1 or value.isspace():
                self.error(line, f"{label} must be exactly one visible character")
                return None
            return value
        if spec.kind == "domain":
            if not ops.DOMAIN_PATTERN.match(value):
                self.error(line, f"{label} must be a short lower-case name (letters, digits, '_', '.', '-')")
                return None
            return value
        if spec.kind == "date_to":
            if value not in ops.DATE_GRANULARITIES:
                self.error(line, f"{label} must be one of: {', '.join(ops.DATE_GRANULARITIES)}")
                return None
            return value
        if spec.kind == "postcode_to":
            if value not in ops.POSTCODE_GRANULARITIES:
                self.error(line, f"{label} must be one of: {', '.join(ops.POSTCODE_GRANULARITIES)}")
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
