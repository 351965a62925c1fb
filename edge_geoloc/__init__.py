"""edge-geoloc: cross-view geo-localization for UAVs and ground vehicles.

Device-side subpackages (geo, evaluate, runtime, maps, localize) import no torch; the workstation
side (model, train, export) needs the ``train`` extra.
"""

__version__ = "0.1.0"
