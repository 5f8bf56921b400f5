"""Benchmarks: never part of the test suite's pass/fail."""
