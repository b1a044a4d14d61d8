"""``python -m cni_logger``: the same entry point as the ``cni-logger`` console script."""

from cni_logger.cli import main

main()
