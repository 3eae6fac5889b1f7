"""The registry database: definitions, versions, plans, the audit log and the ledger (DESIGN §5)."""

from __future__ import annotations

from feature_rollout.registry.registry import ApplyResult, Registry, StoredPlan

__all__ = ["ApplyResult", "Registry", "StoredPlan"]
