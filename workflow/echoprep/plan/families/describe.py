"""The config snapshot (``config_snapshot``) and one ``dataset_description.json`` (and
``.bidsignore``) per derivative folder (``dataset_description``, written from the output
registry's folder table, :mod:`echoprep.io.output_folders`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from echoprep.io import outputs as reg
from echoprep.io.atomic import write_text
from echoprep.io.rule_logs import TOP_KEY
from echoprep.plan.context import PlanContext
from echoprep.plan.rule import Family, RuleDef, RuleFiles

CONFIG_SNAPSHOT = RuleDef(
    name="config_snapshot",
    doc="The validated configuration, written once for the dataset descriptions and reports",
    level="dataset",
    log=("", TOP_KEY, "config_snapshot"),
    command="",
    message="Configuration snapshot for the dataset descriptions and reports",
    memory=None,
    local=True,
)
DATASET_DESCRIPTION = RuleDef(
    name="dataset_description",
    doc="A derivative folder's dataset_description.json, README.md and .bidsignore",
    level="folder",
    log=("{folder}", TOP_KEY, "dataset_description"),
    command=(
        "python -m echoprep describe {output:q} --source {params.source:q}"
        " --config-file {input.config:q} --folders {params.folders}"
    ),
    message="Dataset description {wildcards.folder}/",
    memory=None,
    local=True,
)


def _write_config(input: Any, output: Any, params: Any, log: Any) -> None:
    """The config snapshot, written in the Snakemake process (no command line that would
    carry the JSON into ``ps``, logs and the console)."""
    write_text(output[0], f"{params.config}\n")
    write_text(log[0], f"wrote {output[0]}\n")


class DescribeRules(Family):
    """The config snapshot and the dataset descriptions (module docstring)."""

    RULES = (CONFIG_SNAPSHOT, DATASET_DESCRIPTION)

    def __init__(self, ctx: PlanContext, families: Sequence[Family]) -> None:
        super().__init__(ctx)
        self.families = families

    def config_snapshot(self) -> RuleFiles:
        # a config change changes this job's params, so it and every job that reads the file
        # (descriptions, reports) run again
        return RuleFiles(
            {},
            {"config": self.ctx.config_file()},
            {"config": self.ctx.config_json()},
            run=_write_config,
        )

    def dataset_description(self) -> RuleFiles:
        return RuleFiles(
            {"config": self.ctx.config_file()},
            {"description": self.ctx.description()},
            {"source": self.ctx.source(), "folders": " ".join(self.folders())},
        )

    @staticmethod
    def folder_pattern() -> str:
        """Wildcard constraint of the ``dataset_description`` rule's ``folder``."""
        return "|".join(spec.pattern().pattern for spec in reg.FOLDERS.values())

    def folders(self) -> list[str]:
        """The derivative folders this config writes (each gets a dataset description): every
        family's, in the order of the families."""
        return [folder for family in self.families for folder in family.folders()]

    def targets(self) -> list[str]:
        """The dataset description of every derivative folder written."""
        return [self.ctx.description(f) for f in self.folders()]


__all__ = ["CONFIG_SNAPSHOT", "DATASET_DESCRIPTION", "DescribeRules"]
