"""Aktivitetskortet, Bergen kommune, in Python: free activities for children and young
people from low-income families (rule book: docs/programs.md, `bergen`).

The same rules, rule names, reasons, order and effects as the Rust program
(guest-rules/programs/bergen): everything is free; the rules limit who may use the
card, how many come along, and how often. Every rule is a check of the SDK, so an
explained decision lists them in the rule book's order.
"""

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
    age_on,
    allow,
    attr_bool,
    attr_int,
    check,
    config_int,
    config_text,
    decide,
    deny,
    ledger,
    policy_info,
    required,
    within,
)

PROGRAM = "bergen"
VERSION = "2024.1.0"

#: Counts a card's leisure activities: the one-per-semester rule 7.
LEISURE = "leisure"

PUBLIC_EVENT = "public-event"
LEISURE_ACTIVITY = "leisure-activity"


def visits(offer: str) -> str:
    """Counts activations of one offer: the yearly limit of rule 6."""
    return f"visit:{offer}"


def enrolments(offer: str) -> str:
    """Counts enrolments in one leisure activity over all cards: the capacity of rule 8."""
    return f"enrolment:{offer}"


def redeem(req: Request) -> Outcome:
    """Activates tickets for an offer for the holder and their companions."""
    holder = req.holder
    offer = required(req.offer)
    leisure = offer.category == LEISURE_ACTIVITY

    # 1. The card is active.
    check("card-active", holder.state == CardState.ACTIVE, "card-inactive")

    # 2. Registered residence is Bergen.
    residence = config_text("residence", PROGRAM)
    check("resident", holder.municipality == residence, "not-resident")

    # 3. Age 0–17 on the day of use (local date).
    age = age_on(holder, req.local.date)
    max_age = config_int("max-age", 17)
    check("age", 0 <= age <= max_age, "age-out-of-range")

    # 4. The offer takes part in the scheme (absent: it does).
    participating = attr_bool(offer, "participating")
    check(
        "participating",
        True if participating is None else participating,
        "offer-not-participating",
    )

    # 5. Two tickets on public events, one on leisure activities and the culture school.
    max_party = config_int("public-event-party", 2) if offer.category == PUBLIC_EVENT else 1
    check("party-size", req.party <= max_party, "party-too-large")

    # 6. Offers with a yearly limit: N activations per card per local calendar year,
    # until the next 1 January.
    limit = attr_int(offer, "yearly-limit")
    if limit is not None:
        used = ledger.count_in(holder.card, visits(offer.id), Period.YEAR, req.at)
        until = Until.end_of(Period.YEAR, req.at)
        within("yearly-limit", "quota-exhausted", used, limit, until)

    if leisure:
        # Both count until the next 1 January or 1 July.
        semester = Until.end_of(Period.SEMESTER, req.at)

        # 7. At most one leisure activity per card per semester.
        taken = ledger.count_in(holder.card, LEISURE, Period.SEMESTER, req.at)
        per_semester = config_int("leisure-per-semester", 1)
        within("semester-limit", "semester-limit", taken, per_semester, semester)

        # 8. Capacity per semester over all cards, first come first served.
        capacity = attr_int(offer, "capacity")
        if capacity is not None:
            enrolled = ledger.count_in(None, enrolments(offer.id), Period.SEMESTER, req.at)
            within("capacity", "fully-booked", enrolled, capacity, semester)

    # One activation counts once, whether or not a companion comes along.
    decision = allow().admitted(req.party).price(0).count(visits(offer.id), 1)
    if leisure:
        decision = decision.count(LEISURE, 1).count(enrolments(offer.id), 1)
    return decision


def void(req: Request) -> Outcome:
    """An activated ticket is used up whether it is used or not."""
    return deny("no-refund")


def unknown_action(req: Request) -> Outcome:
    return deny(UNKNOWN_ACTION)


ACTIONS = {"redeem": redeem, "void": void}


class WitWorld(Policy):
    """The exports componentize-py binds to the world `policy`."""

    def describe(self) -> PolicyInfo:
        return policy_info(
            PROGRAM,
            VERSION,
            ACTIONS.keys(),
            [
                OK,
                "card-inactive",
                "not-resident",
                "age-out-of-range",
                "offer-not-participating",
                "party-too-large",
                "quota-exhausted",
                "semester-limit",
                "fully-booked",
                "no-refund",
                UNKNOWN_ACTION,
                BAD_REQUEST,
            ],
        )

    def evaluate(self, req: Request) -> Decision:
        return decide(req, ACTIONS.get(req.action, unknown_action))
