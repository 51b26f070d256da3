"""``python -m pipeline.cli``: the same as ``lfpipe``."""

from pipeline.cli import main

main()
