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

import typing
from typing import Any

from pydantic import BaseModel, Field, model_validator

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
TRAIN_STAGES = ("stage1", "stage2", "reranker")
VARIANT_PREFIX = "stage2_"
"""A stage-2 variant ``NAME`` runs as the stage ``stage2_NAME`` (its folder, ``@`` reference and report label)."""


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
    "stage2_from_base": "is now one of the stage-2 variants: write stage2_variants: {from_base: {...}} (still referenced as @stage2_from_base)",
}
"""Keys of older pipeline files, refused with what to write instead."""


def holds_model(annotation: Any) -> bool:
    """Whether a field's type is, or may be, a config section (a pydantic model)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(holds_model(argument) for argument in typing.get_args(annotation))


def own_run(section: dict, stage: str) -> dict:
    """A training section whose run is named after its stage and kept in the stage's folder."""
    return {**section, "run": {"name": stage, "storage_path": OWN_FOLDER, **(section.get("run") or {})}}


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
    stage2_variants: dict[str, TrainConfig] = {}
    """More stage-2 embedders, by name: other learning rates, data mixtures or starting points
    (``from_base``: the base model instead of stage 1). Variant ``NAME`` runs as stage
    ``stage2_NAME`` after ``stage2``; the merge takes them as ``@stage2_NAME``
    (``merge.checkpoints: ["@stage2", "@stage2_lr5"]``), the diversity that lets a merge beat
    its ingredients, and the report scores each against the base."""
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
                data[name] = own_run(data[name], name)
        if isinstance(data.get("stage2_variants"), dict):
            data["stage2_variants"] = {
                variant: own_run(section, VARIANT_PREFIX + variant) if isinstance(section, dict) else section
                for variant, section in data["stage2_variants"].items()
            }
        return data

    @property
    def variant_stages(self) -> dict[str, TrainConfig]:
        """The stage-2 variants by stage name (``stage2_NAME``), in config order."""
        return {VARIANT_PREFIX + variant: section for variant, section in self.stage2_variants.items()}

    def stage_sections(self) -> dict[str, BaseModel | None]:
        """Every stage's section by stage name, in run order (``None`` when not configured).

        Stages run in the order the sections are declared, each stage-2 variant right after
        ``stage2``; the run's ``ray`` session is not a stage.
        """
        sections: dict[str, BaseModel | None] = {}
        for name, field in type(self).model_fields.items():
            if name == "stage2_variants":
                sections.update(self.variant_stages)
            elif field.annotation is not RayConfig and holds_model(field.annotation):
                sections[name] = getattr(self, name)
        return sections

    @model_validator(mode="after")
    def _stages_fit_together(self) -> "PipelineConfig":
        if self.stage2.stage != 2 or self.stage2.model.kind != "embedder":
            raise ValueError("stage2 must be a stage-2 embedder config")
        if self.stage1 is not None and (self.stage1.stage != 1 or self.stage1.model.kind != "embedder"):
            raise ValueError("stage1 must be a stage-1 embedder config")
        for variant, section in self.stage2_variants.items():
            if not variant.isidentifier():
                raise ValueError(f"stage2_variants: {variant!r} must be a name of letters, digits and underscores")
            if section.stage != 2 or section.model.kind != "embedder":
                raise ValueError(f"stage2_variants.{variant} must be a stage-2 embedder config")
        if self.reranker is not None and self.reranker.model.kind != "reranker":
            raise ValueError("reranker must be a reranker config")
        if self.merge.checkpoints is None:
            if len(self.stage2.run.merge_steps) < 2:
                raise ValueError("stage2.run.merge_steps must name at least two steps to merge in stage 3 (or set merge.checkpoints)")
            if self.merge.weights is not None and len(self.merge.weights) != len(self.stage2.run.merge_steps):
                raise ValueError("merge.weights needs one weight per stage2.run.merge_steps entry")
        return self
