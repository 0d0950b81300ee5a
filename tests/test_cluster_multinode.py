"""Jobs submitted through the Job API to a 3-node local cluster (head + 2 workers) succeed.

``ray.cluster_utils.Cluster`` starts a head (no CPUs, with the dashboard that serves the
Job API) and two 1-CPU worker nodes, once for the module. One job spreads two small
embedforge evaluations over the workers and prints where they ran; another runs a small
pipeline (``embedforge run``: weak pairs, a 2-worker stage 2, merge, evaluation) and is then
submitted again, which must resume: every stage is skipped. The whole tiny pipeline on a
local Ray is tested in tests/test_pipeline_run.py.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

SPREAD_EVALUATION_JOB = """
import json, tempfile
import ray

@ray.remote(num_cpus=1)
def evaluate(task):
    from embedforge.eval.runner import run_evaluate
    from embedforge.eval.settings import EvaluateConfig
    from embedforge.eval.tasks import TaskLimits
    from embedforge.models.qwen3 import build_embedder

    folder = build_embedder("tiny", max_length=64).save(tempfile.mkdtemp())
    settings = EvaluateConfig(tasks=[task], limits=TaskLimits(max_queries=3, max_corpus_docs=10))
    runs = run_evaluate(folder, tempfile.mkdtemp(), settings, device="cpu", label="tiny")
    return ray.get_runtime_context().get_node_id(), runs["tiny"][task].metrics["main_score"]

ray.init()
runs = ray.get([evaluate.remote(task) for task in ("cranfield", "stsb-dev")])
print("EMBEDFORGE_JOB_RESULT " + json.dumps({"nodes": sorted({node for node, _ in runs}), "scores": [score for _, score in runs]}))
"""

REPO_ROOT = Path(__file__).resolve().parents[1]
SCIFACT_CORPUS = "${EMBEDFORGE_DATA}/retrieval/scifact/corpus.jsonl"


def small_pipeline(run_dir: Path) -> dict:
    """Weak pairs from 8 SciFact documents, a 2-step stage 2 on 2 workers, a slerp merge, a small evaluation."""
    return {
        "run_dir": str(run_dir),
        "weak": {"corpus": {"paths": [SCIFACT_CORPUS], "max_docs": 8, "chunk_tokens": 128, "chunk_overlap": 0}, "kinds": {"title": 1, "ict": 1, "crop": 0}, "shard_size": 8},
        "stage2": {
            "stage": 2,
            "model": {"kind": "embedder", "base": "tiny-qwen3-embedder", "max_length": 32, "query_max_length": 16},
            "data": {"datasets": [{"name": "weak", "path": "@weak"}], "num_negatives": 0},
            "optim": {"steps": 2, "batch_size": 2, "lr": 1.0e-3, "schedule": "constant"},
            "scaling": {"num_workers": 2, "cpus_per_worker": 0.5},
            "run": {"checkpoint_every": 1, "merge_steps": [1, 2], "log_every": 1},
        },
        "evaluate": {"tasks": ["scifact-dev"], "limits": {"max_queries": 5, "max_corpus_docs": 20}},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def three_node_cluster():
    import ray
    from ray.cluster_utils import Cluster

    # A private temp dir keeps Cluster's address file out of the shared /tmp/ray, where
    # other processes' ray.init() would find and join this cluster.
    ray_temp = tempfile.mkdtemp(prefix="efmn-", dir="/tmp")
    os.makedirs(os.path.join(ray_temp, "ray"))  # where Cluster writes ray_current_cluster under RAY_TMPDIR
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RAY_TMPDIR", ray_temp)
        # job entrypoints say `python`, as users type them: make that this environment's Python
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        from ray._private import ray_constants

        # the dashboard (which serves the Job API) can take over a minute to start on a busy 2-core machine
        patch.setattr(ray_constants, "RAY_DASHBOARD_STARTUP_TIMEOUT_S", 300)
        if ray.is_initialized():
            ray.shutdown()
        cluster = None
        try:
            cluster = Cluster(
                initialize_head=True,
                head_node_args={
                    "num_cpus": 0,
                    "include_dashboard": True,
                    "dashboard_host": "127.0.0.1",
                    "dashboard_port": free_port(),
                    "dashboard_agent_listen_port": free_port(),  # the default 52365 may belong to another Ray on this machine
                    "temp_dir": ray_temp,
                },
            )
            # A job's supervisor looks its cluster up in <head temp_dir>/ray_current_cluster; without
            # that file it hands the job any Ray it finds on the machine (another test's, on a busy one).
            Path(ray_temp, "ray_current_cluster").write_text(cluster.address)
            for _ in range(2):
                cluster.add_node(num_cpus=1, temp_dir=ray_temp)
            cluster.wait_for_nodes()
            yield cluster
        finally:
            try:
                if cluster is not None:
                    cluster.shutdown()
            finally:
                remove_tree(ray_temp)


def job_client(cluster, timeout: float = 120):
    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + timeout
    while True:
        try:
            return JobSubmissionClient(f"http://{cluster.webui_url}")
        except Exception:  # the dashboard's HTTP server is still starting
            if time.monotonic() > deadline:
                raise
            time.sleep(2)


def submit(client, entrypoint: str, timeout: float = 180) -> str:
    """Submit, retrying while the head's dashboard agent (which runs job supervisors) starts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return client.submit_job(entrypoint=entrypoint)
        except RuntimeError as error:
            if "No available agent" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(3)


