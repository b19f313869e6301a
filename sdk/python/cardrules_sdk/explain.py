"""Checks: every rule a policy evaluates with the SDK's helpers is recorded, in order, so
that a decision can say why (world 0.2.0's `decision.checks`, given when the request
asks to `explain`).

The recorder is a module-level list of small tuples (the rule's name, its reason,
whether it passed and the numbers), which costs one append per rule. WIT `check`
records are built, and window ends asked of the host, only in `decide` and only when
the request asks to explain. A policy instance runs one call at a time on a fresh
instance, so a module-level list is all it needs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, List, Optional, Tuple, TypeVar, Union

from wit_world.imports import calendar, diagnostics
from wit_world.imports.types import Check, Decision, Period, Request, Window

from .decisions import Allowed, Denied, denial

T = TypeVar("T")

_I64_MAX = 2**63 - 1


@dataclass(frozen=True)
class Until:
    """Until when a counted rule's count runs: the `until` of its check.

    The host accepts only the end of a window it computed during the evaluation, never a
    moment the policy worked out itself. Say it with `Until.end_of(period, at)`, with the
    period and instant of the `ledger.count_in` whose answer is `used`: the SDK asks the
    host (`calendar.period_of`) in `decide`, and only when the decision is explained, so
    an unexplained decision makes no extra host call. `Until.NONE` is a rule that counts
    over no window (a limit per purchase, a balance).
    """

    #: The period whose end is meant, with `at` (`end_of`).
    period: Optional[Period] = None
    #: An instant inside that period.
    at: Optional[int] = None
    #: The end of a window `calendar.period_of` answered (`window_end`).
    end: Optional[int] = None

    #: No window: the check has no `until`. (Assigned below the class.)
    NONE: ClassVar["Until"]

    @staticmethod
    def end_of(period: Period, at: int) -> "Until":
        """The end of the local `period` that contains `at`, e.g.
        `Until.end_of(Period.YEAR, req.at)`: the next 1 January."""
        return Until(period=period, at=at)

    @staticmethod
    def window_end(window: Window) -> "Until":
        """The end of a window `calendar.period_of` answered during this evaluation; a
        window the policy built itself is refused by the host."""
        return Until(end=window.end)

    def instant(self, seen: Dict[Tuple[Period, int], int]) -> Optional[int]:
        """The instant, asking the host for a period's end unless `seen` has it: rules of
        one action often count over the same period."""
        if self.end is not None:
            return self.end
        if self.period is None or self.at is None:
            return None
        key = (self.period, self.at)
        if key not in seen:
            seen[key] = calendar.period_of(self.period, self.at).end
        return seen[key]


Until.NONE = Until()

# One recorded rule: (rule, reason, passed, used, limit, until).
_Entry = Tuple[str, str, bool, Optional[int], Optional[int], Until]
_recorded: List[_Entry] = []


def _quantity(number: int) -> int:
    """A count as the check reports it (s64): the host's u64 counts saturate."""
    return min(int(number), _I64_MAX)


def _apply(entry: _Entry) -> None:
    """Records `entry` and stops the action with its denial if it did not pass."""
    _recorded.append(entry)
    if not entry[2]:
        raise Denied(entry[1])


def check(rule: str, holds: bool, reason: str) -> None:
    """Records the rule named `rule` and passes when `holds`, else stops the action with
    a denial for `reason` (raises `Denied`)."""
    _apply((rule, reason, bool(holds), None, None, Until.NONE))


def ensure(holds: bool, reason: str) -> None:
    """Passes when `holds`, else stops the action with a denial for `reason`; the check
    is recorded under the name `reason`. Use `check` to give the rule its own name."""
    check(reason, holds, reason)


def check_counted(
    rule: str,
    holds: bool,
    reason: str,
    used: Optional[int],
    limit: Optional[int],
    until: Until = Until.NONE,
) -> None:
    """A rule that counts against a bound, with its numbers given as they are: passes
    when `holds`.

    `used` must be a number the host answered during this evaluation (a `ledger` read)
    or the request's `amount`, and `until` a window end of the host (`Until`); the host
    refuses anything else as a `policy-error` when the decision is explained. Prefer
    `within`, `within_amount` and `at_most`, which also work out `holds`.
    """
    used = None if used is None else _quantity(used)
    _apply((rule, reason, bool(holds), used, limit, until))


def within(rule: str, reason: str, used: int, limit: int, until: Until = Until.NONE) -> None:
    """A count with room for one more: passes when `used < limit`, e.g. visits this year
    against a yearly limit. Records `used`, `limit` and `until`."""
    used = _quantity(used)
    check_counted(rule, used < limit, reason, used, limit, until)


def within_amount(
    rule: str, reason: str, used: int, amount: int, limit: int, until: Until = Until.NONE
) -> None:
    """A running total with room for `amount` more: passes when `used + amount <=
    limit`, e.g. øre spent today plus this purchase against a daily limit. Records
    `used` (before this request), `limit` and `until`."""
    used = _quantity(used)
    # Rust saturates the sum at i64::MAX; Python's integers do not overflow, and a sum
    # past the bound is over any s64 limit either way.
    check_counted(rule, used + amount <= limit, reason, used, limit, until)


