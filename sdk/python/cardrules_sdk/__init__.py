"""The Python SDK for cardrules policies (world `cardrules:policy@0.2.0`).

It mirrors the Rust SDK (`guest-rules/sdk`): the bindings' types plus the few helpers
every policy needs, so that a policy reads like its rule book and explains its
decisions with no extra code.

A policy is a module `policy.py` that defines the class `WitWorld` (the name
componentize-py exports the world's functions from) as a subclass of `Policy`:

    from cardrules_sdk import *

    class WitWorld(Policy):
        def describe(self) -> PolicyInfo:
            return policy_info("bergen", "2024.1.0", ["redeem"], [OK, "card-inactive",
                               "quota-exhausted", UNKNOWN_ACTION, BAD_REQUEST])

        def evaluate(self, req: Request) -> Decision:
            actions = {"redeem": redeem}
            return decide(req, actions.get(req.action, lambda req: deny(UNKNOWN_ACTION)))

    def redeem(req: Request) -> Outcome:
        offer = required(req.offer)
        # 1. A rule: recorded as the check `card-active`, denied with `card-inactive`.
        check("card-active", req.holder.state == CardState.ACTIVE, "card-inactive")
        # 6. A counting rule: visits this local year against the offer's yearly limit.
        limit = attr_int(offer, "yearly-limit")
        if limit is not None:
            used = ledger.count_in(req.holder.card, "visits", Period.YEAR, req.at)
            within("yearly-limit", "quota-exhausted", used, limit,
                   Until.end_of(Period.YEAR, req.at))
        return allow().admitted(req.party).price(0).count("visits", 1)

Rules are checked in the order they are written: `check`, `ensure`, `within` and the
other rule helpers record a check and raise `Denied` when their rule fails, and
`decide` catches it and answers the denial, so the first failing rule decides, as the
municipal rule books say (the Rust SDK's `?`).

A policy is pure: it is built with `componentize-py componentize --stub-wasi`, so its
component imports nothing but its world; the clock, randomness, files and stdout are
stubs that trap, and the SDK guards the usual ways in (`time.time`, `random.random`,
`open`, `print`) so that the host's `policy-error` names the call (see purity.py and
sdk/python/README.md). Everything it knows comes from the request,
`ledger` and `calendar`.
"""

from __future__ import annotations

import gc
import sys

import wit_world
from wit_world.imports import calendar, diagnostics, ledger
from wit_world.imports.types import (
    Attribute,
    CardState,
    Check,
    Date,
    Decision,
    Effect,
    Effect_Consume,
    Effect_Count,
    Effect_Forfeit,
    Effect_Grant,
    Effect_MoveCard,
    Effect_SetState,
    Effect_Transfer,
    Holder,
    LocalTime,
    Lot,
    Offer,
    Period,
    PolicyInfo,
    Request,
    Tally,
    Transfer,
    Units,
    Value,
    Value_Boolean,
    Value_Integer,
    Value_Text,
    Window,
)

from .decisions import (
    BAD_REQUEST,
    OK,
    UNKNOWN_ACTION,
    Allowed,
    Denied,
    allow,
    deny,
    policy_info,
    required,
)
from .explain import (
    Outcome,
    Until,
    at_most,
    check,
    check_counted,
    decide,
    ensure,
    present,
    refuse,
    within,
    within_amount,
)
from .purity import ImpureCall, install as _install_guards
from .facts import (
    age_on,
    attr,
    attr_bool,
    attr_int,
    attr_text,
    config_int,
    config_text,
    has_status,
)


# Once, at import (build time, in componentize-py's snapshot): the clock, randomness,
# files and output raise `ImpureCall`, which `decide` reports to the host by name. Only
# inside the component (CPython for WASI): the SDK's own tests import it in the machine's
# CPython against stub bindings, where `print` and `open` must keep working.
if sys.platform == "wasi":
    _install_guards()

# Also at build time: every decision runs on a fresh instance of this snapshot and
# allocates little, so garbage never outlives it. Objects made so far are frozen (the
# collector never walks them again) and automatic collection is off: no cycle collection
# mid-decision (memory stays bounded by the manifest's `memory-bytes`).
gc.collect()
gc.freeze()
gc.disable()


class Policy(wit_world.WitWorld):
    """The world's exports: subclass it as `WitWorld` in `policy.py`.

    `describe()` returns `policy_info(...)`; `evaluate(req)` returns `decide(req, ...)`.
    The host calls `evaluate` on a fresh instance for every request: nothing survives
    between calls, so module-level state is only ever the build-time state.
    """

    def describe(self) -> PolicyInfo:
        raise NotImplementedError

    def evaluate(self, req: Request) -> Decision:
        raise NotImplementedError


__all__ = [
    # the world
    "Policy",
    "calendar",
    "diagnostics",
    "ledger",
    # its types
    "Attribute",
    "CardState",
    "Check",
    "Date",
    "Decision",
    "Effect",
    "Effect_Consume",
    "Effect_Count",
    "Effect_Forfeit",
    "Effect_Grant",
    "Effect_MoveCard",
    "Effect_SetState",
    "Effect_Transfer",
    "Holder",
    "LocalTime",
    "Lot",
    "Offer",
    "Period",
    "PolicyInfo",
    "Request",
    "Tally",
    "Transfer",
    "Units",
    "Value",
    "Value_Boolean",
    "Value_Integer",
    "Value_Text",
    "Window",
    # decisions
    "BAD_REQUEST",
    "OK",
    "UNKNOWN_ACTION",
    "Allowed",
    "Denied",
    "ImpureCall",
    "Outcome",
    "allow",
    "deny",
    "policy_info",
    "required",
    # rules
    "Until",
    "at_most",
    "check",
    "check_counted",
    "decide",
    "ensure",
    "present",
    "refuse",
    "within",
    "within_amount",
    # facts
    "age_on",
    "attr",
    "attr_bool",
    "attr_int",
    "attr_text",
    "config_int",
    "config_text",
    "has_status",
]
