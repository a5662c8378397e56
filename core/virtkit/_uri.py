"""Connection URIs as libvirt writes them: ``scheme[+transport]://[user@]host[:port]/path?query``."""

from __future__ import annotations

import re

from ._errors import InvalidURI

TYPE_CHECKING = False
if TYPE_CHECKING:
    from dataclasses import dataclass, field
else:
    from ._record import dataclass, field  # no dataclasses at start-up: see _record

__all__ = ["URI", "parse_uri"]

# Patterns are compiled on first use (re's own cache): a cold start that opens a local URI
# compiles none of them.
_WORD = r"[a-z][a-z0-9-]*\Z"  # a scheme or transport; no dot: entry-point names use it as separator
_HOST = r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._~%-]+)\Z"
# A local URI with a plain path (``xen:///``, ``test:///default``): what a command line names
# most. urllib.parse (with ipaddress) is not on the start-up path for it: this form's result is
# exactly the general parser's (a test compares the two), and any other text takes that parser.
# _local() reads this pattern with str methods (a test holds the two equal).
_LOCAL = r"([a-z][a-z0-9-]*)(?:\+([a-z][a-z0-9-]*))?://(/[A-Za-z0-9._~/-]*)\Z"
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_WORD_CHARS = _LOWER | frozenset("0123456789-")
_PATH_CHARS = _WORD_CHARS | frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ._~/")


@dataclass(frozen=True, slots=True)
class URI:
    """A parsed connection URI. ``str()`` never contains the password.

    ``password`` is kept (not shown in ``repr``) for drivers that authenticate with it;
    :meth:`unredacted` rebuilds the full text for them.
    """

    scheme: str
    transport: str | None = None
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    host: str | None = None
    port: int | None = None
    path: str = ""
    query: tuple[tuple[str, str], ...] = ()
    fragment: str | None = None

    @property
    def params(self) -> dict[str, str]:
        """Query parameters; the last value wins for a repeated key."""
        return dict(self.query)

    @property
    def is_local(self) -> bool:
        """True for ``xen:///`` style URIs: no host named (libvirt's "local hypervisor")."""
        return not self.host

    @property
    def full_scheme(self) -> str:
        return f"{self.scheme}+{self.transport}" if self.transport else self.scheme

    def _render(self, password: str | None) -> str:
        if self.user is not None or self.query:
            import urllib.parse
        auth = ""
        if self.user is not None:
            auth = urllib.parse.quote(self.user, safe="")
            if password is not None:
                auth += ":" + urllib.parse.quote(password, safe="")
            auth += "@"
        host = self.host or ""
        if ":" in host:
            host = f"[{host}]"  # IPv6 literal
        port = f":{self.port}" if self.port is not None else ""
        query = ("?" + urllib.parse.urlencode(self.query, safe="/,:")) if self.query else ""
        frag = f"#{self.fragment}" if self.fragment is not None else ""
        return f"{self.full_scheme}://{auth}{host}{port}{self.path}{query}{frag}"

    def __str__(self) -> str:
        return self._render(None)

    def unredacted(self) -> str:
        """The URI with its password: for a driver's authentication only, never for logs."""
        return self._render(self.password)


def _secret_span(text: str) -> tuple[int, int] | None:
    """Where a password may sit in text that may not parse: from the first ':' after '//' to the
    last '@'. A password holding '/', '?', '#' or '@' unencoded runs past where a parser would
    end the authority, so only this widest reading is safe to cut."""
    start = text.find("://")
    at = text.rfind("@")
    if start < 0 or at < start + 3:
        return None
    colon = text.find(":", start + 3, at)
    return None if colon < 0 else (colon, at)


def _redact_raw(text: str) -> str:
    """``text`` without anything that may be a password (``scheme://user@host...`` is left)."""
    span = _secret_span(text)
    return text if span is None else text[: span[0]] + text[span[1] :]


