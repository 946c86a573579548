"""tedana run lean (the adapter's default) against stock tedana: the files echoprep keeps are
the same to the bit, what it discards is not written."""

from __future__ import annotations

import gc
import json

import nibabel as nib
import numpy as np
import pytest

from echoprep.adapters import tedana as adapter

TES = [0.011, 0.02882, 0.04662]
ICA = {
    "fittype": "loglin",
    "masktype": ["dropout"],
    "tree": "tedana_orig",
    "ica_method": "fastica",
    "n_robust_runs": 30,
    "maxit": 500,
    "maxrestart": 3,
    "seed": 42,
    "n_threads": 1,
}


@pytest.fixture(scope="module")
def echoes(tmp_path_factory):
    """Three echoes of an 18x18x10 block 'brain' with six R2*-driven (BOLD-like) courses, one
    S0-driven (non-BOLD) course and thermal noise, 60 volumes."""
    folder = tmp_path_factory.mktemp("echoes")
    rng = np.random.default_rng(3)
    shape, n_t = (18, 18, 10), 60
    brain = np.zeros(shape, bool)
    brain[2:16, 2:16, 1:9] = True
    t = np.arange(n_t)
    courses = np.stack([np.sin(2 * np.pi * t / p) for p in (13, 29, 7, 17, 5, 11)])
    dr2 = (rng.standard_normal((*shape, len(courses))) * 0.8) @ courses  # 1/s
    ds0 = 0.02 * rng.standard_normal((*shape, 1)) * np.cos(2 * np.pi * t / 19)
    return _write_echoes(folder, brain, dr2, ds0, rng)


def _write_echoes(folder, brain, dr2, ds0, rng) -> list:
    """The echoes of S0 (1 + ds0) exp(-TE (1/30 ms + dr2)) in ``brain`` with thermal noise
    (magnitude, sd 6), as ``echo-<n>.nii.gz`` in ``folder``."""
    files = []
    for i, te in enumerate(TES):
        sig = 1000.0 * (1 + ds0) * np.exp(-te * (1 / 0.03 + dr2)) * brain[..., None]
        data = np.abs(sig + 6.0 * rng.standard_normal(sig.shape))
        f = folder / f"echo-{i + 1}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([3.0, 3.0, 3.0, 1.0])), f)
        files.append(f)
    return files


def _same(stock: dict, lean: dict) -> None:
    assert stock.keys() == lean.keys()
    for key, path in stock.items():
        other = lean[key]
        if path.name.endswith(".nii.gz"):
            assert other.name == path.name.removesuffix(".gz")  # written uncompressed
            a, b = nib.load(path), nib.load(other)
            assert a.get_data_dtype() == b.get_data_dtype(), key
            assert np.array_equal(a.affine, b.affine), key
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj), key)
        else:
            assert path.read_bytes() == other.read_bytes(), key


def _registry(folder) -> dict:
    return json.loads(next(folder.glob("*registry.json")).read_text())


def test_lean_t2smap_keeps_the_same_files_and_writes_no_other_image(echoes, tmp_path):
    opts = {"fittype": "loglin", "masktype": ["dropout"], "n_threads": 1}
    stock = adapter.run_t2smap(echoes, TES, tmp_path / "stock", lean=False, **opts)
    lean = adapter.run_t2smap(echoes, TES, tmp_path / "lean", **opts)
    _same(stock, lean)
    # the names echoprep keeps are tedana's own for these descriptions
    registry = _registry(tmp_path / "stock")
    for path in stock.values():
        assert registry[adapter.TEDANA_DESCRIPTIONS[path.name]] == path.name
    assert {p.name for p in (tmp_path / "lean").glob("*.nii*")} == {p.name for p in lean.values()}
    assert (tmp_path / "stock" / "desc-rmse_statmap.nii.gz").exists()


@pytest.mark.parametrize("tedpca", ["aic", 5, "kundu"])
def test_lean_tedana_keeps_the_same_files_and_skips_what_is_discarded(echoes, tmp_path, tedpca):
    stock = adapter.run_tedana(echoes, TES, tmp_path / "stock", tedpca=tedpca, lean=False, **ICA)
    lean = adapter.run_tedana(echoes, TES, tmp_path / "lean", tedpca=tedpca, **ICA)
    mixing = np.loadtxt(stock["mixing"], skiprows=1, ndmin=2)
    assert mixing.shape[0] == 60 and mixing.shape[1] >= 2  # a real decomposition was compared
    _same(stock, lean)
    registry = _registry(tmp_path / "stock")
    for path in stock.values():
        assert registry[adapter.TEDANA_DESCRIPTIONS[path.name]] == path.name
    written = {p.name for p in (tmp_path / "lean").iterdir()}
    assert {p.name for p in (tmp_path / "lean").glob("*.nii*")} == {lean["bold"].name}
    for skipped in ("desc-ICA_components.nii.gz", "desc-optcom_bold.nii.gz", "T2starmap.nii.gz"):
        assert (tmp_path / "stock" / skipped).exists() and skipped not in written
    # the PCA components' metrics are computed only where the choice of components reads them
    assert ("desc-PCA_metrics.tsv" in written) == (tedpca == "kundu")


