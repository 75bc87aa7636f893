"""The garbage collector's settings for a consumer process: batch-sized garbage, start-up frozen.

A poll batch keeps thousands of small objects alive until its outputs are handed over (decoded
records, plans or outcomes, rendered content, encoded parts, futures), so at Python's default
gen-0 threshold (700) the collector ran every few dozen records, promoted each batch's objects to
the old generations and re-scanned the whole heap with them: about a fifth of a classifier's CPU,
and in a channel consumer 27 µs per email of 190 (a full collection every ~5,000 messages, some
80 ms with the event loop stopped). At :data:`GC_THRESHOLD` a batch's objects are freed by
reference counting before a collection starts; cycles are still collected.
"""

from __future__ import annotations

import gc

__all__ = ["GC_THRESHOLD", "tune_gc"]

GC_THRESHOLD = (50_000, 10, 10)
"""The collector's thresholds in a consumer process (Python's default: 700, 10, 10)."""


def tune_gc() -> None:
    """Start-up objects (modules, contracts, compiled templates, tables) to the permanent
    generation, never scanned again, and :data:`GC_THRESHOLD`. Call once the process is built."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
