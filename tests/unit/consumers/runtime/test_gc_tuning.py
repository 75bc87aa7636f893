import gc
from collections.abc import Iterator

import pytest

from consumers.runtime.gc_tuning import GC_THRESHOLD, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


@pytest.mark.usefixtures("restored_gc")
def test_tune_gc_freezes_start_up_objects_and_raises_the_thresholds() -> None:
    gc.unfreeze()
    start_up = object(), [object()]  # a container alive at start-up: frozen, never scanned again
    tune_gc()
    assert gc.get_threshold() == GC_THRESHOLD
    assert gc.get_freeze_count() > 0
    assert not any(o is start_up for o in gc.get_objects())
    assert GC_THRESHOLD[0] > 700  # above Python's default: a batch's garbage between collections
