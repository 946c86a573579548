"""``python -m echoprep``: the same command line as ``echoprep``."""

from echoprep.cli import main

raise SystemExit(main())