@pytest.mark.slow
def test_evaluations_spread_over_both_worker_nodes(three_node_cluster):
    from ray.job_submission import JobStatus

    status, logs = run_job(job_client(three_node_cluster), shlex.join(["python", "-c", SPREAD_EVALUATION_JOB]))
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    (line,) = [line for line in logs.splitlines() if line.startswith("EMBEDFORGE_JOB_RESULT ")]
    result = json.loads(line.split(" ", 1)[1])
    worker_ids = {node.node_id for node in three_node_cluster.worker_nodes}
    assert len(result["nodes"]) == 2 and set(result["nodes"]) == worker_ids  # one evaluation on each worker
    assert all(-1.0 <= score <= 1.0 for score in result["scores"])


@pytest.mark.slow
def test_pipeline_job_succeeds_and_a_resubmission_resumes(three_node_cluster, tmp_path):
    from ray.job_submission import JobStatus

    run_dir = tmp_path / "run"
    config = tmp_path / "pipeline.yaml"
    config.write_text(yaml.safe_dump(small_pipeline(run_dir)))
    client = job_client(three_node_cluster)
    entrypoint = shlex.join(["python", "-m", "embedforge.cli", "run", str(config)])
    status, logs = run_job(client, entrypoint)
    assert status == JobStatus.SUCCEEDED, f"cluster at {three_node_cluster.address}\n{logs[-3000:]}"
    stages = ("weak", "stage2", "merge", "evaluate")
    for stage in stages:
        assert f"[{stage}] done in" in logs, f"{stage} did not run"
    report = (run_dir / "report.md").read_text()
    assert "| scifact-dev |" in report and "merged" in report
    assert (run_dir / "final" / "config.json").is_file()

    status, logs = run_job(client, entrypoint)  # a re-submitted run resumes: nothing is redone
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    for stage in stages:
        assert f"[{stage}] complete in" in logs, f"{stage} ran again on resubmission"


def run_job(client, entrypoint: str, timeout: float = 600):
    """Submit a job and wait for it to end; returns its final status and logs.

    The bound is several times what the jobs here take on an idle 2-core machine.
    """
    from ray.job_submission import JobStatus

    job_id = submit(client, entrypoint)
    deadline = time.monotonic() + timeout
    while (status := client.get_job_status(job_id)) not in {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}:
        assert time.monotonic() < deadline, f"job {job_id} still {status}"
        time.sleep(2)
    return status, client.get_job_logs(job_id)


def remove_tree(path: str) -> None:
    """Delete a private Ray temp dir; retried because exiting processes may still write logs."""
    for _ in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            return
        time.sleep(1)
