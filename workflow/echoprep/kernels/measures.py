"""The comparison's measures and rules in words: the variants' names, each measure's label and
description (the table sidecars, ``recommended_variant.json`` and the report), the columns of
the comparison table and the rules the verdict states (:mod:`echoprep.kernels.ranking`)."""

from __future__ import annotations

#: The baseline every gain is relative to.
BASELINE = "raw-single"

#: How the held-out measures choose their references (``Parameters.Reference`` of the JSON).
REFERENCE_RULE = (
    "every other variant: each variant is judged against every other variant of its session "
    "(never against itself), each margin under every variant that is neither of the two "
    "compared (with only two variants, under each of the two)"
)
#: What the planted estimate misreads about NORDIC, measured against the simulated truth on every
#: two-session case (docs/comparison.md, "The default and NORDIC"): one clause, stated by the
#: default rule, the reason of a NORDIC variant ranked first within the noise and the report's
#: caption of a planted ranking.
PLANTED_NORDIC_READING = (
    "reads the NORDIC variants low on average, by about 4 % of their true fidelity relative to "
    "the variants without NORDIC (up to a third where NORDIC removes most of a response), and "
    "up to 0.03 in r high in some datasets"
)
#: The rule that picks the recommendation where the data cannot tell variants apart (ranking by
#: the planted fidelity).
PLANTED_DEFAULT_RULE = (
    "the variant ranked first by its fidelity to the responses planted into the session's own "
    f"echoes, NORDIC or not; on simulated truth this estimate {PLANTED_NORDIC_READING}, so a "
    "NORDIC variant it ranks first is not held back, and a variant named indistinguishable from "
    "it may be as good or better (docs/comparison.md, 'The default and NORDIC')"
)
#: The same when ranking by the held-out fidelity.
DEFAULT_RULE = (
    "the variant ranked first by the held-out fidelity (every variant judged against the "
    "others, none against itself); a NORDIC variant only where its lead over the best "
    "NORDIC-off variant exceeds twice its standard error under every reference, else that "
    "NORDIC-off variant"
)
#: Human-readable names of the variants.
VARIANT_NAMES: dict[str, str] = {
    "raw-single": "single echo",
    "raw-optcom": "optcom",
    "raw-denoised": "ICA-denoised",
    "nordic-single": "NORDIC + single echo",
    "nordic-optcom": "NORDIC + optcom",
    "nordic-denoised": "NORDIC + ICA-denoised",
}
#: Labels and descriptions of the measures (the table sidecar, the JSON and the report).
MEASURES: dict[str, dict[str, str]] = {
    "planted_r": {
        "label": "fidelity to planted responses (r)",
        "description": "a small copy of the session's own image responses (each image's "
        "odd-numbered presentations) planted into its raw echoes, every variant's chain run on "
        "them with the decisions it made on the data (NORDIC, optimal combination, ICA, GLM "
        "frozen): per voxel of the visual ROI what the variant's betas carry of them (against "
        "the even-numbered presentations, whose noise is independent) over the square root of "
        "the session's response variance, divided by the spread of the variant's "
        "repeat-averaged betas; the median over the ROI. An estimate of the correlation of the "
        "repeat-averaged betas with the true image responses that counts spatial mixing and "
        "the leakage of neighbouring trials as error "
        "(checked on simulated truth: docs/comparison.md).",
    },
    "planted_trial_r": {
        "label": "single-trial fidelity to planted responses (r)",
        "description": "as planted_r for single trials: an estimate of the correlation of the "
        "single-trial betas with the true image responses.",
    },
    "planted_gain": {
        "label": "gain for planted responses",
        "description": "median over the ROI of what the variant's repeat-averaged betas (z "
        "units) carry per unit of planted response (% signal change): attenuation, mixing and "
        "leakage lower it.",
    },
    "heldout_r": {
        "label": "held-out fidelity",
        "description": "median over the visual ROI of the covariance between the variant's "
        "image means from one half of the runs and a reference variant's from the other half "
        "(each half fitted apart; both directions averaged), divided by the spread of both "
        "all-repeat image means; averaged over splits of the runs and over the references: "
        "every other variant of the session, never the variant itself. Proportional to the "
        "correlation of the repeat-averaged betas with the true image responses (checked on "
        "simulated truth: docs/comparison.md).",
    },
    "heldout_truth": {
        "label": "held-out fidelity, truth scale (r)",
        "description": "heldout_r divided by reference_reliability (the mean of the "
        "references' own all-repeat fidelities): an estimate of the correlation of the "
        "repeat-averaged betas with the true image means; its differences are margins in "
        "truth-equivalent units.",
    },
    "heldout_trial_r": {
        "label": "single-trial held-out fidelity",
        "description": "as heldout_r for single trials: the held-out covariance divided by the "
        "spread of the reference's all-repeat image means only (single-trial betas are "
        "z-scored per run). Proportional to the correlation of the single-trial betas with "
        "the true image responses (what decoding or encoding of single trials relies on); "
        "what a trial adds to its image's response cannot be told from noise by any data-only "
        "measure.",
    },
    "heldout_trial_truth": {
        "label": "single-trial held-out fidelity, truth scale (r)",
        "description": "heldout_trial_r divided by reference_reliability: an estimate of the "
        "correlation of the single-trial betas with the true image responses.",
    },
    "reference_reliability": {
        "label": "reference reliability",
        "description": "the references' all-repeat fidelity estimated from their own two "
        "halves, sqrt(median over the ROI of cov(A, B) / var(all repeats)), averaged over the "
        "variant's references: about the factor between heldout_r and the truth scale.",
    },
    "median_nc": {
        "label": "median NC (%)",
        "description": "median noise ceiling in the visually responsive ROI (as LAION-fMRI "
        "reported it). Measures how well repeats agree; low-rank denoising can raise it "
        "without making the betas more faithful.",
    },
    "dprime": {
        "label": "d′",
        "description": "(mean NC in ROI - mean NC in the rest of the fitted brain) / pooled SD",
    },
    "gain": {
        "label": "NC gain over single echo (%)",
        "description": f"median_nc relative to {BASELINE} of the same session, in %",
    },
    "splithalf_r": {
        "label": "split-half r (own data)",
        "description": "median over the ROI of the correlation of the variant's own half-A "
        "and half-B image means: repeat agreement, like NC",
    },
}
TABLE_COLUMNS = (
    "subject",
    "session",
    "variant",
    "nordic",
    "combine",
    "voxels",
    "median_nc",
    "mean_nc",
    "dprime",
    "gain",
    "planted_r",
    "planted_trial_r",
    "planted_gain",
    "planted_source",
    "heldout_r",
    "heldout_truth",
    "heldout_trial_r",
    "heldout_trial_truth",
    "reference_reliability",
    "reference",
    "splithalf_r",
    "edge_nc80",
)


__all__ = [
    "BASELINE",
    "DEFAULT_RULE",
    "MEASURES",
    "PLANTED_DEFAULT_RULE",
    "PLANTED_NORDIC_READING",
    "REFERENCE_RULE",
    "TABLE_COLUMNS",
    "VARIANT_NAMES",
]
