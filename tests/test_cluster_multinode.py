"""A job submitted through the Job API to a 3-node local cluster (head + 2 workers) succeeds.

``ray.cluster_utils.Cluster`` starts a head (no CPUs, with the dashboard that serves the
Job API) and two 1-CPU worker nodes. The default job spreads two small embedforge
evaluations over the workers and prints where they ran. ``ENTRYPOINTS`` is the parameter
to extend: ``pipeline-tiny`` runs ``jobs/configs/pipeline_tiny.yaml`` as ``embedforge run``
does, with its own ``run_dir``.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pytest

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
    return ray.get_runtime_context().get_node_id(), runs["tiny"][task]["main_score"]

ray.init()
runs = ray.get([evaluate.remote(task) for task in ("cranfield", "stsb-dev")])
print("EMBEDFORGE_JOB_RESULT " + json.dumps({"nodes": sorted({node for node, _ in runs}), "scores": [score for _, score in runs]}))
"""

REPO_ROOT = Path(__file__).resolve().parents[1]
PIPELINE_RUN_DIR = Path(tempfile.gettempdir()) / "embedforge-multinode-pipeline"
PIPELINE_JOB = (
    "import sys, yaml; from embedforge.config import parse_config; from embedforge.pipeline.config import PipelineConfig; "
    "from embedforge.pipeline.run import run_pipeline; "
    f"data = yaml.safe_load(open({str(REPO_ROOT / 'jobs/configs/pipeline_tiny.yaml')!r})); data['run_dir'] = {str(PIPELINE_RUN_DIR)!r}; "
    "run_pipeline(parse_config(data, PipelineConfig, 'pipeline_tiny.yaml'))"
)

ENTRYPOINTS = {
    "spread-evaluation": ["python", "-c", SPREAD_EVALUATION_JOB],
    "pipeline-tiny": ["python", "-c", PIPELINE_JOB],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def three_node_cluster(monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    # A private temp dir keeps Cluster's address file out of the shared /tmp/ray, where
    # other processes' ray.init() would find and join this cluster.
    ray_temp = tempfile.mkdtemp(prefix="efmn-", dir="/tmp")
    os.makedirs(os.path.join(ray_temp, "ray"))  # where Cluster writes ray_current_cluster under RAY_TMPDIR
    monkeypatch.setenv("RAY_TMPDIR", ray_temp)
    # job entrypoints say `python`, as users type them: make that this environment's Python
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    from ray._private import ray_constants

    # the dashboard (which serves the Job API) can take over a minute to start on a busy 2-core machine
    monkeypatch.setattr(ray_constants, "RAY_DASHBOARD_STARTUP_TIMEOUT_S", 300)
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
@pytest.mark.parametrize("entrypoint", ENTRYPOINTS.values(), ids=ENTRYPOINTS.keys())
def test_job_submitted_to_three_node_cluster_succeeds(three_node_cluster, entrypoint):
    import shlex

    from ray.job_submission import JobStatus

    client = job_client(three_node_cluster)
    shutil.rmtree(PIPELINE_RUN_DIR, ignore_errors=True)
    status, logs = run_job(client, shlex.join(entrypoint))
    assert status == JobStatus.SUCCEEDED, logs[-3000:]
    if entrypoint is ENTRYPOINTS["spread-evaluation"]:
        (line,) = [line for line in logs.splitlines() if line.startswith("EMBEDFORGE_JOB_RESULT ")]
        result = json.loads(line.split(" ", 1)[1])
        worker_ids = {node.node_id for node in three_node_cluster.worker_nodes}
        assert len(result["nodes"]) == 2 and set(result["nodes"]) == worker_ids  # one evaluation on each worker
        assert all(-1.0 <= score <= 1.0 for score in result["scores"])
    if entrypoint is ENTRYPOINTS["pipeline-tiny"]:
        report = (PIPELINE_RUN_DIR / "report.md").read_text()
        assert "| scifact-dev |" in report and "merged+reranker" in report
        # the random generator's pairs are all rejected, so stage 1 learns from the weak pairs alone
        assert "**stage2**: trained" in report and "**stage1**: trained" in report and '"weak": ' in report
        assert_report_matches_a_separate_evaluate(PIPELINE_RUN_DIR)
        status, logs = run_job(client, shlex.join(entrypoint))  # a re-submitted run resumes: nothing is redone
        assert status == JobStatus.SUCCEEDED, logs[-3000:]
        for stage in ("weak", "synthesize", "filter", "mine_labelled", "stage1", "stage2", "merge", "reranker", "evaluate"):
            assert f"[{stage}] complete in" in logs, f"{stage} ran again on resubmission"


def assert_report_matches_a_separate_evaluate(run_dir: Path) -> None:
    """``embedforge evaluate`` on the merged model and reranker gives the pipeline's numbers."""
    import subprocess

    (evaluate_dir,) = run_dir.glob("evaluate-*")
    pipeline_results = json.loads((evaluate_dir / "merged" / "results.json").read_text())  # written as `embedforge evaluate` writes it
    stage_summary = json.loads((evaluate_dir / "_COMPLETE.json").read_text())["summary"]
    output = run_dir / "separate-evaluate"
    command = [sys.executable, "-m", "embedforge.cli", "evaluate", "--model", stage_summary["models"]["merged"],
               "--reranker", stage_summary["reranker"], "--tasks", "scifact-dev", "--max-queries", "10",
               "--max-corpus-docs", "40", "--rerank-top-k", "5", "--output", str(output)]  # pipeline_tiny.yaml's evaluation
    subprocess.run(command, check=True, cwd=REPO_ROOT, timeout=600)
    separate = json.loads((output / "results.json").read_text())
    assert set(separate) == set(pipeline_results)
    for task, metrics in separate.items():
        assert abs(metrics["main_score"] - pipeline_results[task]["main_score"]) < 1e-6, task


def run_job(client, entrypoint: str, timeout: float = 480):
    """Submit a job and wait for it to end; returns its final status and logs."""
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
