"""User mistakes fail fast: exit code 2, one line naming the problem, before any model or Ray.

Commands run in-process through ``embedforge.cli.main`` so each test can assert that Ray was
never started and that no existing file changed; ``--version`` and argument errors run as a
real subprocess.
"""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray

from embedforge import __version__
from embedforge.cli import main

FAST_S = 15
"""Generous for a shared 2-core machine; a model load plus Ray start takes far longer."""


def tree_digest(path: Path) -> dict[str, str]:
    """Every file under ``path`` (or the file itself) with its content hash."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(file): hashlib.sha256(file.read_bytes()).hexdigest() for file in files}


def fails_fast(capsys, *argv: str, problem: str) -> str:
    """Run a command that must fail with one ``error:`` line containing ``problem``; returns it."""
    capsys.readouterr()
    started = time.perf_counter()
    code = main([str(arg) for arg in argv])
    seconds = time.perf_counter() - started
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"embedforge {argv[0]}: error: "), lines
    assert problem in lines[0], lines[0]
    assert seconds < FAST_S and not ray.is_initialized()
    return lines[0]


@pytest.fixture
def texts(tmp_path) -> Path:
    path = tmp_path / "texts.txt"
    path.write_text("tides and the moon\nbananas\n")
    return path


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``python -m embedforge ARGS``, the command line ``ray job submit`` runs where the script is not on PATH."""
    return subprocess.run([sys.executable, "-m", "embedforge", *map(str, args)], capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})


def test_version_and_argument_errors_are_one_line():
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"embedforge {__version__}"
    for flag, value in (("--batch-size", "0"), ("--batch-size", "-1"), ("--dimensions", "0")):
        result = run_cli("encode", "--model", "m", "--input", "i", "--output", "o.npy", flag, value)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines() == [f"embedforge encode: error: argument {flag}: must be >= 1, got {value} (see embedforge encode --help)"]
    result = run_cli("score", "--model", "m", "--query", "q", "--input", "i", "--output", "o.json", "--batch-size", "-1")
    assert result.returncode == 2 and "argument --batch-size: must be >= 1, got -1" in result.stderr
    result = run_cli("evaluate", "--model", "m", "--output", "o", "--max-queries", "0")
    assert result.returncode == 2 and "argument --max-queries: must be >= 1, got 0" in result.stderr


def test_encode_output_onto_a_directory_fails_before_the_model_loads(capsys, tmp_path, texts, tiny_embedder_dir):
    folder = tmp_path / "existing"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    before = tree_digest(folder)
    fails_fast(capsys, "encode", "--model", tiny_embedder_dir, "--input", texts, "--output", folder, problem=f"{folder}: is a folder")
    (tmp_path / "dir.npy").mkdir()
    fails_fast(capsys, "encode", "--model", tiny_embedder_dir, "--input", texts, "--output", tmp_path / "dir.npy", problem="is a folder")
    assert tree_digest(folder) == before


def test_encode_into_an_unwritable_folder_fails_before_the_model_loads(capsys, tmp_path, texts, tiny_embedder_dir):
    fails_fast(capsys, "encode", "--model", tiny_embedder_dir, "--input", texts, "--output", texts / "x.npy", problem=f"{texts} is a file, not a folder")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # root ignores permissions; the file-parent case above still ran
            fails_fast(capsys, "encode", "--model", tiny_embedder_dir, "--input", texts, "--output", locked / "x.npy", problem="not writable")
    finally:
        locked.chmod(0o700)


def test_encode_refuses_an_existing_output_unless_overwrite(capsys, tmp_path, texts, tiny_embedder_dir):
    output = tmp_path / "vectors.npy"
    np.save(output, np.zeros((1, 2), dtype=np.float32))
    before = tree_digest(output)
    fails_fast(capsys, "encode", "--model", tiny_embedder_dir, "--input", texts, "--output", output, problem="--overwrite")
    assert tree_digest(output) == before
    assert main(["encode", "--model", str(tiny_embedder_dir), "--input", str(texts), "--output", str(output), "--overwrite"]) == 0
    assert np.load(output).shape == (2, 64)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["texts.txt", "vectors.npy"]  # no temp file left beside it


def test_a_reranker_given_to_encode_and_an_embedder_to_score_fail_before_loading(capsys, tmp_path, texts, tiny_embedder_dir, tiny_reranker_dir):
    line = fails_fast(capsys, "encode", "--model", tiny_reranker_dir, "--input", texts, "--output", tmp_path / "x.npy", problem=f"{tiny_reranker_dir}: is a reranker")
    assert "needs an embedder" in line
    fails_fast(capsys, "score", "--model", tiny_embedder_dir, "--query", "q", "--input", texts, "--output", tmp_path / "s.json", problem="is a embedder")
    assert not (tmp_path / "x.npy").exists() and not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("suffix", [".json", ".ndjson", ".JSONL"])
def test_json_lines_files_of_any_json_suffix_are_read_as_records(tmp_path, suffix, tiny_embedder_dir):
    from embedforge.models.embedder import Embedder

    path = tmp_path / f"texts{suffix}"
    path.write_text("\n".join(json.dumps({"text": text}) for text in ["tides", "bananas"]) + "\n")
    output = tmp_path / "out.npy"
    assert main(["encode", "--model", str(tiny_embedder_dir), "--input", str(path), "--output", str(output)]) == 0
    expected = Embedder.load(tiny_embedder_dir, device="cpu").encode(["tides", "bananas"])
    np.testing.assert_allclose(np.load(output), expected, atol=1e-5)


