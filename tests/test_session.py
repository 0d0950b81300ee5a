"""``embedforge.session``: how every command joins or starts Ray, from its ``ray`` section."""

import logging
import os

import pytest

from embedforge.config import ConfigError, load_config, parse_config
from embedforge.session import PLACEMENT_GROUP_CLEANER_LOGGER, RayConfig, ray_init_options, settings_not_applied


def test_a_local_ray_gets_its_cpus_no_dashboard_and_the_quiet_worker_hook(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", raising=False)
    options = ray_init_options(RayConfig(num_cpus=4))
    assert options == {
        "runtime_env": {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}, "worker_process_setup_hook": "embedforge.session.quiet_worker_logs"},
        "log_to_driver": True,
        "configure_logging": False,
        "num_cpus": 4,
        "include_dashboard": False,
    }


def test_joining_a_cluster_passes_only_the_address_and_the_users_interval(monkeypatch):
    monkeypatch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    from_environment = ray_init_options(RayConfig(num_cpus=8))
    assert from_environment["address"] == "10.0.0.1:6379" and "num_cpus" not in from_environment
    assert from_environment["runtime_env"] == {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5"}}
    assert ray_init_options(RayConfig(address="auto"))["address"] == "auto"
    local = ray_init_options(RayConfig(address="local", num_cpus=2))
    assert (local["address"], local["num_cpus"], local["include_dashboard"]) == ("local", 2, False)


def test_the_former_ray_data_fields_name_their_new_section(tmp_path):
    path = tmp_path / "weak.yaml"
    path.write_text("output_dir: out\ncorpus: {paths: [c.jsonl]}\nray: {num_cpus: 2, rows_per_block: 4}\n")
    from embedforge.synthesis.weak import WeakConfig

    with pytest.raises(ConfigError) as error:
        load_config(path, WeakConfig)
    assert str(error.value) == f"{path}: ray: Value error, rows_per_block moved from the ray section to ray_data (ray_data: {{rows_per_block: ...}})"


def test_only_settings_given_explicitly_count_as_not_applied():
    started = RayConfig(num_cpus=4)
    assert settings_not_applied(parse_config({"num_cpus": 8, "address": None}, RayConfig), started) == ["num_cpus"]
    assert settings_not_applied(parse_config({"num_cpus": 4, "log_to_driver": False}, RayConfig), started) == ["log_to_driver"]
    assert settings_not_applied(parse_config({}, RayConfig), RayConfig(num_cpus=16, address="auto")) == []


def test_the_local_ray_runs_the_quiet_hook_in_every_worker(local_ray):
    import ray

    @ray.remote(num_cpus=0.25)
    def worker_settings():
        return logging.getLogger(PLACEMENT_GROUP_CLEANER_LOGGER).level, os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S")

    assert ray.get(worker_settings.remote()) == (logging.ERROR, os.environ["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"])
    assert ray.cluster_resources()["CPU"] == 4
