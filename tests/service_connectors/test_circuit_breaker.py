"""The connectors' circuit breaker, on a fake clock."""

from __future__ import annotations

from service_connectors.base import CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_repeated_outages_then_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record(answered=False)
    assert not breaker.is_open  # two failures: still calling
    assert breaker.allow()
    breaker.record(answered=False)
    assert breaker.is_open and not breaker.allow()  # resting
    clock.now += 29
    assert not breaker.allow()
    clock.now += 2
    assert breaker.allow()  # half-open: one trial...
    assert not breaker.allow()  # ...and the others wait for its result
    breaker.record(answered=False)  # the trial failed: open again for a whole cool-down
    clock.now += 29
    assert not breaker.allow()
    clock.now += 2
    assert breaker.allow()
    breaker.record(answered=True)  # the backend answered: closed
    assert breaker.allow() and breaker.allow() and breaker.failures == 0


def test_an_answer_resets_the_count() -> None:
    breaker = CircuitBreaker(threshold=2, cooldown=30, clock=Clock())
    breaker.record(answered=False)
    breaker.record(answered=True)
    breaker.record(answered=False)
    assert not breaker.is_open
