"""The one transition table: which moves each state allows, and where they lead."""

from __future__ import annotations

import pytest

from conveyor.core.job import (
    TERMINAL_STATES,
    TRANSITIONS,
    ErrorInfo,
    JobState,
    Transition,
    can_apply,
    rule,
)
from conveyor.core.outcome import (
    Cancelled,
    Completed,
    Failed,
    Outcome,
    Released,
    Retrying,
    transition_for,
)

LEGAL_MOVES: dict[JobState, dict[Transition, JobState]] = {
    JobState.SCHEDULED: {
        Transition.PROMOTE: JobState.QUEUED,
        Transition.CANCEL: JobState.CANCELLED,
    },
    JobState.QUEUED: {
        Transition.CLAIM: JobState.RUNNING,
        Transition.CANCEL: JobState.CANCELLED,
    },
    JobState.RUNNING: {
        Transition.COMPLETE: JobState.COMPLETED,
        Transition.RETRY_LATER: JobState.RETRYABLE,
        Transition.FAIL: JobState.FAILED,
        Transition.CANCEL_RUNNING: JobState.CANCELLED,
        Transition.RELEASE: JobState.QUEUED,
        Transition.RESCUE: JobState.QUEUED,
        Transition.RESCUE_LAST: JobState.FAILED,
    },
    JobState.RETRYABLE: {
        Transition.PROMOTE: JobState.QUEUED,
        Transition.CANCEL: JobState.CANCELLED,
    },
    JobState.COMPLETED: {},
    JobState.FAILED: {Transition.MANUAL_RETRY: JobState.QUEUED},
    JobState.CANCELLED: {Transition.MANUAL_RETRY: JobState.QUEUED},
}


def moves_from(state: JobState) -> dict[Transition, JobState]:
    return {
        transition: rule(transition).target
        for transition in Transition
        if can_apply(transition, state)
    }


@pytest.mark.parametrize("state", list(JobState))
def test_each_state_allows_exactly_its_documented_moves(state: JobState) -> None:
    assert moves_from(state) == LEGAL_MOVES[state]


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_terminal_states_only_leave_by_manual_retry(state: JobState) -> None:
    assert set(moves_from(state)) <= {Transition.MANUAL_RETRY}
    assert state.is_terminal


def test_every_transition_has_a_rule() -> None:
    assert set(TRANSITIONS) == set(Transition)


def test_no_transition_leads_into_the_state_it_starts_from() -> None:
    for transition, table_rule in TRANSITIONS.items():
        assert table_rule.target not in table_rule.sources, transition


def test_only_a_claim_makes_a_job_running() -> None:
    into_running = {t for t, r in TRANSITIONS.items() if r.target is JobState.RUNNING}
    assert into_running == {Transition.CLAIM}


OUTCOME_TARGETS: list[tuple[Outcome, JobState]] = [
    (Completed(result=1), JobState.COMPLETED),
    (Retrying(ErrorInfo(type="ValueError", message="no"), delay=1.0), JobState.RETRYABLE),
    (Failed(ErrorInfo(type="ValueError", message="no")), JobState.FAILED),
    (Cancelled(), JobState.CANCELLED),
    (Released(), JobState.QUEUED),
]


@pytest.mark.parametrize(("outcome", "target"), OUTCOME_TARGETS)
def test_each_outcome_settles_a_running_job_into_its_state(
    outcome: Outcome, target: JobState
) -> None:
    transition = transition_for(outcome)
    assert can_apply(transition, JobState.RUNNING)
    assert rule(transition).target is target
