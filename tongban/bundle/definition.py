"""Bundle definitions (一件事一次办): one YAML file under mappings/bundles/ per bundled service, no Python.

A definition names the bundle (`bundle`, `name`), its members (each one 实施编码 handled by one department's
legacy system), the order between them (`after:`), what each member needs from the shared application form
(JMESPath into the application), each member's promised time (承诺时限: `deadline: {working_days: N}` or
`{hours: N}`) and the rule that concludes the bundle (`conclude:`):

    bundle: newborn
    name: 新生儿出生一件事
    members:
      birth_certificate:
        name: 出生医学证明
        item_code: 11500000MB1C0416XA2502024101000   # 实施编码 (31 characters, checked like every item code)
        department: 重庆市卫生健康委员会
        mapping: departments/cq-wsjkw-birth.yaml      # the department system: its submit: and its ingest
        form: {mother_name: mother.name, birth_date: child.birth_date}
        deadline: {working_days: 5}
      household:
        name: 户口登记
        after: [birth_certificate]                    # submitted only once birth_certificate is granted
        ...
    conclude:
      refusal_ends: [birth_certificate]               # a refusal of these ends the bundle at once (refused)

What the loader refuses (each a `MappingFileError` naming the file and the line), beyond what every mapping-language
file refuses (tongban.mapping.loader: bad YAML, aliases, duplicate keys, literal secrets, `${VAR}` anywhere):
an unknown or missing key (by the pydantic models below), an item code that is not a valid 实施编码, a JMESPath
that does not compile, a dependency on a member that does not exist, a dependency cycle, a `refusal_ends` naming
an unknown member, a department mapping file that does not exist or has no `submit:` section.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from tongban.mapping.errors import MappingFileError

BUNDLE_KEYS = {"bundle", "name", "description", "members", "conclude", "platform_item_code"}
REQUIRED_KEYS = ("bundle", "name", "members")
MEMBER_ID = r"^[a-z][a-z0-9_]{0,39}$"


def _strict(*examples: dict[str, Any]) -> ConfigDict:
    return ConfigDict(extra="forbid", json_schema_extra={"examples": list(examples)})


class Deadline(BaseModel):
    """承诺时限: working days (Monday–Friday) or hours from the member's submission."""

    model_config = _strict({"working_days": 5}, {"hours": 24})
    working_days: int | None = Field(None, ge=1, le=365, description="Working days (Mon–Fri) after submission.")
    hours: float | None = Field(None, gt=0, le=24 * 365, description="Hours after submission.")

    @model_validator(mode="after")
    def _one(self):
        if (self.working_days is None) == (self.hours is None):
            raise ValueError("a deadline is either working_days or hours, exactly one of them")
        return self

    def due(self, submitted: datetime) -> datetime:
        if self.hours is not None:
            return submitted + timedelta(hours=self.hours)
        moment, left = submitted, self.working_days or 0
        while left:
            moment += timedelta(days=1)
            if moment.weekday() < 5:
                left -= 1
        return moment

    def text(self) -> str:
        return f"{self.working_days} working days" if self.working_days is not None else f"{self.hours:g} hours"


