"""The ``feature-rollout`` command (DESIGN §14).

Human output by default, ``--json`` where a script wants it. Exit codes: 0 ok, 1 a check failed
(stale plan, protection, parity, gates), 2 bad input. User errors print one message, never a
traceback; set ``FEATURE_ROLLOUT_DEBUG=1`` to see one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from feature_rollout.core.errors import (
    FAILED_CHECK,
    FeatureRolloutError,
    GateCheckFailed,
    InvalidDefinitionError,
    NaiveTimestampError,
)

Handler = Callable[[argparse.Namespace], int]


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=_json_default))


def _store(args: argparse.Namespace) -> Any:
    from feature_rollout.store import FeatureStore

    return FeatureStore(args.repo, workspace=args.workspace)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers], *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells)


# --- commands ---------------------------------------------------------------------------------


def cmd_init(args: argparse.Namespace) -> int:
    from feature_rollout.scaffold import init_repo

    root = init_repo(args.directory, project=args.project, drivers=args.drivers, days=args.days, force=args.force)
    print(f"Created a demo feature repo in {root}")
    print(f"  next: cd {root} && feature-rollout plan")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    store = _store(args)
    plan = store.plan(no_promote=args.no_promote, suppress_recreates=args.suppress_recreates)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(plan.to_json(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if args.json:
        _print_json(plan.to_json())
    else:
        print(plan.render())
        if plan.has_changes:
            print(f"\nApply exactly this plan with: feature-rollout apply --plan-id {plan.id}")
        if args.json_out:
            print(f"Wrote the plan as JSON to {args.json_out}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    store = _store(args)
    result = store.apply(plan_id=args.plan_id, no_promote=args.no_promote, suppress_recreates=args.suppress_recreates)
    if args.json:
        _print_json({**result.to_dict(), "plan": result.plan.to_json() if result.plan else None})
        return 0
    if args.plan_id is None and result.plan is not None:
        print(result.plan.render())
    if not result.applied:
        print(f"Nothing to apply; workspace '{result.workspace}' stays at revision {result.revision}.")
        return 0
    print(f"Applied plan {result.plan_id}: workspace '{result.workspace}' is now at revision {result.revision}.")
    for view, version, table in result.created_versions:
        print(f"  created {view} v{version} (online table {table})")
    for view, before, after in result.promoted:
        print(f"  {view}: active {'-' if before is None else f'v{before}'} -> v{after}")
    for view, version in result.held:
        print(f"  {view}: v{version} not promoted (held by rollback)")
    return 0


def cmd_list_versions(args: argparse.Namespace) -> int:
    store = _store(args)
    versions = store.list_feature_view_versions(args.view)
    if args.json:
        _print_json(versions)
        return 0
    view = store.registry.get_view(store.workspace, args.view)
    rows = [(v["version"], v["state"], _when(v["created_timestamp"]), v["schema_hash"][:12], v["online_table"],
             v["created_by"]) for v in versions]
    print(f"Feature view '{args.view}' in workspace '{store.workspace}'"
          + (" (deleted; history kept)" if view.deleted else ""))
    print(_table(("VERSION", "STATE", "CREATED (UTC)", "SCHEMA", "ONLINE TABLE", "BY"), rows))
    if view.hold is not None:
        held = ", ".join(f"v{n}" for n in view.hold.versions)
        print(f"Held by rollback: {held} (release with: feature-rollout release-hold {args.view})")
    return 0


def cmd_list_views(args: argparse.Namespace) -> int:
    store = _store(args)
    state = store.registry.load_state(store.workspace)
    rows = []
    for name, view in sorted(state.live_views().items()):
        staged = [f"v{v.number}" for v in view.versions if v.state.value == "staged"]
        rows.append((name, f"v{view.active_version}" if view.active_version is not None else None,
                     ",".join(staged) or None, len(view.versions),
                     "yes" if view.hold else None, "yes" if view.metadata.get("prevent_destroy") else None))
    if args.json:
        _print_json([dict(zip(("name", "active", "staged", "versions", "held", "prevent_destroy"), r, strict=True))
                     for r in rows])
    else:
        print(_table(("VIEW", "ACTIVE", "STAGED", "VERSIONS", "HELD", "PROTECTED"), rows))
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    store = _store(args)
    events = store.history(args.view, limit=args.limit)
    if args.json:
        _print_json(events)
        return 0
    rows = [(_when(e["at"]), e["name"], e["kind"], _v(e["from_version"]), _v(e["to_version"]), e["actor"],
             e["run_id"], e["reason"]) for e in events]
    print(_table(("AT (UTC)", "VIEW", "KIND", "FROM", "TO", "ACTOR", "RUN", "REASON"), rows))
    return 0


def _v(number: int | None) -> str | None:
    return None if number is None else f"v{number}"


def cmd_promote(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        move = store.promote(args.view, args.version, require_gates=not args.skip_gates, reason=args.reason)
    except GateCheckFailed as err:
        raise GateCheckFailed(f"{err} (To promote without gates, pass --skip-gates.)") from None
    if args.json:
        _print_json(move.__dict__)
    elif move.is_noop:
        print(f"{args.view}: v{move.to_version} is already active; nothing changed.")
    else:
        print(f"Promoted {args.view}: active {_v(move.from_version) or '-'} -> v{move.to_version}")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    store = _store(args)
    move = store.rollback(args.view, to=args.to, reason=args.reason)
    if args.json:
        _print_json(move.__dict__)
    else:
        print(f"Rolled back {args.view}: active v{move.from_version} -> v{move.to_version}; v{move.from_version} is "
              f"held (an apply will not re-promote it until `feature-rollout release-hold {args.view}`).")
    return 0


def cmd_release_hold(args: argparse.Namespace) -> int:
    store = _store(args)
    hold = store.release_hold(args.view, reason=args.reason)
    if hold is None:
        print(f"{args.view} has no hold; nothing changed.")
    else:
        print(f"Released the hold on {args.view} ({', '.join(f'v{n}' for n in hold.versions)}); the next apply may "
              "promote it again.")
    return 0


def cmd_plans(args: argparse.Namespace) -> int:
    store = _store(args)
    stored = store.registry.list_plans(store.workspace, limit=args.limit)
    if args.json:
        _print_json([{**p.plan.to_json(), "created_at": p.created_at, "created_by": p.created_by,
                      "applied_at": p.applied_at, "applied_revision": p.applied_revision} for p in stored])
        return 0
    for p in stored:
        applied = (f"applied {_when(p.applied_at)} UTC (revision {p.applied_revision})" if p.applied_at
                   else "not applied")
        print(f"# {_when(p.created_at)} UTC by {p.created_by or '?'}: {applied}")
        print(p.rendered)
        print()
    if not stored:
        print(f"No stored plans in workspace '{store.workspace}'.")
    return 0


def cmd_workspace_create(args: argparse.Namespace) -> int:
    store = _store(args)
    store.create_workspace(args.name, live=args.live)
    print(f"Created {'live' if args.live else 'development'} workspace '{args.name}'.")
    return 0


def cmd_workspace_list(args: argparse.Namespace) -> int:
    store = _store(args)
    workspaces = store.list_workspaces()
    if args.json:
        _print_json(workspaces)
        return 0
    rows = [(w["name"], "live" if w["live"] else "development", w["revision"], w["feature_views"],
             _when(w["created_at"])) for w in workspaces]
    print(_table(("WORKSPACE", "KIND", "REVISION", "VIEWS", "CREATED (UTC)"), rows))
    return 0


def cmd_registry_upgrade(args: argparse.Namespace) -> int:
    from feature_rollout.config import load_config
    from feature_rollout.registry.engine import get_engine, safe_url
    from feature_rollout.registry.migrate import upgrade

    url = args.registry_url or load_config(args.repo).registry_url
    before, after = upgrade(get_engine(url), args.revision)
    if before == after:
        print(f"Registry {safe_url(url)} is at revision {after}; nothing to do.")
    else:
        print(f"Upgraded registry {safe_url(url)} from {before or 'empty'} to {after}.")
    return 0


def parse_time(text: str) -> datetime:
    """``now``, a date (``2026-01-31``: midnight UTC), or an ISO date-time with a zone (``...Z``, ``+02:00``)."""
    if text == "now":
        return datetime.now(UTC)
    try:
        if len(text) == 10:
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), tzinfo=UTC)
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidDefinitionError(
            f"{text!r} is not a time: use 'now', a date such as 2026-01-31 (midnight UTC), or an ISO date-time with "
            "a zone such as 2026-01-31T12:00:00Z."
        ) from None
    if value.tzinfo is None:
        raise NaiveTimestampError(f"{text!r} has no time zone; add one, e.g. {text}Z for UTC.")
    return value


def _views(text: str | None) -> list[str] | None:
    return [v.strip() for v in text.split(",") if v.strip()] if text else None


def _progress(args: argparse.Namespace) -> Callable[[Any], None] | None:
    if args.quiet or args.json:
        return None

    def show(p: Any) -> None:
        print(f"  {p.view} v{p.version}: chunk {p.chunks}, {p.rows_upserted:,} rows upserted "
              f"({p.rows_written:,} changed) of {p.rows_read:,} read, {p.seconds:.1f}s", file=sys.stderr, flush=True)

    return show


def _print_materialized(results: Sequence[Any], args: argparse.Namespace) -> int:
    if args.json:
        _print_json([r.to_dict() for r in results])
    elif not results:
        print("Nothing to materialize.")
    for r in results if not args.json else ():
        print(f"Materialized {r.view} v{r.version} [{r.start.isoformat()}, {r.end.isoformat()}): "
              f"{r.rows_read:,} rows read, {r.rows_written:,} written in {r.seconds:.1f}s (run {r.run})")
    return 0


def cmd_materialize(args: argparse.Namespace) -> int:
    store = _store(args)
    results = store.materialize(parse_time(args.start), parse_time(args.end), _views(args.views),
                                version=args.version, include_staged=args.include_staged, progress=_progress(args))
    return _print_materialized(results, args)


def cmd_materialize_incremental(args: argparse.Namespace) -> int:
    store = _store(args)
    results = store.materialize_incremental(parse_time(args.end), _views(args.views), version=args.version,
                                            include_staged=args.include_staged, progress=_progress(args))
    return _print_materialized(results, args)


def cmd_status(args: argparse.Namespace) -> int:
    store = _store(args)
    status = store.status(args.view, args.version)
    if args.json:
        _print_json(status)
        return 0
    active = status["active_version"]
    print(f"Feature view '{args.view}' in workspace '{store.workspace}': active "
          f"{'-' if active is None else f'v{active}'}" + (" (held by rollback)" if status["hold"] else ""))
    for v in status["versions"]:
        coverage = ", ".join(f"[{c['start']}, {c['end']})" for c in v["coverage"]) or "nothing materialized"
        rows = ("table dropped by prune" if v["table_dropped"] else
                "online table missing (materialize to recreate it)" if v.get("table_missing") else
                f"{v['online_rows']:,} rows online")
        print(f"  {v['version']} {v['state']}: {rows} in {v['online_table']}; covered: {coverage}")
        for run in v["runs"]:
            print(f"      run {run['id']} {run['status']}: [{run['start'].isoformat()}, {run['end'].isoformat()}) "
                  f"read {run['rows_read']:,}, wrote {run['rows_written']:,}"
                  + (f"; {run['error'].splitlines()[0]}" if run["error"] else ""))
    for report in status["parity_reports"][:3]:
        print(f"  parity #{report['id']}: {'passed' if report['passed'] else 'FAILED'} {report['candidate']} vs "
              f"{report['baseline']} ({report['mismatched_rows']}/{report['rows_compared']} rows differ)")
    return 0


def cmd_readiness(args: argparse.Namespace) -> int:
    store = _store(args)
    result = store.readiness(args.view, args.version, parse_time(args.start), parse_time(args.end))
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.explain())
    return 0 if result.ready else FAILED_CHECK


def _columns(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    pairs = [part.split("=", 1) if "=" in part else [part, part] for part in text.split(",") if part.strip()]
    return {a.strip(): b.strip() for a, b in pairs}


def cmd_parity(args: argparse.Namespace) -> int:
    store = _store(args)
    report = store.parity(
        args.baseline, args.candidate, args.spine, columns=_columns(args.columns), abs_tol=args.abs_tol,
        rel_tol=args.rel_tol, max_mismatch_ratio=args.max_mismatch_ratio, sample_size=args.sample_size,
        seed=args.seed, start=parse_time(args.start) if args.start else None,
        end=parse_time(args.end) if args.end else None)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.render())
        print(f"Stored as parity report #{report.id}.")
    return 0 if report.passed else FAILED_CHECK


def cmd_prune(args: argparse.Namespace) -> int:
    store = _store(args)
    pruned = store.prune_versions(args.view, keep=args.keep)
    if args.json:
        _print_json({"view": args.view, "pruned": [f"v{n}" for n in pruned]})
    elif pruned:
        print(f"Dropped the online tables of {args.view} {', '.join(f'v{n}' for n in pruned)} (history kept).")
    else:
        print(f"Nothing to prune: {args.view} has at most {args.keep} retired version(s) with a table.")
    return 0


# --- parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--repo", "-C", default=argparse.SUPPRESS,
                        help="the feature repo (folder with feature_store.yaml); default: current folder")
    common.add_argument("--workspace", "-w", default=argparse.SUPPRESS,
                        help="workspace to use; default: the repo's project")

    parser = argparse.ArgumentParser(prog="feature-rollout", parents=[common],
                                     description="Plan, stage, gate and promote versioned feature definitions.")
    from feature_rollout import __version__

    parser.add_argument("--version", action="version", version=f"feature-rollout {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str, parent: Any = sub) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, parents=[common], help=help_text, description=help_text)
        p.set_defaults(handler=handler)
        return p

    def json_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--json", action="store_true", help="print JSON instead of text")

    p = command("init", cmd_init, "create a demo feature repo with generated data")
    p.add_argument("directory")
    p.add_argument("--project", help="project (default workspace) name; default: from the folder name")
    p.add_argument("--drivers", type=int, default=50, help="distinct drivers in the generated data")
    p.add_argument("--days", type=int, default=7, help="days of hourly rows")
    p.add_argument("--force", action="store_true", help="write into a non-empty folder")

    p = command("plan", cmd_plan, "show what apply would change, and store the plan under an id")
    p.add_argument("--json-out", metavar="FILE", help="also write the plan as JSON to FILE")
    p.add_argument("--no-promote", action="store_true", help="plan new versions as staged, not served")
    p.add_argument("--suppress-recreates", action="store_true", help="turn location-only recreates into updates")
    json_flag(p)

    p = command("apply", cmd_apply, "apply a stored plan, or plan and apply in one step")
    p.add_argument("--plan-id", help="apply exactly this stored plan (fails if the workspace moved since)")
    p.add_argument("--no-promote", action="store_true", help="stage new versions without serving them")
    p.add_argument("--suppress-recreates", action="store_true", help="turn location-only recreates into updates")
    json_flag(p)

    p = command("plans", cmd_plans, "stored plans, newest first, with their diff and whether they were applied")
    p.add_argument("--limit", type=int, default=10)
    json_flag(p)

    fv = sub.add_parser("feature-views", help="inspect feature views").add_subparsers(
        dest="fv_command", required=True, metavar="SUBCOMMAND")
    p = command("list-versions", cmd_list_versions, "list the versions of a feature view", fv)
    p.add_argument("view")
    json_flag(p)
    p = command("list", cmd_list_views, "list the feature views of the workspace", fv)
    json_flag(p)
    p = command("history", cmd_history, "promotions, rollbacks, holds and deletions, newest first", fv)
    p.add_argument("view", nargs="?")
    p.add_argument("--limit", type=int, default=50)
    json_flag(p)

    p = command("promote", cmd_promote, "make a version the active one")
    p.add_argument("view")
    p.add_argument("version", help="e.g. v2")
    p.add_argument("--skip-gates", action="store_true", help="do not require readiness and parity")
    p.add_argument("--reason")
    json_flag(p)

    p = command("rollback", cmd_rollback, "promote the previous version and hold the current one")
    p.add_argument("view")
    p.add_argument("--to", help="roll back to this version instead of the previous one")
    p.add_argument("--reason")
    json_flag(p)

    p = command("release-hold", cmd_release_hold, "allow applies to promote a rolled-back version again")
    p.add_argument("view")
    p.add_argument("--reason")

    ws = sub.add_parser("workspace", help="manage workspaces").add_subparsers(
        dest="ws_command", required=True, metavar="SUBCOMMAND")
    p = command("create", cmd_workspace_create, "create a workspace (development unless --live)", ws)
    p.add_argument("name")
    p.add_argument("--live", action="store_true", help="a production workspace: prevent_destroy is enforced")
    p = command("list", cmd_workspace_list, "list workspaces", ws)
    json_flag(p)

    def materialize_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument("--views", help="comma-separated view names; default: every online view")
        p.add_argument("--version", help="one version (e.g. v2) of the single view named by --views")
        p.add_argument("--include-staged", action="store_true", help="also materialize staged versions")
        p.add_argument("--quiet", action="store_true", help="no progress lines")
        json_flag(p)

    p = command("materialize", cmd_materialize, "materialize [START, END) into the online store, per version")
    p.add_argument("start", help="'now', a date (UTC midnight) or an ISO date-time with a zone")
    p.add_argument("end")
    materialize_flags(p)

    p = command("materialize-incremental", cmd_materialize_incremental,
                "materialize each version from its own watermark up to END")
    p.add_argument("end")
    materialize_flags(p)

    p = command("status", cmd_status, "coverage, online rows, recent runs and parity reports of a view")
    p.add_argument("view")
    p.add_argument("version", nargs="?")
    json_flag(p)

    p = command("readiness", cmd_readiness, "is a version populated for [START, END)? (exit 1 if not)")
    p.add_argument("view")
    p.add_argument("version")
    p.add_argument("start")
    p.add_argument("end")
    json_flag(p)

    p = command("parity", cmd_parity, "compare two versions on one spine and store the report (exit 1 if it fails)")
    p.add_argument("baseline", help="e.g. driver_stats@v1 or prod/driver_stats")
    p.add_argument("candidate", help="e.g. driver_stats@v2 or staging/driver_stats")
    p.add_argument("--spine", help="a Parquet file with the join keys and event_timestamp, or sha256:<digest> of a "
                                   "stored spine; default: a seeded sample")
    p.add_argument("--sample-size", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--start", help="sample the spine from source rows at or after START")
    p.add_argument("--end", help="... and before END")
    p.add_argument("--columns", help="features to compare: a,b or baseline_name=candidate_name")
    p.add_argument("--abs-tol", type=float, default=0.0)
    p.add_argument("--rel-tol", type=float, default=0.0)
    p.add_argument("--max-mismatch-ratio", type=float, default=0.0)
    json_flag(p)

    p = command("prune", cmd_prune, "drop online tables of retired versions beyond the newest N")
    p.add_argument("view")
    p.add_argument("--keep", type=int, required=True)
    json_flag(p)

    reg = sub.add_parser("registry", help="registry database maintenance").add_subparsers(
        dest="reg_command", required=True, metavar="SUBCOMMAND")
    p = command("upgrade", cmd_registry_upgrade, "migrate the registry schema to the newest revision", reg)
    p.add_argument("--registry-url", help="registry URL; default: from feature_store.yaml")
    p.add_argument("--revision", default="head")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # --repo/--workspace may come before or after the command; the parsers share these actions, so
    # their defaults are applied here rather than with set_defaults (which would reset them).
    args.repo = getattr(args, "repo", ".")
    args.workspace = getattr(args, "workspace", None)
    try:
        code: int = args.handler(args)
    except FeatureRolloutError as err:
        if os.environ.get("FEATURE_ROLLOUT_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if os.environ.get("FEATURE_ROLLOUT_DEBUG"):
            raise
        print(f"error: unexpected {type(err).__name__}: {err}\n(set FEATURE_ROLLOUT_DEBUG=1 to see the traceback, "
              "and please report it)", file=sys.stderr)
        return FAILED_CHECK
    return code


if __name__ == "__main__":
    sys.exit(main())
