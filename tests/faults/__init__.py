"""Fault-injection scenarios: the whole system as real processes on loopback, one fault each.

Every scenario is bounded in time, prints a `FaultFigures` line (sent, acknowledged,
processed, lost, duplicated, time to recover) and fails on any loss or duplicate.
"""
