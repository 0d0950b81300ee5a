"""Autoscaling with Ray's fake multi-node provider and our ``cluster/fake-autoscaler.yaml``.

The test starts its own head (``RAY_FAKE_CLUSTER=1 ray start --head --block``) as a
subprocess in a new session, with the config's ``provider.gcs_address`` pointed at that
head. The head has no CPUs, so a job's CPU tasks make the real autoscaler start worker
nodes (extra raylets on this machine); once idle for ``idle_timeout_minutes`` they are
removed. Teardown signals only the head's own process group: never ``ray stop``.

Everything runs under a private temp dir (``--temp-dir`` and ``RAY_TMPDIR``), so the
``ray_current_cluster`` address file that ``ray start`` writes never lands in the shared
``/tmp/ray``, where other processes' ``ray.init()`` would connect to this cluster.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from test_cluster_multinode import remove_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
FAKE_CONFIG = REPO_ROOT / "cluster" / "fake-autoscaler.yaml"
WORKER_TYPE = "ray.worker.cpu"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def stop_process_group(process: subprocess.Popen) -> None:
    """SIGTERM the head's session (its raylets, GCS, monitor and fake worker nodes), then SIGKILL."""
    for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
        if sig == signal.SIGTERM:
            time.sleep(2)  # let raylets that outlive the head leave the group before the SIGKILL sweep
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return


def alive_workers(ray) -> list[dict]:
    return [node for node in ray.nodes() if node["Alive"] and not node["Resources"].get("node:__internal_head__")]


@pytest.fixture()
def fake_cluster(tmp_path):
    import ray

    from ray._private.services import get_node_ip_address

    port = free_port()
    host = get_node_ip_address()
    address = f"{host}:{port}"
    config = yaml.safe_load(FAKE_CONFIG.read_text())
    config["provider"]["gcs_address"] = address
    config_path = tmp_path / "fake-autoscaler.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log = (tmp_path / "head.log").open("w")
    ray_temp = tempfile.mkdtemp(prefix="efas-", dir="/tmp")  # short: Ray's socket paths have a length limit
    head = subprocess.Popen(
        [
            sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
            "--port", str(port), "--num-cpus", "0",
            "--include-dashboard", "false", "--disable-usage-stats", "--temp-dir", ray_temp,
            "--autoscaling-config", str(config_path),
        ],  # fmt: skip
        # Ray 2.60's `ray start` turns token authentication on by default; this private
        # test cluster opts out so the in-process driver can connect without a token.
        env={**os.environ, "RAY_FAKE_CLUSTER": "1", "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_temp},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        if ray.is_initialized():
            ray.shutdown()
        head_log = tmp_path / "head.log"
        wait_for(lambda: head_started(head, head_log), 180, "the fake-cluster head to start")
        ray.init(address=address, log_to_driver=False, configure_logging=False)
        yield ray
    finally:
        ray.shutdown()
        stop_process_group(head)
        log.close()
        remove_tree(ray_temp)


def head_started(head: subprocess.Popen, log_path: Path) -> bool:
    """True once ``ray start`` reports success; fails fast, with its log, if it exited.

    Waiting for this line rather than for the port to accept connections matters on a shared
    machine: if another process took the port first, our head fails, and connecting to the
    port would reach someone else's cluster.
    """
    text = log_path.read_text(errors="replace")
    if head.poll() is not None:
        raise AssertionError(f"ray start --head exited with {head.returncode}:\n{text[-3000:]}")
    return "Ray runtime started" in text


@pytest.mark.slow
def test_fake_cluster_scales_workers_up_for_a_job_and_down_when_idle(fake_cluster):
    ray = fake_cluster
    assert alive_workers(ray) == []  # min_workers 0: the cluster starts with the head alone

    @ray.remote(num_cpus=1)
    def hold(seconds: float) -> str:
        time.sleep(seconds)
        return ray.get_runtime_context().get_node_id()

    pending = [hold.remote(5) for _ in range(2)]  # runs only once a worker node is up; idle removal takes longer
    workers = wait_for(lambda: len(alive_workers(ray)) >= 1 and alive_workers(ray), 180, "the autoscaler to add a worker node")
    assert all(node["Resources"].get("CPU") == 1.0 for node in workers)  # the ray.worker.cpu node type
    node_ids = set(ray.get(pending, timeout=300))
    assert node_ids <= {node["NodeID"] for node in alive_workers(ray)} | node_ids  # ran on worker nodes
    assert not any(node["Resources"].get("node:__internal_head__") for node in ray.nodes() if node["NodeID"] in node_ids)
    wait_for(lambda: alive_workers(ray) == [], 180, "idle worker nodes to be removed", interval=2.0)
