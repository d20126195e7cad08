"""Policies (docs/contracts.md, "Policies"): the YAML ops edit, and the pure decision it drives.

    model   the schema: Policy and its sections, frozen, unknown keys rejected, ``version`` = content hash
    load    YAML text/file -> Policy, or PolicyError with one issue per problem (file:line: field: fix)
    decide  scores + Policy -> Outcome (allow / block / review / escalate); best_guess for the fallback
    guard   the action guard: a tripped category's would-be blocks diverted (guard_outcome), the guards in force
    store   PolicyStore: the policy in force for a file, hot-reloaded, swapped atomically
    check   `modcascade policy check`: validate files and directories
    audit   the audit draw: a stable hash of (seed, post id) against the policy's audit rates
"""

from pipeline.policy.audit import audit_draw, audited
from pipeline.policy.check import check_file, check_files, check_paths, run_check
from pipeline.policy.decide import ALLOW, Outcome, OutcomeKind, best_guess, decide
from pipeline.policy.guard import GuardBoard, clearing, guard_outcome, trips
from pipeline.policy.load import load_policy, parse_policy
from pipeline.policy.model import (
    Action,
    Adjudication,
    Audit,
    AuditBudget,
    AuditRates,
    Band,
    BandRule,
    DatasetRules,
    EscalationBudget,
    Fallback,
    FrontierPrices,
    Guard,
    GuardDivert,
    ModelRef,
    Monitor,
    PiiKind,
    Policy,
    Prices,
    Provider,
    Taxonomy,
)
from pipeline.policy.store import PolicyStore

__all__ = [
    "ALLOW",
    "Action",
    "Adjudication",
    "Audit",
    "AuditBudget",
    "AuditRates",
    "Band",
    "BandRule",
    "DatasetRules",
    "EscalationBudget",
    "Fallback",
    "FrontierPrices",
    "Guard",
    "GuardBoard",
    "GuardDivert",
    "ModelRef",
    "Monitor",
    "Outcome",
    "OutcomeKind",
    "PiiKind",
    "Policy",
    "PolicyStore",
    "Prices",
    "Provider",
    "Taxonomy",
    "audit_draw",
    "audited",
    "best_guess",
    "check_file",
    "check_files",
    "check_paths",
    "clearing",
    "decide",
    "guard_outcome",
    "load_policy",
    "parse_policy",
    "run_check",
    "trips",
]
