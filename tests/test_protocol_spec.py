"""Each protocol is registered once, in its spec: adapter, sandbox server, mount prefix and default profile.
The provider registry, the sandbox and the profiles all read that one table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import ConfigError
from harness.protocols import ProtocolSpec, UnknownProtocolError, get_spec, protocol_specs, sandbox_layout
from harness.protocols.builtin import BUILTIN_SPECS
from harness.providers.registry import BUILTIN_PROTOCOLS, available_protocols, get_protocol
from harness.sandbox.profiles import DEFAULT_PROFILES
from harness.sandbox.servers import PROTOCOL_TO_PROVIDER, SERVERS

ROOT = "http://127.0.0.1:9"


def test_the_five_builtin_protocols_keep_their_names_and_simulated_provider_names() -> None:
    """The five protocols of before keep their names and order; openai-responses (added after them) is served
    under its own name."""
    assert list(BUILTIN_PROTOCOLS) == ["openai-images", "gemini", "openrouter", "fal", "replicate",
                                       "openai-responses"]
    assert dict(PROTOCOL_TO_PROVIDER) == {"openai-images": "openai", "gemini": "gemini",
                                          "openrouter": "openrouter", "fal": "fal", "replicate": "replicate",
                                          "openai-responses": "openai-responses"}
    assert set(SERVERS) == set(DEFAULT_PROFILES) == {"openai", "gemini", "openrouter", "fal", "replicate",
                                                     "openai-responses"}


@pytest.mark.parametrize("spec", BUILTIN_SPECS, ids=lambda s: s.name)
def test_each_builtin_spec_resolves_to_its_adapter_server_and_profile(spec: ProtocolSpec) -> None:
    adapter = spec.adapter_class()
    assert adapter.protocol == spec.name
    assert get_protocol(spec.name) is adapter
    assert callable(spec.server_class())
    assert spec.default_profile() is DEFAULT_PROFILES[spec.sandbox_name]
    assert SERVERS[spec.sandbox_name] == (spec.server, spec.mount, spec.name)


@pytest.mark.parametrize("spec", BUILTIN_SPECS, ids=lambda s: s.name)
def test_the_sandbox_base_url_of_a_spec_is_the_one_its_adapter_uses(spec: ProtocolSpec) -> None:
    assert spec.sandbox_base_url(ROOT + "/") == spec.adapter_class().sandbox_base_url(ROOT, {})


def test_fal_base_url_is_its_queue_host_under_its_mount() -> None:
    assert get_spec("fal").sandbox_base_url(ROOT) == ROOT + "/fal/queue"
    assert get_spec("openai-images").sandbox_base_url(ROOT) == ROOT + "/openai/v1"


def test_without_plugins_every_protocol_is_served_by_the_sandbox() -> None:
    layout = sandbox_layout()
    assert {s.name for s in layout.served.values()} == set(protocol_specs()) == set(BUILTIN_PROTOCOLS)
    assert layout.skipped == {}


def test_an_unknown_protocol_is_refused_with_a_suggestion() -> None:
    with pytest.raises(UnknownProtocolError, match=r"unknown protocol 'openai-image'.*Did you mean 'openai-images'"):
        get_protocol("openai-image")
    assert "openai-image" not in available_protocols()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Bad Name", "adapter": "m:C"}, "name must be lower-case"),
        ({"name": "x", "adapter": "m.C"}, "adapter must be 'module:Class'"),
        ({"name": "x", "adapter": "m:C", "server": "m:S", "mount": "x", "profile": {}}, "mount must start with '/'"),
        ({"name": "x", "adapter": "m:C", "server": "m:S", "mount": "/x/", "profile": {}}, "not end with one"),
        ({"name": "x", "adapter": "m:C", "server": "m:S", "mount": "/x"}, "needs a default profile"),
        ({"name": "x", "adapter": "m:C", "profile": "no-colon"}, "profile must be 'module:attr'"),
    ],
)
def test_a_malformed_spec_is_refused_naming_the_protocol_and_field(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        ProtocolSpec(**fields)  # type: ignore[arg-type]
    assert repr(fields["name"]) in str(info.value)


def test_a_profile_given_as_data_is_validated_and_errors_name_the_protocol() -> None:
    good = ProtocolSpec(name="toy", adapter="m:C", server="m:S", mount="/toy",
                        profile={"latency": {"median_s": 1.0, "p95_s": 2.0}, "rpm": 5})
    assert good.default_profile().rpm == 5
    bad = ProtocolSpec(name="toy", adapter="m:C", server="m:S", mount="/toy",
                       profile={"latency": {"median_s": 3.0, "p95_s": 2.0}})
    with pytest.raises(ConfigError, match=r"protocol 'toy': default profile: latency.p95_s"):
        bad.default_profile()


def test_code_a_spec_names_but_that_is_missing_gives_a_clear_error() -> None:
    spec = ProtocolSpec(name="ghost", adapter="no_such_module_here:Provider")
    with pytest.raises(ConfigError, match=r"no_such_module_here:Provider: cannot import no_such_module_here"):
        spec.adapter_class()
    not_a_provider = ProtocolSpec(name="ghost", adapter="harness.protocols.spec:ProtocolSpec")
    with pytest.raises(ConfigError, match=r"is not a harness\.providers\.base\.Provider subclass"):
        not_a_provider.adapter_class()


def test_listing_protocols_imports_no_adapter_and_no_server() -> None:
    code = ("import sys, harness.protocols as p; p.protocol_specs(); p.available_protocols(); p.sandbox_layout(); "
            "print(sorted(m for m in sys.modules if m.startswith(('harness.providers', 'harness.sandbox'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parent.parent).stdout
    assert out.strip() == "[]"


MISNAMED = ProtocolSpec(name="toy", adapter="harness.providers.fal:FalProvider")
GHOST_SERVER = ProtocolSpec(name="ghost", adapter="harness.providers.fal:FalProvider", server="no_such_module_here:S",
                            mount="/ghost", profile={"latency": {"median_s": 1.0, "p95_s": 2.0}})
SHADOW = ProtocolSpec(name="fal", adapter="harness.providers.gemini:GeminiProvider")


def installed(monkeypatch: pytest.MonkeyPatch, **entries: str) -> None:
    """Pretend these ``name="module:attr"`` entry points are installed in the ``harness.protocols`` group."""
    from importlib.metadata import EntryPoint

    from harness.protocols import registry

    points = [EntryPoint(name=n.replace("_", "-"), value=v, group=registry.ENTRY_POINT_GROUP) for n, v in entries.items()]
    monkeypatch.setattr(registry, "entry_points", lambda group: points if group == registry.ENTRY_POINT_GROUP else [])


def test_a_broken_plugin_stays_known_and_says_what_is_wrong_without_breaking_the_others(
        monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, broken="no_such_module_here:SPEC", other="tests.test_protocol_spec:MISNAMED",
              odd="harness.protocols.builtin:BUILTIN_SPECS")
    assert {"broken", "other", "odd"} <= set(available_protocols())
    assert set(protocol_specs()) == set(BUILTIN_PROTOCOLS)
    with pytest.raises(ConfigError, match=r"protocol 'broken': entry point broken = 'no_such_module_here:SPEC'.*"
                                          r"cannot be loaded: ModuleNotFoundError"):
        get_spec("broken")
    with pytest.raises(ConfigError, match="its spec is named 'toy'; the entry point must use that name"):
        get_spec("other")
    with pytest.raises(ConfigError, match="gives a tuple, not a ProtocolSpec or a Provider subclass"):
        get_spec("odd")
    assert "cannot be loaded" in sandbox_layout().skipped["broken"]
    assert get_protocol("gemini").protocol == "gemini"


def test_a_plugin_cannot_replace_a_builtin_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    installed(monkeypatch, fal="tests.test_protocol_spec:SHADOW")
    assert get_protocol("fal").protocol == "fal"
    assert available_protocols()["fal"] == "harness.providers.fal:FalProvider"


def test_a_plugin_server_that_cannot_load_is_skipped_and_the_builtin_servers_still_start(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.sandbox.servers import build_sandbox
    from harness.sandbox.simulation import SandboxSettings

    installed(monkeypatch, ghost="tests.test_protocol_spec:GHOST_SERVER")
    assert "ghost" in sandbox_layout().served
    sandbox = build_sandbox(SandboxSettings(), DEFAULT_PROFILES)
    assert sandbox.served == ("openai", "gemini", "openrouter", "fal", "replicate", "openai-responses")
    assert "no_such_module_here:S: cannot import no_such_module_here" in sandbox.skipped["ghost"]
