"""The audit story's trail (written by the real plugin, rotated, gzipped and damaged): ``tests.harness.trails``."""

from tests.harness.trails import copy_of_trail, trail  # noqa: F401  (fixtures)
