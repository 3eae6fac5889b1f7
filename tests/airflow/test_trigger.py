"""FeatureGateTrigger: serialization, deadline with a final check, one event, never blocking the loop."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from feature_rollout.gates import GateStatus
from feature_rollout.triggers import feature_rollout as triggers
from feature_rollout.triggers.feature_rollout import FeatureGateTrigger
from tests.conftest import DEMO_END


def make(deadline: float, **kwargs) -> FeatureGateTrigger:
    return FeatureGateTrigger(gate=kwargs.pop("gate", "populated"), conn_id="feature_rollout_default",
                              repo_path=None, workspace=None, view="driver_stats", version=0,
                              start=(DEMO_END - timedelta(days=1)).isoformat(), end=DEMO_END.isoformat(),
                              deadline=deadline, poll_interval=kwargs.pop("poll_interval", 0.05))


def events(trigger: FeatureGateTrigger) -> list[dict]:
    async def collect():
        return [event.payload async for event in trigger.run()]
    return asyncio.run(collect())


def test_serialize_round_trips():
    trigger = make(1234.5)
    classpath, kwargs = trigger.serialize()
    assert classpath == "feature_rollout.triggers.feature_rollout.FeatureGateTrigger"
    again = FeatureGateTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs)
    with pytest.raises(ValueError, match="unknown gate"):
        make(1, gate="nope")


def test_passes_once_the_gate_holds(rollout_repo, monkeypatch):
    results = iter(["waiting", "waiting", "passed"])
    calls = []

    def fake(store, gate, view, version, start, end):
        calls.append(time.monotonic())
        return GateStatus(next(results), "msg", view, version, {"found_entities": 3})

    monkeypatch.setattr(triggers, "check_gate", fake)
    [event] = events(make(time.time() + 30))
    assert event == {"status": "passed", "message": "msg", "view": "driver_stats", "version": 0,
                     "found_entities": 3}
    assert len(calls) == 3


def test_checks_once_more_at_the_deadline_then_times_out(rollout_repo, monkeypatch):
    calls = []
    monkeypatch.setattr(triggers, "check_gate",
                        lambda *a: calls.append(time.time()) or GateStatus("waiting", "not yet", "driver_stats", 0))
    deadline = time.time() + 0.3
    [event] = events(make(deadline, poll_interval=10))
    assert event["status"] == "timeout" and event["message"] == "not yet"
    # one check at the start, one final check after sleeping until the deadline
    assert len(calls) == 2 and calls[-1] >= deadline


def test_a_failed_gate_ends_at_once(rollout_repo, monkeypatch):
    monkeypatch.setattr(triggers, "check_gate", lambda *a: GateStatus("failed", "parity failed", "driver_stats", 0))
    [event] = events(make(time.time() + 60))
    assert (event["status"], event["message"]) == ("failed", "parity failed")


def test_checks_run_in_a_thread_and_never_block_the_event_loop(rollout_repo, monkeypatch):
    def slow(*args):
        time.sleep(0.5)  # a synchronous registry call
        return GateStatus("passed", "ok", "driver_stats", 0)

    monkeypatch.setattr(triggers, "check_gate", slow)

    async def scenario() -> tuple[list, int]:
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        payloads = [e.payload async for e in make(time.time() + 30).run()]
        task.cancel()
        return payloads, ticks

    payloads, ticks = asyncio.run(scenario())
    assert payloads[0]["status"] == "passed"
    assert ticks >= 20  # the loop kept running while the check slept in its thread


def test_transient_outages_wait_and_user_errors_end(rollout_repo):
    from feature_rollout.core.errors import FeatureViewNotFound, RegistryUnavailableError

    class Store:
        def __init__(self, error):
            self.error = error

        def readiness(self, *args):
            raise self.error

    waiting = triggers.check_gate(Store(RegistryUnavailableError("db restarting")), "populated", "v", 0, None, None)
    assert waiting.status == "waiting" and "db restarting" in waiting.message
    error = triggers.check_gate(Store(FeatureViewNotFound("v", "demo")), "populated", "v", 0, None, None)
    assert error.status == "error" and "does not exist" in error.message
