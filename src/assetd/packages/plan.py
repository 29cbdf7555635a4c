"""What installing a package would do: the import report, computed without side effects.

Pure functions over the manifest, the measured members and a snapshot of the tenant
(TenantView), so the same code makes the dry-run report at upload and the plan that install
carries out, and both can be tested without a database.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from assetd.assets.models import Access, AssetKind, AssetState, AssetType
from assetd.assets.policy import (
    check_extension,
    check_extension_matches,
    check_type,
    clean_filename,
    extension_of,
)
from assetd.errors import AssetdError
from assetd.ids import is_id, new_id
from assetd.packages.archive import MemberFacts
from assetd.packages.manifest import Manifest, PackageEntry
from assetd.tenants.service import TenantSnapshot


class ResultCode(enum.StrEnum):
    CREATED = "CREATED"
    UPDATED = "UPDATED"
    UNCHANGED = "UNCHANGED"
    CONFLICT = "CONFLICT"
    ERROR = "ERROR"


class Resolution(enum.StrEnum):
    """What to do with a CONFLICT: stop (fail), leave the tenant's asset (skip), or take the
    package's (overwrite: restore a trashed asset, replace local changes)."""

    fail = "fail"
    skip = "skip"
    overwrite = "overwrite"


class ConflictReason(enum.StrEnum):
    trashed = "trashed"
    changed_locally = "changed_locally"
    forbidden = "forbidden"
    name_taken = "name_taken"


@dataclass(frozen=True)
class ExistingAsset:
    id: str
    kind: AssetKind
    type: AssetType
    state: AssetState
    access: Access
    name: str
    description: str
    tags: list[str]
    ref_ids: list[dict[str, str]]
    metadata: dict[str, Any]
    url: str | None
    sha256: str | None
    revision: int
    can_see: bool = True
    can_edit: bool = True
    collections: frozenset[str] = frozenset()
    depends_on: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ExistingCollection:
    id: str
    name: str
    description: str
    can_edit: bool = True


@dataclass
class TenantView:
    """What the plan needs to know of the tenant, loaded in one read transaction."""

    tenant: TenantSnapshot
    max_file_size_bytes: int
    used_bytes: int
    assets: dict[str, ExistingAsset] = field(default_factory=dict)
    # A package's id → (the tenant's id, its revision after that install).
    asset_origins: dict[str, tuple[str, int | None]] = field(default_factory=dict)
    collections: dict[str, ExistingCollection] = field(default_factory=dict)
    collection_origins: dict[str, str] = field(default_factory=dict)
    # Ids some row holds (another tenant's, or a pending upload's): a new row can't reuse them.
    taken_ids: frozenset[str] = frozenset()
    known_blobs: frozenset[str] = frozenset()

    def collection_named(self, name: str) -> ExistingCollection | None:
        return next((c for c in self.collections.values() if c.name == name), None)


@dataclass
class EntryPlan:
    entry: PackageEntry
    code: ResultCode
    target_id: str
    messages: list[str] = field(default_factory=list)
    reason: ConflictReason | None = None
    existing: ExistingAsset | None = None
    new_content: bool = False
    changed_fields: list[str] = field(default_factory=list)
    restore: bool = False
    collection_ids: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)
    # (policy, message) for each tenant policy the entry's file breaks.
    violations: list[tuple[str, str]] = field(default_factory=list)

    @property
    def source_id(self) -> str:
        return self.entry.id

    @property
    def resolved_to(self) -> str | None:
        return self.target_id if self.target_id != self.entry.id else None


@dataclass
class CollectionPlan:
    source_id: str
    name: str
    description: str
    code: ResultCode
    target_id: str
    messages: list[str] = field(default_factory=list)
    reason: ConflictReason | None = None
    existing: ExistingCollection | None = None

    @property
    def resolved_to(self) -> str | None:
        return self.target_id if self.target_id != self.source_id else None


@dataclass
class Finding:
    policy: str
    message: str
    asset_id: str | None = None


