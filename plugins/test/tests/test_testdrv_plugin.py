"""The plugin contract: metadata, hooks, the entry point, and every catalogue op on the driver."""

from __future__ import annotations

import importlib.metadata
import inspect

import pytest

import virtkit
import virtkit_test
from virtkit import Declined, parse_uri


def test_plugin_metadata() -> None:
    p = virtkit_test.plugin
    assert (p.virtkit_catalogue, p.virtkit_name, p.virtkit_default_uri) == ("1.2", "test", "test:///default")


def test_entry_point_is_installed_under_the_scheme() -> None:
    eps = [ep for ep in importlib.metadata.entry_points(group=virtkit.ENTRY_POINT_GROUP) if ep.name == "test"]
    assert [ep.value for ep in eps] == ["virtkit_test:plugin"]
    assert eps[0].load() is virtkit_test.plugin
    assert importlib.metadata.version("virtkit-test") == virtkit_test.__version__
    # virtkit only, as the range of cores carrying its catalogue (docs/plugins.md §5)
    assert importlib.metadata.requires("virtkit-test") == ["virtkit<1,>=0.2"]


@pytest.mark.parametrize("uri", ["test:///default", "test:///tmp/x.json"])
def test_can_handle_local_test_uris(uri: str) -> None:
    assert virtkit_test.plugin.can_handle(parse_uri(uri)) is True


@pytest.mark.parametrize(
    ("uri", "why"),
    [("xen:///", "not 'test'"), ("test+tcp://h/default", "transport"), ("test://h/default", "local")],
)
def test_can_handle_declines_with_a_reason(uri: str, why: str) -> None:
    answer = virtkit_test.plugin.can_handle(parse_uri(uri))
    assert isinstance(answer, Declined)
    assert not answer
    assert why in answer.reason


def test_core_never_opens_what_it_cannot_handle() -> None:
    """The contract: open runs only after can_handle said yes, so the plugin's open does not re-check."""
    with pytest.raises(virtkit.NoDriver, match="scheme 'xen' is not 'test'"):
        virtkit.open("xen:///", entry_points=False, plugins=[virtkit_test.Plugin])


def test_priority_is_low() -> None:
    assert virtkit_test.plugin.priority(parse_uri("test:///default")) == virtkit_test.PRIORITY == 10


def test_registered_in_code_without_entry_points() -> None:
    with virtkit.open("test:///default", entry_points=False, plugins=[virtkit_test.Plugin]) as conn:
        assert conn.hostname() == "test-host"


def test_explain_shows_the_test_plugin() -> None:
    with virtkit.open("test:///default") as conn:
        ex = conn.explain()
    assert [(a.plugin, a.outcome, a.priority) for a in ex.attempts] == [("test", virtkit.Outcome.SUCCESS, 10)]
    assert {r.plugin for r in ex.routes} == {"test"}


@pytest.mark.parametrize("op", list(virtkit.CATALOGUE.values()), ids=list(virtkit.CATALOGUE))
def test_driver_method_matches_the_catalogue_signature(op: virtkit.Operation) -> None:
    method = getattr(virtkit_test.Driver, op.name)
    sig = inspect.signature(method)
    params = list(sig.parameters.values())
    assert params[0].name == "self"
    positional = [p.name for p in params[1:] if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    assert positional == [p.name for p in op.params]
    flags = sig.parameters["flags"]
    assert flags.kind is inspect.Parameter.KEYWORD_ONLY
    assert flags.default == 0
    assert [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY] == ["flags"]
    assert sig.return_annotation == op.returns


def test_driver_has_close() -> None:
    d = virtkit_test.Driver(virtkit_test.DEFAULT_HOST)
    ref = d.domain_lookup_by_id(1)
    d.close()
    d.close()
    with pytest.raises(virtkit.ConnectionClosed):
        d.connect_list_domains()
    with pytest.raises(virtkit.ConnectionClosed):
        d.domain_get_info(ref)


def test_driver_refuses_a_non_ref() -> None:
    d = virtkit_test.Driver(virtkit_test.DEFAULT_HOST)
    with pytest.raises(virtkit.InvalidArgument, match="expected a DomainRef, got str"):
        d.domain_get_info("test")  # type: ignore[arg-type]
