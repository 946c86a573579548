"""The preprocessing variants: a NORDIC side and an echo handling, named ``<nordic>-<combine>``.

A :class:`Variant` is the text users write in the config (``glm.all_sessions_variants``,
``publish.variant``) and the name of its derivative folders
(``glmsingle-<nordic>-<combine>/``), with its two parts as attributes. It is a ``str``, so it
compares, hashes and serialises as that text.
"""

from __future__ import annotations

#: NORDIC sides: "raw" = NORDIC off, "nordic" = on.
NORDIC_SIDES: tuple[str, ...] = ("raw", "nordic")
#: Echo handlings: one echo, tedana's optimal combination, tedana's ICA-denoised combination.
ECHO_HANDLINGS: tuple[str, ...] = ("single", "optcom", "denoised")
#: The fewest echoes each echo handling needs: a T2* fit needs two, tedana's ICA
#: classification (TE-dependence of each component, kappa and rho) three.
MIN_ECHOES: dict[str, int] = {"single": 1, "optcom": 2, "denoised": 3}


class Variant(str):
    """One preprocessing variant, ``"<nordic>-<combine>"`` (e.g. ``"nordic-optcom"``).

    Parameters
    ----------
    text
        The variant's name; a ValueError names the legal ones when it is not one.
    """

    __slots__ = ()

    def __new__(cls, text: str) -> Variant:
        nordic, _, combine = str(text).partition("-")
        if nordic not in NORDIC_SIDES or combine not in ECHO_HANDLINGS:
            legal = ", ".join(f"{n}-{c}" for n in NORDIC_SIDES for c in ECHO_HANDLINGS)
            raise ValueError(f"expected a variant, one of {legal}; found {text!r}")
        return super().__new__(cls, text)

    @classmethod
    def of(cls, nordic: str, combine: str) -> Variant:
        """The variant of a NORDIC side and an echo handling."""
        return cls(f"{nordic}-{combine}")

    def parts(self) -> tuple[str, str]:
        """(nordic, combine)."""
        nordic, _, combine = self.partition("-")
        return nordic, combine

    @property
    def nordic(self) -> str:
        """The NORDIC side: "raw" or "nordic"."""
        return self.parts()[0]

    @property
    def combine(self) -> str:
        """The echo handling: "single", "optcom" or "denoised"."""
        return self.parts()[1]


#: Every variant in canonical order (NORDIC off first, then echo handling).
ALL_VARIANTS: tuple[Variant, ...] = tuple(
    Variant.of(n, c) for n in NORDIC_SIDES for c in ECHO_HANDLINGS
)
