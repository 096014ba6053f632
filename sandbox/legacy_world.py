"""A deterministic synthetic legacy case system: 重庆市市场监督管理局's `cq-samr-rest`.

Every case gets a planned life when the world is built (applied → accepted → 1–3 handling steps →
concluded → sometimes evaluated; a few are returned before acceptance). The world's clock moves in
ticks of one day; `records()` shows each case as the legacy system would show it at that moment, so
successive polls see lifecycles unfold. The same seed always gives the same world.

About `bad_share` of the cases are deliberately broken in one known way each (`bad_cases()` says which),
so that tests can check that exactly those end up in quarantine with the right rule.

Records use the legacy system's own pinyin field names and string formats (see `LegacyWorld.records`).
"""
from __future__ import annotations

import bisect
import json
import random
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from tongban.codes import CHONGQING_UNITS, CREDIT_ALPHABET, RETIRED_CODES, make_credit_code, make_id_number

SYSTEM_NAME = "cq-samr-rest"
DEPARTMENT = "重庆市市场监督管理局"
# A generated, checksum-valid sandbox code for the department (not its real one); it is also the
# implementing body inside the 实施编码 of mappings/tables/samr_items.csv.
DEPARTMENT_CREDIT_CODE = "11500000MB1B75012N"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"

# The kinds of deliberately bad records, each breaking one rule the bus must catch.
BAD_ID_CHECK_DIGIT = "id_check_digit"        # 证件号码 with a wrong check digit
BAD_UNKNOWN_ITEM = "unknown_item_code"       # legacy item code missing from the mapping table (SX-9999)
BAD_IMPOSSIBLE_DATE = "impossible_date"      # 申请时间 on 30 February
BAD_OUTSIDE_CHONGQING = "outside_chongqing"  # 行政区划 of another province
BAD_KINDS = (BAD_ID_CHECK_DIGIT, BAD_UNKNOWN_ITEM, BAD_IMPOSSIBLE_DATE, BAD_OUTSIDE_CHONGQING)
UNKNOWN_ITEM_CODE = "SX-9999"


@dataclass(frozen=True)
class LegacyItem:
    """One item of the department's own catalogue (its legacy code and what it issues)."""

    code: str
    name: str
    item_type: str                       # national 事项类型 (01 许可, 07 确认, 20 公共服务)
    licence_name: str | None             # 证照 issued on approval, if any
    licence_prefix: str
    valid_years: int | None              # licence validity; None = no end date
    materials: tuple[str, ...]
    person_share: float                  # share of applicants who are natural persons
    instant_share: float                 # share of 即办 cases (bjlx 1)