class Member(BaseModel):
    model_config = _strict({"name": "户口登记", "item_code": "11500000MB1D2201952500708201000",
                            "department": "重庆市公安局", "mapping": "departments/cq-gaj-rest.yaml",
                            "after": ["birth_certificate"], "form": {"child_name": "child.name"},
                            "deadline": {"working_days": 3}})
    name: str = Field(min_length=1, max_length=100, description="The item's name (事项名称).")
    item_code: str = Field(description="实施编码 of the item (31 characters).")
    department: str = Field(min_length=1, max_length=100, description="The department that handles it.")
    mapping: str = Field(description=("The department system's mapping file, relative to this file: its `submit:` "
                                      "section says how the member is submitted, its ingest brings the case back."))
    after: list[str] = Field(default_factory=list, description="Members that must be granted before this one is submitted.")
    form: dict[str, str] = Field(default_factory=dict, description=(
        "What the member needs from the shared form: field name → JMESPath into the bundle application."))
    deadline: Deadline = Field(description="承诺时限 from the member's submission.")

    @field_validator("item_code", mode="before")
    @classmethod
    def _item(cls, value: Any) -> str:
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # YAML reads an all-digit code as a number
        if not isinstance(value, str):
            raise ValueError("an item code is text")
        from tongban.codes._text import CodeError
        from tongban.codes.item_code import parse_item_code

        try:
            code = parse_item_code(value)
        except CodeError as exc:
            raise ValueError(f"not a valid 实施编码: {exc.rule}") from None
        if code.kind != "implementation":
            raise ValueError(f"a member's item_code is a 31-character 实施编码, not a {code.kind} code")
        return code.value

    @field_validator("form")
    @classmethod
    def _paths(cls, value: dict[str, str]) -> dict[str, str]:
        for name, expression in value.items():
            try:
                jmespath.compile(expression)
            except JMESPathError as exc:
                raise ValueError(f"form.{name}: not a valid JMESPath expression: {' '.join(str(exc).split())}") from None
        return value


class Conclude(BaseModel):
    model_config = _strict({"refusal_ends": ["birth_certificate"]}, {"refusal_ends": "all"})
    refusal_ends: list[str] | Literal["all", "none"] = Field("all", description=(
        "Members whose refusal ends the bundle at once (办结, refused; members not yet submitted are cancelled). "
        "`all` (the default): any refusal. `none`: the bundle always waits for every member and concludes partly "
        "granted when some were refused."))


class BundleDefinition(BaseModel):
    model_config = _strict()
    bundle: str = Field(pattern=r"^[a-z][a-z0-9-]{1,39}$", description="The bundle's id (lower case, digits, -).")
    name: str = Field(min_length=1, max_length=100, description="The bundle's name (一件事名称).")
    description: str = Field("", description="Free text.")
    platform_item_code: str | None = Field(None, description="The bundle's own code at the platform, if it has one.")
    members: dict[str, Member] = Field(min_length=1, description="Member items by member id.")
    conclude: Conclude = Field(default_factory=Conclude, description="The rule that concludes the bundle.")
    _path: Path | None = PrivateAttr(None)

    @field_validator("members")
    @classmethod
    def _ids(cls, value: dict[str, Member]) -> dict[str, Member]:
        import re

        for key in value:
            if not re.match(MEMBER_ID, key):
                raise ValueError(f"member id {key!r}: lower case letters, digits and _ (starting with a letter)")
        return value

    # --- derived ----------------------------------------------------------------------------------------
    def ends_on_refusal(self, member: str) -> bool:
        rule = self.conclude.refusal_ends
        return rule == "all" or (isinstance(rule, list) and member in rule)

    def order(self) -> list[str]:
        """Members in a dependency order (each after everything it waits for), ties in file order."""
        done: list[str] = []
        while len(done) < len(self.members):
            for key, member in self.members.items():
                if key not in done and all(dep in done for dep in member.after):
                    done.append(key)
                    break
        return done


def _graph_problems(defn: BundleDefinition, doc: Any, path: str) -> list[MappingFileError]:
    from tongban.mapping.loader import line_of

    problems = []
    members = doc.get("members")
    for key, member in defn.members.items():
        node = members.get(key) if isinstance(members, dict) else None
        for dep in member.after:
            if dep not in defn.members:
                problems.append(MappingFileError(path, line_of(node, "after"),
                                                 f"members.{key}.after: no member {dep!r} in this bundle"))
            elif dep == key:
                problems.append(MappingFileError(path, line_of(node, "after"), f"members.{key}.after: names itself"))
    if problems:
        return problems
    state: dict[str, int] = {}

    def visit(key: str, trail: list[str]) -> list[str] | None:
        state[key] = 1
        for dep in defn.members[key].after:
            if state.get(dep) == 1:
                return [*trail, key, dep]
            if state.get(dep) is None and (cycle := visit(dep, [*trail, key])):
                return cycle
        state[key] = 2
        return None

    for key in defn.members:
        if state.get(key) is None and (cycle := visit(key, [])):
            first = cycle[cycle.index(cycle[-1])]
            node = members.get(first) if isinstance(members, dict) else None
            return [MappingFileError(path, line_of(node, "after"),
                                     f"members: dependency cycle {' → '.join(cycle[cycle.index(cycle[-1]):])}")]
    rule = defn.conclude.refusal_ends
    if isinstance(rule, list):
        for name in rule:
            if name not in defn.members:
                conclude = doc.get("conclude")
                problems.append(MappingFileError(path, line_of(conclude, "refusal_ends"),
                                                 f"conclude.refusal_ends: no member {name!r} in this bundle"))
    return problems


