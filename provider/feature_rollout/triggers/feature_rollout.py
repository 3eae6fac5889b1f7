"""``FeatureGateTrigger``: polls a gate (populated, or promotion) without blocking the triggerer.

The registry and stores are synchronous, so each check runs in a worker thread
(``asyncio.to_thread``); the event loop only sleeps. The trigger carries an absolute wall-clock
deadline (it survives a triggerer restart unchanged), checks once more when the deadline has
passed, and then yields exactly one small event: ``{status, message, view, version, ...}`` with
status ``passed``, ``failed``, ``error`` or ``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from feature_rollout.core.errors import FeatureRolloutError, OnlineStoreUnavailableError, RegistryUnavailableError
from feature_rollout.gates import FAILED, PASSED, WAITING, GateStatus, populated_status, promotion_gate_status

GATES = {"populated": populated_status, "promotion": promotion_gate_status}
#: Failures that may pass by themselves (a restarting database): keep polling until the deadline.
TRANSIENT = (RegistryUnavailableError, OnlineStoreUnavailableError)


def check_gate(store: Any, gate: str, view: str, version: int, start: datetime, end: datetime) -> GateStatus:
    """One evaluation; transient outages count as ``waiting``, other errors as ``error``."""
    try:
        return GATES[gate](store, view, version, start, end)
    except TRANSIENT as err:
        return GateStatus(WAITING, f"waiting: {err}", view, version)
    except FeatureRolloutError as err:
        return GateStatus("error", str(err), view, version)


class FeatureGateTrigger(BaseTrigger):
    """Poll ``gate`` for ``view`` ``version`` over ``[start, end)`` until it passes, fails, or ``deadline``.

    :param gate: ``"populated"`` or ``"promotion"``.
    :param deadline: Unix time after which the trigger checks one last time and gives up.
    """

    def __init__(self, *, gate: str, conn_id: str, repo_path: str | None, workspace: str | None, view: str,
                 version: int, start: str, end: str, deadline: float, poll_interval: float = 60.0) -> None:
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"unknown gate {gate!r}")
        self.gate = gate
        self.conn_id = conn_id
        self.repo_path = repo_path
        self.workspace = workspace
        self.view = view
        self.version = int(version)
        self.start = start
        self.end = end
        self.deadline = float(deadline)
        self.poll_interval = float(poll_interval)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return ("feature_rollout.triggers.feature_rollout.FeatureGateTrigger", {
            "gate": self.gate, "conn_id": self.conn_id, "repo_path": self.repo_path, "workspace": self.workspace,
            "view": self.view, "version": self.version, "start": self.start, "end": self.end,
            "deadline": self.deadline, "poll_interval": self.poll_interval,
        })

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from feature_rollout.hooks.feature_registry import FeatureRegistryHook, StoreSettings

        try:
            conn = await FeatureRegistryHook.aget_connection(self.conn_id)
            settings = StoreSettings.from_connection(conn, repo_path=self.repo_path, workspace=self.workspace)
            store = await asyncio.to_thread(settings.store)
        except FeatureRolloutError as err:
            yield TriggerEvent({"status": "error", "message": str(err), "view": self.view, "version": self.version})
            return
        start, end = datetime.fromisoformat(self.start), datetime.fromisoformat(self.end)
        while True:
            status = await asyncio.to_thread(check_gate, store, self.gate, self.view, self.version, start, end)
            if status.status != WAITING:
                yield TriggerEvent(status.to_event())
                return
            remaining = self.deadline - time.time()
            if remaining <= 0:  # the check above was the final one before giving up
                yield TriggerEvent({**status.to_event(), "status": "timeout"})
                return
            self.log.info("%s gate of %s v%s: %s", self.gate, self.view, self.version, status.message)
            await asyncio.sleep(min(self.poll_interval, remaining))


__all__ = ["FAILED", "PASSED", "FeatureGateTrigger", "check_gate"]
