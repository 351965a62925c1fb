"""Building map bundles from aerial imagery (workstation wing): imagery sources (:mod:`.imagery`), the
resumable sharded build (:mod:`.build`) and the evaluation of a model through a bundle (:mod:`.evaluate`).

The bundle format and the scoped search it serves live in :mod:`edge_geoloc.maps` (device wing).
"""
