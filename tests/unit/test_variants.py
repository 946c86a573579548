"""The Variant type: the text users write, with its NORDIC side and echo handling."""

from __future__ import annotations

import json

import pytest

from echoprep.variants import ALL_VARIANTS, Variant


def test_variant_parts_and_text():
    v = Variant("nordic-optcom")
    assert (v.nordic, v.combine) == ("nordic", "optcom")
    assert v.parts() == ("nordic", "optcom")
    assert v == "nordic-optcom" and {v: 1}["nordic-optcom"] == 1  # a str: keys, equality
    assert json.dumps([v]) == '["nordic-optcom"]'
    assert Variant.of("raw", "single") == "raw-single"


def test_all_variants_in_canonical_order():
    assert ALL_VARIANTS == (
        "raw-single", "raw-optcom", "raw-denoised",
        "nordic-single", "nordic-optcom", "nordic-denoised",
    )  # fmt: skip
    assert all(isinstance(v, Variant) for v in ALL_VARIANTS)


@pytest.mark.parametrize("text", ["nordic_optcom", "raw-", "nordic-optcom-x", "optcom", ""])
def test_unknown_variant_names_the_legal_ones(text):
    with pytest.raises(ValueError) as err:
        Variant(text)
    assert str(err.value) == (
        "expected a variant, one of raw-single, raw-optcom, raw-denoised, nordic-single, "
        f"nordic-optcom, nordic-denoised; found {text!r}"
    )
