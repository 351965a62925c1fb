"""Datasets on disk: VIGOR's layout (ours and the real download), CVUSA's layout, and the synthetic writer.

Both readers return :class:`Sample` and expose index-level arrays for fast loaders. The synthetic
writer (``edge-geoloc dataset synth``) lives in :mod:`edge_geoloc.data.synth`, imported on demand.
"""

from edge_geoloc.data.cvusa import CvusaDataset
from edge_geoloc.data.sample import CrossViewDataset, DatasetError, Sample, read_rgb, write_rgb
from edge_geoloc.data.vigor import VigorDataset, VigorMeta, open_protocol, protocol_cities, read_metadata

__all__ = [
    "CrossViewDataset",
    "CvusaDataset",
    "DatasetError",
    "Sample",
    "VigorDataset",
    "VigorMeta",
    "open_protocol",
    "protocol_cities",
    "read_metadata",
    "read_rgb",
    "write_rgb",
]
