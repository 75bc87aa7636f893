"""Benchmarks (`make bench`): every figure measured in one run on the embedded stack."""
