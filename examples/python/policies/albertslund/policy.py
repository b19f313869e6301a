"""Det Digitale Betalingskort, Albertslund Kommune, in Python: a prepaid card children
use to buy food and materials at the youth clubs (rule book: docs/programs.md,
`albertslund`).

The same rules, rule names, reasons, order, effects and notes as the Rust program
(guest-rules/programs/albertslund). Money is the asset `DKK`, in øre; parents top it up
and may restrict purchases; the cashier checks the photo. Every rule is a check of the
SDK, so an explained decision lists them in the rule book's order.
"""

from typing import List

from cardrules_sdk import (
    BAD_REQUEST,
    OK,
    UNKNOWN_ACTION,
    CardState,
    Decision,
    Outcome,
    Period,
    Policy,
    PolicyInfo,
    Request,
    Until,
    allow,
    at_most,
    attr_int,
    attr_text,
    check,
    check_counted,
    config_int,
    config_text,
    decide,
    deny,
    has_status,
    ledger,
    policy_info,
    required,
    within_amount,
)

PROGRAM = "albertslund"
VERSION = "2024.1.0"

#: The money asset, in øre.
DKK = "DKK"
#: Counts øre spent, for the daily limit of rule 6.
SPENT = "spent"
#: Recorded on the old card when it is replaced, after the card has moved: usage history
#: moves to the new card with the holder, and this marker must stay behind on the old one.
REPLACED = "replaced"

CARD_BLOCKED = "card-blocked"
CARD_REPLACED = "card-replaced"
CARD_NOT_BLOCKED = "card-not-blocked"
INSUFFICIENT_FUNDS = "insufficient-funds"
#: A replacement card number that already belongs to a holder.
CARD_IN_USE = "card-in-use"


def clubs() -> List[str]:
    """The participating clubs (*config* `clubs`, comma-separated)."""
    listed = config_text("clubs", "bakkens-hjerte,storagergard").split(",")
    return [club.strip() for club in listed if club.strip()]


def balance(req: Request) -> int:
    return ledger.balance(req.holder.card, DKK, req.at)


def positive_amount(req: Request) -> int:
    """A positive `amount`, or a `bad-request` denial."""
    # At least 1: the host refuses any other amount before a policy sees it.
    return required(req.amount)


def not_blocked(req: Request) -> None:
    """Every action but `block-card` needs a card that is not blocked."""
    check("not-blocked", req.holder.state != CardState.BLOCKED, CARD_BLOCKED)


def purchase(req: Request) -> Outcome:
    """Buys `offer` for `amount` øre at a club."""
    holder = req.holder
    offer = required(req.offer)
    amount = positive_amount(req)
    participating = clubs()

    # 1. The card is not blocked.
    not_blocked(req)
    # 2. The holder is a member of a participating club.
    member = any(has_status(holder, f"member:{club}") for club in participating)
    check("member", member, "not-a-member")
    # 3. The offer is sold at a participating club.
    check("participating", offer.location in participating, "offer-not-participating")
    # 4. The parent has not blocked the offer's category.
    blocked = attr_text(holder, "blocked-categories") or ""
    is_blocked = any(category.strip() == offer.category for category in blocked.split(","))
    check("category", not is_blocked, "category-blocked")
    # 5. At most the parent's limit per purchase: the amount asked against it.
    limit = attr_int(holder, "purchase-limit")
    if limit is not None:
        at_most("purchase-limit", "purchase-limit", amount, limit, Until.NONE)
    # 6. At most the parent's limit per local day, this purchase included: spent today,
    # until the next local midnight.
    limit = attr_int(holder, "daily-limit")
    if limit is not None:
        today = ledger.count_in(holder.card, SPENT, Period.DAY, req.at)
        midnight = Until.end_of(Period.DAY, req.at)
        within_amount("daily-limit", "daily-limit", today, amount, limit, midnight)
    # 7. Enough money on the card: the amount asked against the unexpired balance.
    funds = balance(req)
    at_most("funds", INSUFFICIENT_FUNDS, amount, funds, Until.NONE)

    decision = allow().price(amount).consume(DKK, amount).count(SPENT, amount).note("verify-photo")
    below = attr_int(holder, "auto-top-up-below")
    top_up = attr_int(holder, "auto-top-up-amount")
    if below is not None and top_up is not None and funds - amount < below and top_up > 0:
        decision = decision.grant(DKK, top_up, None).note("auto-top-up")
    return decision


