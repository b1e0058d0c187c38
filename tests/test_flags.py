"""Flag values: decoding, coercion against a flag's rules, unknown flags, and the batch syntax."""

from __future__ import annotations

import math
import random

import pytest
from conftest import property_settings
from hypothesis import given
from hypothesis import strategies as st

from guildlite._errors import FlagError, GuildliteError
from guildlite._flag_values import Grid, Random, parse_assignments, parse_value, resolve
from guildlite._flags import FlagDef, coerce, decode, format_value, unknown_flag

PROPERTY = property_settings(300)


# --- decode ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1", 1),
        ("-5", -5),
        ("+3", 3),
        ("0.1", 0.1),
        ("1e-3", 0.001),
        ("1E3", 1000.0),
        (".5", 0.5),
        ("true", True),
        ("false", False),
        ("True", True),
        ("yes", True),
        ("no", False),
        ("'1'", "1"),
        ('"0.1"', "0.1"),
        ("'true'", "true"),
        ("adam", "adam"),
        ("", ""),
        ("null", None),
    ],
)
def test_decode(text: str, expected: object) -> None:
    got = decode(text)
    assert got == expected
    assert type(got) is type(expected)


def test_decode_keeps_odd_text_as_given() -> None:
    assert decode("1_000") == "1_000"
    assert decode("0x10") == "0x10"
    assert decode("'") == "'"  # a lone quote is not a quoted string


# --- coerce ------------------------------------------------------------------------------------


def test_coerce_converts_to_the_declared_type() -> None:
    assert coerce(FlagDef("n", type="int"), "7") == 7
    assert coerce(FlagDef("n", type="int"), 3.0) == 3
    assert coerce(FlagDef("x", type="float"), 2) == 2.0 and isinstance(coerce(FlagDef("x", type="float"), 2), float)
    assert coerce(FlagDef("x", type="float"), "1e-3") == 0.001
    assert coerce(FlagDef("b", type="bool"), "yes") is True
    assert coerce(FlagDef("b", type="bool"), 0) is False
    assert coerce(FlagDef("s", type="str"), 5) == "5"
    assert coerce(FlagDef("s", type="str"), True) == "true"
    assert coerce(FlagDef("p", type="path"), "data/x.csv") == "data/x.csv"


def test_coerce_infers_the_type_from_the_default() -> None:
    lr = FlagDef("lr", default=0.1)
    assert lr.value_type == "float"
    assert coerce(lr, 1) == 1.0 and isinstance(coerce(lr, 1), float)
    assert FlagDef("n", default=3).value_type == "int"
    assert FlagDef("b", default=False).value_type == "bool"
    assert FlagDef("s", default="x").value_type == "str"
    assert FlagDef("u").value_type is None
    assert coerce(FlagDef("u"), [1, 2]) == [1, 2]  # untyped: passed through


@pytest.mark.parametrize(
    "flag, value, needles",
    [
        (FlagDef("epochs", type="int"), "abc", ["epochs", "abc", "int"]),
        (FlagDef("epochs", type="int"), 2.5, ["epochs", "2.5", "int"]),
        (FlagDef("epochs", type="int"), True, ["epochs", "true", "int"]),
        (FlagDef("lr", type="float"), "fast", ["lr", "fast", "float"]),
        (FlagDef("lr", type="float"), False, ["lr", "false", "float"]),
        (FlagDef("amp", type="bool"), "maybe", ["amp", "maybe", "bool"]),
        (FlagDef("amp", type="bool"), 2, ["amp", "2", "bool"]),
    ],
)
def test_coerce_rejects_a_bad_type(flag: FlagDef, value: object, needles: list[str]) -> None:
    with pytest.raises(FlagError) as e:
        coerce(flag, value)
    for n in needles:
        assert n in str(e.value)
    assert e.value.exit_code == 2