ITEMS: tuple[LegacyItem, ...] = (
    LegacyItem("SX-0001", "食品经营许可", "01", "食品经营许可证", "JY", 5, ("营业执照", "食品经营许可申请书", "经营场所平面图", "食品安全管理制度"), 0.1, 0.0),
    LegacyItem("SX-0002", "食品生产许可", "01", "食品生产许可证", "SC", 5, ("营业执照", "食品生产许可申请书", "生产设备布局图", "工艺流程图"), 0.0, 0.0),
    LegacyItem("SX-0003", "特种设备使用登记", "01", "特种设备使用登记证", "TS", None, ("特种设备使用登记表", "产品合格证", "监督检验证明"), 0.05, 0.3),
    LegacyItem("SX-0004", "工业产品生产许可", "01", "全国工业产品生产许可证", "XK", 5, ("营业执照", "生产许可申请书", "产品检验报告"), 0.0, 0.0),
    LegacyItem("SX-0005", "计量标准器具核准", "01", "计量标准考核证书", "JL", 4, ("计量标准考核申请书", "计量标准技术报告", "检定证书"), 0.0, 0.0),
    LegacyItem("SX-0006", "检验检测机构资质认定", "01", "检验检测机构资质认定证书", "ZR", 6, ("资质认定申请书", "法人证明文件", "典型检测报告"), 0.0, 0.0),
    LegacyItem("SX-0007", "特种设备安装改造修理许可", "01", "特种设备生产许可证", "TX", 4, ("许可申请表", "质量保证手册", "技术人员名单"), 0.0, 0.0),
    LegacyItem("SX-0008", "企业设立登记", "01", "营业执照", "YZ", None, ("设立登记申请书", "公司章程", "法定代表人身份证明", "住所使用证明"), 0.0, 0.5),
    LegacyItem("SX-0009", "企业变更登记", "01", "营业执照", "YZ", None, ("变更登记申请书", "变更决议", "营业执照"), 0.0, 0.6),
    LegacyItem("SX-0010", "企业注销登记", "01", None, "", None, ("注销登记申请书", "清算报告", "营业执照"), 0.0, 0.4),
    LegacyItem("SX-0011", "个体工商户设立登记", "01", "营业执照", "GT", None, ("个体工商户登记申请书", "经营者身份证明", "经营场所证明"), 1.0, 0.8),
    LegacyItem("SX-0012", "农民专业合作社设立登记", "01", "营业执照", "HZ", None, ("设立登记申请书", "合作社章程", "成员名册"), 0.0, 0.3),
    LegacyItem("SX-0013", "计量授权", "01", "计量授权证书", "SQ", 5, ("计量授权申请书", "计量标准考核证书"), 0.0, 0.0),
    LegacyItem("SX-0014", "股权出质登记", "07", "股权出质设立登记通知书", "GQ", None, ("股权出质登记申请书", "质权合同"), 0.3, 0.9),
    LegacyItem("SX-0015", "动产抵押登记", "07", "动产抵押登记书", "DY", None, ("动产抵押登记书", "抵押合同"), 0.2, 0.9),
    LegacyItem("SX-0016", "特种设备作业人员资格认定", "07", "特种设备安全管理和作业人员证", "ZY", 4, ("资格认定申请表", "身份证明", "考试合格证明"), 1.0, 0.0),
    LegacyItem("SX-0017", "消费投诉受理", "20", None, "", None, ("投诉书", "购物凭证"), 0.9, 0.7),
    LegacyItem("SX-0018", "企业信用信息查询", "20", None, "", None, (), 0.5, 1.0),
    LegacyItem("SX-0019", "营业执照遗失补领", "20", "营业执照", "YZ", None, ("补领申请书", "遗失声明"), 0.1, 1.0),
    LegacyItem("SX-0020", "企业信用修复", "20", "信用修复决定书", "XF", None, ("信用修复申请书", "履行义务证明"), 0.0, 0.0),
)
ITEMS_BY_CODE = {item.code: item for item in ITEMS}

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任谭廖"
_GIVEN = "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红鹏建华飞辉慧婷浩宇欣怡梓涵子轩晨阳思远雨桐嘉琪渝川"
_FIRMS = ("渝味", "山城", "嘉陵", "长江", "巴渝", "两江", "朝天", "缙云", "南山", "歌乐", "磁器", "鹅岭", "渝信", "盛达", "和顺", "鑫源")
_TRADES = ("餐饮管理", "食品", "商贸", "科技", "建筑工程", "电梯工程", "物流", "医疗器械", "农业开发", "检测技术", "火锅", "机械制造")
_STAFF = ("李静", "王磊", "陈晓燕", "刘洋", "张伟", "周敏", "谭文", "何丽", "冉建国", "邓海燕")
_CHANNELS = ("窗口", "网上", "移动端")
_OLD_SICHUAN = ("510202", "510203", "510212", "510221", "510222")   # pre-1997 Chongqing, on old ID numbers
_ELSEWHERE = ("110105", "440106", "420106", "510107", "610113")
_FOREIGN_REGIONS = ("510104", "510107", "520102", "420106")
_STEP_NAMES = {1: ("审批",), 2: ("审查", "决定"), 3: ("审查", "现场核查", "决定")}
_COMMENTS = {5: "办事效率高，服务热情", 4: "整体满意", 3: "一般", 2: "等待时间较长", 1: "多次补正材料，体验较差"}
_FULL_WIDTH_DIGITS = str.maketrans("0123456789", "０１２３４５６７８９")


