"""Every open attempt is logged SUCCESS / DECLINED / ERROR; passwords never reach the log."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import virtkit


def test_open_attempts_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="virtkit"):
        virtkit.open("fake:///").close()
    text = caplog.text
    assert "SUCCESS fake_good" in text
    assert "DECLINED fake_decliner: no fake daemon socket" in text
    assert "ERROR fake_raises: raised RuntimeError: probe exploded" in text
    assert "ERROR fake.broken failed to load" in text


def test_password_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="virtkit"), pytest.raises(virtkit.NoDriver) as info:
        virtkit.open("fake://admin:topsecret@remote.example/")
    assert "topsecret" not in caplog.text
    assert "topsecret" not in str(info.value)
    assert "fake_good serves local URIs only" in str(info.value)


def _run(code: str) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter: whether logging was ever imported is a property of the process."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


_PLUGINS = """
import sys, virtkit

class Broken:
    virtkit_catalogue = "1.0"
    virtkit_name = "broken_one"
    virtkit_schemes = "x"

    @virtkit.hookimpl
    def open(self, uri, options):
        raise RuntimeError("boom")

class Fine:
    virtkit_catalogue = "1.0"
    virtkit_name = "fine_one"

    @virtkit.hookimpl
    def open(self, uri, options):
        return self

    def connect_get_type(self, *, flags=0): return "Fine"
    def connect_list_domains(self, *, flags=0): return []
    def domain_lookup_by_id(self, id, *, flags=0): raise virtkit.NoSuchDomain("no")
    def domain_lookup_by_name(self, name, *, flags=0): raise virtkit.NoSuchDomain("no")
    def domain_lookup_by_uuid(self, uuid, *, flags=0): raise virtkit.NoSuchDomain("no")
    def domain_get_info(self, dom, *, flags=0): raise virtkit.NoSuchDomain("no")
"""


def test_open_logs_without_importing_logging_until_a_warning() -> None:
    """An INFO record (a SUCCESS attempt) with logging never imported would be dropped: it is
    skipped. An ERROR attempt is a WARNING and still reaches stderr, as it did before."""
    quiet = _run(
        _PLUGINS
        + "virtkit.open('x:///', plugins=[Fine()], entry_points=False).close()\nprint('logging' in sys.modules)\n"
    )
    assert quiet.stdout.strip() == "False" and quiet.stderr == ""
    loud = _run(_PLUGINS + "virtkit.open('x:///', plugins=[Broken(), Fine()], entry_points=False).close()\n")
    assert "open x:///: ERROR broken_one: raised RuntimeError: boom" in loud.stderr


def test_with_logging_configured_every_attempt_is_logged() -> None:
    r = _run(
        "import logging\n"
        "logging.basicConfig(level=logging.INFO, format='%(name)s %(levelname)s %(message)s')\n"
        + _PLUGINS
        + "virtkit.open('x:///', plugins=[Broken(), Fine()], entry_points=False).close()\n"
    )
    assert "virtkit.open WARNING open x:///: ERROR broken_one" in r.stderr
    assert "virtkit.open INFO open x:///: SUCCESS fine_one" in r.stderr


def test_the_cli_configures_logging_when_it_is_first_imported() -> None:
    """At the default verbosity the CLI does not import logging; whoever imports it first (a plugin,
    the core's first warning) finds it configured: the CLI's format, an open's records held back."""
    r = _run(
        "import sys\n"
        "from virtkit._cli_log import setup_logging\n"
        "openlog = setup_logging(0)\n"
        "print('logging' in sys.modules)\n"
        "openlog.hold()\n"
        "import logging\n"
        "log = logging.getLogger('virtkit.some_plugin')\n"
        "log.warning('during a failed open')\n"
        "log.info('below the level')\n"
        "openlog.open_ended(False)\n"
        "openlog.hold()\n"
        "log.warning('during an open that succeeded')\n"
        "openlog.open_ended(True)\n"
        "log.warning('after it')\n"
        "print(type(logging.__loader__).__name__, logging.__spec__.loader is logging.__loader__)\n"
    )
    assert r.stdout.split() == ["False", "SourceFileLoader", "True"]  # the module keeps its own loader
    assert r.stderr.splitlines() == ["virtkit: WARNING: during an open that succeeded", "virtkit: WARNING: after it"]


def test_the_cli_with_v_configures_logging_at_once() -> None:
    r = _run(
        "import sys\n"
        "from virtkit._cli_log import setup_logging\n"
        "setup_logging(1)\n"
        "import logging\n"
        "logging.getLogger('virtkit.open').info('an attempt')\n"
        "print(any(type(f).__name__ == '_WhenImported' for f in sys.meta_path))\n"
    )
    assert r.stdout.strip() == "False" and r.stderr == "virtkit: INFO: an attempt\n"