def test_coerce_checks_choices_naming_flag_value_and_choices() -> None:
    opt = FlagDef("opt", default="sgd", choices=("sgd", "adam"))
    assert coerce(opt, "adam") == "adam"
    with pytest.raises(FlagError) as e:
        coerce(opt, "rmsprop")
    msg = str(e.value)
    assert "'opt'" in msg and "rmsprop" in msg and "sgd, adam" in msg
    bs = FlagDef("bs", type="int", choices=(16, 32))
    assert coerce(bs, "32") == 32  # converted before the choice check
    with pytest.raises(FlagError, match=r"flag 'bs': 8 is not one of the choices \(16, 32\)"):
        coerce(bs, 8)


def test_coerce_checks_min_and_max_naming_the_bound() -> None:
    lr = FlagDef("lr", default=0.1, min=0, max=1)
    assert coerce(lr, 0) == 0.0
    assert coerce(lr, 1) == 1.0
    with pytest.raises(FlagError, match=r"flag 'lr': -1\.0 is below the minimum 0"):
        coerce(lr, -1)
    with pytest.raises(FlagError, match=r"flag 'lr': 1\.5 is above the maximum 1"):
        coerce(lr, 1.5)
    # bounds do not apply to a bool, and None (no value) passes
    assert coerce(FlagDef("b", type="bool", min=5), True) is True
    assert coerce(lr, None) is None


def test_nan_is_out_of_range() -> None:
    with pytest.raises(FlagError):
        coerce(FlagDef("lr", default=0.1, min=0, max=1), decode("nan"))


def test_unknown_flag_suggests_the_closest_name() -> None:
    e = unknown_flag("lrr", ["lr", "epochs", "batch-size"], "train")
    assert isinstance(e, FlagError)
    assert str(e) == "operation 'train' has no flag 'lrr' (did you mean 'lr'?)"
    e = unknown_flag("batchsize", ["lr", "epochs", "batch-size"], "train")
    assert "did you mean 'batch-size'?" in str(e)


def test_unknown_flag_without_a_close_name_lists_the_flags() -> None:
    assert "its flags are: epochs, lr" in str(unknown_flag("zzzzzz", ["lr", "epochs"], "train"))
    assert "declares no flags" in str(unknown_flag("x", [], "train"))


def test_resolve_fills_defaults_and_rejects_unknown_flags() -> None:
    defs = {"lr": FlagDef("lr", default=0.1, min=0), "epochs": FlagDef("epochs", default=5, type="int")}
    assert resolve("train", defs, {"epochs": "3"}) == {"lr": 0.1, "epochs": 3}
    with pytest.raises(FlagError, match="did you mean 'lr'"):
        resolve("train", defs, {"lrr": 1})
    with pytest.raises(FlagError, match="requires flag 'data'"):
        resolve("train", {"data": FlagDef("data", type="path", required=True)}, {})


def test_resolve_checks_every_value_of_a_batch_dimension() -> None:
    defs = {"lr": FlagDef("lr", default=0.1, min=0), "n": FlagDef("n", default=1, type="int", max=10)}
    out = resolve("train", defs, parse_assignments(["lr=[1,0.5]", "n=range[1:3]"]))
    assert out == {"lr": Grid((1.0, 0.5)), "n": Grid((1, 2, 3))}
    with pytest.raises(FlagError, match="below the minimum"):
        resolve("train", defs, parse_assignments(["lr=[0.1,-1]"]))
    with pytest.raises(FlagError, match="above the maximum"):
        resolve("train", defs, parse_assignments(["n=randint[1:11]"]))
    with pytest.raises(FlagError, match="is an int"):
        resolve("train", defs, parse_assignments(["n=uniform[1:2]"]))
    with pytest.raises(FlagError, match="needs a numeric flag"):
        resolve("train", {"s": FlagDef("s", default="a")}, parse_assignments(["s=uniform[1:2]"]))
    assert resolve("train", defs, parse_assignments(["n=choice[1,2]"]))["n"] == Random("choice", (1, 2))


def test_format_value() -> None:
    assert format_value(True) == "true"
    assert format_value(None) == ""
    assert format_value(0.001) == "0.001"
    assert format_value("a b") == "a b"


