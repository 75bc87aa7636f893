from consumers.devstack.fake_state import FakeState


def test_accepted_is_a_copy_and_reset_forgets_messages_and_faults() -> None:
    state: FakeState[int] = FakeState()
    state.record({"n": 1})
    state.faults.append(500)
    seen = state.accepted()
    state.record({"n": 2})
    assert seen == [{"n": 1}]  # a later send does not change what the caller already read
    assert state.accepted() == [{"n": 1}, {"n": 2}]
    state.reset()
    assert state.accepted() == [] and state.faults == []
