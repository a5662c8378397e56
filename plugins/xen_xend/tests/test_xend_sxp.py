"""The SXP reader and writer: xend's grammar, quoting, strict errors with positions, round trips."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import virtkit
from virtkit_xen_xend import MAX_DEPTH, SxpError, atomp, child, children, dumps, lookup, parse, parse_one, value

# -- reading ------------------------------------------------------------------------------------


def test_atoms_lists_and_nesting() -> None:
    assert parse_one("(domain (domid 6) (name pvtest) (image (linux (kernel /boot/vmlinuz))))") == [
        "domain",
        ["domid", "6"],
        ["name", "pvtest"],
        ["image", ["linux", ["kernel", "/boot/vmlinuz"]]],
    ]


def test_strings_in_either_quote_and_adjacent_lists() -> None:
    assert parse_one("(a 'x y'\"it's\"(b)'')") == ["a", "x y", "it's", ["b"], ""]


def test_empty_value_reads_as_no_value() -> None:
    # xend writes an empty string as nothing: (bootloader ) is a one-element list
    assert parse_one("(domain (bootloader ) (features ))") == ["domain", ["bootloader"], ["features"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"'a\nb'", "a\nb"),
        (r"'tab\there'", "tab\there"),
        (r"'q\'q'", "q'q"),
        (r'"d\"d"', 'd"d'),
        (r"'back\\slash'", "back\\slash"),
        (r"'\x41\x7e'", "A~"),
        (r"'\101\0'", "A\x00"),
        (r"'\a\b\v\f\r'", "\a\b\v\f\r"),
        (r"'keep\q'", "keep\\q"),  # unknown escape: kept as written
        ("'multi\nline'", "multi\nline"),
        ("'ünïcødé'", "ünïcødé"),
    ],
)
def test_string_escapes(text: str, expected: str) -> None:
    assert parse_one(text) == expected


def test_atom_delimiters_follow_xend() -> None:
    # atoms end at whitespace, '#', or any of {}()<>[]!; and a quote inside an atom is kept
    assert parse("a#comment\nb[c d;e it's") == ["a", "b", "[c", "d", ";e", "it's"]


def test_comments_and_whitespace_classes() -> None:
    assert parse("# header\n(a\t\v\f\r\n b) # trailing\n") == [["a", "b"]]


def test_several_top_level_expressions() -> None:
    assert parse("(domain (name a))\n(domain (name b))") == [["domain", ["name", "a"]], ["domain", ["name", "b"]]]
    with pytest.raises(SxpError, match="expected one S-expression, found 2"):
        parse_one("(a) (b)")


def test_ctrl_d_ends_input_at_top_level_only() -> None:
    assert parse("(a)\x04(b)") == [["a"]]
    with pytest.raises(SxpError, match="Ctrl-D"):
        parse("(a \x04)")


def test_continuation_is_joined_inside_strings_and_between_lists() -> None:
    text = "(domain (name 'pv')\\\n(args 'http://x/linux/\\\ncore/os  '))"
    assert parse_one(text, continuation=True) == ["domain", ["name", "pv"], ["args", "http://x/linux/core/os  "]]


# -- strict errors: typed, positioned ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "column", "message"),
    [
        ("(a (b)", 1, 7, "1 list(s) not closed"),
        ("(a)\n  )", 2, 3, "unexpected ')'"),
        ("(a 'open", 1, 4, "unterminated string"),
        ('(a "open', 1, 4, "unterminated string"),
        ("(a \x00)", 1, 4, "invalid character U+0000"),
        ("(a\n \x85)", 2, 2, "invalid character U+0085"),
        ("(a '\\x')", 1, 5, "without hex digits"),
        ("(a '\\777')", 1, 5, "out of range"),
        ("", 1, 1, "no S-expression"),
        ("  # only a comment", 1, 19, "no S-expression"),
    ],
)
def test_malformed_text_raises_a_positioned_protocol_error(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(SxpError) as info:
        parse_one(text)
    err = info.value
    assert isinstance(err, virtkit.ProtocolError)
    assert (err.line, err.column) == (line, column), str(err)
    assert message in str(err)


def test_error_positions_refer_to_the_original_text_with_continuations() -> None:
    text = "(a \\\n(b \\\nc))\n)"
    with pytest.raises(SxpError) as info:
        parse(text, continuation=True)
    assert (info.value.line, info.value.column, info.value.offset) == (4, 1, len(text) - 1)


def test_depth_is_bounded() -> None:
    deep = "(" * (MAX_DEPTH + 1) + ")" * (MAX_DEPTH + 1)
    with pytest.raises(SxpError, match="nested deeper"):
        parse(deep)
    ok = "(" * MAX_DEPTH + ")" * MAX_DEPTH
    assert parse(ok)


def test_huge_unbalanced_input_fails_fast() -> None:
    with pytest.raises(SxpError):
        parse("(a " * 100 + "'x" * 10000)


# -- lenient mode (libvirt's tolerance) ------------------------------------------------------------


def test_lenient_supplies_missing_closing_parens() -> None:
    assert parse("(domain (name a) (device (vif (mac m)))", lenient=True) == [
        ["domain", ["name", "a"], ["device", ["vif", ["mac", "m"]]]]
    ]


def test_lenient_ignores_text_after_the_first_expression() -> None:
    assert parse("(domain (name a)))) trailing (junk", lenient=True) == [["domain", ["name", "a"]]]


def test_lenient_still_rejects_garbage_inside_the_expression() -> None:
    with pytest.raises(SxpError, match="unterminated"):
        parse("(domain 'x", lenient=True)


# -- writing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_", "written"),
    [
        ("pvtest", "pvtest"),
        ("/var/lib/xen/vmlinuz.2Dn2YT", "/var/lib/xen/vmlinuz.2Dn2YT"),
        ("00:16:3e:1d:06:15", "00:16:3e:1d:06:15"),
        ("-b----", "-b----"),
        ("@", "@"),
        ("a b", "'a b'"),
        ("", "''"),
        ("it's", '"it\'s"'),  # Python repr: double quotes when only ' is inside
        ("both ' and \"", "'both \\' and \"'"),
        ("(x)", "'(x)'"),
        ("a\nb\\", "'a\\nb\\\\'"),
        ("\x01\x7f", "'\\x01\\x7f'"),
        ("é", "'é'"),
    ],
)
def test_writer_quotes_like_xend(value_: str, written: str) -> None:
    assert dumps(value_) == written
    assert parse_one(written) == value_


def test_writer_numbers_lists_and_rejects_other_types() -> None:
    assert dumps(["vm", ["memory", 512], ["cpu_time", 1.5], ["flag", True], ("t", "u")]) == (
        "(vm (memory 512) (cpu_time 1.5) (flag 1) (t u))"
    )
    with pytest.raises(TypeError):
        dumps(["vm", None])
    with pytest.raises(TypeError):
        dumps({"a": 1})


def test_atomp_is_ascii_only() -> None:
    assert atomp("abc123") and atomp("a.b-c_d:e/f~g")
    assert not atomp("") and not atomp("ß") and not atomp("a b") and not atomp("a=b")


# -- lookups ------------------------------------------------------------------------------------


def test_lookups() -> None:
    dom = parse_one("(domain (name a) (bootloader ) (image (hvm (kernel k))) (device (vbd)) (device (vif)))")
    assert value(dom, "name") == "a"
    assert value(dom, "bootloader") == ""
    assert value(dom, "missing") is None
    assert value(lookup(dom, "image/hvm"), "kernel") == "k"
    assert lookup(dom, "image/linux") is None
    assert child(dom, "image") == ["image", ["hvm", ["kernel", "k"]]]
    assert len(children(dom, "device")) == 2
    assert children("atom") == []


# -- property tests -----------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)
_trees = st.recursive(_text, lambda inner: st.lists(inner, max_size=5), max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(_trees)
def test_round_trip_serialize_then_parse(tree: object) -> None:
    assert parse_one(dumps(tree)) == tree


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=string.printable + "\x00\x04\x85é'\"\\()", max_size=200))
def test_fuzz_any_text_parses_or_raises_sxp_error(text: str) -> None:
    for lenient in (False, True):
        try:
            values = parse(text, lenient=lenient)
        except SxpError as exc:
            assert 0 <= exc.offset <= len(text)
            assert exc.line >= 1 and exc.column >= 1
        else:
            assert parse(dumps(values)) == [values]  # whatever was read can be written back


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoded_bytes(data: bytes) -> None:
    try:
        parse(data.decode("latin-1"))
    except SxpError:
        pass