# --- batch syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, values",
    [
        ("[0.1,0.01]", (0.1, 0.01)),
        ("[ 1 , 2 ,3 ]", (1, 2, 3)),
        ("[a,'1',true]", ("a", "1", True)),
        ("[7]", (7,)),
        ("range[1:5]", (1, 2, 3, 4, 5)),
        ("range[1:5:2]", (1, 3, 5)),
        ("range[1:6:2]", (1, 3, 5)),  # hi not on the step: not included
        ("range[5:5]", (5,)),
        ("range[0:1:0.25]", (0.0, 0.25, 0.5, 0.75, 1.0)),  # hi lands on the step: included
        ("range[0:0.3:0.1]", (0.0, 0.1, 0.2, 0.3)),  # ... despite float noise
        ("range[0.5:2]", (0.5, 1.5)),
        ("linspace[0:1:5]", (0.0, 0.25, 0.5, 0.75, 1.0)),
        ("linspace[2:3:1]", (2.0,)),
        ("logspace[-4:-1:4]", (0.0001, 0.001, 0.01, 0.1)),
    ],
)
def test_grid_syntax(text: str, values: tuple[object, ...]) -> None:
    got = parse_value("x", text)
    assert isinstance(got, Grid)
    assert got.values == values
    assert [type(v) for v in got.values] == [type(v) for v in values]


@pytest.mark.parametrize(
    "text, kind, args",
    [
        ("uniform[0:1]", "uniform", (0, 1)),
        ("loguniform[1e-4:1e-1]", "loguniform", (0.0001, 0.1)),
        ("randint[1:8]", "randint", (1, 8)),
        ("choice[a,b,3]", "choice", ("a", "b", 3)),
    ],
)
def test_random_syntax(text: str, kind: str, args: tuple[object, ...]) -> None:
    got = parse_value("x", text)
    assert got == Random(kind, args)
    rng = random.Random(0)
    samples = [got.sample(rng) for _ in range(200)]
    if kind == "choice":
        assert set(samples) == set(args)
    else:
        assert all(args[0] <= s <= args[1] for s in samples)
        assert len(set(samples)) > 1
    if kind == "randint":
        assert all(isinstance(s, int) for s in samples)


def test_plain_values_pass_through_parse_value() -> None:
    assert parse_value("lr", "0.1") == 0.1
    assert parse_value("name", "range") == "range"
    with pytest.raises(FlagError, match="malformed list"):  # a typo of a batch function is no plain value
        parse_value("name", "ragne[1:2]")


@pytest.mark.parametrize(
    "text, needle",
    [
        ("[0.1,", "malformed list"),
        ("0.1]", "malformed list"),
        ("[]", "empty item"),
        ("[1,,2]", "empty item"),
        ("range[5:1]", "below lo"),
        ("range[1:2:0]", "step must be positive"),
        ("range[1:2:-1]", "step must be positive"),
        ("range[1]", "expected range[lo:hi] or range[lo:hi:step]"),
        ("range[1:2:3:4]", "malformed range"),
        ("range[a:b]", "is not a finite number"),
        ("range[1:inf]", "is not a finite number"),
        ("range[0:10000000]", "too many"),
        ("linspace[0:1]", "expected linspace[lo:hi:n]"),
        ("linspace[0:1:0]", "n must be a whole number"),
        ("logspace[0:1:2.5]", "n must be a whole number"),
        ("uniform[1:0]", "below lo"),
        ("loguniform[0:1]", "must be > 0"),
        ("loguniform[-1:1]", "must be > 0"),
        ("randint[1.5:3]", "must be integers"),
        ("randint[true:3]", "is not a finite number"),
        ("choice[]", "empty item"),
    ],
)
def test_malformed_batch_values_raise_flag_error(text: str, needle: str) -> None:
    with pytest.raises(FlagError) as e:
        parse_value("lr", text)
    assert needle in str(e.value)
    assert "'lr'" in str(e.value)


