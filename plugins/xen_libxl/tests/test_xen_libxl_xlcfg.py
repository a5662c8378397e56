"""xl config files: libxlutil's grammar, the keys xl reads, and the DomainConfig mapping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import virtkit
from virtkit import DomainConfig, InvalidArgument
from virtkit_xen_libxl import _xlcfg

DATA = Path(__file__).parent / "data"
LIBVIRT_CFGS = sorted(DATA.glob("test-*.cfg"))


@pytest.mark.parametrize("path", LIBVIRT_CFGS, ids=[p.name for p in LIBVIRT_CFGS])
def test_libvirt_configs_parse_and_survive_a_round_trip(path: Path) -> None:
    settings = _xlcfg.parse(path.read_text(), path.name)
    cfg = _xlcfg.config_from_xl(settings)
    assert cfg.name == settings["name"]
    assert cfg.memory == int(settings["memory"]) * 1024
    again = _xlcfg.parse(_xlcfg.config_to_xl(cfg))
    for key, value in settings.items():
        if key == "builder":
            continue  # becomes type
        if key == "cmdline":
            assert again["extra"] == value  # written back as extra (root kept beside it)
            continue
        assert again[key] == value, key
    assert _xlcfg.config_from_xl(again) == cfg


def test_paravirt_fields_map_to_domainconfig() -> None:
    cfg = _xlcfg.load_xl_file(str(DATA / "test-paravirt-cmdline.cfg"))
    assert (cfg.name, cfg.memory, cfg.max_memory, cfg.vcpus) == ("XenGuest2", 394 * 1024, 579 * 1024, 1)
    assert (cfg.kernel, cfg.initrd, cfg.cmdline) == ("/tmp/vmlinuz", "/tmp/initrd", "root=/dev/xvda1 console=hvc0")
    assert (cfg.on_poweroff, cfg.on_reboot, cfg.on_crash) == ("destroy", "restart", "restart")
    assert str(cfg.uuid) == "c7a5fdb2-cdaf-9455-926a-d65c16db1809"
    assert cfg.extra["xl"]["vif"] == ["mac=00:16:3e:66:92:9c,bridge=xenbr1,script=vif-bridge"]


def test_hvm_config_is_hvm() -> None:
    cfg = _xlcfg.load_xl_file(str(DATA / "test-fullvirt-ovmf.cfg"))
    assert cfg.os_type == "hvm"
    assert _xlcfg.xl_settings(cfg)["type"] == "hvm"


def test_grammar_strings_escapes_lists_append_and_semicolons() -> None:
    text = (
        "name = 'a'; memory = 0x40\n"
        'extra = "x\\ty\\"z\\x41\\101"  # comment\n'
        "disk = [ 'one',\n  'two', ]\n"
        "disk += [ 'three' ]\n"
        "vnuma = [ [ 'pnode=0', 'size=64' ], [ 'pnode=0' ] ]\n"
    )
    s = _xlcfg.parse(text)
    assert s["name"] == "a" and s["memory"] == 64
    assert s["extra"] == 'x\ty"zAA'
    assert s["disk"] == ["one", "two", "three"]
    assert s["vnuma"] == [["pnode=0", "size=64"], ["pnode=0"]]
    assert _xlcfg.parse(_xlcfg.dump(s)) == s


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('name = "broken\n', "parsing error"),
        ("bogus_key = 1\n", "unknown xl config key 'bogus_key'"),
        ("name = \n", "expected a string"),
        ("name 'x'\n", "expected '='"),
        ("disk = [ 'a' 'b' ]\n", "expected ',' or ']'"),
        ("name = 'a' 'b'\n", "end of the setting"),
        ("memory = 1\nmemory += 'x'\n", "'+='"),
        ("= 3\n", "expected a setting name"),
    ],
)
def test_syntax_errors_are_invalid_argument_with_the_line(text: str, needle: str) -> None:
    with pytest.raises(InvalidArgument, match=r"<config>:[12]: ") as info:
        _xlcfg.parse(text)
    assert needle in info.value.message


def test_absurd_nesting_is_refused() -> None:
    deep = "vnuma = " + "[" * 5000 + "]" * 5000 + "\n"
    with pytest.raises(InvalidArgument, match="nested deeper"):
        _xlcfg.parse(deep)


def test_files_that_are_not_regular_or_too_big_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        _xlcfg.load_xl_file(str(fifo))
    big = tmp_path / "big.cfg"
    with big.open("wb") as f:
        f.truncate(virtkit.MAX_CONFIG_BYTES + 1)
    with pytest.raises(InvalidArgument, match="larger than"):
        _xlcfg.load_xl_file(str(big))
    with pytest.raises(InvalidArgument, match="larger than"):
        _xlcfg.parse(" " * (virtkit.MAX_CONFIG_BYTES + 1))


def test_domainconfig_to_xl_and_back() -> None:
    cfg = DomainConfig(
        name="g",
        memory=131072,
        max_memory=262144,
        vcpus=1,
        max_vcpus=2,
        kernel="/k",
        initrd="/i",
        cmdline="console=hvc0",
        on_reboot="destroy",
        devices=({"type": "disk", "path": "/img", "readonly": True},),
        extra={"xl": {"vif": ["bridge=br0"]}},
    )
    s = _xlcfg.parse(_xlcfg.config_to_xl(cfg))
    assert s["memory"] == 128 and s["maxmem"] == 256 and s["maxvcpus"] == 2
    assert s["disk"] == ["format=raw, vdev=xvda, access=ro, target=/img"]
    back = _xlcfg.config_from_xl(s)
    assert (back.memory, back.max_memory, back.kernel, back.on_reboot) == (131072, 262144, "/k", "destroy")
    assert back.extra["xl"]["vif"] == ["bridge=br0"]


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"memory": 1000}, "whole number of MiB"),
        ({"max_memory": 1024}, "below memory"),
        ({"max_vcpus": 1, "vcpus": 2}, "below vcpus"),
        ({"on_crash": "explode"}, "unknown action"),
        ({"os_type": "windows"}, "os_type"),
        ({"extra": {"qemu_args": []}}, "extra key"),
        ({"extra": {"xl": {"bogus": 1}}}, "unknown xl config key"),
        ({"extra": {"xl": {"memory": 1}}}, "duplicates a DomainConfig field"),
        ({"devices": ({"type": "nic"},)}, "not supported"),
        ({"devices": ({"type": "disk", "path": "a,b"},)}, "without commas"),
    ],
)
def test_configs_xl_cannot_express_are_refused(kw: dict[str, object], needle: str) -> None:
    base: dict[str, object] = {"name": "g", "memory": 131072, "kernel": "/k"}
    with pytest.raises(InvalidArgument, match=needle):
        _xlcfg.xl_settings(DomainConfig(**{**base, **kw}))  # type: ignore[arg-type]


def test_missing_name_and_bad_values() -> None:
    with pytest.raises(InvalidArgument, match="no 'name'"):
        _xlcfg.config_from_xl({"memory": 1})
    with pytest.raises(InvalidArgument, match="positive number"):
        _xlcfg.config_from_xl({"name": "a", "memory": "lots"})
    with pytest.raises(InvalidArgument, match="not a UUID"):
        _xlcfg.config_from_xl({"name": "a", "uuid": "nope"})
    with pytest.raises(InvalidArgument, match="unknown action"):
        _xlcfg.config_from_xl({"name": "a", "on_reboot": "later"})
