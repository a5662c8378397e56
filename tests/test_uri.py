"""URI parsing: libvirt's forms accepted, every defect a clear InvalidURI, passwords never shown."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import virtkit
from virtkit import InvalidURI, _uri, parse_uri


@pytest.mark.parametrize(
    ("text", "scheme", "transport", "user", "host", "port", "path"),
    [
        ("xen:///", "xen", None, None, None, None, "/"),
        ("xen:///system", "xen", None, None, None, None, "/system"),
        ("xen://dom0.example.net:8000/", "xen", None, None, "dom0.example.net", 8000, "/"),
        ("xen+ssh://root@host/", "xen", "ssh", "root", "host", None, "/"),
        ("test:///default", "test", None, None, None, None, "/default"),
        ("test:///abs/path/host.json", "test", None, None, None, None, "/abs/path/host.json"),
        ("xen+https://[::1]:8443/", "xen", "https", None, "::1", 8443, "/"),
    ],
)
def test_libvirt_forms(
    text: str, scheme: str, transport: str | None, user: str | None, host: str | None, port: int | None, path: str
) -> None:
    u = parse_uri(text)
    assert (u.scheme, u.transport, u.user, u.host, u.port, u.path) == (scheme, transport, user, host, port, path)
    assert str(u) == text
    assert parse_uri(str(u)) == u
    assert u.is_local is (host is None)


def test_query_params() -> None:
    u = parse_uri("xen:///?socket=/var/lib/xend/xend-socket&x=1&x=2")
    assert u.params == {"socket": "/var/lib/xend/xend-socket", "x": "2"}
    assert parse_uri(str(u)) == u


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("xen", "missing '://'"),
        ("XEN:///", "bad scheme"),
        ("x.y:///", "bad scheme"),
        ("xen://host:99999/", "port"),
        ("xen://host:abc/", "port"),
        ("xen://host:/", "empty port"),
        ("xen://a b/", "whitespace"),
        ("+ssh://x/", "empty scheme"),
        ("xen+://x/", "bad transport"),
        ("xen://@h/", "empty user"),
        ("xen://u@/", "needs a host"),
        ("xen://ho$t/", "bad host"),
        ("xen://h:0/", "port 0"),
        ("xen:///\x00", "control"),
    ],
)
def test_invalid_uris_say_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri(text)
    assert why in str(info.value)
    assert info.value.code is virtkit.ErrorCode.INVALID_URI


def test_password_is_never_shown() -> None:
    u = parse_uri("xen+ssh://root:s3cr%40t@host:22/")
    assert u.password == "s3cr@t"
    for shown in (str(u), repr(u), u.full_scheme):
        assert "s3cr" not in shown
    assert u.unredacted() == "xen+ssh://root:s3cr%40t@host:22/"


def test_password_not_shown_in_errors() -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri("xen://root:hunter2@host:bad/")
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in (info.value.uri or "")


def test_not_a_string() -> None:
    with pytest.raises(InvalidURI, match="must be a string"):
        parse_uri(42)  # type: ignore[arg-type]


_hostchars = string.ascii_lowercase + string.digits + "-."


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(st.text(max_size=80) | st.from_regex(r"[a-z+A-Z]{1,6}://[^\s]{0,40}", fullmatch=True))
def test_fuzz_any_text_parses_or_raises_invalid_uri(text: str) -> None:
    try:
        u = parse_uri(text)
    except InvalidURI as exc:
        assert exc.message
    else:
        assert parse_uri(str(u)).scheme == u.scheme


@settings(max_examples=200, deadline=None)
@given(
    scheme=st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True),
    transport=st.none() | st.from_regex(r"[a-z][a-z0-9]{0,5}", fullmatch=True),
    host=st.none() | st.text(_hostchars, min_size=1, max_size=20).filter(lambda h: h[0].isalnum()),
    port=st.none() | st.integers(1, 65535),
    path=st.from_regex(r"(/[a-zA-Z0-9._-]{0,10}){1,3}", fullmatch=True),
    user=st.none() | st.text(string.ascii_letters, min_size=1, max_size=8),
    password=st.none() | st.text(string.printable.strip(), min_size=1, max_size=12),
)
def test_fuzz_round_trip(
    scheme: str,
    transport: str | None,
    host: str | None,
    port: int | None,
    path: str,
    user: str | None,
    password: str | None,
) -> None:
    if host is None:
        port = user = password = None
    if user is None:
        password = None
    u = virtkit.URI(scheme, transport, user, password, host, port, path)
    again = parse_uri(u.unredacted())
    assert again == u
    assert again.password == password
    if password:
        assert f":{password}@" not in str(again)


# Passwords holding '/', '?', '#' or '@' unencoded: the parser cannot tell where they end, so
# the whole span that may be a password is cut from every message (issue 12, item 1).
@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("xen://u:s3/cret@127.0.0.1:1/", "xen://u@127.0.0.1:1/"),
        ("xen://u:pa?ss@127.0.0.1:1/", "xen://u@127.0.0.1:1/"),
        ("xen://u:p#ss@h/", "xen://u@h/"),
        ("xen://u:pa@ss@h:x/", "xen://u@h:x/"),
        ("xen://u:1/cret@127.0.0.1:1/", "xen://u@127.0.0.1:1/"),  # would parse: port 1, path /cret@...
        ("xen://u:a@b/c@h/", "xen://u@h/"),  # would parse: password 'a', host 'b'
        ("xen+ssh://root:hunter2@host:bad/", "xen+ssh://root@host:bad/"),
        ("xen://root:hunter2@[::1/", "xen://root@[::1/"),
        ("xen://root:hunter2@h/?a=%zz&b", "xen://root@h/?a=%zz&b"),
    ],
)
def test_no_piece_of_a_password_in_errors(text: str, shown: str) -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri(text)
    assert info.value.uri == shown
    secret = text[text.index(":", 6) + 1 : text.rindex("@")]
    # nothing after "invalid URI '...': " quotes the input when a password may be in it
    assert info.value.message.startswith(f"invalid URI {shown!r}: ")
    reason = info.value.message.removeprefix(f"invalid URI {shown!r}: ")
    assert not any(secret[i : i + 3] in reason for i in range(len(secret) - 2)), reason


def test_at_sign_after_the_host_says_how_to_encode() -> None:
    with pytest.raises(InvalidURI, match="percent-encode '@' as %40"):
        parse_uri("xen://u:1/cret@127.0.0.1:1/")
    assert parse_uri("xen://u:1%2Fcret@127.0.0.1:1/").password == "1/cret"


_MARK = "~q~"  # in every generated password and in no message: a leaked piece of it shows


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(
    before=st.text(string.printable.strip(), max_size=8),
    after=st.text(string.printable.strip(), max_size=8),
    host=st.sampled_from(["127.0.0.1", "host", "[::1]", "h:8000", "h:x", ""]),
    tail=st.sampled_from(["/", "", "/path", "/?a=b", "?x", "#frag", "/x@y"]),
    scheme=st.sampled_from(["xen", "xen+ssh", "test", "Xen"]),
)
def test_fuzz_password_never_shown(before: str, after: str, host: str, tail: str, scheme: str) -> None:
    """Property: no piece of a password appears in a parsed URI's str/repr or in any error's text."""
    password = before + _MARK + after
    try:
        u = parse_uri(f"{scheme}://admin:{password}@{host}{tail}")
    except InvalidURI as exc:
        shown = f"{exc} {exc.uri} {exc.to_dict()}"
    else:
        shown = f"{u} {u!r}"
        assert parse_uri(u.unredacted()) == u
    assert _MARK not in shown


# The local form (scheme[+transport]:///path) is parsed without urllib.parse at start-up: its
# result must be exactly the general parser's, for every text the shortcut takes.
@pytest.mark.parametrize(
    "text", ["xen:///", "test:///default", "xen+ssh:///", "qemu:///system", "test:////x", "a-1+b-2:///a.b_c~d/-/"]
)
def test_the_local_form_is_the_general_parsers_result(text: str) -> None:
    assert _uri._local(text) is not None
    assert parse_uri(text) == _uri._local(text) == _uri._parse(text)


@pytest.mark.parametrize(
    "text", ["xen://", "Xen:///", "xen:///a b", "xen:///%41", "xen:///?a=1", "xen:///#f", "xen+:///", "x.y:///"]
)
def test_other_texts_take_the_general_parser(text: str) -> None:
    assert _uri._local(text) is None


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(
    st.from_regex(_uri._LOCAL, fullmatch=True)
    | st.from_regex(r"[a-z+\-]{1,8}:///[^\s]{0,20}", fullmatch=True)
    | st.from_regex(r"[a-zA-Z0-9+.\-]{0,6}:?/{0,4}[A-Za-z0-9._~/%?#+:\- \n]{0,10}", fullmatch=True)
)
def test_fuzz_the_local_form_is_the_general_parsers_result(text: str) -> None:
    assert (_uri._local(text) is not None) == bool(re.match(_uri._LOCAL, text))  # the pattern, read without re
    if _uri._local(text) is not None:
        assert parse_uri(text) == _uri._local(text) == _uri._parse(text)
