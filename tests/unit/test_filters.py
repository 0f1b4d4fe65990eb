"""containerd's filter syntax: matching over a small corpus, and parse errors word for word."""

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from containerd_py import filters
from containerd_py.errdefs import InvalidArgument


@dataclass(frozen=True)
class Entry:
    name: str
    other: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def adapt(self, fieldpath: Sequence[str]) -> tuple[str, bool]:
        if fieldpath[0] == "name":
            return self.name, bool(self.name)
        if fieldpath[0] == "other":
            return self.other, bool(self.other)
        if fieldpath[0] == "labels":
            return filters.label_adaptor(self.labels, fieldpath[1:])
        return "", False


CORPUS = [
    Entry("foo", labels={"foo": "true"}),  # 0
    Entry("bar"),  # 1
    Entry("foo", labels={"foo": "present", "more complex label": "present"}),  # 2
    Entry("bar", labels={"bar": "true"}),  # 3
    Entry("fooer", labels={'label with \\ and "': "present"}),  # 4
    Entry("fooer", labels={'label with \\ and ".post': "present"}),  # 5
    Entry("baz", other="too complex, yo"),  # 6
    Entry("bazo", other="abc"),  # 7
    Entry("compound", labels={"foo": "omg_asdf.asdf-qwer", "io.foo/bar": "x"}),  # 8
]


def matching(*ss: str) -> list[int]:
    f = filters.parse_all(*ss) if len(ss) != 1 else filters.parse(ss[0])
    return [i for i, e in enumerate(CORPUS) if f.match(e.adapt)]


ALL = list(range(len(CORPUS)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ALL),
        ("name", ALL),
        ("other", [6, 7]),
        ("labels.foo", [0, 2, 8]),
        ("labels.foo,name", [0, 2, 8]),
        ("labels.foo==true", [0]),
        ("labels.foo==omg_asdf.asdf-qwer", [8]),  # dots and dashes belong to a bare value
        ("name==bar", [1, 3]),
        ("name == bar", [1, 3]),  # spaces around the operator are fine
        ("name==bar, labels.bar", [3]),  # and after a comma
        ("name!=bar", [0, 2, 4, 5, 6, 7, 8]),
        ("labels.foo!=true", [1, 2, 3, 4, 5, 6, 7, 8]),  # != matches where the field is absent
        ("name==bar,labels.bar", [3]),
        ("name==bar,labels.bar==true", [3]),
        ("name==bar,labels.bar==wrong", []),
        ('other=="too complex, yo"', [6]),
        ("other~=[abc]+,name!=foo", [6, 7]),
        ("other~=/[abc]+/,name!=foo", [6, 7]),
        ("other~=|[abc]{1,2}|,name!=foo", [6, 7]),
        ("name~=^foo", [0, 2, 4, 5]),  # a search, not anchored unless asked
        ("name~=o$", [0, 2, 7]),
        ('other~=/[abc]{0,1}"\\//,name!=foo', []),  # valid, matches nothing
        ("other~=/[/", []),  # a broken regexp parses and never matches, as in containerd
        ('name==foo,labels."more complex label"', [2]),
        ('labels."label with \\\\ and \\""==present', [4]),
        ('labels."label with \\\\ and \\"".post==present', [5]),
        ('labels."io.foo/bar"', [8]),
        ("labels.io.foo", []),  # the key is the rest joined by dots: "io.foo"
        ('labels."\\x66oo"==true', [0]),  # Go escapes in quoted fields
        ('name=="\\u0062ar"', [1, 3]),
        ('name=="\\142ar"', [1, 3]),
    ],
)
def test_match(text: str, expected: list[int]) -> None:
    assert matching(text) == expected


def test_parse_all_is_an_or_of_ands() -> None:
    assert matching("name==bar", "labels.foo==true") == [0, 1, 3]
    assert matching("name==bar,labels.bar", "other==abc") == [3, 7]
    assert filters.parse_all().match(CORPUS[0].adapt)
    assert matching("name==nothing", "name==nothing-either") == []


def test_label_adaptor() -> None:
    labels = {"a.b": "1", "empty": ""}
    assert filters.label_adaptor(labels, ["a", "b"]) == ("1", True)
    assert filters.label_adaptor(labels, ["a.b"]) == ("1", True)
    assert filters.label_adaptor(labels, ["empty"]) == ("", True)
    assert filters.label_adaptor(labels, ["a"]) == ("", False)
    assert filters.label_adaptor(labels, []) == ("", False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "labels.|foo|==omg_asdf.asdf-qwer",
            "[labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered",
        ),
        (
            'labels.?"more complex label with \\\\ and \\"".post==present',
            '[labels. >|?|< "more complex label with \\\\ and \\"".post==present]: '
            "expected field or quoted",
        ),
        ("name==foo,", "[name==foo,]: expected field or quoted"),
        ("labels.", "[labels.]: expected field or quoted"),
        ("name==", "[name==]: expected value or quoted"),
        ("image~=,id?=?fbaq", "[image~= >|,|< id?=?fbaq]: expected value or quoted"),
        ("labels.ns/key==value", "[labels.ns >|/|< key==value]: quoted literal not terminated"),
        ("labels.key==/value", "[labels.key== >|/|< value]: quoted literal not terminated"),
        ("labels.key==/value/", "[labels.key== >|/|< value/]: invalid quote encountered"),
        ("name=foo", '[name >|=|< foo]: unsupported operator "="'),
        ("name===foo", '[name >|=|< ==foo]: unsupported operator "==="'),
        ("name foo", '[name  >|f|< oo]: expected an operator ("=="|"!="|"~=")'),
        ("name==foo bar", "[name==foo >| |< bar]: unexpected input:  "),
        ('name=="a\\qb"', '[name== >|"|< a\\qb"]: illegal escape sequence'),
        ('name=="a\\x4"', '[name== >|"|< a\\x4"]: illegal numeric escape sequence'),
        ('name=="\\777"', '[name== >|"|< \\777"]: unquoting failed: quote syntax error'),
        ("name==a\0b", "[name==a >|\0|< b]: unexpected input: \ufffd"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        filters.parse(text)
    assert str(err.value) == "filters: parse error: " + message


def test_parse_all_reports_the_bad_one() -> None:
    with pytest.raises(InvalidArgument, match=r"\[name==\]: expected value or quoted"):
        filters.parse_all("name==ok", "name==")
