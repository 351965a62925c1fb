"""NMEA 0183: the parser (:mod:`.parse`, never crashes on what a serial line delivers), the streaming
reader (:mod:`.reader`) and the writer (:mod:`.write`). Device side: no numpy, no torch."""

from edge_geoloc.geo.nmea.parse import (
    GGA,
    GSA,
    HDT,
    KNOT_MPS,
    MINUTE_DECIMALS,
    RMC,
    SENTENCE_TYPES,
    VTG,
    NmeaError,
    NmeaRecord,
    Reason,
    checksum,
    parse,
)
from edge_geoloc.geo.nmea.reader import NmeaReader
from edge_geoloc.geo.nmea.write import format_coord, format_gga, format_gsa, format_hdt, format_rmc, format_vtg

__all__ = [
    "GGA",
    "GSA",
    "HDT",
    "KNOT_MPS",
    "MINUTE_DECIMALS",
    "RMC",
    "SENTENCE_TYPES",
    "VTG",
    "NmeaError",
    "NmeaReader",
    "NmeaRecord",
    "Reason",
    "checksum",
    "format_coord",
    "format_gga",
    "format_gsa",
    "format_hdt",
    "format_rmc",
    "format_vtg",
    "parse",
]
