"""Deploying through a Serve config (cluster/serve.yaml), autoscaling, and `embedforge serve`."""

from __future__ import annotations

import copy
import importlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
SERVE_CONFIG = REPO_ROOT / "cluster" / "serve.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_cluster_config_is_a_valid_serve_config_naming_real_deployments(tiny_embedder_dir, tiny_reranker_dir):
    from ray.serve.schema import ServeDeploySchema

    from embedforge.serving.deployments import EmbedderServer, RerankerServer

    text = SERVE_CONFIG.read_text()
    assert text.startswith("# Run: serve run cluster/serve.yaml")
    with_reranker = text.replace("  # - name:", "  - name:").replace("  #   ", "    ").replace("  #     ", "      ")
    for config in (yaml.safe_load(text), yaml.safe_load(with_reranker)):
        schema = ServeDeploySchema.model_validate(config)
        for app in schema.applications:
            module_name, _, attribute = app.import_path.partition(":")
            build_app = getattr(importlib.import_module(module_name), attribute)
            assert build_app({**app.args, "embedder": str(tiny_embedder_dir), "reranker": str(tiny_reranker_dir)}) is not None
            for deployment in app.deployments:
                assert deployment.name in {EmbedderServer.name, RerankerServer.name}, f"{deployment.name} is not a deployment of {app.import_path}"
                assert deployment.autoscaling_config, f"{deployment.name} has no autoscaling_config"
    assert [app["name"] for app in yaml.safe_load(with_reranker)["applications"]] == ["embedforge", "embedforge-reranker"]


def replicas(app: str, deployment: str) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return status.replica_states.get("RUNNING", 0)


@pytest.mark.slow
def test_autoscaling_scales_the_embedder_up_under_load_and_down_when_idle(local_ray, tiny_embedder_dir):
    from embedforge.serving.app import deploy_config, stop_local

    config = copy.deepcopy(yaml.safe_load(SERVE_CONFIG.read_text()))
    port = free_port()
    config["http_options"] = {"host": "127.0.0.1", "port": port}
    app = config["applications"][0]
    app["name"] = "scaling"
    app["args"].update(embedder=str(tiny_embedder_dir), embedder_name="tiny", api_key_env="EMBEDFORGE_TEST_UNSET_KEYS")
    # 16 clients that each keep one request in flight against a target of 2 per replica: an 8x
    # overload. The 5 s look-back averages over several metric pushes, so a replica whose
    # pushes are late on a busy machine still reports the load.
    fast = {"upscale_delay_s": 1, "downscale_delay_s": 4, "metrics_interval_s": 0.5, "look_back_period_s": 5}
    for deployment in app["deployments"]:
        deployment["ray_actor_options"] = {"num_cpus": 0.25}
        deployment["autoscaling_config"].update(fast, min_replicas=1, max_replicas=2, target_ongoing_requests=2)
    try:
        url = deploy_config(config)["scaling"]
        assert replicas("scaling", "Embedder") == 1
        stop, statuses = threading.Event(), []

        def load():
            with httpx.Client(base_url=url, timeout=60) as client:
                while not stop.is_set():
                    response = client.post("/v1/embeddings", json={"model": "tiny", "input": ["some text to embed " * 8] * 16})
                    statuses.append(response.status_code)

        threads = [threading.Thread(target=load) for _ in range(16)]
        for thread in threads:
            thread.start()
        try:
            # bounds far above what an idle machine needs: a second replica starts a process and loads the model
            wait_for(lambda: replicas("scaling", "Embedder") == 2, 300, "the Embedder to scale up to 2 replicas")
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert statuses and set(statuses) == {200}
        wait_for(lambda: replicas("scaling", "Embedder") == 1, 300, "the Embedder to scale back down to 1 replica")

        long_text = "word " * 200  # the tiny model's max_length is 64: truncated, not rejected, per this config
        response = httpx.post(f"{url}/v1/embeddings", json={"model": "tiny", "input": long_text}, timeout=60)
        assert response.status_code == 200
        from embedforge.models.embedder import Embedder

        expected = Embedder.load(tiny_embedder_dir, device="cpu").encode([long_text])[0]
        np.testing.assert_allclose(response.json()["data"][0]["embedding"], expected, atol=1e-5)
    finally:
        stop_local()


@pytest.mark.slow
def test_embedforge_serve_runs_until_sigterm_then_shuts_down_cleanly(local_ray, tiny_embedder_dir, tmp_path):
    port = free_port()
    key_file = tmp_path / "keys"
    key_file.write_text("cli-key\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "platform"), os.environ.get("PYTHONPATH", "")])}
    env.pop("RAY_ADDRESS", None)
    # Joins this module's Ray instead of starting another one, to save start-up time.
    address = local_ray
    command = [sys.executable, "-m", "embedforge.cli", "serve", "--embedder", str(tiny_embedder_dir), "--port", str(port)]
    command += ["--api-key-file", str(key_file), "--address", address]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.poll() is None, process.stdout.read()
            try:
                return httpx.get(f"{url}/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(healthy, 150, "`embedforge serve` to become healthy")
        name = tiny_embedder_dir.name
        assert httpx.post(f"{url}/v1/embeddings", json={"model": name, "input": "x"}).status_code == 401
        ok = httpx.post(f"{url}/v1/embeddings", json={"model": name, "input": "x"}, headers={"Authorization": "Bearer cli-key"})
        assert ok.status_code == 200 and len(ok.json()["data"][0]["embedding"]) == 64
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=90)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "serving http://127.0.0.1" in output and output.rstrip().endswith("stopped")
    assert "cli-key" not in output
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=3)
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        applications = serve.status().applications
    except RayServeException:  # no Serve controller left at all
        applications = {}
    assert not applications
