"""The import report as the API stores and shows it, made from a plan."""

from __future__ import annotations

from typing import Any

from assetd.packages.plan import Plan, group_by_type


def render_report(plan: Plan, unused: list[str], *, installed: bool = False) -> dict[str, Any]:
    """The import report as stored and shown (native shape; seed 004 reshapes it)."""
    blockers = plan.blockers(on_unresolved_ignore=False)
    status = "INSTALLED" if installed else ("BLOCKED" if blockers else "READY")
    return {
        "status": status,
        "summary": plan.counts(),
        "records": [
            {
                "assetId": item.entry.id,
                "assetType": item.entry.type.value,
                "name": item.entry.name,
                "description": item.entry.description,
                "resultCode": item.code.value,
                "reason": item.reason.value if item.reason is not None else None,
                "resolvedTo": item.resolved_to,
                "messages": item.messages,
            }
            for item in plan.entries
        ],
        "collections": [
            {
                "collectionId": item.source_id,
                "name": item.name,
                "description": item.description,
                "resultCode": item.code.value,
                "reason": item.reason.value if item.reason is not None else None,
                "resolvedTo": item.resolved_to,
                "messages": item.messages,
            }
            for item in plan.collections
        ],
        "dependencies": group_by_type(plan.nodes),
        "unresolvedDependencies": [
            {"id": source, "requiredBy": required_by}
            for source, required_by in sorted(plan.unresolved.items())
        ],
        "policyFindings": [
            {"assetId": f.asset_id, "policy": f.policy, "message": f.message} for f in plan.findings
        ],
        "blockers": [] if installed else blockers,
        "unusedMembers": unused[:1000],
    }


def chosen_ids(report: dict[str, Any]) -> dict[str, str]:
    """The new ids an earlier report promised, so install keeps its word."""
    chosen = {}
    for record in report.get("records", []):
        if record.get("resolvedTo"):
            chosen[record["assetId"]] = record["resolvedTo"]
    for record in report.get("collections", []):
        if record.get("resolvedTo"):
            chosen[record["collectionId"]] = record["resolvedTo"]
    return chosen
