"""The site daemon `wattsched serve`: service loop, HTTP API, durable store, metrics and actuators.

Decisions live in `loop` (pure inputs in `inputs`, planning ports in `planning`); IO lives at the
edges (`store`, `api`, `metrics`, `actuators`, `daemon`).
"""
