"""echoprep: multi-echo 7T fMRI preprocessing, single-trial betas and noise ceilings."""

__version__ = "0.1.0"
CODE_URL = "https://github.com/echoprep/echoprep"
