"""Wiring of the sender and receiver stages, with per-frame latency probes."""
