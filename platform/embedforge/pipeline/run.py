"""``run_pipeline``: weak, synthesize, filter, mine, stage 1, stage 2 (and its variants), merge, reranker, evaluate, serve.

Every stage goes through :func:`embedforge.pipeline.stages.run_stage`, so a re-run after a
crash skips what is complete and continues with the rest. Stages wire together through the
``@stage`` references of the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from pydantic import BaseModel

from embedforge.config import parse_config
from embedforge.pipeline import actions
from embedforge.pipeline.config import TRAIN_STAGES, PipelineConfig
from embedforge.pipeline.references import find_references, resolve_references
from embedforge.pipeline.report import write_run_report
from embedforge.pipeline.results import link_result
from embedforge.pipeline.stages import StageResult, run_stage

Action = Callable[[Any, Path, Mapping[str, StageResult]], dict]
"""A stage function of :mod:`embedforge.pipeline.actions`: ``(section, folder, upstream) -> summary``."""


class Pipeline:
    """The stages run so far, by name, and how to run the next one."""

    def __init__(self, config: PipelineConfig, log: Callable[[str], None] = print):
        self.config = config
        self.run_dir = Path(config.run_dir)
        self.results: dict[str, StageResult] = {}
        self.log = log

    def stage(self, name: str, section: BaseModel | None, action: Action, needs: tuple[str, ...] = ()) -> StageResult | None:
        """Resolve the section's references, then run (or skip) the stage.

        Its upstream, which the stage reads and whose keys its own key hashes, is every stage
        its section references plus those of ``needs`` that are configured.
        """
        if section is None:
            self.log(f"[{name}] not configured; skipped")
            return None
        dump = section.model_dump(mode="json")
        names = sorted(find_references(dump) | {need for need in needs if need in self.results})
        upstream = {ref: self.results[ref] for ref in names}
        outputs = {result.name: str(result.summary["output"]) for result in self.results.values()}

        def resolved_action(folder: Path) -> dict:
            resolved = parse_config(resolve_references(dump, outputs, str(folder)), type(section), f"pipeline section {name}")
            return action(resolved, folder, upstream)

        result = run_stage(name, self.run_dir, dump, resolved_action, list(upstream.values()), self.log)
        self.results[name] = result
        link = link_result(self.run_dir, name, result.summary["output"]) if "output" in result.summary else None
        if link is not None:
            self.log(f"[{name}] model: {link}")
        return result


def run_pipeline(config: PipelineConfig, log: Callable[[str], None] = print) -> dict[str, StageResult]:
    """Run every configured stage in order; returns the stage results by name."""
    from embedforge.pipeline.checks import ray_settings_not_applied
    from embedforge.session import ensure_ray

    ensure_ray(config.ray)
    for warning in ray_settings_not_applied(config):
        log(warning)
    pipeline = Pipeline(config, log)
    pipeline.stage("weak", config.weak, actions.weak)
    pipeline.stage("synthesize", config.synthesize, actions.synthesize)
    pipeline.stage("filter", config.filter, actions.filter)
    pipeline.stage("mine_synthetic", config.mine_synthetic, actions.mine)
    pipeline.stage("mine_labelled", config.mine_labelled, actions.mine)
    pipeline.stage("stage1", config.stage1, actions.train)
    pipeline.stage("stage2", config.stage2, actions.train)
    for name, section in config.variant_stages.items():
        pipeline.stage(name, section, actions.train)
    pipeline.stage("merge", config.merge, actions.merge, needs=("stage2",))
    pipeline.stage("reranker", config.reranker, actions.train)
    pipeline.stage("evaluate", config.evaluate, actions.evaluate, needs=(*TRAIN_STAGES, *config.variant_stages, "merge"))
    report = write_run_report({name: result.summary for name, result in pipeline.results.items()}, pipeline.run_dir)
    log(f"run report: {report}")
    if config.serve is not None:
        actions.serve(config.serve, {name: pipeline.results[name] for name in ("merge", "reranker", "evaluate") if name in pipeline.results}, log=log)
    return pipeline.results