@dataclass
class _Step:
    name: str
    handler: str
    opinion: str
    action: str
    start: datetime
    end: datetime


@dataclass
class _Case:
    """A case's whole planned life; `snapshot(now)` shows the part that has happened by `now`."""

    key: str = ""
    item_code: str = ""
    item: LegacyItem | None = None
    applicant: dict[str, Any] = field(default_factory=dict)
    region: str = ""
    channel: str = ""
    case_type: str = "2"
    materials: list[dict[str, Any]] = field(default_factory=list)
    applied_at: datetime = datetime.min
    applied_text: str | None = None       # overrides the printed 申请时间 (the impossible-date bad case)
    accepted_at: datetime | None = None
    accepted_by: str | None = None
    promised_at: datetime | None = None
    steps: list[_Step] = field(default_factory=list)
    concluded_at: datetime | None = None
    result: str | None = None
    result_note: str | None = None
    licence_number: str | None = None
    evaluated_at: datetime | None = None
    satisfaction: int | None = None       # legacy scale: 5 非常满意 … 1 非常不满意
    comment: str | None = None

    def times(self) -> list[datetime]:
        moments = [self.applied_at, self.accepted_at, self.concluded_at, self.evaluated_at]
        for step in self.steps:
            moments += [step.start, step.end]
        return [moment for moment in moments if moment is not None]

    def snapshot(self, now: datetime) -> dict[str, Any] | None:
        if self.applied_at > now:
            return None
        accepted = self.accepted_at is not None and self.accepted_at <= now
        concluded = self.concluded_at is not None and self.concluded_at <= now
        evaluated = self.evaluated_at is not None and self.evaluated_at <= now
        item = self.item
        issues_licence = concluded and self.result == "准予许可" and item is not None and item.licence_name
        valid_to = None
        if issues_licence and item.valid_years:
            end = self.concluded_at.date()
            valid_to = _add_years(end, item.valid_years) - timedelta(days=1)
        return {
            "ywh": self.key,
            "sxbm": self.item_code,
            **self.applicant,
            "xzqh": self.region,
            "sqsj": self.applied_text or _fmt(self.applied_at),
            "bjlx": self.case_type,
            "sbqd": self.channel,
            "cl": [dict(material) for material in self.materials],
            "slsj": _fmt(self.accepted_at) if accepted else None,
            "slr": self.accepted_by if accepted else None,
            "cnbjsj": _fmt(self.promised_at) if accepted and self.promised_at else None,
            "hj": [_step_record(step, now) for step in self.steps if step.start <= now],
            "bjsj": _fmt(self.concluded_at) if concluded else None,
            "bjjg": self.result if concluded else None,
            "bjsm": self.result_note if concluded else None,
            "zzmc": item.licence_name if issues_licence else None,
            "zzbh": self.licence_number if issues_licence else None,
            "yxqq": self.concluded_at.strftime(DATE_FORMAT) if issues_licence else None,
            "yxqz": valid_to.strftime(DATE_FORMAT) if valid_to else None,
            "pj": ({"myd": str(self.satisfaction), "pjsj": _fmt(self.evaluated_at), "pjnr": self.comment}
                   if evaluated else None),
            "gxsj": _fmt(max(moment for moment in self.times() if moment <= now)),
        }


def _fmt(moment: datetime) -> str:
    return moment.strftime(TIME_FORMAT)


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def _step_record(step: _Step, now: datetime) -> dict[str, Any]:
    done = step.end <= now
    return {
        "hjmc": step.name,
        "clr": step.handler,
        "yj": step.opinion if done else None,
        "kssj": _fmt(step.start),
        "jssj": _fmt(step.end) if done else None,
        "zt": "已办" if done else "待办",
        "dz": step.action if done else None,
    }


