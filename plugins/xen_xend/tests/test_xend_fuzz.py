"""Fuzzing the SXP reader, the domain model and the driver's decoding (issue 12, item 7).

The property: whatever xend (or something pretending to be xend) sends, every failure is a
virtkit.VirtError subclass and nothing else escapes. Seeds are the real captured records of
libvirt's test data and the emulator's; mutations splice in absurd numbers, broken quoting and
nesting. Each target runs 2,000 derandomized examples, a few seconds each.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import virtkit
from virtkit_xen_xend import Driver, Reply, XendDomain, config_to_sxp, dumps, join_continuations, parse, parse_one
from virtkit_xen_xend.emulator import default_node, seed_domains

from .conftest import SEXPR2XML

FUZZ = settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])

SEEDS: list[str] = [join_continuations(p.read_text(encoding="utf-8"))[0] for p in sorted(SEXPR2XML.glob("*.sexpr"))]
SEEDS += [dumps(r) for r in seed_domains()]

# what a broken or hostile peer puts where a value goes
NASTY = [
    "1e999", "-1e999", "inf", "-inf", "nan", "-1", "-9", "0", "0x", "0xffffffffffffffffffff", "1.5", "1e18",
    "9" * 30, "9" * 45, "9" * 5000, "'" , '"', "\\", "(", ")", "()", "(())", "''", "'a b'", "\x00", "\x1b[2J",
    "²", "١٢", "ä", "-", "--p---", "------", "??????", "rbpscd", "00000000-0000-0000-0000-00000000000g",
]  # fmt: skip
KEYS = [
    "domid", "name", "uuid", "memory", "maxmem", "vcpus", "vcpu_avail", "online_vcpus", "state", "status",
    "cpu_time", "start_time", "on_poweroff", "on_reboot", "on_crash", "bootloader", "shutdown_reason",
]  # fmt: skip

_atoms = st.one_of(
    st.sampled_from(NASTY), st.sampled_from(NASTY), st.text(max_size=12), st.integers(-(2**70), 2**70).map(str)
)


def _check(fn: Callable[[], object]) -> None:
    """Run ``fn``: success, or a VirtError; anything else fails the test (hypothesis shows the input)."""
    with contextlib.suppress(virtkit.VirtError):
        fn()


def _use(dom: XendDomain) -> None:
    """Everything a caller does with a record."""
    dom.info()
    dom.state_info()
    _ = (dom.ref, dom.active, dom.devices.counts())
    config = dom.to_config()
    config_to_sxp(config)


def _read(text: str) -> None:
    dom = XendDomain.from_text(text)
    _use(dom)


# -- the SXP reader -------------------------------------------------------------------------------


@FUZZ
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=300), st.booleans(), st.booleans())
def test_reader_on_any_text(text: str, lenient: bool, continuation: bool) -> None:
    _check(lambda: parse(text, lenient=lenient, continuation=continuation))


@st.composite
def _mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        cut = draw(st.integers(0, 8))
        piece = draw(st.one_of(st.sampled_from(NASTY), st.sampled_from(["(", ")", " ", "'", "#", "\n"])))
        text = text[:at] + piece + text[at + cut :]
    return text


@FUZZ
@given(_mutated())
def test_reader_on_mutated_records(text: str) -> None:
    _check(lambda: parse(text))


# -- the domain model -----------------------------------------------------------------------------


@FUZZ
@given(_mutated())
def test_model_on_mutated_records(text: str) -> None:
    _check(lambda: _read(text))


@st.composite
def _records(draw: st.DrawFn) -> list[Any]:
    """A real record with some fields replaced by nasty values, or dropped, or nested."""
    base = parse_one(draw(st.sampled_from(SEEDS)), lenient=True)
    assert isinstance(base, list)
    rec: list[Any] = list(base)
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
        rec = [c for c in rec if not (isinstance(c, list) and c and c[0] == key)]
        if draw(st.booleans()):
            val: Any = draw(_atoms) if draw(st.integers(0, 4)) else [draw(_atoms)]
            rec.append([key, val] if draw(st.integers(0, 5)) else [key])
    if draw(st.integers(0, 9)) == 0:
        rec[0] = draw(st.sampled_from(["domain", "vm", "node", "xend.err"]))
    return rec


@FUZZ
@given(_records())
def test_model_on_records_with_nasty_fields(rec: list[Any]) -> None:
    _check(lambda: _use(XendDomain.from_sxp(rec)))
    _check(lambda: _read(dumps(rec)))  # and the same through the writer and the reader


# -- the driver's decoding of replies --------------------------------------------------------------


class _Stub:
    """A transport whose every reply is the one given: the driver's decoding, without a network."""

    where = "stub"
    timeout = 1.0

    def __init__(self, status: int, body: str, content_type: str) -> None:
        self.reply = Reply(status, "R", content_type, body, {})

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, form: Any = None) -> Reply:
        return self.reply

    @contextlib.contextmanager
    def operation(self) -> Iterator[float]:
        yield 0.0

    def close(self) -> None:
        pass


_REF = virtkit.DomainRef("rhel5", uuid.UUID("4f77abd2-3019-58e8-3bab-6fbf2118f880"), 5)
_CALLS: list[Callable[[Driver], object]] = [
    lambda d: d.node_get_info(),
    lambda d: d.connect_get_version(),
    lambda d: d.connect_get_hostname(),
    lambda d: d.connect_list_domains(),
    lambda d: d.connect_list_defined_domains(),
    lambda d: d.domain_lookup_by_name("rhel5"),
    lambda d: d.domain_lookup_by_id(5),
    lambda d: d.domain_get_info(_REF),
    lambda d: d.domain_get_config(_REF),
    lambda d: d.domain_suspend(_REF),
    lambda d: d.domain_get_autostart(_REF),
    lambda d: d.domain_set_autostart(_REF, True),
]
_NODE = dumps(default_node())


@st.composite
def _bodies(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(_mutated())
    if kind == 1:
        return dumps(draw(_records()))
    if kind == 2:
        return "(" + " ".join(dumps(draw(_records())) for _ in range(draw(st.integers(0, 3)))) + ")"
    text = _NODE
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.sampled_from(NASTY)) + text[at + draw(st.integers(0, 6)) :]


@FUZZ
@given(
    st.sampled_from([200, 200, 200, 200, 201, 202, 204, 401, 404, 413, 500, 501, 503]),
    _bodies(),
    st.sampled_from(["application/sxp", "application/sxp", "text/plain", "text/html", ""]),
    st.integers(0, len(_CALLS) - 1),
)
def test_driver_on_any_reply(status: int, body: str, ctype: str, call: int) -> None:
    driver = Driver(_Stub(status, body, ctype), "xen://stub/")  # type: ignore[arg-type]
    _check(lambda: _CALLS[call](driver))
