"""Every file in cluster/ parses, and everything it names exists in this repository.

Strict on purpose: the RayJob's command and config, and the RayService's
``embedforge.serving.app:build_app``, are written by other branches; this test fails until
they are merged, so a manifest can never point at something that is not there.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
CLUSTER = REPO_ROOT / "cluster"
KUBERAY = ["raycluster.yaml", "rayjob.yaml", "rayservice.yaml"]
LAUNCHER = ["aws-gpu.yaml", "fake-autoscaler.yaml"]
SERVE = ["serve.yaml"]  # validated against Serve's schema in tests/test_serving_deploy.py


def load(name: str) -> dict:
    documents = list(yaml.safe_load_all((CLUSTER / name).read_text()))
    assert len(documents) == 1, f"{name}: expected one YAML document"
    return documents[0]


def test_every_yaml_in_cluster_is_covered_and_names_its_command():
    on_disk = sorted(path.name for path in CLUSTER.glob("*.yaml"))
    assert on_disk == sorted(KUBERAY + LAUNCHER + SERVE)
    for name in on_disk:
        assert (CLUSTER / name).read_text().startswith("# Run: "), f"{name}: header must name the command that runs it"


def cluster_spec(manifest: dict) -> dict:
    return {"RayCluster": lambda: manifest["spec"], "RayJob": lambda: manifest["spec"]["rayClusterSpec"],
            "RayService": lambda: manifest["spec"]["rayClusterConfig"]}[manifest["kind"]]()  # fmt: skip


def container(group: dict) -> dict:
    (only,) = group["template"]["spec"]["containers"]
    return only


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_manifest_has_autoscaling_cpu_head_and_gpu_workers(name):
    manifest = load(name)
    assert manifest["apiVersion"] == "ray.io/v1"
    assert manifest["kind"] in {"RayCluster", "RayJob", "RayService"}
    spec = cluster_spec(manifest)
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["rayVersion"] == importlib.import_module("ray").__version__
    head = container(spec["headGroupSpec"])
    assert "nvidia.com/gpu" not in head["resources"]["limits"]
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    (gpu_group,) = spec["workerGroupSpecs"]
    assert container(gpu_group)["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert 0 <= gpu_group["minReplicas"] <= gpu_group["replicas"] <= gpu_group["maxReplicas"]
    images = {head["image"], container(gpu_group)["image"]}
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    assert images == {"embedforge:0.1.0-gpu"} and "-t embedforge:0.1.0-gpu" in dockerfile


def embedforge_arguments(command_line: str) -> argparse.Namespace:
    """The arguments ``embedforge`` parses from a job's command line, which must run embedforge's CLI."""
    from embedforge.cli import build_parser

    words = shlex.split(command_line)
    assert words[0] == "embedforge" or words[:3] == ["python", "-m", "embedforge"], f"not an embedforge command: {command_line}"
    return build_parser().parse_args(words[1 if words[0] == "embedforge" else 3 :])


def submitted_command_lines() -> list[tuple[str, str]]:
    """``(file, command)`` for every ``ray job submit ... -- COMMAND`` written in the docs, README and cluster/."""
    files = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md")), *sorted(CLUSTER.glob("*")), *sorted((REPO_ROOT / "jobs" / "configs").glob("*.yaml"))]
    found = []
    for path in files:
        for line in path.read_text().splitlines():
            if "ray job submit" in line and " -- " in line:
                command = re.split(r"[`,)]", line.split(" -- ", 1)[1])[0].strip()
                found.append((str(path.relative_to(REPO_ROOT)), command))
    return found


def test_rayjob_runs_the_pipeline_through_the_embedforge_cli():
    arguments = embedforge_arguments(load("rayjob.yaml")["spec"]["entrypoint"])
    assert (arguments.command, str(arguments.config)) == ("run", "jobs/configs/qwen3-0.6b.yaml")
    assert (REPO_ROOT / arguments.config).is_file(), f"{arguments.config} is missing"
    runtime_env = yaml.safe_load(load("rayjob.yaml")["spec"]["runtimeEnvYAML"])
    assert runtime_env["env_vars"]["EMBEDFORGE_DATA"] == "/data"


def test_every_documented_job_submission_runs_the_embedforge_cli_on_a_config_that_exists():
    submissions = submitted_command_lines()
    assert {file for file, _ in submissions} >= {"README.md", "docs/operations.md", "cluster/aws-gpu.yaml"}
    for file, command in submissions:
        arguments = embedforge_arguments(command)
        assert (REPO_ROOT / arguments.config).is_file(), f"{file}: {command}: {arguments.config} is missing"


def test_rayservice_serves_one_app_per_model_on_the_fast_path_and_autoscales():
    from embedforge.serving.app import FAST_PATH_ENV
    from embedforge.serving.settings import APP, RERANKER_APP

    service = load("rayservice.yaml")
    serve_config = yaml.safe_load(service["spec"]["serveConfigV2"])
    embedder, reranker = serve_config["applications"]
    assert (embedder["name"], embedder["route_prefix"], embedder["import_path"]) == (APP, "/", "embedforge.serving.app:build_app")
    assert (reranker["name"], reranker["route_prefix"], reranker["import_path"]) == (RERANKER_APP, "/v1/rerank", "embedforge.serving.app:build_reranker_app")
    assert embedder["args"] == reranker["args"] and {"embedder", "reranker"} <= set(embedder["args"])
    for application in (embedder, reranker):
        module_name, attribute = application["import_path"].split(":")
        assert callable(getattr(importlib.import_module(module_name), attribute))
        for deployment in application["deployments"]:
            scaling = deployment["autoscaling_config"]
            assert 1 <= scaling["min_replicas"] < scaling["max_replicas"]
    cluster = service["spec"]["rayClusterConfig"]
    templates = [cluster["headGroupSpec"]["template"]] + [group["template"] for group in cluster["workerGroupSpecs"]]
    for template in templates:
        for container in template["spec"]["containers"]:
            assert FAST_PATH_ENV.items() <= {item["name"]: item["value"] for item in container.get("env", [])}.items(), container["name"]


@pytest.mark.parametrize("name", LAUNCHER)
def test_cluster_launcher_configs_pass_rays_own_schema(name):
    from ray.autoscaler._private.util import validate_config

    config = load(name)
    validate_config(config)
    types = config["available_node_types"]
    assert config["head_node_type"] in types
    assert types[config["head_node_type"]]["resources"]["CPU"] == 0
    for node_type in types.values():
        assert node_type.get("min_workers", 0) <= node_type["max_workers"] <= config["max_workers"]


def test_aws_launcher_has_gpu_node_types_and_installs_this_repo():
    config = load("aws-gpu.yaml")
    assert config["provider"]["type"] == "aws"
    gpu_types = [node for node in config["available_node_types"].values() if node["resources"].get("GPU", 0) > 0]
    assert len(gpu_types) >= 1 and all(node["min_workers"] == 0 for node in gpu_types)
    assert config["file_mounts"]["/home/ray/embedforge"] == "."
    assert (REPO_ROOT / "pyproject.toml").is_file()


def test_fake_autoscaler_uses_the_fake_multinode_provider():
    config = load("fake-autoscaler.yaml")
    assert config["provider"]["type"] == "fake_multinode"
    worker = config["available_node_types"]["ray.worker.cpu"]
    assert worker["min_workers"] == 0 and worker["max_workers"] == 2
