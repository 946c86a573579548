"""Scanner-like BIDS sidecar contents of the simulated raw files (7T Siemens, LAION-fMRI)."""

from __future__ import annotations

import math
from typing import Any

from echoprep import __version__
from echoprep.simulate.design import slice_timing
from echoprep.simulate.geometry import PE_DIRECTION
from echoprep.simulate.presets import Preset

TASK = "images"
ECHO_SPACING = 0.00059  # s, between k-space lines
GRAPPA = 3
PARTIAL_FOURIER = 0.75
#: Dual-echo GRE fieldmap echo times, s (ΔTE 1.02 ms).
FMAP_TES = (0.00408, 0.0051)


def _common(preset: Preset) -> dict[str, Any]:
    return {
        "Manufacturer": "Siemens",
        "ManufacturersModelName": "MAGNETOM Terra.X (simulated)",
        "MagneticFieldStrength": 7,
        "InstitutionName": "echoprep simulator",
        "ConversionSoftware": "echoprep.simulate",
        "ConversionSoftwareVersion": __version__,
        "ReceiveCoilName": "32Ch Head (simulated)",
        "CoilCombinationMethod": "adaptive combine",
        "NonlinearGradientCorrection": False,
        "SoftwareVersions": "syngo MR XA60 (simulated)",
    }


def effective_echo_spacing(preset: Preset) -> float:
    """Effective echo spacing (s): echo spacing / in-plane acceleration."""
    return round(ECHO_SPACING / GRAPPA, 8)


def total_readout_time(preset: Preset) -> float:
    """Total readout time (s): effective echo spacing × (phase-encoding lines − 1).

    The simulated EPI distortion uses it: a voxel shift of ``TotalReadoutTime × f`` voxels
    along the phase-encoding axis per Hz of off-resonance (21.4 ms for LAION: 46.7 Hz per
    voxel; :mod:`.geometry`).
    """
    return round(effective_echo_spacing(preset) * (preset.shape[1] - 1), 8)


def bold_sidecar(preset: Preset, echo: int, part: str | None) -> dict[str, Any]:
    """Sidecar of a BOLD (``part`` ``"mag"``/``"phase"``) or SBRef (``part=None``) image."""
    nz = preset.shape[2]
    side = _common(preset) | {
        "TaskName": TASK,
        "RepetitionTime": preset.tr,
        "EchoTime": preset.tes[echo - 1],
        "EchoNumber": echo,
        "SliceTiming": slice_timing(nz, preset.multiband, preset.tr).tolist(),
        "SliceEncodingDirection": "k",
        "PhaseEncodingDirection": PE_DIRECTION,
        "EffectiveEchoSpacing": effective_echo_spacing(preset),
        "TotalReadoutTime": total_readout_time(preset),
        "EchoTrainLength": math.ceil(preset.shape[1] * PARTIAL_FOURIER / GRAPPA),
        "MultibandAccelerationFactor": preset.multiband,
        "ParallelReductionFactorInPlane": GRAPPA,
        "PartialFourier": PARTIAL_FOURIER,
        "FlipAngle": 70,
        "MRAcquisitionType": "2D",
        "PulseSequenceType": "multi-echo gradient-echo EPI",
        "ScanningSequence": "EP",
        "NumberOfVolumesDiscardedByScanner": 0,
        "ImageType": ["ORIGINAL", "PRIMARY", "P" if part == "phase" else "M", "ND", "MOSAIC"],
        "SequenceName": "epfid2d1_90",
        "PulseSequenceDetails": "CMRR multiband multi-echo EPI (simulated)",
        "PartialFourierDirection": "PHASE",
        "MatrixCoilMode": "GRAPPA",
        "TaskDescription": "Natural images shown for 2.5 s every 3 s; some trials are blank",
        "Instructions": "Look at the images (simulated)",
    }
    if part == "phase":
        side["Units"] = "arbitrary"
        side["PhaseScaling"] = "stored value v in [-4096, 4095]; phase in rad = v * pi / 4096"
    return side


def fmap_sidecar(preset: Preset, kind: str, intended_for: list[str] | None) -> dict[str, Any]:
    """Sidecar of ``magnitude1``, ``magnitude2`` or ``phasediff`` (dual-echo GRE); without
    ``IntendedFor`` when ``intended_for`` is None (a session's fieldmaps matched by time)."""
    side = _common(preset) | {
        "MRAcquisitionType": "2D",
        "ScanningSequence": "GR",
        "RepetitionTime": 0.5,
        "FlipAngle": 40,
    }
    if intended_for is not None:
        side["IntendedFor"] = intended_for
    if kind == "phasediff":
        side |= {
            "EchoTime1": FMAP_TES[0],
            "EchoTime2": FMAP_TES[1],
            "Units": "arbitrary",
            "PhaseScaling": "stored value v in [-4096, 4095]; phase in rad = v * pi / 4096",
        }
    else:
        side["EchoTime"] = FMAP_TES[int(kind[-1]) - 1]
    return side


def epi_fmap_sidecar(preset: Preset, direction: str, intended_for: list[str]) -> dict[str, Any]:
    """Sidecar of a reversed phase-encoding ``epi`` fieldmap image (a spin-echo EPI volume
    with the BOLD's readout, phase-encoded along ``direction``)."""
    return _common(preset) | {
        "MRAcquisitionType": "2D",
        "ScanningSequence": "SE\\EP",
        "RepetitionTime": 8.0,
        "EchoTime": preset.tes[0],
        "PhaseEncodingDirection": direction,
        "EffectiveEchoSpacing": effective_echo_spacing(preset),
        "TotalReadoutTime": total_readout_time(preset),
        "IntendedFor": intended_for,
    }


def t1w_sidecar(preset: Preset) -> dict[str, Any]:
    """Sidecar of the synthetic T1w (MPRAGE-like contrast, 3T as LAION's anatomy session)."""
    return _common(preset) | {
        "MagneticFieldStrength": 3,
        "ManufacturersModelName": "MAGNETOM Prisma (simulated)",
        "MRAcquisitionType": "3D",
        "PulseSequenceType": "MPRAGE",
        "ScanningSequence": "GR\\IR",
        "RepetitionTime": 2.3,
        "InversionTime": 0.9,
        "EchoTime": 0.00229,
        "FlipAngle": 8,
    }


EVENTS_JSON: dict[str, Any] = {
    "onset": {"Description": "Image onset from the start of the run's first volume", "Units": "s"},
    "duration": {"Description": "Image presentation time (trials are 3 s apart)", "Units": "s"},
    "trial_type": {
        "Description": "Trial category",
        "Levels": {
            "new": "first showing of the image in this session",
            "old": "image already shown earlier in this session",
            "blank": "no image (fixation only)",
        },
    },
    "stim_name": {"Description": "Image identifier (n/a for blank trials)"},
    "StimulusPresentation": {"SoftwareName": "none (simulated data)"},
}
