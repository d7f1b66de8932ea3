"""Benchmarks (``make bench``): each measurement runs in its own process and prints a row."""
