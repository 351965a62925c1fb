"""Simulation that drives the device loop (workstation wing): scenarios (a drive or a flight through a
synthetic town with GPS outages), the synthetic frame source, the simulated GNSS receiver and the demos.

It renders :mod:`edge_geoloc.world` and feeds the real loop of :mod:`edge_geoloc.localize`; nothing in
the device wing imports it.
"""
