"""Decisions: the allowed decision a rule book builds, denials, and `describe`'s answer.

The generated bindings' records are plain dataclasses with positional fields; the
helpers here build them with names, so that a policy reads like its rule book:

    allow().admitted(req.party).price(0).count("visit:bergen-kino", 1)
"""

from __future__ import annotations

from typing import Iterable, List, Optional

from wit_world.imports import types
from wit_world.imports.types import (
    CardState,
    Decision,
    Effect,
    Effect_Consume,
    Effect_Count,
    Effect_Forfeit,
    Effect_Grant,
    Effect_MoveCard,
    Effect_SetState,
    Effect_Transfer,
    Lot,
    PolicyInfo,
    Tally,
    Transfer,
    Units,
)

#: The reason a policy gives for an action it does not know.
UNKNOWN_ACTION = "unknown-action"
#: The reason a policy gives when a field the action needs is missing or out of range.
BAD_REQUEST = "bad-request"
#: The reason of every allowed decision that has no more specific one.
OK = "ok"


class Denied(Exception):
    """Stops an action with a denial: raised by the rule helpers (`check`, `within`, …)
    when their rule fails, and caught by `decide`, which answers the denied decision.

    This is the Python form of the Rust SDK's `Err(decision)` and `?`: the first rule
    that fails ends the action, as the rule books say. A policy may raise it itself for a
    denial that records no check (like `deny`).
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        #: The reason code of the denial; declared by `describe`.
        self.reason = reason

    def decision(self) -> Decision:
        """The denied decision this exception stands for."""
        return denial(self.reason)


def denial(reason: str) -> Decision:
    """A denied decision with `reason`, nobody admitted, no price, no effects, no checks."""
    return Decision(
        allow=False,
        reason=reason,
        admitted=0,
        price=None,
        notes=[],
        effects=[],
        checks=[],
    )


def deny(reason: str) -> Decision:
    """A denied decision with `reason` and no check of its own.

    For an action that is always refused (an unknown action, a ticket that is never
    refunded), where no rule could have held: coverage counts it among the reasons
    denied. Return it from an action, or see `refuse` to record a failed check.
    """
    return denial(reason)


class Allowed:
    """An allowed decision under construction; every method returns the builder, so that
    calls chain. `decide` turns it into the WIT `decision` (`build` does too).

    Starts with reason `ok`, nobody admitted, no price, no notes and no effects.
    """

    __slots__ = ("_reason", "_admitted", "_price", "_notes", "_effects")

    def __init__(self) -> None:
        self._reason = OK
        self._admitted = 0
        self._price: Optional[int] = None
        self._notes: List[str] = []
        self._effects: List[Effect] = []

    def reason(self, reason: str) -> "Allowed":
        """Sets the reason of the allowed decision (default `ok`)."""
        self._reason = reason
        return self

    def admitted(self, persons: int) -> "Allowed":
        """Sets how many persons are admitted."""
        self._admitted = persons
        return self

    def price(self, minor_units: int) -> "Allowed":
        """Sets what the holder pays, in minor units (øre, cent)."""
        self._price = minor_units
        return self

    def note(self, note: str) -> "Allowed":
        """Adds a note for the cashier or the caller, e.g. `verify-photo`."""
        self._notes.append(note)
        return self

    def effect(self, effect: Effect) -> "Allowed":
        """Adds an effect for the host to commit (in order, all or none)."""
        self._effects.append(effect)
        return self

    def count(self, counter: str, amount: int) -> "Allowed":
        """Records `amount` under `counter` for the acting card."""
        return self.effect(Effect_Count(Tally(counter=counter, amount=amount)))

    def grant(self, asset: str, amount: int, expires: Optional[int] = None) -> "Allowed":
        """Grants `amount` units of `asset` to the acting card, optionally expiring."""
        return self.effect(Effect_Grant(Lot(asset=asset, amount=amount, expires=expires)))

    def consume(self, asset: str, amount: int) -> "Allowed":
        """Consumes `amount` units of `asset`, earliest expiry first."""
        return self.effect(Effect_Consume(Units(asset=asset, amount=amount)))

    def transfer(self, to_card: str, asset: str, amount: int) -> "Allowed":
        """Moves `amount` unexpired units of `asset` to `to_card`."""
        return self.effect(
            Effect_Transfer(Transfer(to_card=to_card, asset=asset, amount=amount))
        )

    def forfeit(self, asset: str) -> "Allowed":
        """Drops every unit of `asset` from the acting card."""
        return self.effect(Effect_Forfeit(asset))

    def set_state(self, state: CardState) -> "Allowed":
        """Changes the acting card's state."""
        return self.effect(Effect_SetState(state))

    def move_card(self, new_card: str) -> "Allowed":
        """The holder continues on `new_card`; the acting card becomes blocked."""
        return self.effect(Effect_MoveCard(new_card))

    def build(self) -> Decision:
        """The WIT decision, without checks (`decide` adds them when explaining)."""
        return Decision(
            allow=True,
            reason=self._reason,
            admitted=self._admitted,
            price=self._price,
            notes=list(self._notes),
            effects=list(self._effects),
            checks=[],
        )


def allow() -> Allowed:
    """An allowed decision with reason `ok`, nobody admitted, no price and no effects yet:
    chain `.admitted(…)`, `.price(…)`, `.count(…)`, … on it."""
    return Allowed()


def policy_info(
    program: str, version: str, actions: Iterable[str], reasons: Iterable[str]
) -> PolicyInfo:
    """Builds the answer of `describe`: the program id (must equal the manifest's), the
    policy's version, the actions it understands and every reason code it can return."""
    return PolicyInfo(
        program=program,
        version=version,
        actions=list(actions),
        reasons=list(reasons),
    )


def required(value):
    """The value of an optional request field, or a `bad-request` denial (`Denied`) when
    it is missing. The request's shape, not a rule: no check is recorded (see `present`
    for a value a rule is about)."""
    if value is None:
        raise Denied(BAD_REQUEST)
    return value


__all__ = [
    "OK",
    "BAD_REQUEST",
    "UNKNOWN_ACTION",
    "Allowed",
    "Denied",
    "allow",
    "denial",
    "deny",
    "policy_info",
    "required",
    "types",
]
