"""Ingest of measured data: real EBSD maps and polarized-light images, registered onto one grid."""