@pytest.mark.parametrize("text", ["range[0:1e300:1e-300]", "range[0:10:1e-320]", "logspace[0:400:2]"])
def test_overflowing_batch_values_raise_flag_error(text: str) -> None:
    with pytest.raises(FlagError):
        parse_value("lr", text)


def test_parse_assignments() -> None:
    got = parse_assignments(["lr=[0.1,0.01]", "epochs=3", " name = 'x=y' ", "tag="])
    assert got == {"lr": Grid((0.1, 0.01)), "epochs": 3, "name": "x=y", "tag": ""}
    with pytest.raises(FlagError, match="expected NAME=VALUE"):
        parse_assignments(["lr"])
    with pytest.raises(FlagError, match="expected NAME=VALUE"):
        parse_assignments(["=1"])
    with pytest.raises(FlagError, match="more than once"):
        parse_assignments(["lr=1", "lr=2"])


# --- properties --------------------------------------------------------------------------------


@PROPERTY
@given(st.text())
def test_decode_never_fails(text: str) -> None:
    decode(text)


def _value_or_flag_error(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except FlagError as e:
        assert isinstance(e, GuildliteError) and str(e)
        return e


@PROPERTY
@given(st.text())
def test_parse_value_gives_a_value_or_a_flag_error(text: str) -> None:
    _value_or_flag_error(parse_value, "x", text)


@PROPERTY
@given(st.lists(st.text(max_size=30), max_size=5))
def test_parse_assignments_gives_values_or_a_flag_error(args: list[str]) -> None:
    got = _value_or_flag_error(parse_assignments, args)
    if isinstance(got, dict):
        assert all(isinstance(k, str) and k for k in got)


# Magnitudes stay where the known overflow bug (test_overflowing_batch_values_raise_flag_error)
# cannot trigger: |x| <= 300 and no tiny steps.
_NUM = st.one_of(
    st.integers(-300, 300).map(str),
    st.floats(-300, 300).filter(lambda f: f == 0 or abs(f) > 1e-6).map(repr),
    st.sampled_from(["1e-3", "-0", ".5", "1.", "nan", "inf", "-inf", "true", "'1'", "", "x", "1e6"]),
)


@st.composite
def _batch_text(draw: st.DrawFn) -> str:
    fn = draw(st.sampled_from(["range", "linspace", "logspace", "uniform", "loguniform", "randint", "choice", ""]))
    parts = draw(st.lists(_NUM, min_size=0, max_size=4))
    sep = ":" if fn not in ("choice", "") else ","
    body = sep.join(parts)
    text = f"{fn}[{body}]"
    return draw(st.sampled_from([text, text[:-1], " " + text + " ", text + "]"]))


@PROPERTY
@given(_batch_text())
def test_batch_syntax_gives_a_dimension_or_a_flag_error(text: str) -> None:
    got = _value_or_flag_error(parse_value, "x", text)
    if isinstance(got, Grid):
        assert 1 <= len(got.values) <= 1_000_000
    elif isinstance(got, Random):
        rng = random.Random(0)
        v = got.sample(rng)
        if got.kind != "choice":
            assert got.args[0] <= v <= got.args[1] or math.isclose(v, got.args[0]) or math.isclose(v, got.args[1])


@PROPERTY
@given(st.text(max_size=20), st.sampled_from(["int", "float", "bool", "str", "path", None]),
       st.one_of(st.none(), st.integers(-5, 5)), st.one_of(st.none(), st.integers(-5, 5)))
def test_coerce_gives_a_value_or_a_flag_error(text: str, ftype: str | None, lo: int | None, hi: int | None) -> None:
    flag = FlagDef("f", type=ftype, min=lo, max=hi)
    got = _value_or_flag_error(coerce, flag, decode(text))
    if not isinstance(got, FlagError) and ftype in ("int", "float") and got is not None and not math.isnan(got):
        assert (lo is None or got >= lo) and (hi is None or got <= hi)