def at_most(rule: str, reason: str, used: int, limit: int, until: Until = Until.NONE) -> None:
    """An amount against a bound: passes when `used <= limit`, e.g. the amount asked
    against a limit per purchase or against the balance. Records `used`, `limit`,
    `until`."""
    used = _quantity(used)
    check_counted(rule, used <= limit, reason, used, limit, until)


def present(rule: str, value: Optional[T], reason: str) -> T:
    """The value, when there is one (not None); else stops the action with a denial for
    `reason`. The rule named `rule` is recorded either way, e.g.
    `receiver = present("receiver", ledger.find_holder(to_card), "unknown-card")`."""
    check(rule, value is not None, reason)
    return value  # type: ignore[return-value]


def refuse(rule: str, reason: str) -> Decision:
    """A denied decision for `reason`, recorded as the failed check named `rule`: for a
    rule that always denies, e.g. `return refuse("refund", "no-refund")`."""
    _recorded.append((rule, reason, False, None, None, Until.NONE))
    return denial(reason)


#: What an action returns: an allowed decision under construction or a finished one.
Outcome = Union[Allowed, Decision]


def _report(error: BaseException) -> None:
    """Tells the host why the policy is about to trap: the exception and the line it was
    raised at, through the world's `diagnostics.panicked` (the host shows it in the
    `policy-error` as "guest said: …").

    Built by hand rather than with `traceback.format_exception`, which reads the source
    lines through `linecache`, i.e. opens files: a stubbed WASI call that traps before the
    message is out. Must not raise itself: it runs while an exception is already on its
    way out, possibly a `MemoryError` or `RecursionError`.
    """
    try:
        try:
            text = str(error)
        except BaseException:  # noqa: BLE001 - a broken __str__ must not hide the error
            text = ""
        message = f"{type(error).__name__}: {text}" if text else type(error).__name__
        # The line to name is the policy's own: the last frame outside the SDK (an
        # `ImpureCall` is raised inside the SDK's guard, on the policy's behalf).
        frame = error.__traceback__
        at = None
        while frame is not None:
            if at is None or "cardrules_sdk" not in frame.tb_frame.f_code.co_filename:
                at = frame
            frame = frame.tb_next
        if at is not None:
            code = at.tb_frame.f_code
            file = code.co_filename.rsplit("/", 1)[-1]
            message = f"{message} (at {file}:{at.tb_lineno} in {code.co_name})"
        diagnostics.panicked(message)
    except BaseException:  # noqa: BLE001 - the original error is what matters
        try:
            diagnostics.panicked(type(error).__name__)
        except BaseException:  # noqa: BLE001
            pass


def _integer(what: str, value) -> None:
    """Refuses a number the host would misread as an amount (1.5, NaN, True): it must be
    an `int`, never rounded; the error names the value."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    raise TypeError(f"{what} must be an integer, not {value!r}")


def _check_numbers(decision: Decision) -> None:
    """The decision's price and its effects' amounts and expiries are integers."""
    _integer("`price`", decision.price)
    for effect in decision.effects:
        value = getattr(effect, "value", None)
        for field, what in (("amount", "amount"), ("expires", "expiry")):
            if hasattr(value, field):
                _integer(
                    f"the {what} of effect `{type(effect).__name__.removeprefix('Effect_')}`",
                    getattr(value, field),
                )


def decide(req: Request, action: Union[Callable[[Request], Outcome], Outcome]) -> Decision:
    """The decision of a checked action, allowed or denied.

    `action` is called with the request (or is already a decision): the rule helpers in
    it raise `Denied` at the first rule that fails, which `decide` turns into the denied
    decision. When `req.explain` is true the decision carries the checks recorded during
    the action, in the order they ran (after any the action put in `checks` itself);
    otherwise `checks` stays as it is (empty).

    Any other exception is a bug in the policy: `decide` reports its message and line to
    the host (`diagnostics.panicked`, shown in the `policy-error`) and raises it again, so
    the instance traps and nothing is committed.

    A denied decision built by hand (`deny`) carries no failed check: nothing could have
    held. Keep the contract: the host refuses a denied decision whose first failed check
    has another reason, and an allowed decision with a failed check, so let a failed rule
    end the action (do not catch `Denied` inside it).
    """
    _recorded.clear()
    try:
        outcome = action(req) if callable(action) else action
    except Denied as denied:
        outcome = denied.decision()
    except BaseException as error:
        _report(error)
        raise
    if isinstance(outcome, Allowed):
        decision = outcome.build()
    elif isinstance(outcome, Decision):
        decision = outcome
    else:
        error = TypeError(
            f"action `{req.action}` returned {type(outcome).__name__}, not a decision"
        )
        _report(error)
        raise error
    try:
        _check_numbers(decision)
    except TypeError as error:
        _report(error)
        raise
    if req.explain:
        seen: Dict[Tuple[Period, int], int] = {}
        decision.checks.extend(
            Check(
                rule=rule,
                passed=passed,
                reason=reason,
                used=used,
                limit=limit,
                until=until.instant(seen),
            )
            for rule, reason, passed, used, limit, until in _recorded
        )
    _recorded.clear()
    return decision


__all__ = [
    "Outcome",
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
]
