"""Maps of the functional grid on the cortical surface (``echoprep surface sample``).

Every map given (single-trial betas, noise ceiling, R², a BOLD series) is sampled to each
hemisphere's fsnative vertices through the ribbon between the white and pial surfaces
(:func:`echoprep.kernels.surface.ribbon_matrix`: ``surface.depths`` points per vertex,
trilinear within the mask, averaged), and resampled to the template (fsaverage) through the
subject's ``sphere.reg`` (:func:`echoprep.kernels.surface.sphere_matrix`, FreeSurfer's
``nnfr``). One GIFTI file per map, hemisphere and space, each with a sidecar that copies the
source map's (units, noise-ceiling type, repetition time) and adds the sampling: depths,
mask, vertices outside the field of view or the mask (NaN), the template sphere.

A 4D map is read in chunks of :data:`CHUNK_VOLUMES` volumes from one open file (a gzip file
is read once, front to back: :func:`_chunks`), so memory holds the vertex values, not the
volume series.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from echoprep.io.freesurfer import read_mesh, write_func
from echoprep.io.images import StageInputError, check_same_grid, load_image
from echoprep.io.paths import sidecar_path
from echoprep.io.sidecars import write_sidecar
from echoprep.kernels.surface import (
    RibbonMatrix,
    resample_to_sphere,
    ribbon_matrix,
    sphere_matrix,
)

log = logging.getLogger(__name__)

#: Volumes read at a time from a 4D map.
CHUNK_VOLUMES = 64
#: Sidecar fields of the source map that describe the file, not its values (not copied).
_NOT_COPIED = ("Sources", "Parameters", "SoftwareVersions", "SpatialReference", "Description")
HEMIS = ("L", "R")


def output_key(name: str, hemi: str, space: str) -> str:
    """``--out`` key of a map on a hemisphere and space (``betas_L_fsnative``)."""
    return f"{name}_{hemi}_{space}"


def parse_output_key(key: str) -> tuple[str, str, str]:
    """``(map, hemi, space)`` of an :func:`output_key`.

    Raises
    ------
    StageInputError
        A key not of that form.
    """
    parts = key.rsplit("_", 2)
    if len(parts) != 3 or parts[1] not in HEMIS:
        raise StageInputError(
            f"surface sample: expected --out keys <map>_<L|R>_<space> (betas_L_fsnative); "
            f"found {key!r}"
        )
    return parts[0], parts[1], parts[2]


def _chunks(path: Path, mask: np.ndarray) -> Iterator[np.ndarray]:
    """``(mask voxels, k)`` float32 blocks of a 3D or 4D image, volume chunks in order, read
    from one open file (nibabel's default reopens a gzip file for every chunk and decompresses
    it from the start again: 6.6 against 2.5 CPU-s for 320 LAION-size betas, growing with the
    square of the volumes)."""
    img = nib.load(path, keep_file_open=True)
    if img.ndim == 3:
        yield np.asarray(img.dataobj, np.float32)[mask][:, None]
        return
    for start in range(0, img.shape[3], CHUNK_VOLUMES):
        block = np.asarray(img.dataobj[..., start : start + CHUNK_VOLUMES], np.float32)
        yield block[mask]


def _source_metadata(path: Path) -> tuple[dict[str, Any], str]:
    """The source map's sidecar fields that describe its values, and its description."""
    try:
        content = json.loads(sidecar_path(path).read_text())
    except (OSError, ValueError):
        return {}, ""
    if not isinstance(content, dict):
        return {}, ""
    kept = {k: v for k, v in content.items() if k not in _NOT_COPIED}
    return kept, str(content.get("Description", ""))


