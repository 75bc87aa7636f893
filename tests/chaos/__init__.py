"""Chaos suite (issue 10): the full pipeline as real processes under kills, outages, storms and bad input."""
