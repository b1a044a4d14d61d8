"""cni-logger: a CNI plugin that records a structured audit event for every container network operation."""

__version__ = "0.1.0"
ECS_VERSION = "9.4.0"
"""The ECS schema version of the events and the diagnostics: named once, here, where importing it costs
nothing (an unrecorded invocation that reports a problem must not load the event pipeline for it)."""