def _fail(text: str, why: str, detail: str = "") -> InvalidURI:
    # ``detail`` quotes parts of the input (a host, a port, the parser's words): dropped when the
    # text may hold a password, since those parts can be pieces of it.
    shown = _redact_raw(text)
    if detail and shown == text:
        why = f"{why} {detail}"
    return InvalidURI(f"invalid URI {shown!r}: {why}", uri=shown)


def parse_uri(text: str) -> URI:
    """Parse and validate ``text``; every defect raises :class:`InvalidURI` saying what is wrong."""
    if not isinstance(text, str):
        raise InvalidURI(f"a URI must be a string, not {type(text).__name__}")
    if not text:
        raise InvalidURI("invalid URI '': empty")
    return _local(text) or _parse(text)


def _local(text: str) -> URI | None:
    """The URI when ``text`` has the local form (``_LOCAL``), else None."""
    head, sep, path = text.partition("://")
    if not sep or not path.startswith("/") or not _PATH_CHARS.issuperset(path):
        return None
    scheme, plus, transport = head.partition("+")
    if not _is_word(scheme) or (plus and not _is_word(transport)):
        return None
    return URI(scheme=scheme, transport=transport if plus else None, path=path)


def _is_word(text: str) -> bool:
    return bool(text) and text[0] in _LOWER and _WORD_CHARS.issuperset(text)


def _parse(text: str) -> URI:
    """The general parser: every form, every defect."""
    import urllib.parse

    if any(c.isspace() or not c.isprintable() for c in text):
        raise _fail(text, "contains whitespace or control characters")
    if "://" not in text:
        raise _fail(text, "missing '://' (expected scheme://[host]/path, e.g. xen:/// or test:///default)")
    scheme_part, _, _ = text.partition("://")
    scheme, plus, transport = scheme_part.partition("+")
    if not scheme:
        raise _fail(text, "empty scheme")
    if scheme != scheme.lower() or not re.match(_WORD, scheme):
        raise _fail(text, "bad scheme (lower-case letters, digits, '-')", repr(scheme))
    if plus and (not transport or not re.match(_WORD, transport)):
        raise _fail(text, "bad transport after '+'", repr(transport))
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise _fail(text, "bad port or host", f"({exc})") from None
    netloc = parts.netloc
    span = _secret_span(text)
    if span is not None and span[1] >= text.find("://") + 3 + len(netloc):
        # An '@' after the authority with a ':' before it: a password holding '/', '?', '#' or
        # '@' unencoded, or a literal '@' in the path or query. Either way, refuse to guess.
        raise _fail(text, "'@' after the host: percent-encode '@' as %40, and '/', '?', '#' in a password")
    user = password = None
    if "@" in netloc:
        userinfo = netloc.rpartition("@")[0]
        u, colon, p = userinfo.partition(":")
        if not u:
            raise _fail(text, "empty user name before '@'")
        user = urllib.parse.unquote(u)
        password = urllib.parse.unquote(p) if colon else None
    host = parts.hostname if netloc.rpartition("@")[2] else None
    hostpart = netloc.rpartition("@")[2]
    hostonly = hostpart.rsplit(":", 1)[0] if not hostpart.endswith("]") and ":" in hostpart else hostpart
    if hostonly and not re.match(_HOST, hostonly):
        raise _fail(text, "bad host", repr(hostonly))
    if hostpart.endswith(":"):
        raise _fail(text, "empty port after ':'")
    if port is not None and port == 0:
        raise _fail(text, "port 0 is not a port")
    if user is not None and not host:
        raise _fail(text, "a user name needs a host")
    try:
        query = tuple(urllib.parse.parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query)))
    except ValueError as exc:
        raise _fail(text, "bad query", f"({exc})") from None
    return URI(
        scheme=scheme,
        transport=transport or None,
        user=user,
        password=password,
        host=host or None,
        port=port,
        path=parts.path,
        query=query,
        fragment=parts.fragment or None,
    )
