"""The synthesis job through ``ray job submit`` against a Ray head this test starts and stops.

The head runs as ``ray start --head --block`` in its own process group, on free ports and
its own temp dir, so it never touches another Ray on the machine; the test ends it by
signalling that group (never ``ray stop``, which stops every Ray process on the machine).
"""

import json
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

from test_synthesis_pipeline import check_synthesis_folder, synth_config

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).with_name("ray"))


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def ray_head():
    gcs, dashboard, agent_http, agent_grpc, metrics, runtime_env, node_manager, object_manager, client = free_ports(9)
    temp_dir = tempfile.mkdtemp(prefix="efray-")
    command = [
        RAY, "start", "--head", "--block", "--num-cpus=4", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
        f"--port={gcs}", f"--dashboard-port={dashboard}", f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}", f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={runtime_env}",
        f"--node-manager-port={node_manager}", f"--object-manager-port={object_manager}", f"--ray-client-server-port={client}",
        f"--temp-dir={temp_dir}", "--disable-usage-stats",
    ]  # fmt: skip
    # loopback-only private head: token auth off, so the client needs no token file
    env = dict({key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}, RAY_AUTH_MODE="disabled")
    head = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        from ray.job_submission import JobSubmissionClient

        deadline, client_error = time.monotonic() + 180, None
        while time.monotonic() < deadline:
            assert head.poll() is None, f"ray start failed: {head.stdout.read()[-3000:]}"
            try:
                yield JobSubmissionClient(address)
                break
            except (ConnectionError, RuntimeError, OSError) as error:  # the dashboard is not up yet
                client_error = error
                time.sleep(1)
        else:
            pytest.fail(f"the Ray dashboard never came up at {address}: {client_error}")
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()


@pytest.mark.slow
def test_synthesis_job_through_ray_job_submit(ray_head, tmp_path):
    from ray.job_submission import JobStatus

    output = tmp_path / "synthesized"
    config = tmp_path / "synthesize.yaml"
    config.write_text(yaml.safe_dump(synth_config(output, max_docs=2, shard_size=2)))
    python_path = os.pathsep.join([str(REPO / "platform"), os.environ.get("PYTHONPATH", "")])
    job_id = f"embedforge-synthesize-{os.getpid()}"  # fixed, so a retried submission never runs twice
    deadline = time.monotonic() + 180
    while True:  # the dashboard answers before its job agent is ready, and drops requests under load
        try:
            ray_head.submit_job(
                submission_id=job_id,
                entrypoint=f"{sys.executable} -m embedforge synthesize --config {config}",
                runtime_env={"env_vars": {"PYTHONPATH": python_path, "EMBEDFORGE_DATA": os.environ.get("EMBEDFORGE_DATA", str(REPO.parent / "shared" / "data"))}},
            )
            break
        except (RuntimeError, OSError) as error:
            if "already exists" in str(error):
                break
            assert time.monotonic() < deadline, error
            time.sleep(2)
    deadline = time.monotonic() + 480
    while (status := ray_head.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, "the job did not finish in time"
        time.sleep(2)
    logs = ray_head.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, logs[-4000:]
    assert "== synthesize summary" in logs
    stats = json.loads((output / "stats.json").read_text())
    check_synthesis_folder(output, stats["records"])
