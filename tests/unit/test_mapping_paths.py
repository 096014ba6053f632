"""Compiled paths (tongban.mapping.paths) give exactly what JMESPath gives, for every shape a legacy record takes."""
from __future__ import annotations

import jmespath
import pytest

from tongban.mapping.paths import compile_path

RECORDS = [
    {"ywh": "SB1", "pj": {"myd": "5"}, "中文": "", "SXBM": "SX-1", "zzmc": "许可证", "n": 0, "f": False, "e": [],
     "o": {}, "l": [1, 2]},
    {"ywh": None, "pj": None, "中文": "事项", "SXBM": None, "zzmc": None, "n": 0.0},
    {"pj": "not an object", "ywh": 7, "l": "text"},
    {"pj": [{"myd": "1"}], "zzmc": "", "f": True},
    {},
]
NOT_RECORDS = [None, [], ["ywh"], "ywh", 3, 0, True]
PLAIN = ["ywh", "pj.myd", "pj.myd.x", '"中文" || SXBM', '"中文" || SXBM || ywh', "zzmc && '重庆市市场监督管理局'",
         "n || 'zero is true'", "f || e || o || 'all false'", "l && n", "'x'", "`3`", "`null` || ywh", '"a b"']


@pytest.mark.parametrize("expression", PLAIN)
def test_plain_paths_need_no_interpreter_and_agree_with_jmespath(expression):
    compiled = compile_path(expression)
    assert compiled.plain
    for value in RECORDS + NOT_RECORDS:
        assert compiled.search(value) == jmespath.search(expression, value), (expression, value)


@pytest.mark.parametrize("expression", ["cl[].{name: clmc, count: fs}", "l[0]", "length(l)", "pj.*", "`[1]`"])
def test_other_paths_are_searched_by_jmespath_itself(expression):
    compiled = compile_path(expression)
    assert not compiled.plain
    for value in RECORDS:
        try:
            expected = jmespath.search(expression, value)
        except jmespath.exceptions.JMESPathError as exc:
            with pytest.raises(type(exc)):
                compiled.search(value)
        else:
            assert compiled.search(value) == expected


def test_a_bad_path_is_refused_as_jmespath_refuses_it():
    with pytest.raises(jmespath.exceptions.JMESPathError):
        compile_path("a..b")