def _mapping_problems(defn: BundleDefinition, doc: Any, path: Path) -> list[MappingFileError]:
    from tongban.mapping.loader import line_of

    problems = []
    for key, member in defn.members.items():
        node = doc["members"].get(key)
        target = (path.parent / member.mapping).resolve()
        if not target.is_file():
            problems.append(MappingFileError(str(path), line_of(node, "mapping"),
                                             f"members.{key}.mapping: no mapping file {member.mapping} "
                                             f"(looked for {target})"))
            continue
        try:
            from tongban.bundle.submit import load_submit_target

            load_submit_target(target)
        except MappingFileError as exc:
            problems.append(MappingFileError(str(path), line_of(node, "mapping"),
                                             f"members.{key}.mapping: {exc}"))
    return problems


def check_bundle(path: str | Path, *, targets: bool = True) -> tuple[BundleDefinition | None, list[MappingFileError]]:
    """Every problem of a bundle definition file, each with its line; the definition when there are none.
    `targets`: also load each member's department mapping and its `submit:` section."""
    from tongban.mapping.loader import read_mapping_document
    from tongban.mapping.source_check import validate_settings

    path = Path(path)
    try:
        doc, _ = read_mapping_document(path, top_keys=BUNDLE_KEYS, required=REQUIRED_KEYS)
    except MappingFileError as exc:
        return None, [exc]
    problems = validate_settings(BundleDefinition, dict(doc), doc, str(path), prefix="bundle",
                                 line=doc.line or 1)
    for problem in problems:  # "bundle.members.x" reads better as "members.x"
        problem.rule = problem.rule.removeprefix("bundle.").replace("Value error, ", "")
        problem.args = (f"{problem.path}:{problem.line}: {problem.rule}" if problem.line else
                        f"{problem.path}: {problem.rule}",)
    if problems:
        return None, problems
    defn = BundleDefinition.model_validate(dict(doc))
    problems = _graph_problems(defn, doc, str(path))
    if not problems and targets:
        problems = _mapping_problems(defn, doc, path)
    if problems:
        return None, problems
    defn._path = path.resolve()
    return defn, []


def load_bundle(path: str | Path) -> BundleDefinition:
    """A checked bundle definition; the first problem raised as MappingFileError."""
    defn, problems = check_bundle(path)
    if problems:
        raise problems[0]
    assert defn is not None
    return defn


def bundle_path(defn: BundleDefinition) -> Path:
    assert defn._path is not None, "a definition made by load_bundle knows its file"
    return defn._path


def member_mapping_path(defn: BundleDefinition, member: str) -> Path:
    return (bundle_path(defn).parent / defn.members[member].mapping).resolve()


def bundles_dir(mappings_dir: Path) -> Path:
    return Path(mappings_dir) / "bundles"


def load_bundles(directory: Path) -> dict[str, BundleDefinition]:
    """Every definition in a folder (*.yaml, not its sub-folders), by bundle id; a duplicate id is an error."""
    found: dict[str, BundleDefinition] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        defn = load_bundle(path)
        if defn.bundle in found:
            raise MappingFileError(str(path), 1, f"bundle id {defn.bundle!r} is defined twice "
                                                 f"(also in {bundle_path(found[defn.bundle])})")
        found[defn.bundle] = defn
    return found