@dataclass
class Plan:
    entries: list[EntryPlan]
    collections: list[CollectionPlan]
    findings: list[Finding]
    # Dependency id → the entries (their package ids) that need it and nobody provides.
    unresolved: dict[str, list[str]]
    nodes: dict[str, dict[str, Any]]

    def items(self) -> list[EntryPlan | CollectionPlan]:
        return [*self.entries, *self.collections]

    def counts(self) -> dict[str, int]:
        counted = {code.value.lower(): 0 for code in ResultCode}
        for item in self.items():
            counted[item.code.value.lower()] += 1
        return counted

    def blockers(self, on_unresolved_ignore: bool) -> list[str]:
        """Why install must refuse; empty when it may go ahead."""
        reasons = []
        for item in self.items():
            if item.code in (ResultCode.ERROR, ResultCode.CONFLICT):
                reasons.append(f"{item.source_id}: {item.code.value}: {'; '.join(item.messages)}")
        reasons.extend(f.message for f in self.findings if f.asset_id is None)
        if self.unresolved and not on_unresolved_ignore:
            reasons.append(
                "unresolved dependencies: "
                + ", ".join(sorted(self.unresolved)[:10])
                + (" …" if len(self.unresolved) > 10 else "")
            )
        return reasons

    @property
    def changes(self) -> bool:
        return any(item.code in (ResultCode.CREATED, ResultCode.UPDATED) for item in self.items())


Classify = Callable[[bytes, str], tuple[str, AssetType]]


def make_plan(
    manifest: Manifest,
    files: dict[str, MemberFacts],
    view: TenantView,
    classify: Classify,
    *,
    resolutions: dict[str, Resolution] | None = None,
    default_resolution: Resolution = Resolution.fail,
    chosen_ids: dict[str, str] | None = None,
) -> Plan:
    """The report of installing `manifest` into the tenant seen in `view`.

    `chosen_ids` are new ids an earlier report promised (`resolvedTo`), kept so install does
    what the report said. A CONFLICT given a resolution becomes UNCHANGED (skip) or UPDATED
    (overwrite), with a message saying so.
    """
    resolutions = resolutions or {}
    chosen_ids = chosen_ids or {}
    collections = [
        _plan_collection(c.id, c.name, c.description, view, chosen_ids)
        for c in manifest.collections
    ]
    collection_targets = {c.source_id: c.target_id for c in collections}
    entries = [
        _plan_entry(entry, files, view, classify, collection_targets, chosen_ids)
        for entry in manifest.entries
    ]
    by_source = {plan.entry.id: plan for plan in entries}
    nodes, unresolved = _dependencies(entries, by_source, view)
    for plan in entries:
        plan.depends_on = [_dependency_target(d, by_source, view) for d in plan.entry.depends_on]
        if plan.existing is not None and plan.code in (ResultCode.UNCHANGED, ResultCode.UPDATED):
            if set(plan.depends_on) != set(plan.existing.depends_on):
                plan.changed_fields.append("dependsOn")
            if not set(plan.collection_ids) <= plan.existing.collections:
                plan.changed_fields.append("collections")
            if plan.changed_fields and plan.code is ResultCode.UNCHANGED:
                plan.code = ResultCode.UPDATED
    items: list[EntryPlan | CollectionPlan] = [*entries, *collections]
    for item in items:
        _resolve(item, resolutions.get(item.source_id, default_resolution))
    findings = [
        Finding(policy, message, plan.entry.id)
        for plan in entries
        for policy, message in plan.violations
    ]
    findings.extend(_quota(entries, files, view))
    return Plan(entries, collections, findings, unresolved, nodes)


def _new_target(source_id: str, view: TenantView, chosen_ids: dict[str, str]) -> str:
    if source_id in chosen_ids:
        return chosen_ids[source_id]
    if is_id(source_id) and source_id not in view.taken_ids:
        return source_id
    return new_id()