def test_frozen_denoising_gives_tedanas_denoised_series_back(tmp_path):
    """The run's ICA denoising frozen (its mixing matrix and classifications, tedana's own
    ``denoise_ts``) and applied to the run's optimal combination, made with the frozen weights
    of its T2* map and adaptive mask, is tedana's ICA-denoised series: the map the planted
    responses go through (docs/comparison.md) is the run's own."""
    import pandas as pd

    from echoprep.kernels.planted import optcom_weights

    # the fixture's echoes with two strong S0-driven (non-BOLD) courses, which tedana rejects
    rng = np.random.default_rng(5)
    shape, n_t = (14, 14, 8), 60
    brain = np.zeros(shape, bool)
    brain[2:12, 2:12, 1:7] = True
    t = np.arange(n_t)
    courses = np.stack([np.sin(2 * np.pi * t / p) for p in (13, 29, 7, 17)])
    dr2 = (rng.standard_normal((*shape, len(courses))) * 0.8) @ courses
    s0_courses = np.stack([np.cos(2 * np.pi * t / 19), np.sin(2 * np.pi * t / 9)])
    ds0 = (0.05 * rng.standard_normal((*shape, 2))) @ s0_courses
    echoes = _write_echoes(tmp_path, brain, dr2, ds0, rng)
    stock = adapter.run_tedana(echoes, TES, tmp_path / "stock", tedpca=8, lean=False, **ICA)
    folder = tmp_path / "stock"
    table = pd.read_csv(stock["metrics"], sep="\t")
    assert {"accepted", "rejected"} <= set(table["classification"])  # both kinds present
    mixing = pd.read_csv(stock["mixing"], sep="\t").to_numpy()
    t2s = np.asarray(nib.load(folder / "T2starmap.nii.gz").dataobj, np.float64).ravel()
    good = np.asarray(nib.load(folder / "desc-adaptiveGoodSignal_mask.nii.gz").dataobj).ravel()
    echo_data = [np.asarray(nib.load(f).dataobj, np.float64).reshape(t2s.size, -1) for f in echoes]
    w = optcom_weights(t2s, good, TES)
    optcom = sum(w[:, e : e + 1] * echo_data[e] for e in range(3))
    expected = np.asarray(nib.load(stock["bold"]).dataobj, np.float64).reshape(t2s.size, -1)
    got = adapter.denoise_frozen(optcom, mixing, table["classification"], good > 0)
    inside = good > 0
    scale = np.abs(expected[inside]).max()
    np.testing.assert_allclose(got[inside], expected[inside], atol=2e-5 * scale)
    assert np.all(got[~inside] == 0)
    # linear: the denoising of a difference is the difference of the denoised series
    half = adapter.denoise_frozen(optcom / 2, mixing, table["classification"], inside)
    np.testing.assert_allclose(half[inside], got[inside] / 2, atol=1e-9 * scale)


def test_tedanas_collections_leave_out_the_objects_alive_before_it(echoes, tmp_path, monkeypatch):
    """nilearn collects garbage each time tedana reads an image; those collections run with
    the caller's objects frozen (not walked), and the caller's collector is as it was after."""
    assert gc.get_freeze_count() == 0
    frozen_at_collection = []
    collect = gc.collect

    def counted(*args, **kwargs):
        frozen_at_collection.append(gc.get_freeze_count())
        return collect(*args, **kwargs)

    monkeypatch.setattr(gc, "collect", counted)
    opts = {"fittype": "loglin", "masktype": ["dropout"], "n_threads": 1}
    adapter.run_t2smap(echoes, TES, tmp_path / "lean", **opts)
    assert len(frozen_at_collection) >= 5  # nilearn's, inside tedana
    assert frozen_at_collection[0] == 0  # the block's own collection, before the freeze
    assert min(frozen_at_collection[1:]) > 0
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), adapter.frozen_heap():
        raise RuntimeError
    assert gc.get_freeze_count() == 0
