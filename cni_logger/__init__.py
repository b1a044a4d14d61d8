"""cni-logger: a CNI plugin that records a structured audit event for every container network operation."""

__version__ = "0.1.0"
