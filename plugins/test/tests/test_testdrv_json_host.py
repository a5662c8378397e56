"""test:///ABS/PATH.json: the documented host format, and clear errors for bad files and URIs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

import virtkit
import virtkit_test
from virtkit import DomainState

GOOD: dict[str, Any] = {
    "hostname": "lab-host",
    "node": {"model": "aarch64", "memory": 8388608, "cpus": 8, "mhz": 2000},
    "domains": [
        {"name": "dom0", "id": 0, "memory": 1048576, "vcpus": 2, "os_type": "linux", "persistent": False},
        {"name": "guest", "uuid": "00000000-0000-4000-8000-000000000001", "memory": 262144, "max_memory": 524288},
        {"name": "sleepy", "state": "paused", "id": 7, "memory": 1024, "cpu_time": 42},
        {"name": "spare", "state": "shutoff", "memory": 2048, "vcpus": 2, "max_vcpus": 4, "on_reboot": "destroy"},
        {"name": "later", "memory": 1024, "devices": [{"type": "disk", "path": "/img"}], "extra": {"k": 1}},
    ],
}


def _write(tmp_path: Path, data: object, name: str = "host.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return path


def test_loads_a_described_host(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    with virtkit.open(f"test://{path}") as conn:
        assert conn.hostname() == "lab-host"
        node = conn.node_info()
        assert (node.model, node.memory, node.cpus, node.mhz) == ("aarch64", 8388608, 8, 2000)
        assert (node.nodes, node.sockets, node.cores, node.threads) == (2, 2, 2, 2)  # defaults kept
        # ids: explicit ones kept, missing ones of active domains follow the highest, in file order
        assert conn.list_domains() == [0, 7, 8, 9]
        assert [d.name for d in conn.domains()] == ["dom0", "sleepy", "guest", "later"]
        assert conn.list_defined_domains() == ["spare"]
        guest = conn.lookup_by_name("guest")
        assert guest.uuid == uuid.UUID("00000000-0000-4000-8000-000000000001")
        assert (guest.info().memory, guest.max_memory()) == (262144, 524288)
        sleepy = conn.lookup_by_id(7)
        assert sleepy.info().state is DomainState.PAUSED
        assert sleepy.info().cpu_time == 42
        spare = conn.lookup_by_name("spare")
        assert spare.config().on_reboot == "destroy"
        later = conn.lookup_by_name("later").config()
        assert later.devices == ({"type": "disk", "path": "/img"},)
        assert later.extra == {"k": 1}
        dom0 = conn.lookup_by_id(0)
        dom0.destroy()  # transient: gone
        with pytest.raises(virtkit.NoSuchDomain):
            conn.lookup_by_name("dom0")
        spare.start()
        assert spare.id == 10


def test_uuid_without_one_is_stable_per_name(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    with virtkit.open(f"test://{path}") as a, virtkit.open(f"test://{path}") as b:
        assert a.lookup_by_name("dom0").uuid == b.lookup_by_name("dom0").uuid
        assert a.lookup_by_name("dom0").uuid != a.lookup_by_name("later").uuid


def test_empty_object_is_an_empty_default_node(tmp_path: Path) -> None:
    with virtkit.open(f"test://{_write(tmp_path, {})}") as conn:
        assert conn.hostname() == "test-host"
        assert conn.list_domains() == []
        assert conn.node_info().free_memory == 3 * 1024 * 1024


def test_the_default_host_data_round_trips_through_a_file(tmp_path: Path) -> None:
    path = _write(tmp_path, virtkit_test.DEFAULT_HOST_DATA)
    assert virtkit_test.load_host(str(path)) == virtkit_test.DEFAULT_HOST


def test_the_file_is_read_at_each_open_and_never_written(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD)
    before = path.read_bytes()
    with virtkit.open(f"test://{path}") as conn:
        conn.lookup_by_name("guest").destroy()
    assert path.read_bytes() == before
    with virtkit.open(f"test://{path}") as conn:
        assert conn.lookup_by_name("guest").info().state is DomainState.RUNNING


def test_percent_encoded_path(tmp_path: Path) -> None:
    path = _write(tmp_path, GOOD, "my host.json")
    with virtkit.open("test://" + str(path).replace(" ", "%20")) as conn:
        assert conn.hostname() == "lab-host"


def _dom(**kw: Any) -> dict[str, Any]:
    return {"domains": [{"name": "a", "memory": 1024, **kw}]}


BAD: list[tuple[str, object, str]] = [
    ("not-json", "{nope", "Expecting property name"),
    ("not-object", "[1, 2]", "host: must be a JSON object, got list"),
    ("unknown-top", {"hostnam": "x"}, r"unknown key\(s\) 'hostnam'"),
    ("unknown-node", {"node": {"ram": 1}}, r"node: unknown key\(s\) 'ram'"),
    ("unknown-domain", _dom(colour="red"), r"domains\[0\]: unknown key\(s\) 'colour'"),
    ("dup-key", '{"hostname": "a", "hostname": "b"}', "duplicate key 'hostname'"),
    ("hostname-type", {"hostname": 5}, "hostname: must be a non-empty string, got int 5"),
    ("node-type", {"node": {"cpus": "16"}}, "node.cpus: must be an integer, got str"),
    ("node-zero", {"node": {"memory": 0}}, "node.memory: must be between 1 and"),
    ("domains-type", {"domains": {"a": 1}}, "domains: must be a list"),
    ("domain-type", {"domains": ["a"]}, r"domains\[0\]: must be a JSON object"),
    ("no-name", {"domains": [{"memory": 1}]}, r"domains\[0\].name: must be a non-empty string"),
    ("no-memory", {"domains": [{"name": "a"}]}, r"domains\[0\].memory: missing"),
    ("memory-bool", _dom(memory=True), r"domains\[0\].memory: must be an integer, got bool"),
    ("memory-float", _dom(memory=1.5), r"domains\[0\].memory: must be an integer, got float"),
    ("mem-over-max", _dom(max_memory=512), "memory 1024 KiB is above max_memory 512"),
    ("vcpus-over-max", _dom(vcpus=4, max_vcpus=2), "vcpus 4 is above max_vcpus 2"),
    ("bad-state", _dom(state="crashed"), r"domains\[0\].state: 'crashed' is not one of"),
    ("bad-uuid", _dom(uuid="xyz"), r"domains\[0\].uuid: not a UUID: 'xyz'"),
    ("uuid-int", _dom(uuid=5), r"domains\[0\].uuid: not a UUID: 5"),
    ("neg-id", _dom(id=-1), r"domains\[0\].id: must be between 0 and"),
    ("persistent-str", _dom(persistent="yes"), r"persistent: must be true or false"),
    ("autostart-int", _dom(autostart=1), r"autostart: must be true or false"),
    ("autostart-transient", _dom(persistent=False, autostart=True), "a transient domain cannot autostart"),
    ("off-with-id", _dom(state="shutoff", id=3), "a shut-off domain has no id"),
    ("off-transient", _dom(state="shutoff", persistent=False), "must be persistent"),
    ("off-cpu", _dom(state="shutoff", cpu_time=5), "has used no cpu time"),
    ("bad-action", _dom(on_poweroff="explode"), r"on_poweroff: 'explode' is not one of"),
    ("devices-type", _dom(devices={"a": 1}), r"devices: must be a list"),
    ("device-type", _dom(devices=[1]), r"devices\[0\]: must be an object"),
    ("extra-type", _dom(extra=[1]), r"extra: must be an object"),
    (
        "dup-name",
        {"domains": [{"name": "a", "memory": 1}, {"name": "a", "memory": 1}]},
        r"domains\[1\].name: duplicate name 'a' \(also domains\[0\]\)",
    ),
    (
        "dup-uuid",
        {"domains": [{"name": n, "memory": 1, "uuid": "00000000-0000-4000-8000-000000000009"} for n in "ab"]},
        r"domains\[1\].uuid: duplicate uuid 00000000-0000-4000-8000-000000000009",
    ),
    (
        "dup-id",
        {"domains": [{"name": n, "memory": 1, "id": 4} for n in "ab"]},
        r"domains\[1\].id: duplicate id 4 \(also domains\[0\]\)",
    ),
]


@pytest.mark.parametrize(("data", "match"), [(d, m) for _, d, m in BAD], ids=[i for i, _, _ in BAD])
def test_bad_file_is_an_invalid_argument_naming_file_and_problem(tmp_path: Path, data: object, match: str) -> None:
    path = _write(tmp_path, data)
    with pytest.raises(virtkit.InvalidArgument, match=match) as err:
        virtkit_test.load_host(str(path))
    assert str(path) in str(err.value)
    # Through the public API the problem reaches the caller too (the core reports it per plugin).
    with pytest.raises(virtkit.VirtError, match=match) as err2:
        virtkit.open(f"test://{path}")
    assert str(path) in str(err2.value)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.json"
    with pytest.raises(virtkit.VirtError, match="No such file or directory"):
        virtkit.open(f"test://{path}")


def test_directory_is_not_a_host(tmp_path: Path) -> None:
    with pytest.raises(virtkit.InvalidArgument, match="is not a regular file"):
        virtkit_test.load_host(str(tmp_path))


def test_non_utf8_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"hostname": "h\xe9"}')
    with pytest.raises(virtkit.InvalidArgument, match="is not UTF-8 text"):
        virtkit_test.load_host(str(path))


@pytest.mark.parametrize(
    ("uri", "match"),
    [
        ("test:///", "name a host: test:///default or test:///ABSOLUTE/PATH.json"),
        ("test://", "name a host"),
        ("test:///default?x=1", "take no query or fragment"),
        ("test:///default#frag", "take no query or fragment"),
        ("test://somehost/default", "the embedded test driver is local"),
        ("test+ssh://somehost/default", "takes no transport"),
    ],
)
def test_bad_test_uris_are_explained(uri: str, match: str) -> None:
    with pytest.raises(virtkit.VirtError, match=match):
        virtkit.open(uri)


def test_the_readme_example_is_a_valid_host(tmp_path: Path) -> None:
    readme = Path(__file__).parents[1] / "README.md"
    example = readme.read_text(encoding="utf-8").split("```json\n", 1)[1].split("```", 1)[0]
    with virtkit.open(f"test://{_write(tmp_path, example)}") as conn:
        assert conn.hostname() == "lab-host"
        assert conn.list_domains() == [0, 1, 2]
        assert conn.list_defined_domains() == ["spare"]