def run_surface_sample(
    maps: Mapping[str, str | Path],
    mask: str | Path | Sequence[str | Path],
    surfaces: Mapping[str, str | Path],
    outputs: Mapping[str, str | Path],
    *,
    depths: int,
    template: str | None = None,
    template_spheres: Mapping[str, str | Path] | None = None,
) -> dict[str, Path]:
    """Sample maps to the surfaces and write them as GIFTI (module docstring).

    Parameters
    ----------
    maps
        Map name (``betas``, ``nc``, ``r2``, ``bold``...) -> 3D or 4D NIfTI on one grid.
    mask
        Mask on that grid: only its voxels reach a vertex (the GLM's fitted mask); several:
        their intersection (the sessions' fitted masks of a subject map).
    surfaces
        ``white_<L|R>``, ``pial_<L|R>`` (T1w world, mm) and ``sphere_<L|R>`` (sphere.reg) ->
        GIFTI surface of the surface anatomy step.
    outputs
        :func:`output_key` -> path, for every map, hemisphere and space (``fsnative`` and
        ``template``).
    depths
        Points per vertex (config ``surface.depths``).
    template, template_spheres
        Template space label (``fsaverage``) and its sphere per hemisphere; None: fsnative only.

    Returns
    -------
    dict
        Output key -> path written.
    """
    t0 = time.perf_counter()
    mask_paths = [Path(mask)] if isinstance(mask, str | Path) else [Path(m) for m in mask]
    wanted = {parse_output_key(k): Path(v) for k, v in outputs.items()}
    for name, hemi, space in wanted:
        if name not in maps:
            raise StageInputError(
                f"surface sample: --out {name}_{hemi}_{space} but no --map {name}"
            )
        if space not in ("fsnative", template):
            raise StageInputError(
                f"surface sample: --out {name}_{hemi}_{space}: expected space fsnative or "
                f"{template}; found {space}"
            )
    images = {k: load_image(v, f"{k} map") for k, v in maps.items()}
    first_name = next(iter(maps))
    like = images[first_name]
    for name, img in images.items():
        check_same_grid(
            img,
            like,
            path=maps[name],
            ref_path=maps[first_name],
            what=f"{name} map",
            fix="Fix: pass maps of one GLM fit (one grid).",
        )
    grid_mask = np.ones(like.shape[:3], bool)
    for mask_path in mask_paths:
        mask_img = load_image(mask_path, "analysis mask")
        check_same_grid(
            mask_img,
            like,
            path=mask_path,
            ref_path=maps[first_name],
            what="analysis mask",
            fix="Fix: pass the mask of the same GLM fit.",
        )
        grid_mask &= np.asarray(mask_img.dataobj).reshape(like.shape[:3]) > 0
    vox_from_world = np.linalg.inv(np.asarray(like.affine, float))
    ribbons: dict[str, RibbonMatrix] = {}
    spheres = {}
    for hemi in HEMIS:
        white, _ = read_mesh(surfaces[f"white_{hemi}"])
        pial, _ = read_mesh(surfaces[f"pial_{hemi}"])
        ribbons[hemi] = ribbon_matrix(
            white, pial, vox_from_world, like.shape[:3], grid_mask, depths
        )
        if template is not None:
            if not template_spheres or hemi not in template_spheres:
                raise StageInputError(f"surface sample: no template sphere for hemi-{hemi}")
            source, _ = read_mesh(surfaces[f"sphere_{hemi}"])
            target, _ = read_mesh(template_spheres[hemi])
            spheres[hemi] = sphere_matrix(source, target)
    t_matrix = time.perf_counter() - t0
    written: dict[str, Path] = {}
    for name, img in images.items():
        values: dict[str, list[np.ndarray]] = {h: [] for h in HEMIS}
        for block in _chunks(Path(maps[name]), grid_mask):
            if not np.all(np.isfinite(block)):  # a non-finite voxel counts as 0 (as outside
                # the fit, where the GLM writes 0): one NaN would blank every vertex it touches
                block = np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0)
            for hemi in HEMIS:
                values[hemi].append(ribbons[hemi].sample(block))
        for hemi in HEMIS:
            native = np.concatenate(values[hemi], axis=1)
            values[hemi] = []
            data = {"fsnative": native}
            if template is not None and (name, hemi, template) in wanted:
                data[template] = resample_to_sphere(spheres[hemi], native)
            for space, arr in data.items():
                out = wanted.get((name, hemi, space))
                if out is None:
                    continue
                write_func(arr[:, 0] if img.ndim == 3 else arr, out, hemi=hemi)
                _sidecar(
                    out,
                    Path(maps[name]),
                    mask_paths,
                    surfaces,
                    hemi=hemi,
                    space=space,
                    ribbon=ribbons[hemi],
                    depths=depths,
                    template_sphere=None if space == "fsnative" else (template_spheres or {})[hemi],
                    empty=int(np.isnan(arr[:, 0]).sum()),
                )
                written[output_key(name, hemi, space)] = out
    log.info(
        "surface sample: %d files (%.1f s; sampling matrices %.1f s)",
        len(written),
        time.perf_counter() - t0,
        t_matrix,
    )
    return written


def _sidecar(
    out: Path,
    source: Path,
    masks: list[Path],
    surfaces: Mapping[str, str | Path],
    *,
    hemi: str,
    space: str,
    ribbon: RibbonMatrix,
    depths: int,
    template_sphere: str | Path | None,
    empty: int,
) -> None:
    meta, described = _source_metadata(source)
    sampling: dict[str, Any] = {
        "Method": "ribbon: points evenly from white (0) to pial (1), trilinear within the mask "
        "(weights renormalised over the mask voxels), averaged (docs/surface.md)",
        "Depths": int(depths),
        "Mask": "the voxels of every mask in Sources (their intersection)",
        "Vertices": int(ribbon.outside_fov.size),
        "OutsideFieldOfView": int(ribbon.outside_fov.sum()),
        "OutsideMask": int(ribbon.outside_mask.sum()),
    }
    sources: list[str | Path] = [
        source,
        *masks,
        surfaces[f"white_{hemi}"],
        surfaces[f"pial_{hemi}"],
    ]
    if template_sphere is not None:
        sampling["Resampling"] = (
            f"fsnative -> {space} through sphere.reg, nearest neighbours forward and reverse "
            "(FreeSurfer mri_surf2surf nnfr), NaN sources left out"
        )
        sources += [surfaces[f"sphere_{hemi}"], template_sphere]
    write_sidecar(
        out,
        sources=sources,
        parameters={"depths": int(depths)},
        extra={
            **meta,
            "Description": f"Sampled to the cortical surface (hemisphere {hemi}, {space}; one "
            "data array per volume of the source; NaN where no value: outside the field of view "
            "or the mask)" + (f". The source: {described}" if described else ""),
            "Hemisphere": hemi,
            "Space": space,
            "VerticesWithoutValue": empty,
            "SurfaceSampling": sampling,
        },
        software=("nibabel", "scipy"),
    )


__all__ = ["CHUNK_VOLUMES", "output_key", "parse_output_key", "run_surface_sample"]