def test_a_json_array_is_read_and_bad_json_names_the_file_and_line(capsys, tmp_path, tiny_embedder_dir):
    from embedforge.data.texts import read_texts

    array = tmp_path / "array.json"
    array.write_text(json.dumps(["tides", {"text": "bananas"}]))
    assert read_texts(array) == ["tides", "bananas"]
    bad = tmp_path / "bad.ndjson"
    bad.write_text('{"text": "ok"}\nnot json\n')
    fails_fast(capsys, "encode", "--model", tiny_embedder_dir, "--input", bad, "--output", tmp_path / "x.npy", problem=f"{bad}:2: invalid JSON")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("fine\ncaf\xe9\n".encode("latin-1"))
    fails_fast(capsys, "encode", "--model", tiny_embedder_dir, "--input", latin1, "--output", tmp_path / "x.npy", problem=f"{latin1}:2: not valid UTF-8")
    assert not (tmp_path / "x.npy").exists()


def test_tiny_model_refuses_a_non_empty_folder_and_overwrite_replaces_it_whole(capsys, tmp_path):
    model = tmp_path / "model"
    assert main(["tiny-model", "--kind", "embedder", "--out", str(model)]) == 0
    (model / "extra.txt").write_text("left over from an older model")
    before = tree_digest(model)
    fails_fast(capsys, "tiny-model", "--kind", "reranker", "--out", model, problem=f"{model}: folder is not empty; pass --overwrite")
    assert tree_digest(model) == before
    assert main(["tiny-model", "--kind", "reranker", "--out", str(model), "--overwrite"]) == 0
    assert not (model / "extra.txt").exists()
    assert json.loads((model / "embedforge.json").read_text())["kind"] == "reranker"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model"]


def test_merge_refuses_existing_output_accepts_model_names_and_names_folders(capsys, tmp_path, tiny_embedder_dir):
    output = tmp_path / "merged"
    output.mkdir()
    (output / "precious.txt").write_text("keep")
    before = tree_digest(output)
    fails_fast(capsys, "merge", "--checkpoints", tiny_embedder_dir, tiny_embedder_dir, "--output", output, problem="folder is not empty; pass --overwrite")
    fails_fast(capsys, "merge", "--checkpoints", tiny_embedder_dir, tiny_embedder_dir, "--output", output / "precious.txt", problem="is a file")
    assert tree_digest(output) == before
    # Packaged names resolve; MiniLM and the tiny Qwen3 do not fit together, and the error says which folders.
    line = fails_fast(capsys, "merge", "--checkpoints", tiny_embedder_dir, "all-MiniLM-L6-v2", "--output", tmp_path / "new", problem=str(tiny_embedder_dir))
    assert "state dict" not in line and not (tmp_path / "new").exists()
    assert main(["merge", "--checkpoints", str(tiny_embedder_dir), str(tiny_embedder_dir), "--output", str(output), "--overwrite"]) == 0
    assert (output / "model.safetensors").is_file() and not (output / "precious.txt").exists()


def test_train_and_serve_check_paths_before_starting_ray(capsys, tmp_path, tiny_embedder_dir):
    config = tmp_path / "train.yaml"
    config.write_text(
        "stage: 2\n"
        "model: {kind: embedder, base: tiny-qwen3-embedder}\n"
        f"data: {{datasets: [{{name: toy, path: {tmp_path / 'missing.jsonl'}}}]}}\n"
        "optim: {steps: 2, batch_size: 2}\n"
        "run: {name: toy}\n"
    )
    fails_fast(capsys, "train", "--config", config, problem=f"{config}: data.datasets.0.path: {tmp_path / 'missing.jsonl'} does not exist")
    fails_fast(capsys, "serve", "--embedder", tmp_path / "nowhere", problem=f"embedder: model folder not found: {tmp_path / 'nowhere'}")
    fails_fast(capsys, "serve", "--embedder", tiny_embedder_dir, "--reranker", tiny_embedder_dir, problem="reranker: ")
    fails_fast(capsys, "serve", "--embedder", tiny_embedder_dir, "--replicas", "0", problem="--replicas must be at least 1, got 0")
    fails_fast(capsys, "serve", "--config", Path(__file__).resolve().parents[1] / "cluster" / "serve.yaml", "--replicas", "2", problem="--replicas is for --embedder")


def test_evaluate_checks_task_names_and_models_first(capsys, tmp_path, tiny_reranker_dir):
    fails_fast(capsys, "evaluate", "--model", "all-MiniLM-L6-v2", "--tasks", "scifact-dve", "--output", tmp_path / "eval", problem="--tasks: unknown task 'scifact-dve'")
    fails_fast(capsys, "evaluate", "--model", tiny_reranker_dir, "--output", tmp_path / "eval", problem="--model: ")
    assert not (tmp_path / "eval").exists()


def test_pydantic_errors_are_one_line_per_problem(capsys):
    from embedforge.cli import error_lines
    from embedforge.eval.tasks import TaskLimits
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as caught:
        TaskLimits(max_queries=0, classification_experiments=-1)
    lines = error_lines(caught.value)
    assert len(lines) == 2 and lines[0].startswith("TaskLimits: max_queries: Input should be greater than or equal to 1")


def test_deepspeed_writes_no_warning_to_stdout_after_the_cli_set_up():
    """DeepSpeed's accelerator probe logs to stdout at import; the CLI names the accelerator first."""
    import os
    import subprocess
    import sys

    code = "from embedforge.cli import quiet_accelerator_probe; quiet_accelerator_probe(); import deepspeed"
    env = {key: value for key, value in os.environ.items() if key != "DS_ACCELERATOR"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ""
    bare = subprocess.run([sys.executable, "-c", "import deepspeed"], capture_output=True, text=True, env=env, timeout=300)
    assert "Setting accelerator to CPU" in bare.stdout  # what the CLI prevents
