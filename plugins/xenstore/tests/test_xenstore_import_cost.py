"""What the cold CLI pays for this plugin: the entry point's import loads the plugin object
only (every xen:// URI imports it, and a host without xenstored declines), and an open loads
the client and driver without the modules of transactions, watches and their back-off."""

from __future__ import annotations

import subprocess
import sys


def _new_modules(code: str) -> list[str]:
    probe = f"import sys, virtkit; before = set(sys.modules); {code}; print(sorted(set(sys.modules) - before))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    loaded: list[str] = eval(out.stdout)  # a list literal printed by the child
    return loaded


def test_the_entry_point_loads_the_plugin_object_only() -> None:
    loaded = _new_modules("import virtkit_xenstore; virtkit_xenstore.plugin")
    assert [m for m in loaded if m.startswith("virtkit_xenstore")] == [
        "virtkit_xenstore",
        "virtkit_xenstore._plugin",
        "virtkit_xenstore._version",
    ]
    assert "socket" not in loaded


def test_a_connection_loads_no_transaction_watch_or_random() -> None:
    loaded = _new_modules("import virtkit_xenstore; virtkit_xenstore.Driver; virtkit_xenstore.Client")
    assert "virtkit_xenstore._driver" in loaded and "virtkit_xenstore._stats" in loaded
    for lazy in ("virtkit_xenstore._transaction", "virtkit_xenstore._watch", "random"):
        assert lazy not in loaded, loaded


def test_the_lazy_names_are_the_modules_objects() -> None:
    import virtkit_xenstore
    from virtkit_xenstore import _client, _driver, _transaction, _watch, _wire

    assert virtkit_xenstore.Transaction is _transaction.Transaction
    assert virtkit_xenstore.Watch is _watch.Watch and virtkit_xenstore.WatchEvent is _watch.WatchEvent
    assert virtkit_xenstore.Client is _client.Client and virtkit_xenstore.Driver is _driver.Driver
    assert virtkit_xenstore.PathNotFound is _wire.PathNotFound
    assert set(virtkit_xenstore.__all__) <= set(dir(virtkit_xenstore)) | set(virtkit_xenstore._LAZY)


def test_a_listing_connection_loads_no_typing_or_logging() -> None:
    """Issue 14: the modules an open, a listing and domstats load (driver, client, conn, channel,
    ops, wire, stats) import none of these; logging loads with the first record (_driver.log)."""
    off = ("typing", "dataclasses", "inspect", "logging", "subprocess", "tempfile", "shutil", "random")
    code = (
        f"import sys\nfor m in {off!r}:\n    sys.modules.pop(m, None)\n"
        "import virtkit_xenstore\nfrom virtkit_xenstore import _channel, _client, _conn, _driver, _ops, _stats, _wire\n"
        f"print(' '.join(m for m in {off!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == []


def test_the_records_are_still_tuples_with_names() -> None:
    from virtkit_xenstore import Perm, WatchEvent

    p = Perm(3, "r")
    assert (p.domid, p.access, str(p), repr(p)) == (3, "r", "r3", "Perm(domid=3, access='r')")
    assert p == (3, "r") and p._replace(access="w") == Perm(3, "w")
    assert repr(WatchEvent("/a", "t")) == "WatchEvent(path='/a', token='t')"
