"""From a URI to the child's argv and the far URI: a list, never a shell line; options ended
before the host; each remote word quoted for the far user's shell."""

from __future__ import annotations

import shlex

import pytest

import virtkit
from virtkit_remote import endpoint, far_uri


def _ep(text: str, control: str | None = None) -> tuple[list[str], str]:
    ep = endpoint(virtkit.parse_uri(text), control)
    return ep.argv, ep.far_uri


def test_ssh_argv_with_every_parameter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIRTKIT_SSH", raising=False)
    argv, far = _ep("xen+ssh://root@dom0.lab:2222/?keyfile=/k/id&no_verify=1&no_tty=1&command=/opt/vk/bin/virtkit")
    assert far == "xen:///"
    assert argv == [
        "ssh", "-T", "-e", "none", "-o", "BatchMode=yes", "-p", "2222", "-l", "root", "-i", "/k/id",
        "-o", "StrictHostKeyChecking=no", "--", "dom0.lab", "/opt/vk/bin/virtkit serve --stdio xen:///",
    ]  # fmt: skip


def test_far_uri_keeps_the_path_and_the_far_parameters_only() -> None:
    uri = virtkit.parse_uri("qemu+ssh://u@h:22/session?keyfile=/k&socket=/run/q.sock&command=vk&control=0#f")
    assert far_uri(uri) == "qemu:///session?socket=/run/q.sock#f"
    assert far_uri(virtkit.parse_uri("xen+ssh://h")) == "xen:///"


def test_remote_words_are_quoted_for_the_far_shell() -> None:
    argv, far = _ep("test+ssh://h/tmp/a%20b'%3Bx.json?command=/opt/my%20vk/virtkit")
    assert far == "test:///tmp/a%20b'%3Bx.json"  # a quote reaches the far shell: quoted there
    assert shlex.split(argv[-1]) == ["/opt/my vk/virtkit", "serve", "--stdio", far]


def test_control_master_options_name_a_private_directory() -> None:
    argv, _ = _ep("test+ssh://h/default", "/run/user/0/virtkit-ssh-0")
    assert "ControlPath=/run/user/0/virtkit-ssh-0/%C" in argv and "ControlPersist=60" in argv
    assert argv.index("ControlMaster=auto") < argv.index("--")
    argv, _ = _ep("test+ssh://h/default?control=0", "/run/user/0/virtkit-ssh-0")
    assert not any(a.startswith("Control") for a in argv)


def test_virtkit_ssh_names_another_ssh_program(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIRTKIT_SSH", "/opt/ssh wrapper")
    assert _ep("test+ssh://h/default")[0][0] == "/opt/ssh wrapper"


def test_ext_runs_the_command_itself() -> None:
    argv, _far = _ep("test+ext:///default?command=/usr/local/bin/vk-in-pod&ns=x")
    assert argv == ["/usr/local/bin/vk-in-pod", "serve", "--stdio", "test:///default?ns=x"]


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("test+ssh://-oProxyJump.evil/default", "cannot be passed to ssh"),
        ("test+ssh://h%25x/default", "cannot be passed to ssh"),
        ("test+ssh://-l@h/default", "cannot be passed to ssh"),
        ("test+ssh://a%0Ab@h/default", "cannot be passed to ssh"),
        ("test+ssh://u:pw@h/default", "password"),
        ("test+ssh:///default", "needs a host"),
        ("test+ext:///default", r"needs \?command="),
        ("test+tcp://h/default", r"not \+tcp"),
    ],
)
def test_uris_that_cannot_be_passed_are_invalid(text: str, words: str) -> None:
    with pytest.raises(virtkit.InvalidURI, match=words) as e:
        endpoint(virtkit.parse_uri(text))
    assert "pw" not in str(e.value)
