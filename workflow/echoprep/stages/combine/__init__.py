"""Echo handling stage: single-echo baseline, tedana optimal combination, tedana ICA denoising.

A sub-package (the stage was one module of ~950 lines): :mod:`.echoes` (outputs, options,
checks, single echo, optcom), :mod:`.ica` (ICA denoising and its dimensionality after NORDIC),
:mod:`.cli` (``echoprep combine``). tedana itself is called through
:mod:`echoprep.adapters.tedana`. Every public name is importable from here.
"""

from echoprep.adapters.tedana import IcaAttempts, count_ica_attempts
from echoprep.io.images import StageInputError
from echoprep.stages.combine.cli import add_arguments, run_from_args
from echoprep.stages.combine.echoes import (
    ICA_RECORD,
    SECTIONS,
    OptcomOptions,
    SingleEchoOptions,
    TedanaOptions,
    run_optcom,
    validate_echoes,
    write_single_echo,
)
from echoprep.stages.combine.ica import (
    FALLBACK_FRACTION,
    NORDIC_TEDPCA_MODES,
    ComponentChoice,
    choose_components,
    parse_tedpca,
    read_component_count,
    run_tedana,
    write_rejected,
)

__all__ = [
    "FALLBACK_FRACTION",
    "ICA_RECORD",
    "NORDIC_TEDPCA_MODES",
    "SECTIONS",
    "ComponentChoice",
    "IcaAttempts",
    "OptcomOptions",
    "SingleEchoOptions",
    "StageInputError",
    "TedanaOptions",
    "add_arguments",
    "choose_components",
    "count_ica_attempts",
    "parse_tedpca",
    "read_component_count",
    "run_from_args",
    "run_optcom",
    "run_tedana",
    "validate_echoes",
    "write_rejected",
    "write_single_echo",
]