def top_up(req: Request) -> Outcome:
    """Credits `amount` øre, paid by the parent."""
    amount = positive_amount(req)
    not_blocked(req)
    return allow().grant(DKK, amount, None)


def enable_auto_top_up(req: Request) -> Outcome:
    """Whether the parent may switch automatic top-up on: only from a minimum balance."""
    not_blocked(req)
    minimum = config_int("auto-top-up-minimum-balance", 5000)
    check("minimum-balance", balance(req) >= minimum, "minimum-balance")
    return allow()


def replace_card(req: Request) -> Outcome:
    """Replaces a lost, stolen or damaged card for a fee paid from the old card."""
    new_card = required(req.new_card)
    not_blocked(req)
    # The fee against the unexpired balance (the fee is config, not a number the host
    # counted, so the check reports the balance alone).
    fee = config_int("replacement-fee", 2500)
    funds = balance(req)
    check_counted("funds", funds >= fee, INSUFFICIENT_FUNDS, None, funds, Until.NONE)
    taken = ledger.find_holder(new_card) is not None
    check("new-card-free", not taken, CARD_IN_USE)
    decision = allow().price(fee)
    if fee > 0:
        decision = decision.consume(DKK, fee)
    # Effects apply in order to the acting card: the marker is recorded after the move, so
    # that it stays on the old card while the usage history moves to the new one.
    return decision.move_card(new_card).count(REPLACED, 1)


def block_card(req: Request) -> Outcome:
    """Always allowed: the card becomes blocked."""
    return allow().set_state(CardState.BLOCKED)


def unblock_card(req: Request) -> Outcome:
    """Unblocks a card the parents' portal blocked, so that a replacement can be ordered
    and its fee paid from the old card; the replacement blocks the old card again, for
    good."""
    # A replaced card stays blocked: its holder continues on the new card. Whether it was
    # ever replaced, not only before `at`: an unblock stamped before the replacement that
    # arrives after it must not bring the old card back either.
    replaced = ledger.last_use(req.holder.card, REPLACED) is not None
    check("not-replaced", not replaced, CARD_REPLACED)
    check("blocked", req.holder.state == CardState.BLOCKED, CARD_NOT_BLOCKED)
    return allow().set_state(CardState.ACTIVE)


def close_account(req: Request) -> Outcome:
    """Pays the whole balance out to the registered parent."""
    funds = balance(req)
    decision = allow().note("payout-to-parent")
    if funds > 0:
        decision = decision.consume(DKK, funds)
    return decision


def unknown_action(req: Request) -> Outcome:
    return deny(UNKNOWN_ACTION)


ACTIONS = {
    "purchase": purchase,
    "top-up": top_up,
    "enable-auto-top-up": enable_auto_top_up,
    "replace-card": replace_card,
    "block-card": block_card,
    "unblock-card": unblock_card,
    "close-account": close_account,
}


class WitWorld(Policy):
    """The exports componentize-py binds to the world `policy`."""

    def describe(self) -> PolicyInfo:
        return policy_info(
            PROGRAM,
            VERSION,
            ACTIONS.keys(),
            [
                OK,
                CARD_BLOCKED,
                "not-a-member",
                "offer-not-participating",
                "category-blocked",
                "purchase-limit",
                "daily-limit",
                INSUFFICIENT_FUNDS,
                "minimum-balance",
                CARD_IN_USE,
                CARD_REPLACED,
                CARD_NOT_BLOCKED,
                UNKNOWN_ACTION,
                BAD_REQUEST,
            ],
        )

    def evaluate(self, req: Request) -> Decision:
        return decide(req, ACTIONS.get(req.action, unknown_action))
