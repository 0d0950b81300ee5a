"""The pipeline config: one YAML from corpus to served models.

Each section is the config of one stage, exactly as its own command takes it
(``embedforge synthesize``, ``filter``, ``mine``, ``train``, ``merge``, ``evaluate``,
``serve``), with stage references (``embedforge.pipeline.references``) in place of paths
between stages.
Folders the pipeline owns (``output_dir``, a training run's ``storage_path`` and ``name``)
default to ``@out``, the stage's own folder under ``run_dir``; the merged model goes to
``model/`` inside the merge stage's folder.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from embedforge.config import ConfigModel, DataPath
from embedforge.eval.settings import EvaluateConfig
from embedforge.merge import MergeConfig
from embedforge.pipeline.references import OWN_FOLDER
from embedforge.session import RayConfig
from embedforge.synthesis.filter import FilterConfig
from embedforge.synthesis.synthesize import SynthesizeConfig
from embedforge.synthesis.mine import MineConfig
from embedforge.synthesis.weak import WeakConfig
from embedforge.training.config import TrainConfig

DATA_STAGES = ("weak", "synthesize", "filter", "mine_synthetic", "mine_labelled")
TRAIN_STAGES = ("stage1", "stage2", "stage2_from_base", "reranker")


class ServeSection(ConfigModel):
    """Serve the merged embedder and the reranker at the end of the run."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    keep_alive: bool = False
    """Keep the endpoint up until Ctrl-C; by default it answers one sample request and stops."""
    sample_query: str = "What is the role of microRNAs in cancer?"


RENAMED_KEYS = {
    "local_ray_cpus": "replaced by the top-level ray section; write ray: {num_cpus: N}",
    "evaluation": "renamed evaluate, the stage's name (as in `embedforge evaluate`)",
}
"""Keys of older pipeline files, refused with what to write instead."""


class PipelineConfig(ConfigModel):
    """``embedforge run CONFIG``: every stage of the recipe, each resumable."""

    run_dir: DataPath
    """Every stage writes to ``run_dir/<stage>-<key>``; the key hashes its config and inputs."""
    ray: RayConfig = RayConfig()
    """The run's one Ray session, started before the first stage: every stage runs in it, so a
    section's own ``ray`` settings do not apply (``embedforge run`` warns about each). Over-provision
    a local Ray on small machines (``num_cpus: 4`` on 2 cores) so training workers and Ray Data
    stages run side by side."""
    weak: WeakConfig | None = None
    """LLM-free weak pairs from the corpus (titles, inverse cloze, crops): stage 1's pool."""
    synthesize: SynthesizeConfig | None = None
    """LLM pairs; unfiltered, they join stage 1's pool (``@synthesize``); filtered, stage 2."""
    filter: FilterConfig | None = None
    mine_synthetic: MineConfig | None = None
    mine_labelled: MineConfig | None = None
    stage1: TrainConfig | None = None
    stage2: TrainConfig
    stage2_from_base: TrainConfig | None = None
    """Stage 2 again, started from the base model rather than from stage 1: a second merge
    ingredient trained on the same data from another start (``merge.checkpoints: ["@stage2",
    "@stage2_from_base"]``), the diversity that makes a merge beat its ingredients."""
    merge: MergeConfig = MergeConfig()
    """Stage 3, as ``embedforge merge --config`` takes it; by default the checkpoints stage 2
    kept at ``run.merge_steps``, merged into ``model/`` in the stage's folder."""
    reranker: TrainConfig | None = None
    evaluate: EvaluateConfig = EvaluateConfig()
    serve: ServeSection | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_renamed_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, hint in RENAMED_KEYS.items():
                if key in data:
                    raise ValueError(f"{key}: {hint}")
        return data

    @model_validator(mode="before")
    @classmethod
    def _own_folders(cls, data: Any) -> Any:
        """Default the folders the pipeline owns to ``@out``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name in DATA_STAGES:
            if isinstance(data.get(name), dict):
                data[name] = {"output_dir": OWN_FOLDER, **data[name]}
        for name in TRAIN_STAGES:
            if isinstance(data.get(name), dict):
                run = {"name": name, "storage_path": OWN_FOLDER, **(data[name].get("run") or {})}
                data[name] = {**data[name], "run": run}
        return data

    @model_validator(mode="after")
    def _stages_fit_together(self) -> "PipelineConfig":
        if self.stage2.stage != 2 or self.stage2.model.kind != "embedder":
            raise ValueError("stage2 must be a stage-2 embedder config")
        if self.stage1 is not None and (self.stage1.stage != 1 or self.stage1.model.kind != "embedder"):
            raise ValueError("stage1 must be a stage-1 embedder config")
        if self.stage2_from_base is not None and (self.stage2_from_base.stage != 2 or self.stage2_from_base.model.kind != "embedder"):
            raise ValueError("stage2_from_base must be a stage-2 embedder config")
        if self.reranker is not None and self.reranker.model.kind != "reranker":
            raise ValueError("reranker must be a reranker config")
        if self.merge.checkpoints is None:
            if len(self.stage2.run.merge_steps) < 2:
                raise ValueError("stage2.run.merge_steps must name at least two steps to merge in stage 3 (or set merge.checkpoints)")
            if self.merge.weights is not None and len(self.merge.weights) != len(self.stage2.run.merge_steps):
                raise ValueError("merge.weights needs one weight per stage2.run.merge_steps entry")
        return self
