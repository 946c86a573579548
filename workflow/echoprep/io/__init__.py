"""Input discovery, derivative path building, sidecars and provenance."""
