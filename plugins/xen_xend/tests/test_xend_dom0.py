"""Domain-0 (issue 12, item 6): what xend refuses on dom0 is InvalidOperation, as on xen_hyper.

The driver refuses before sending anything; xend's own refusals (XendDomain's "Cannot pause
privileged domain 0", XendDomainInfo's "Domain 0 cannot be shutdown"), should a request reach it
anyway, map to the same class.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import virtkit
from virtkit_xen_xend import XendError
from virtkit_xen_xend.emulator import XendEmulator, XendFault

OPS: dict[str, Callable[[virtkit.Domain], None]] = {
    "suspend": lambda d: d.suspend(),
    "shutdown": lambda d: d.shutdown(),
    "reboot": lambda d: d.reboot(),
    "destroy": lambda d: d.destroy(),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_dom0_is_refused_as_an_invalid_operation(emu: XendEmulator, conn: virtkit.Connection, op: str) -> None:
    dom0 = conn.lookup_by_id(0)
    before = emu.requests
    with pytest.raises(virtkit.InvalidOperation, match="Domain-0") as info:
        OPS[op](dom0)
    assert info.value.driver == "xen_xend"
    assert emu.requests - before == 1  # the record is read; nothing is sent to act on dom0
    assert dom0.info().state is virtkit.DomainState.RUNNING


def test_resume_of_dom0_is_refused_too(conn: virtkit.Connection) -> None:
    with pytest.raises(virtkit.InvalidOperation):
        conn.lookup_by_id(0).resume()


@pytest.mark.parametrize(
    ("attr", "message", "call"),
    [
        ("pause", "Cannot pause privileged domain 0", lambda d: d.suspend()),
        ("destroy", "Cannot destroy privileged domain 0", lambda d: d.destroy()),
        ("shutdown", "Domain 0 cannot be shutdown", lambda d: d.shutdown()),
        ("shutdown", "Domain 'rhel5' is not started", lambda d: d.reboot()),
    ],
)
def test_xends_own_refusals_are_invalid_operations(
    emu: XendEmulator,
    conn: virtkit.Connection,
    monkeypatch: pytest.MonkeyPatch,
    attr: str,
    message: str,
    call: Callable[[virtkit.Domain], None],
) -> None:
    def refuse(*_: object) -> None:
        raise XendFault(500, message)

    monkeypatch.setattr(emu.host, attr, refuse)  # as if the record had changed since it was read
    with pytest.raises(virtkit.InvalidOperation, match="xend refused") as info:
        call(conn.lookup_by_name("rhel5"))
    assert isinstance(info.value.__cause__, XendError) and message in info.value.__cause__.message


def test_the_emulator_answers_as_xend_does(emu: XendEmulator) -> None:
    with emu.host.lock:
        d0 = emu.host.find("Domain-0")
        for fn, text in [
            (emu.host.pause, "Cannot pause privileged domain 0"),
            (emu.host.destroy, "Cannot destroy privileged domain 0"),
            (lambda d: emu.host.shutdown(d, "poweroff"), "Domain 0 cannot be shutdown"),
        ]:
            with pytest.raises(XendFault, match=text):
                fn(d0)