class LegacyWorld:
    """The synthetic legacy system. `tick` 0 shows the system at the end of its first day
    (`now = start + (tick + 1) days`); `advance()` moves one day on."""

    def __init__(
        self,
        seed: int = 7,
        cases: int = 3000,
        bad_share: float = 0.03,
        start: datetime = datetime(2024, 3, 1, 8, 0),
        state_file: str | Path | None = None,
        appear_days: int = 5,
    ):
        self.seed = seed
        self.case_count = cases
        self.bad_share = bad_share
        self.start = start
        self.appear_days = appear_days
        self.state_file = Path(state_file) if state_file else None
        self.tick = 0
        if self.state_file and self.state_file.exists():
            # A restarted sandbox continues where it was: same seed → same plans, saved tick → same clock.
            self.tick = int(json.loads(self.state_file.read_text(encoding="utf-8"))["tick"])
        self._cases: list[_Case] = []
        self._bad: dict[str, str] = {}
        self._plan(random.Random(seed))
        self._cache: tuple[int, list[dict[str, Any]]] | None = None

    # --- the clock -----------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        return self.start + timedelta(days=self.tick + 1)

    @property
    def settled_tick(self) -> int:
        """The first tick at which every planned case has reached its final state."""
        last = max(moment for case in self._cases for moment in case.times())
        return max(0, -(-(last - self.start) // timedelta(days=1)) - 1)

    def advance(self, n: int = 1) -> int:
        if n < 0:
            raise ValueError("the legacy clock only moves forward")
        self.tick += n
        if self.state_file:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            self.state_file.write_text(json.dumps({"tick": self.tick, "seed": self.seed}), encoding="utf-8")
        return self.tick

    # --- what the legacy system shows ----------------------------------------------------------------

    def records(self, updated_since: str | None = None) -> list[dict[str, Any]]:
        """Snapshots of every case that exists by `now` and changed after `updated_since`
        ("YYYY-mm-dd HH:MM:SS", exclusive), sorted by update time (gxsj) then key. Fresh copies."""
        if updated_since is not None:
            updated_since = _fmt(datetime.strptime(updated_since.strip(), TIME_FORMAT))
        snapshots = self._snapshots()
        chosen = [record for record in snapshots if updated_since is None or record["gxsj"] > updated_since]
        return json.loads(json.dumps(chosen, ensure_ascii=False))

    def page(self, updated_since: str | None, offset: int, size: int) -> tuple[list[dict[str, Any]], int]:
        """One page of `records(updated_since)` (fresh copies of that page only) and the total: a page request must
        not copy the whole data set (a million-record world would copy a million records per page)."""
        if updated_since is not None:
            updated_since = _fmt(datetime.strptime(updated_since.strip(), TIME_FORMAT))
        snapshots = self._snapshots()
        if updated_since is None:
            start = 0
        else:  # sorted by gxsj: the first record changed after updated_since
            start = bisect.bisect_right(snapshots, updated_since, key=lambda record: record["gxsj"])
        chosen = snapshots[start + offset: start + offset + size]
        return json.loads(json.dumps(chosen, ensure_ascii=False)), len(snapshots) - start

    def record(self, key: str) -> dict[str, Any] | None:
        """One case as it looks now (None when it does not exist yet or at all)."""
        for case in self._cases:
            if case.key == key:
                return case.snapshot(self.now)
        return None

    def keys(self) -> list[str]:
        """Every planned case key, existing yet or not."""
        return [case.key for case in self._cases]

    def bad_cases(self, existing_only: bool = False) -> dict[str, str]:
        """The deliberately bad cases: key → kind (one of BAD_KINDS)."""
        if not existing_only:
            return dict(self._bad)
        now = self.now
        return {case.key: self._bad[case.key] for case in self._cases
                if case.key in self._bad and case.applied_at <= now}

    def _snapshots(self) -> list[dict[str, Any]]:
        if self._cache is None or self._cache[0] != self.tick:
            now = self.now
            snapshots = [snap for case in self._cases if (snap := case.snapshot(now)) is not None]
            snapshots.sort(key=lambda record: (record["gxsj"], record["ywh"]))
            self._cache = (self.tick, snapshots)
        return self._cache[1]

    # --- planning ------------------------------------------------------------------------------------

    def _plan(self, rng: random.Random) -> None:
        cases = [self._plan_case(rng) for _ in range(self.case_count)]
        # Legacy case numbers run in application order.
        cases.sort(key=lambda case: case.applied_at)
        for index, case in enumerate(cases, start=1):
            case.key = f"SB{self.start.year}{index:06d}"
        bad_count = round(self.case_count * self.bad_share)
        for position, index in enumerate(rng.sample(range(len(cases)), bad_count)):
            kind = BAD_KINDS[position % len(BAD_KINDS)]
            _spoil(cases[index], kind, rng)
            self._bad[cases[index].key] = kind
        self._cases = cases

    def _plan_case(self, rng: random.Random) -> _Case:
        item = rng.choice(ITEMS)
        day = self.start.date() + timedelta(days=rng.randrange(self.appear_days))
        applied = datetime.combine(day, datetime.min.time()) + timedelta(minutes=rng.randint(8 * 60 + 30, 17 * 60 + 30),
                                                                         seconds=rng.randrange(60))
        case = _Case(item_code=item.code, item=item, applied_at=applied)
        case.region = _case_region(rng)
        case.channel = rng.choices(_CHANNELS, weights=(45, 40, 15))[0]
        case.case_type = "1" if rng.random() < item.instant_share else "2"
        if rng.random() < 0.9:
            case.materials = [{"clmc": name, "fs": rng.choice((1, 1, 1, 2))} for name in item.materials]
        case.applicant = (_person(rng) if rng.random() < item.person_share else _company(rng))
        _plan_life(case, rng)
        return case


def _case_region(rng: random.Random) -> str:
    roll = rng.random()
    unit = rng.choice(sorted(CHONGQING_UNITS))
    if roll < 0.70:
        return unit
    if roll < 0.78:
        return "500000"
    if roll < 0.86:
        return rng.choice(sorted(RETIRED_CODES))
    if roll < 0.96:
        return f"{unit}{rng.randint(1, 30):03d}"           # 乡镇/街道
    return f"{unit}{rng.randint(1, 30):03d}{rng.randint(1, 20):03d}"   # 村/社区


def _phone(rng: random.Random) -> str | None:
    if rng.random() < 0.08:
        return None
    return "1" + rng.choice("3456789") + "".join(rng.choice("0123456789") for _ in range(9))


def _person(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.8:
        region = rng.choice(sorted(CHONGQING_UNITS))
    elif roll < 0.9:
        region = rng.choice(_OLD_SICHUAN)
    else:
        region = rng.choice(_ELSEWHERE)
    birth = date(1950, 1, 1) + timedelta(days=rng.randrange(365 * 55))
    number = make_id_number(region, birth, rng.randrange(500), rng.choice("MF"))
    # Hand-typed variants the bus must normalise: lower-case x, full-width digits.
    if number.endswith("X") and rng.random() < 0.5:
        number = number[:-1] + "x"
    elif rng.random() < 0.03:
        number = number.translate(_FULL_WIDTH_DIGITS)
    name = rng.choice(_SURNAMES) + "".join(rng.choice(_GIVEN) for _ in range(rng.choice((1, 2, 2))))
    return {"sqrxm": name, "zjlx": "SFZ", "zjhm": number, "lxdh": _phone(rng)}


def _company(rng: random.Random) -> dict[str, Any]:
    region = rng.choice(sorted(CHONGQING_UNITS))
    org8 = "MA" + "".join(rng.choice(CREDIT_ALPHABET) for _ in range(6))
    kind = rng.choices(("1", "2", "3"), weights=(85, 10, 5))[0]
    code = make_credit_code("9", kind, region, org8)
    name = f"重庆{rng.choice(_FIRMS)}{rng.choice(_TRADES)}有限公司"
    return {"sqrxm": name, "zjlx": "TYSHXYDM", "zjhm": code, "lxdh": _phone(rng)}


def _plan_life(case: _Case, rng: random.Random) -> None:
    applied = case.applied_at
    if rng.random() < 0.04:  # returned before acceptance: incomplete materials
        case.concluded_at = applied + timedelta(minutes=rng.randint(60, 20 * 60))
        case.result, case.result_note = "退回", "申请材料不齐全，请补正后重新申报"
        _maybe_evaluate(case, rng)
        return
    case.accepted_by = rng.choice(_STAFF)
    granted = rng.random() < (0.97 if case.case_type == "1" else 0.92)
    if case.case_type == "1":  # 即办: accepted and decided the same day
        case.accepted_at = applied + timedelta(minutes=rng.randint(5, 60))
        names = _STEP_NAMES[1]
        start = case.accepted_at + timedelta(minutes=rng.randint(1, 5))
        durations = [timedelta(minutes=rng.randint(10, 90))]
    else:
        case.accepted_at = applied + timedelta(minutes=rng.randint(30, 26 * 60))
        promise_day = case.accepted_at.date() + timedelta(days=rng.randint(5, 20))
        case.promised_at = datetime.combine(promise_day, datetime.min.time()) + timedelta(hours=17)
        names = _STEP_NAMES[rng.choice((1, 2, 2, 3))]
        start = case.accepted_at + timedelta(minutes=rng.randint(10, 60))
        durations = [timedelta(minutes=rng.randint(5 * 60, 72 * 60)) for _ in names]
    for position, (name, duration) in enumerate(zip(names, durations)):
        last = position == len(names) - 1
        if last and not granted:
            opinion, action = "不符合法定条件，不予许可", "其他"
        elif position == 0 and len(names) == 3 and rng.random() < 0.1:
            opinion, action = "材料需补正，退回申请人补充后继续审查", "退回"
        else:
            opinion, action = rng.choice(("同意", "符合要求，同意", "材料齐全，同意")), "通过"
        step = _Step(name, rng.choice(_STAFF), opinion, action, start, start + duration)
        case.steps.append(step)
        start = step.end + timedelta(minutes=rng.randint(1, 60))
    case.concluded_at = case.steps[-1].end + timedelta(minutes=rng.randint(5, 120))
    if granted:
        case.result, case.result_note = "准予许可", "经审查，符合法定条件，准予办理"
        item = case.item
        if item.licence_name:
            region6 = case.region[:6] if case.region[:6].isdigit() else "500000"
            case.licence_number = f"{item.licence_prefix}{region6}{case.concluded_at:%Y}{rng.randrange(100000):05d}"
    else:
        case.result, case.result_note = "不予许可", "经审查，不符合法定条件，不予许可"
    _maybe_evaluate(case, rng)


def _maybe_evaluate(case: _Case, rng: random.Random) -> None:
    if rng.random() >= 0.45:
        return
    case.evaluated_at = case.concluded_at + timedelta(minutes=rng.randint(60, 3 * 24 * 60))
    case.satisfaction = rng.choices((5, 4, 3, 2, 1), weights=(70, 18, 7, 3, 2))[0]
    case.comment = _COMMENTS[case.satisfaction] if rng.random() < 0.5 else None


def _spoil(case: _Case, kind: str, rng: random.Random) -> None:
    """Break one rule on purpose (see BAD_KINDS)."""
    if kind == BAD_ID_CHECK_DIGIT:
        person = _person(rng)
        number = person["zjhm"].translate({ord(c): ord(a) for c, a in zip("０１２３４５６７８９", "0123456789")})
        right = number[-1].upper()
        wrong = "0123456789X"[("0123456789X".index(right) + rng.randint(1, 10)) % 11]
        person["zjhm"] = number[:17] + wrong
        case.applicant = person
    elif kind == BAD_UNKNOWN_ITEM:
        case.item_code = UNKNOWN_ITEM_CODE
    elif kind == BAD_IMPOSSIBLE_DATE:
        case.applied_text = f"{case.applied_at.year}-02-30 {case.applied_at:%H:%M:%S}"
    elif kind == BAD_OUTSIDE_CHONGQING:
        case.region = rng.choice(_FOREIGN_REGIONS)
