"""Deferrable sensors that hold a rollout: ``VersionPopulatedSensor`` and ``PromotionGateSensor``.

Deferrable by default when ``[operators] default_deferrable`` is on. A deferrable sensor checks once
before deferring (no trigger if the gate already holds), hands polling to
:class:`~feature_rollout.triggers.feature_rollout.FeatureGateTrigger` with a wall-clock deadline of
``timeout`` seconds, and resumes on its single event. A failed parity report fails the task at once
and without retry; a timeout raises ``AirflowSensorTimeout``. Non-deferrable mode pokes as usual.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.sdk import BaseSensorOperator, conf
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from feature_rollout.hooks.feature_registry import DEFAULT_CONN_ID, FeatureRegistryHook
from feature_rollout.operators.feature_rollout import FeatureViewLink, feature_view_path, parse_time
from feature_rollout.triggers.feature_rollout import FAILED, PASSED, FeatureGateTrigger, check_gate

if TYPE_CHECKING:
    from airflow.sdk import Context

    from feature_rollout.gates import GateStatus


class _GateSensor(BaseSensorOperator):
    gate: ClassVar[str]
    template_fields: Sequence[str] = ("repo_path", "workspace", "view", "version", "start", "end")
    operator_extra_links = (FeatureViewLink(),)

    def __init__(self, *, view: str, version: int | str, start: Any = None, end: Any = None,
                 feature_rollout_conn_id: str = DEFAULT_CONN_ID, repo_path: str | None = None,
                 workspace: str | None = None,
                 deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
                 **kwargs: Any) -> None:
        kwargs.setdefault("poke_interval", 60)
        super().__init__(**kwargs)
        self.view = view
        self.version = version
        self.start = start
        self.end = end
        self.feature_rollout_conn_id = feature_rollout_conn_id
        self.repo_path = repo_path
        self.workspace = workspace
        self.deferrable = deferrable

    def _window(self, context: Context) -> tuple[Any, Any]:
        start = parse_time(self.start if self.start is not None else context.get("data_interval_start"), "start")
        end = parse_time(self.end if self.end is not None else context.get("data_interval_end"), "end")
        return start, end

    def _check(self, context: Context) -> GateStatus:
        from feature_rollout.store import version_number

        store = FeatureRegistryHook(self.feature_rollout_conn_id, repo_path=self.repo_path,
                                    workspace=self.workspace).get_conn()
        context["ti"].xcom_push(key="feature_view", value={"workspace": store.workspace, "view": self.view,
                                                             "version": None})
        start, end = self._window(context)
        status = check_gate(store, self.gate, self.view, version_number(self.version), start, end)
        self.log.info("%s gate: %s", self.gate, status.message)
        return status

    def poke(self, context: Context) -> bool:
        status = self._check(context)
        if status.status in (FAILED, "error"):
            raise AirflowFailException(status.message)
        return status.status == PASSED

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        status = self._check(context)  # one check before deferring
        if status.status == PASSED:
            return status.to_event()
        if status.status in (FAILED, "error"):
            raise AirflowFailException(status.message)
        from feature_rollout.store import version_number

        start, end = self._window(context)
        timeout = self.timeout.total_seconds() if isinstance(self.timeout, timedelta) else float(self.timeout)
        self.defer(
            trigger=FeatureGateTrigger(
                gate=self.gate, conn_id=self.feature_rollout_conn_id, repo_path=self.repo_path,
                workspace=self.workspace, view=self.view, version=version_number(self.version),
                start=start.isoformat(), end=end.isoformat(), deadline=time.time() + timeout,
                poll_interval=float(self.poke_interval)),
            method_name="execute_complete",
            # Only a backstop: the trigger gives up at its own deadline after a final check.
            timeout=timedelta(seconds=timeout + 300),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        if not event:
            raise AirflowFailException(f"The {self.gate} trigger of {self.view} returned no event.")
        status, version = event.get("status"), event.get("version", self.version)
        if status == PASSED:
            self.log.info("%s gate passed: %s", self.gate, event.get("message"))
            return {**event, "deferred": True}  # it came back from the triggerer
        if status == "timeout":
            raise AirflowSensorTimeout(f"{self.gate} gate of {self.view} v{version} did not pass within the "
                                       f"sensor timeout: {event.get('message')}")
        raise AirflowFailException(f"{self.gate} gate of {self.view} v{version}: {event.get('message')}")


class VersionPopulatedSensor(_GateSensor):
    """Wait until ``version`` of ``view`` is populated for ``[start, end)`` (ledger coverage and entities).

    :param view: the feature view (templated).
    :param version: the version, e.g. ``"v2"`` (templated).
    :param start: the interval start (templated; default: the data interval).
    :param end: the interval end (templated; default: the data interval).
    :param feature_rollout_conn_id: the Airflow connection (type ``feature_rollout``).
    :param repo_path: the feature repo (default: the connection's ``repo_path`` extra).
    :param workspace: the workspace (default: the connection's, else the repo's project).
    :param deferrable: check once, then wait in the triggerer (default ``[operators] default_deferrable``);
        otherwise poke every ``poke_interval`` seconds (default 60) until ``timeout``.
    """

    gate = "populated"


class PromotionGateSensor(_GateSensor):
    """Wait until ``version`` is populated for ``[start, end)`` and its latest parity report against the
    active version has passed; a failed report fails the task at once, without retry.

    :param view: the feature view (templated).
    :param version: the version, e.g. ``"v2"`` (templated).
    :param start: the interval start (templated; default: the data interval).
    :param end: the interval end (templated; default: the data interval).
    :param feature_rollout_conn_id: the Airflow connection (type ``feature_rollout``).
    :param repo_path: the feature repo (default: the connection's ``repo_path`` extra).
    :param workspace: the workspace (default: the connection's, else the repo's project).
    :param deferrable: check once, then wait in the triggerer (default ``[operators] default_deferrable``);
        otherwise poke every ``poke_interval`` seconds (default 60) until ``timeout``.
    """

    gate = "promotion"


__all__ = ["PromotionGateSensor", "VersionPopulatedSensor", "feature_view_path"]
