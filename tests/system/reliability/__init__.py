"""Reliability tests: load, faults, bad input, fuzzing and secrets, through the real plugin process."""
