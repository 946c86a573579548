"""Held-out fidelity of every variant against every other variant as the reference.

Why not one reference variant: a variant compared with its own two halves counts everything
its halves share as signal, including its image-locked errors (errors repeated in every run,
such as spatial mixing of neighbouring voxels' responses or leakage of neighbouring trials
through the design), while every other variant is credited only with the part of those errors
it shares with the reference. A single reference variant therefore gets an advantage no other
variant can get (``docs/comparison.md`` measures it). Here every variant is judged against
every OTHER variant (:meth:`HeldoutPairs.score`), and two variants are compared under each
reference that is neither of them (:func:`pair_references`; the margins and the shown-rule:
:mod:`echoprep.kernels.margins`).

The per-pair measure is :func:`echoprep.kernels.fidelity.heldout_fidelity`'s, computed once per
pair of variants with the same bootstrap replicates: ``r[v, w] == r[w, v]`` (the cross-half
covariance is symmetric), and the diagonal is a variant's own halves (its reliability squared).

Pure array code: no file I/O, no logging.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from echoprep.kernels.fidelity import SplitMeans, quiet_nanmedian


@dataclass(frozen=True)
class HeldoutPairs:
    """Result of :func:`heldout_pairs`: every variant's held-out fidelity against every other
    variant as the reference (module doc), and against itself on the diagonal.

    Attributes
    ----------
    variants
        ``(n,)`` names, the order of every axis below.
    r
        ``(n, n)``: ``r[v, w]`` is the median over voxels of ``rho`` of variant ``v`` against
        reference ``w`` (averaged over splits per voxel first). Symmetric. The diagonal is the
        variant against its own halves: ``c_v^2``, its reliability squared, which counts its
        image-locked errors (repeated in every run) as signal; it is never used to rank.
    trial_r
        ``(n, n)``: ``trial_r[v, w]`` the single-trial fidelity ``rho_trial`` of ``v`` against
        reference ``w`` (not symmetric: divided by the reference's spread only).
    reliability
        ``(n,)`` ``c_v = sqrt(max(r[v, v], 0))`` (NaN where ``r[v, v]`` is): about the factor
        between ``r[:, w]`` and the truth scale for reference ``w``.
    bootstrap, trial_bootstrap
        ``(n_boot, n, n)`` the same medians over image-resampled replicates (the same
        resampled images for every pair: differences are paired).
    n_images
        Images in both halves, summed over splits.
    n_splits
        Splits averaged.
    same
        Groups (2 or more) of variants whose image means are identical in every split: the
        same data (:func:`pair_references` never uses one as the other's reference).
    """

    variants: tuple[str, ...]
    r: np.ndarray
    trial_r: np.ndarray
    reliability: np.ndarray
    bootstrap: np.ndarray
    trial_bootstrap: np.ndarray
    n_images: int
    n_splits: int
    same: tuple[tuple[str, ...], ...] = ()

    def references(self, variant: str) -> list[str]:
        """The references of ``variant`` (:func:`pair_references`): every other variant with
        other data; with only one such, both (each of the two is then also judged against
        itself, symmetrically); none alone."""
        return pair_references(self.variants, variant, same=self.same)

    def score(self, variant: str, *, trial: bool = False, truth: bool = False) -> float:
        """Mean over :meth:`references` of ``variant``'s fidelity against each (``trial``:
        single trials); ``truth``: divided by the mean of the references' reliabilities (on
        the scale of a correlation with the truth; a ratio of means, so that a reference
        with almost no reproducible signal does not blow up the estimate). NaN for a variant
        alone or where a term is undefined.

        Between two variants the difference of their scores is ``(n - 2) / (n - 1)`` times the
        mean over their common references (neither of the two) of their difference (``r`` is
        symmetric), so the ranking by score and the sign of every margin agree."""
        i = self.variants.index(variant)
        values = self.trial_r if trial else self.r
        cols = [self.variants.index(w) for w in self.references(variant)]
        if not cols:
            return math.nan
        mean = float(np.mean(values[i, cols]))
        if not truth:
            return mean
        scale = float(np.mean(self.reliability[cols]))
        return mean / scale if scale > 0 else math.nan


def pair_references(
    variants: Sequence[str],
    *compared: str,
    same: Sequence[Sequence[str]] = (),
) -> list[str]:
    """The references under which ``compared`` variants are judged: every variant of
    ``variants`` that is none of them and holds other data than them (``same``: groups of
    variants with identical data, e.g. ICA-denoised equal to optcom where tedana rejected no
    component: a copy of a variant is the variant itself). One variant with a single such
    other is judged against both (each of the two also against itself, symmetrically); two
    variants with no such other are judged under each of the two (each favours itself, so a
    lead must hold under the other's). Canonical order of ``variants``."""
    excluded = set(compared)
    for group in same:
        if excluded & set(group):
            excluded |= set(group)
    others = [w for w in variants if w not in excluded]
    if len(compared) == 1:
        if len(others) >= 2 or not others:
            return others
        return [w for w in variants if w in others or w in compared]
    return others or [w for w in variants if w in compared]


def heldout_pairs(
    splits: Mapping[str, Sequence[SplitMeans]],
    *,
    n_boot: int = 0,
    seed: int = 0,
    chunk: int = 16,
) -> HeldoutPairs:
    """Held-out fidelity of every variant against every variant as the reference.

    No variant is judged against itself: the reference's own halves share its image-locked
    errors (errors repeated in every run: spatial mixing, leakage through the design), which
    a variant judged against itself counts as signal and every other variant only in the part
    it shares. :meth:`HeldoutPairs.score` averages a variant's fidelity over the OTHER variants
    as references; between two variants, the common references (neither of the two) give a
    difference in which neither is its own reference
    (:func:`echoprep.kernels.ranking.recommend`).

    Parameters
    ----------
    splits
        variant -> one :class:`SplitMeans` per split, of the same voxels and images split by
        split (every variant the same number of splits).
    n_boot
        Image-bootstrap replicates (0: none); the resampled images are drawn per split from
        ``seed`` exactly as :func:`heldout_fidelity` draws them.
    seed
        Seed of the bootstrap.
    chunk
        Replicates computed at once: besides the inputs and one ``(V, I)`` float64 product,
        memory is about ``(3 n k + 10) chunk V`` float64 for ``n`` variants, ``k`` splits and
        ``V`` voxels. The result does not depend on it beyond float rounding (BLAS picks
        its kernel by the products' shape).

    Returns
    -------
    HeldoutPairs

    Raises
    ------
    ValueError
        No variant, splits that differ in number or shape between or within variants, or
        fewer than 3 images in a split.
    """
    names = tuple(splits)
    if not names:
        raise ValueError("held-out fidelity: expected at least one variant; found none")
    n_splits = {len(splits[v]) for v in names}
    if len(n_splits) != 1 or 0 in n_splits:
        raise ValueError(
            "held-out fidelity: expected the same splits (at least one) for every variant; "
            f"found {dict((v, len(splits[v])) for v in names)}"
        )
    (k,) = n_splits
    for i in range(k):
        shapes = {
            np.shape(m) for v in names for m in (splits[v][i].a, splits[v][i].b, splits[v][i].full)
        }
        if len(shapes) != 1 or len(next(iter(shapes))) != 2:
            raise ValueError(
                f"held-out fidelity: split {i + 1}: expected image means of one shape (voxels, "
                f"images); found {sorted(shapes)}"
            )
        if next(iter(shapes))[1] < 3:
            raise ValueError(
                f"held-out fidelity: split {i + 1}: expected at least 3 images shown in both "
                f"halves of the runs; found {next(iter(shapes))[1]}. Fix: the comparison needs "
                "images repeated across runs"
            )
    n = len(names)
    rng = np.random.default_rng(seed)
    # the weights of every split drawn up front, in heldout_fidelity's order; row 0: the
    # images as sampled (the estimate)
    weights = []
    for i in range(k):
        n_img = np.shape(splits[names[0]][i].a)[1]
        w = np.ones((1 + n_boot, n_img))
        if n_boot > 0:
            w[1:] = rng.multinomial(n_img, np.full(n_img, 1.0 / n_img), size=n_boot)
        weights.append(w)
    # the image means as given (float32 from the stage): float64 only inside the products
    data = [
        [
            tuple(np.asarray(m) for m in (splits[v][i].a, splits[v][i].b, splits[v][i].full))
            for v in names
        ]
        for i in range(k)
    ]
    out_r = np.full((1 + n_boot, n, n), np.nan)
    out_t = np.full((1 + n_boot, n, n), np.nan)
    step = max(1, int(chunk))
    for start in range(0, 1 + n_boot, step):
        rows = slice(start, min(1 + n_boot, start + step))
        # per split and variant: weighted sums of the half and all-repeat means, and the
        # weighted variance of the all-repeat means ((rows, V) each)
        moments = []
        for i in range(k):
            w = weights[i][rows]
            count = w.sum(axis=1)[:, None]
            per_variant = []
            for a, b, f in data[i]:
                sf = w @ np.asarray(f, np.float64).T
                ff = w @ np.square(f, dtype=np.float64).T
                var = np.clip(ff / count - (sf / count) ** 2, 0, None)
                per_variant.append(
                    (w @ np.asarray(a, np.float64).T, w @ np.asarray(b, np.float64).T, var)
                )
            moments.append((w, count, per_variant))
        # one pair at a time: its terms of every split, averaged, then the median over voxels
        for x in range(n):
            for y in range(x, n):
                rhos, t_xys, t_yxs = [], [], []
                for i, (w, count, per_variant) in enumerate(moments):
                    ax, bx, _ = data[i][x]
                    ay, by, _ = data[i][y]
                    sax, sbx, vx = per_variant[x]
                    say, sby, vy = per_variant[y]
                    cross = 0.5 * (
                        (w @ np.multiply(ax, by, dtype=np.float64).T) / count
                        - sax * sby / (count * count)
                        + (w @ np.multiply(bx, ay, dtype=np.float64).T) / count
                        - sbx * say / (count * count)
                    )
                    with np.errstate(invalid="ignore", divide="ignore"):
                        rhos.append(np.where((vx > 0) & (vy > 0), cross / np.sqrt(vx * vy), np.nan))
                        t_xys.append(np.where(vy > 0, cross / np.sqrt(vy), np.nan))
                        t_yxs.append(np.where(vx > 0, cross / np.sqrt(vx), np.nan))
                med = quiet_nanmedian(_over_splits(rhos), axis=1)
                out_r[rows, x, y] = med
                out_r[rows, y, x] = med
                out_t[rows, x, y] = quiet_nanmedian(_over_splits(t_xys), axis=1)
                out_t[rows, y, x] = quiet_nanmedian(_over_splits(t_yxs), axis=1)
    # a reference without reproducible signal (c^2 <= 0) has reliability 0
    reliability = np.sqrt(np.clip(np.diag(out_r[0]), 0.0, None))
    same: list[tuple[str, ...]] = []
    for v in names:
        if any(v in g for g in same):
            continue
        group = tuple(w for w in names if w == v or _identical(splits[v], splits[w]))
        if len(group) > 1:
            same.append(group)
    return HeldoutPairs(
        variants=names,
        r=out_r[0],
        trial_r=out_t[0],
        reliability=reliability,
        bootstrap=out_r[1:],
        trial_bootstrap=out_t[1:],
        n_images=int(sum(np.shape(splits[names[0]][i].a)[1] for i in range(k))),
        n_splits=k,
        same=tuple(same),
    )


def _identical(x: Sequence[SplitMeans], y: Sequence[SplitMeans]) -> bool:
    """Whether two variants' image means are the same in every split (NaN equal to NaN)."""
    return all(
        np.array_equal(getattr(a, part), getattr(b, part), equal_nan=True)
        for a, b in zip(x, y, strict=True)
        for part in ("a", "b", "full")
    )


def _over_splits(per_split: list[np.ndarray]) -> np.ndarray:
    """Mean over splits (axis 0 of the stack) ignoring NaN."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.stack(per_split), axis=0)


__all__ = ["HeldoutPairs", "heldout_pairs", "pair_references"]
