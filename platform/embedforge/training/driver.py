"""The driver side of a training run: datasets, Ray Train trainer, fit, artefacts.

:func:`run_training` reads and checks the mixture's datasets, appends the tokenisation
stage, runs :func:`embedforge.training.loop.train_func` on a ``TorchTrainer`` and returns
the final model folder. The run folder ``storage_path/name`` holds Ray's checkpoints (the
newest ``keep_checkpoints``), ``metrics.jsonl``, ``loss_curve.png``, ``merge_candidates/``
and ``final_model/``. Submitting the same config again continues the run from its latest
checkpoint.
"""

from __future__ import annotations

import random
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from embedforge.session import ensure_ray
from embedforge.training.config import TrainConfig
from embedforge.training.pairs import read_pair_rows


@dataclass
class TrainingResult:
    run_dir: Path
    final_model: Path
    merge_candidates: dict[int, Path]
    metrics: list[dict]
    skipped_rows: dict[str, dict[str, int]] = field(default_factory=dict)
    loss_curve: Path | None = None


def build_datasets(cfg: TrainConfig, base_dir: Path, run_dir: Path) -> tuple[dict, dict[str, int], dict[str, dict[str, int]]]:
    """Ray datasets of token columns, per-worker batches per epoch, and skipped-row counts.

    A reranker with ``model.prior`` gets its prior built here and saved in ``run_dir/prior``
    (BM25 counts the documents of every dataset), for the tokeniser and the exported model.
    """
    import ray.data

    from embedforge.training.batches import TokenizeEmbedderPairs, TokenizeJudgeGroups, TokenizePairGroups

    world, batch = cfg.scaling.num_workers, cfg.optim.batch_size
    mixture = {spec.name: read_pair_rows(spec.path, num_negatives=cfg.data.num_negatives, instruction=spec.instruction) for spec in cfg.data.datasets}
    if cfg.model.kind == "embedder":
        from embedforge.models.embedder import read_settings

        max_length = cfg.model.max_length or read_settings(base_dir).max_length
        stage, kwargs = TokenizeEmbedderPairs, {"query_max_length": cfg.model.query_max_length, "max_length": max_length}
    else:
        from embedforge.models.prior import PRIOR_FOLDER
        from embedforge.models.reranker import reranker_settings

        settings = reranker_settings(base_dir, new_head=True)
        stage = TokenizePairGroups if settings.prompt_format == "pair" else TokenizeJudgeGroups
        kwargs = {"max_length": cfg.model.max_length or settings.max_length}
        if cfg.model.prior is None and (base_dir / PRIOR_FOLDER).is_dir():
            raise ValueError(f"{base_dir} was trained with a prior ({PRIOR_FOLDER}/): set model.prior to go on training it")
        if cfg.model.prior is not None:
            if stage is not TokenizePairGroups:
                raise ValueError(f"model.prior needs a pair cross-encoder base (a BERT-like encoder); {base_dir} is not one")
            kwargs["prior_dir"] = str(build_prior(cfg, mixture, run_dir / PRIOR_FOLDER))
    datasets, batches_per_epoch, skipped = {}, {}, {}
    for spec in cfg.data.datasets:
        rows = mixture[spec.name]
        per_worker = len(rows.rows) // world // batch
        if per_worker < 1:
            raise ValueError(
                f"dataset {spec.name!r} ({spec.path}) has {len(rows.rows)} usable rows, fewer than "
                f"batch_size * num_workers = {batch * world}"
            )
        random.Random(cfg.data.seed).shuffle(rows.rows)
        # A few large blocks: per-row blocks would make tokenisation task-bound.
        dataset = ray.data.from_items(rows.rows, override_num_blocks=max(world, len(rows.rows) // 2000))
        tokenized = dataset.map_batches(
            stage,
            fn_constructor_kwargs={"model_dir": str(base_dir), **kwargs},
            batch_size=max(batch, 16),
            compute=ray.data.ActorPoolStrategy(size=1),
            num_cpus=0.5,
        )
        datasets[spec.name] = tokenized.materialize() if cfg.data.cache_tokenized else tokenized
        batches_per_epoch[spec.name] = per_worker
        skipped[spec.name] = rows.skipped
    return datasets, batches_per_epoch, skipped


def build_prior(cfg: TrainConfig, mixture: dict, folder: Path) -> Path:
    """Build the reranker's prior (embedder, BM25 over the training documents) and save it in ``folder``."""
    from embedforge.models.prior import FirstStagePrior
    from embedforge.models.registry import resolve_model

    documents = (text for rows in mixture.values() for row in rows.rows for text in (row["positive"], *row["negatives"]))
    section = cfg.model.prior
    prior = FirstStagePrior.build(resolve_model(section.embedder), documents, section.embedder_weight, section.lexical_weight)
    if folder.exists():
        shutil.rmtree(folder)
    return prior.save(folder)


def run_training(cfg: TrainConfig) -> TrainingResult:
    """Train the configured model on Ray Train; returns the final model folder and metrics."""
    import ray.data
    import ray.train
    from ray.train.torch import TorchTrainer

    from embedforge.models.registry import resolve_model
    from embedforge.training.loop import train_func
    from embedforge.training.metrics import LOSS_CURVE_FILE, plot_loss_curve, read_metrics

    ensure_ray(cfg.ray)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    base_dir = resolve_model(cfg.model.base).resolve()
    storage = Path(cfg.run.storage_path).resolve()
    run_dir = storage / cfg.run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    datasets, batches_per_epoch, skipped = build_datasets(cfg, base_dir, run_dir)
    for name, counts in skipped.items():
        if counts:
            print(f"dataset {name}: skipped rows {counts}")

    trainer = TorchTrainer(
        train_func,
        train_loop_config={
            "train": cfg.model_dump(),
            "base_dir": str(base_dir),
            "run_dir": str(run_dir),
            "batches_per_epoch": batches_per_epoch,
            "progress_bar": sys.stdout.isatty(),
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={"CPU": cfg.scaling.cpus_per_worker, **({"GPU": 1} if cfg.scaling.use_gpu else {})},
        ),
        run_config=ray.train.RunConfig(
            name=cfg.run.name,
            storage_path=str(storage),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.run.keep_checkpoints),
            failure_config=ray.train.FailureConfig(max_failures=cfg.run.max_failures),
        ),
        datasets=datasets,
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    final_model = run_dir / "final_model"
    if not (final_model / "config.json").is_file():
        raise RuntimeError(f"training finished without writing {final_model}")
    records = read_metrics(run_dir)
    curve = plot_loss_curve(records, run_dir / LOSS_CURVE_FILE, f"{cfg.run.name} (stage {cfg.stage}, {cfg.model.kind})")
    candidates = {
        int(folder.name.split("_")[1]): folder
        for folder in sorted((run_dir / "merge_candidates").glob("step_*"))
        if (folder / "config.json").is_file()
    }
    return TrainingResult(run_dir, final_model, candidates, records, skipped, curve)