def _plan_collection(
    source_id: str,
    name: str,
    description: str,
    view: TenantView,
    chosen_ids: dict[str, str],
) -> CollectionPlan:
    existing = view.collections.get(source_id) if is_id(source_id) else None
    if existing is None and source_id in view.collection_origins:
        existing = view.collections.get(view.collection_origins[source_id])
    if existing is None:
        existing = view.collection_named(name)
    if existing is None:
        target = _new_target(source_id, view, chosen_ids)
        return CollectionPlan(source_id, name, description, ResultCode.CREATED, target)
    plan = CollectionPlan(
        source_id, name, description, ResultCode.UNCHANGED, existing.id, existing=existing
    )
    if existing.name == name and existing.description == description:
        return plan
    plan.code = ResultCode.UPDATED
    if not existing.can_edit:
        plan.code, plan.reason = ResultCode.CONFLICT, ConflictReason.forbidden
        plan.messages.append("the collection exists and your roles may not change it")
    elif existing.name != name and view.collection_named(name) is not None:
        plan.code, plan.reason = ResultCode.CONFLICT, ConflictReason.name_taken
        plan.messages.append(f"another collection is already named {name!r}")
    return plan


def _plan_entry(
    entry: PackageEntry,
    files: dict[str, MemberFacts],
    view: TenantView,
    classify: Classify,
    collection_targets: dict[str, str],
    chosen_ids: dict[str, str],
) -> EntryPlan:
    collection_ids = [collection_targets[c] for c in entry.collections]
    existing = view.assets.get(entry.id) if is_id(entry.id) else None
    origin_revision: int | None = None
    if existing is None and entry.id in view.asset_origins:
        target, origin_revision = view.asset_origins[entry.id]
        existing = view.assets.get(target)
    elif existing is not None and entry.id in view.asset_origins:
        origin_revision = view.asset_origins[entry.id][1]
    if existing is None:
        plan = EntryPlan(
            entry,
            ResultCode.CREATED,
            _new_target(entry.id, view, chosen_ids),
            new_content=entry.file is not None,
            collection_ids=collection_ids,
        )
        if plan.resolved_to is not None:
            plan.messages.append(f"created under a new id, {plan.target_id}")
        _check_policies(plan, files, view, classify)
        return plan

    plan = EntryPlan(
        entry,
        ResultCode.UNCHANGED,
        existing.id,
        existing=existing,
        collection_ids=collection_ids,
    )
    if existing.kind is not entry.kind:
        plan.code = ResultCode.ERROR
        plan.messages.append(
            f"the tenant's asset is a {existing.kind.value}, the package's a {entry.kind.value}"
        )
        return plan
    if not existing.can_see or not existing.can_edit:
        plan.code, plan.reason = ResultCode.CONFLICT, ConflictReason.forbidden
        plan.messages.append("the asset exists and your roles may not change it")
        return plan
    plan.new_content = entry.file is not None and entry.file.sha256 != existing.sha256
    plan.changed_fields = _changed_fields(entry, existing)
    if plan.new_content:
        _check_policies(plan, files, view, classify)
        if plan.code is ResultCode.ERROR:
            return plan
    if existing.state is AssetState.trashed:
        plan.code, plan.reason, plan.restore = (
            ResultCode.CONFLICT,
            ConflictReason.trashed,
            True,
        )
        plan.messages.append("the asset is in the trash")
    elif plan.new_content or plan.changed_fields:
        plan.code = ResultCode.UPDATED
        if origin_revision is not None and existing.revision != origin_revision:
            plan.code, plan.reason = ResultCode.CONFLICT, ConflictReason.changed_locally
            plan.messages.append(
                "the asset changed in this tenant since a package installed it "
                f"(revision {origin_revision} then, {existing.revision} now)"
            )
    return plan


def _changed_fields(entry: PackageEntry, existing: ExistingAsset) -> list[str]:
    wanted: dict[str, Any] = {
        "type": (entry.type, existing.type),
        "access": (entry.access, existing.access),
        "name": (entry.name or existing.name, existing.name),
        "description": (entry.description, existing.description),
        "tags": (list(entry.tags), list(existing.tags)),
        "refIds": ([r.model_dump() for r in entry.ref_ids], list(existing.ref_ids)),
        "metadata": (entry.metadata, existing.metadata),
        "url": (str(entry.url) if entry.url is not None else None, existing.url),
    }
    return [name for name, (theirs, ours) in wanted.items() if theirs != ours]


