"""A run's options and targets survive storage unchanged, so a resume runs exactly the configuration it
started with; configurations from the first release read with today's defaults."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.errors import ConfigError
from harness.run import RunOptions, frozen_config
from harness.run.lifecycle import thaw_target
from harness.run.options import CONFIG_VERSION
from harness.targets import load_targets
from harness.timing import ResponseLimits
from tests.conftest import photo_like

names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
options = st.builds(
    RunOptions,
    samples=st.integers(1, 50), concurrency=st.integers(1, 64),
    timeout_s=st.floats(0.001, 1e4, allow_nan=False), connect_timeout_s=st.floats(0.001, 100, allow_nan=False),
    retries=st.integers(0, 5), stream=st.none() | st.booleans(),
    rpm=st.none() | st.floats(0.1, 1e4, allow_nan=False), respect_limits=st.booleans(),
    variants=st.lists(names, max_size=3).map(tuple),
    shard=st.none() | st.integers(1, 8).flatmap(lambda n: st.tuples(st.integers(0, n - 1), st.just(n))),
    sandbox=st.booleans(), time_scale=st.floats(1e-4, 10, allow_nan=False),
    sandbox_profile=st.none() | names, sandbox_faults=st.booleans(), seed=st.integers(-2**31, 2**31),
    label=st.none() | names, http2=st.booleans(), dead_target_after=st.integers(0, 20), strict_size=st.booleans(),
    limits=st.builds(ResponseLimits, max_body_bytes=st.integers(1, 2**40), max_image_pixels=st.integers(1, 2**30),
                     max_stream_s=st.floats(0.001, 1e5, allow_nan=False)),
    max_spend_usd=st.none() | st.floats(0.01, 1e4, allow_nan=False),
    max_spend_per_target_usd=st.none() | st.floats(0.01, 1e4, allow_nan=False),
    series=st.none() | names, region=st.none() | names,
)


@given(options)
def test_options_read_back_from_their_stored_configuration_unchanged(opts: RunOptions) -> None:
    stored = json.loads(json.dumps(frozen_config(opts, "suite", None, ["t"])))
    assert RunOptions.from_config(stored) == opts


def test_every_option_is_stored() -> None:
    stored = frozen_config(RunOptions(), None, None, [])
    assert {f.name for f in fields(RunOptions)} <= set(stored)
    assert stored["schema_version"] == CONFIG_VERSION


def test_a_first_release_configuration_reads_with_todays_defaults() -> None:
    first_release = {"challenges_path": "challenges/starter", "concurrency": 4, "connect_timeout_s": 10.0,
                     "http2": False, "label": None, "respect_limits": True, "retries": 2, "rpm": None, "samples": 1,
                     "sandbox": True, "sandbox_faults": True, "sandbox_profile": None, "schema_version": 1,
                     "seed": 0, "shard": [1, 4], "stream": None, "targets": ["gpt-image-1@openai"],
                     "targets_file": None, "time_scale": 0.01, "timeout_s": 300.0, "unsupported": [],
                     "variants": ["default"]}
    opts = RunOptions.from_config(first_release)
    assert opts.retries == 2 and opts.shard == (1, 4) and opts.variants == ("default",)
    assert opts.dead_target_after == RunOptions().dead_target_after and opts.strict_size is False
    assert opts.max_spend_usd is None and not opts.spend_caps.any  # runs from before spend caps had none


def test_a_version_3_configuration_reads_with_no_series_and_no_region() -> None:
    stored = frozen_config(RunOptions(max_spend_usd=2.0), None, None, ["t"])
    version_3 = {k: v for k, v in stored.items() if k not in ("series", "region")} | {"schema_version": 3}
    opts = RunOptions.from_config(version_3)
    assert opts.series is None and opts.region is None and opts.max_spend_usd == 2.0


def test_run_stores_its_series_and_region_from_options_or_environment(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.store import Store
    from harness.store import runs as run_store

    db = tmp_path / "h.db"
    base = ["run", "--sandbox", "--time-scale", "0.001", "--target", "flux-dev@replicate", "--variant", "default",
            "--no-faults", "--db", str(db)]
    by_option = CliRunner().invoke(cli, [*base, "--series", "nightly", "--region", "eu-west"])
    assert by_option.exit_code == 0, by_option.output
    by_env = CliRunner().invoke(cli, base, env={"HARNESS_RUN_SERIES": "weekly", "HARNESS_RUN_REGION": "us-east"},
                                auto_envvar_prefix="HARNESS")  # as `harness` itself is started
    assert by_env.exit_code == 0, by_env.output
    blank = CliRunner().invoke(cli, [*base, "--series", " "])
    assert blank.exit_code == 2 and "--series" in blank.output
    with Store.open(db, readonly=True) as store:
        configs = sorted((RunOptions.from_config(r.config) for r in run_store.list_runs(store)),
                         key=lambda o: str(o.series))
    assert [(o.series, o.region) for o in configs] == [("nightly", "eu-west"), ("weekly", "us-east")]


def test_run_starts_under_the_id_it_is_given_and_refuses_an_unsafe_one(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import cli
    from harness.store import Store
    from harness.store import runs as run_store

    db = tmp_path / "h.db"
    base = ["run", "--sandbox", "--time-scale", "0.001", "--target", "flux-dev@replicate", "--variant", "default",
            "--no-faults", "--db", str(db)]
    named = CliRunner().invoke(cli, [*base, "--run-id", "nightly-2026.12.05"])
    assert named.exit_code == 0, named.output
    with Store.open(db, readonly=True) as store:
        assert [r.id for r in run_store.list_runs(store)] == ["nightly-2026.12.05"]
    for bad in ("../x", "a b", "x" * 65, ""):
        refused = CliRunner().invoke(cli, [*base, "--run-id", bad])
        assert refused.exit_code == 2 and "--run-id" in refused.output, bad


def test_a_configuration_from_a_newer_harness_is_refused() -> None:
    with pytest.raises(ConfigError, match="newer than this harness"):
        RunOptions.from_config({"schema_version": CONFIG_VERSION + 1})


def test_targets_keep_their_names_through_storage() -> None:
    for target in load_targets(None).values():
        stored = json.loads(json.dumps(target.frozen()))
        assert thaw_target(stored) == target
    gateway = next(iter(load_targets(None).values())).model_copy(update={"model": "vendor/model-v2", "model_name": "model"})
    assert thaw_target(gateway.frozen()) == gateway


def test_a_stored_target_reads_back_through_from_frozen() -> None:
    from harness.targets import Target

    for target in load_targets(None).values():
        assert Target.from_frozen(json.loads(json.dumps(target.frozen()))) == target
    old = {k: v for k, v in next(iter(load_targets(None).values())).frozen().items()
           if k not in ("model_id", "price_unit", "price_url", "price_as_of", "price_as_of_kind")}
    assert Target.from_frozen(old).price_unit is None  # a snapshot from before prices had units still reads


def test_run_passes_allow_outside_refs_to_the_suite_loader(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from harness.cli import cli

    (tmp_path / "shared.png").write_bytes(photo_like((64, 64)))
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "suite.yaml").write_text("challenges:\n  - id: e\n    title: E\n    category: product\n    kind: edit\n"
                                      "    prompt: Make it blue\n    references: [../shared.png]\n")
    args = ["run", "--challenges", str(suite), "--target", "flux-dev@replicate", "--dry-run",
            "--db", str(tmp_path / "h.db")]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2 and "--allow-outside-refs" in refused.output
    allowed = CliRunner().invoke(cli, [*args, "--allow-outside-refs"])
    assert allowed.exit_code == 0, allowed.output
    assert "Dry run: nothing is sent." in allowed.output and "flux-dev@replicate" in allowed.output