def _check_policies(
    plan: EntryPlan, files: dict[str, MemberFacts], view: TenantView, classify: Classify
) -> None:
    entry = plan.entry
    if entry.file is None:
        return
    facts = files[entry.file.path]
    filename = clean_filename(entry.file.filename or entry.file.path)
    extension = extension_of(filename)
    problems: list[tuple[str, str]] = []
    if facts.size_bytes > view.max_file_size_bytes:
        problems.append(
            ("size", f"{facts.size_bytes} bytes is over the limit of {view.max_file_size_bytes}")
        )
    try:
        check_extension(view.tenant, extension)
    except AssetdError as exc:
        problems.append(("extension", exc.detail))
    mime_type, asset_type = classify(facts.head, extension)
    try:
        check_extension_matches(extension, mime_type)
    except AssetdError as exc:
        problems.append(("extension", exc.detail))
    try:
        check_type(view.tenant, mime_type, asset_type)
    except AssetdError as exc:
        problems.append(("type", exc.detail))
    if problems:
        plan.code = ResultCode.ERROR
        plan.violations = problems
        plan.messages.extend(f"{policy} policy: {text}" for policy, text in problems)


def _quota(
    entries: list[EntryPlan], files: dict[str, MemberFacts], view: TenantView
) -> list[Finding]:
    quota = view.tenant.quota_bytes
    if quota is None:
        return []
    # Bytes the tenant does not hold yet, each distinct content once (blobs are shared).
    new_bytes = {
        files[p.entry.file.path].sha256: files[p.entry.file.path].size_bytes
        for p in entries
        if p.entry.file is not None and p.new_content and p.code is not ResultCode.ERROR
    }
    needed = sum(size for sha, size in new_bytes.items() if sha not in view.known_blobs)
    if view.used_bytes + needed <= quota:
        return []
    return [
        Finding(
            "quota",
            f"installing needs {needed} more bytes; the tenant uses {view.used_bytes} "
            f"of its quota of {quota}",
        )
    ]


def _dependency_target(source: str, by_source: dict[str, EntryPlan], view: TenantView) -> str:
    """The tenant's id for a dependency: the entry's target, a mapped id, or the id as given."""
    if source in by_source:
        return by_source[source].target_id
    if source in view.asset_origins:
        return view.asset_origins[source][0]
    return source


def _dependencies(
    entries: list[EntryPlan], by_source: dict[str, EntryPlan], view: TenantView
) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    nodes: dict[str, dict[str, Any]] = {}
    unresolved: dict[str, list[str]] = defaultdict(list)
    for plan in entries:
        nodes[plan.entry.id] = {
            "id": plan.entry.id,
            "resolvedTo": plan.resolved_to,
            "name": plan.entry.name,
            "description": plan.entry.description,
            "type": plan.entry.type.value,
            "qualifier": "package",
            "dependsOn": list(plan.entry.depends_on),
            "requiredBy": [],
        }
    for plan in entries:
        for source in plan.entry.depends_on:
            if source in nodes:
                nodes[source]["requiredBy"].append(plan.entry.id)
                continue
            target_id = _dependency_target(source, by_source, view)
            found = view.assets.get(target_id)
            if found is None or found.state is not AssetState.active or not found.can_see:
                unresolved[source].append(plan.entry.id)
                continue
            node = nodes.setdefault(
                source,
                {
                    "id": source,
                    "resolvedTo": target_id if target_id != source else None,
                    "name": found.name,
                    "description": found.description,
                    "type": found.type.value,
                    "qualifier": "tenant",
                    "dependsOn": sorted(found.depends_on),
                    "requiredBy": [],
                },
            )
            node["requiredBy"].append(plan.entry.id)
    return nodes, dict(unresolved)


def _resolve(item: EntryPlan | CollectionPlan, resolution: Resolution) -> None:
    if item.code is not ResultCode.CONFLICT or resolution is Resolution.fail:
        return
    if resolution is Resolution.skip:
        item.code = ResultCode.UNCHANGED
        item.messages.append("conflict resolved: the tenant's version is kept (skip)")
        return
    if item.reason in (ConflictReason.forbidden, ConflictReason.name_taken):
        item.messages.append("overwrite cannot resolve this conflict; skip can")
        return
    item.code = ResultCode.UPDATED
    item.messages.append("conflict resolved: the package's version is installed (overwrite)")


def group_by_type(nodes: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for node in nodes.values():
        grouped[node["type"]].append(node)
    return dict(sorted(grouped.items()))
