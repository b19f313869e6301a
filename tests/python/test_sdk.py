"""Unit tests of the Python SDK (sdk/python) in the machine's CPython, without the host:
the world's imports are componentize-py's stub bindings, replaced here by fakes.

Run with tools/python/test-sdk.sh, which generates the stub bindings first. The SDK's
behaviour inside a component (the host, explained decisions, the guards) is proved by
the suites of examples/python/policies and tests/fixtures/python/hostile.
"""

import unittest
from unittest import mock

import cardrules_sdk as sdk
from cardrules_sdk import (
    BAD_REQUEST,
    CardState,
    Date,
    Denied,
    Effect_Consume,
    Effect_Count,
    Holder,
    LocalTime,
    Period,
    Request,
    Until,
    Value_Boolean,
    Value_Integer,
    Value_Text,
    Window,
)
from cardrules_sdk import Attribute


def holder(**attributes) -> Holder:
    return Holder(
        card="H-1",
        birth_date=Date(2012, 2, 29),
        municipality="bergen",
        statuses=["member:storagergard"],
        state=CardState.ACTIVE,
        attributes=[Attribute(key, value) for key, value in attributes.items()],
    )


def request(action: str = "redeem", explain: bool = True) -> Request:
    return Request(
        action=action,
        at=1_709_312_400,
        local=LocalTime(Date(2024, 3, 1), 18, 0, 0, 5),
        holder=holder(),
        offer=None,
        party=1,
        amount=None,
        asset=None,
        to_card=None,
        new_card=None,
        explain=explain,
    )


class Facts(unittest.TestCase):
    def test_integers_parse_as_rust_does(self):
        self.assertEqual(sdk.facts.parse_int(" 42 "), 42)
        self.assertEqual(sdk.facts.parse_int("+7"), 7)
        self.assertEqual(sdk.facts.parse_int("-7"), -7)
        self.assertIsNone(sdk.facts.parse_int("1_000"))
        self.assertIsNone(sdk.facts.parse_int("4 2"))
        self.assertIsNone(sdk.facts.parse_int(str(2**63)))

    def test_attribute_readers(self):
        owner = holder(
            limit=Value_Integer(3000),
            text_limit=Value_Text("2500"),
            flag=Value_Boolean(False),
            text_flag=Value_Text("true"),
            name=Value_Text("kiosk"),
        )
        self.assertEqual(sdk.attr_int(owner, "limit"), 3000)
        self.assertEqual(sdk.attr_int(owner, "text_limit"), 2500)
        self.assertIsNone(sdk.attr_int(owner, "flag"))
        self.assertIs(sdk.attr_bool(owner, "flag"), False)
        self.assertIs(sdk.attr_bool(owner, "text_flag"), True)
        self.assertIsNone(sdk.attr_bool(owner, "name"))
        self.assertEqual(sdk.attr_text(owner, "name"), "kiosk")
        self.assertIsNone(sdk.attr_text(owner, "limit"))
        self.assertIsNone(sdk.attr(owner, "absent"))
        self.assertTrue(sdk.has_status(owner, "member:storagergard"))

    def test_age_on_a_leap_day_birthday(self):
        born = Date(2012, 2, 29)
        self.assertEqual(sdk.age_on(born, Date(2013, 2, 28)), 0)
        self.assertEqual(sdk.age_on(born, Date(2013, 3, 1)), 1)
        self.assertEqual(sdk.age_on(holder(), Date(2024, 2, 29)), 12)

    def test_config_falls_back_only_when_absent(self):
        config = {"max-age": "17", "clubs": "a,b"}
        with mock.patch.object(sdk.facts.ledger, "config", config.get):
            self.assertEqual(sdk.config_int("max-age", 3), 17)
            self.assertEqual(sdk.config_int("absent", 3), 3)
            self.assertEqual(sdk.config_text("clubs", "x"), "a,b")
            self.assertEqual(sdk.config_text("absent", "x"), "x")


class Rules(unittest.TestCase):
    def setUp(self):
        self.period_of = mock.Mock(return_value=Window(100, 200))
        patch = mock.patch.object(sdk.explain.calendar, "period_of", self.period_of)
        patch.start()
        self.addCleanup(patch.stop)

    def test_first_failed_rule_denies_and_later_rules_do_not_run(self):
        ran = []

        def action(req):
            sdk.check("card-active", True, "card-inactive")
            sdk.within("yearly-limit", "quota-exhausted", 4, 4, Until.end_of(Period.YEAR, req.at))
            ran.append("after")
            return sdk.allow()

        decision = sdk.decide(request(), action)
        self.assertFalse(decision.allow)
        self.assertEqual(decision.reason, "quota-exhausted")
        self.assertEqual(ran, [])
        self.assertEqual(
            [(c.rule, c.passed, c.reason, c.used, c.limit, c.until) for c in decision.checks],
            [
                ("card-active", True, "card-inactive", None, None, None),
                ("yearly-limit", False, "quota-exhausted", 4, 4, 200),
            ],
        )
        self.period_of.assert_called_once_with(Period.YEAR, 1_709_312_400)

    def test_unexplained_decisions_build_no_checks_and_ask_the_host_nothing(self):
        def action(req):
            sdk.within("yearly-limit", "quota-exhausted", 1, 4, Until.end_of(Period.YEAR, req.at))
            return sdk.allow().admitted(1).price(0).count("visit:x", 1)

        decision = sdk.decide(request(explain=False), action)
        self.assertTrue(decision.allow)
        self.assertEqual(decision.checks, [])
        self.assertEqual(decision.effects, [Effect_Count(sdk.Tally("visit:x", 1))])
        self.period_of.assert_not_called()

    def test_one_host_call_per_period_and_instant(self):
        def action(req):
            semester = Until.end_of(Period.SEMESTER, req.at)
            sdk.within("semester-limit", "semester-limit", 0, 1, semester)
            sdk.within("capacity", "fully-booked", 3, 10, semester)
            return sdk.allow()

        decision = sdk.decide(request(), action)
        self.assertEqual([c.until for c in decision.checks], [200, 200])
        self.period_of.assert_called_once()

    def test_counting_helpers(self):
        def run(rule):
            return sdk.decide(request(), rule)

        self.assertTrue(run(lambda r: sdk.within_amount("d", "d", 2000, 1000, 3000) or sdk.allow()).allow)
        self.assertFalse(run(lambda r: sdk.within_amount("d", "d", 2000, 1001, 3000) or sdk.allow()).allow)
        self.assertTrue(run(lambda r: sdk.at_most("f", "f", 5, 5) or sdk.allow()).allow)
        self.assertFalse(run(lambda r: sdk.at_most("f", "f", 6, 5) or sdk.allow()).allow)
        # The host's u64 counts saturate at s64's bound in a check.
        checks = run(lambda r: sdk.within("c", "c", 2**64 - 1, 5) or sdk.allow()).checks
        self.assertEqual(checks[0].used, 2**63 - 1)

    def test_present_required_refuse_and_deny(self):
        decision = sdk.decide(request(), lambda r: sdk.present("receiver", None, "unknown-card"))
        self.assertEqual((decision.reason, len(decision.checks)), ("unknown-card", 1))
        decision = sdk.decide(request(), lambda r: sdk.required(r.offer))
        self.assertEqual((decision.reason, decision.checks), (BAD_REQUEST, []))
        decision = sdk.decide(request(), lambda r: sdk.refuse("refund", "no-refund"))
        self.assertEqual([(c.rule, c.passed) for c in decision.checks], [("refund", False)])
        decision = sdk.decide(request(), lambda r: sdk.deny("no-refund"))
        self.assertEqual((decision.allow, decision.checks), (False, []))
        with self.assertRaises(Denied):
            sdk.required(None)

    def test_builder(self):
        decision = (
            sdk.allow().price(1500).consume("DKK", 1500).note("verify-photo").build()
        )
        self.assertEqual(decision.price, 1500)
        self.assertEqual(decision.effects, [Effect_Consume(sdk.Units("DKK", 1500))])
        self.assertEqual(decision.notes, ["verify-photo"])

    def test_a_bug_is_reported_to_the_host_and_raised_again(self):
        panicked = mock.Mock()
        with mock.patch.object(sdk.explain.diagnostics, "panicked", panicked):
            with self.assertRaises(ZeroDivisionError):
                sdk.decide(request(), lambda r: 1 // 0)
        message = panicked.call_args.args[0]
        self.assertTrue(message.startswith("ZeroDivisionError: integer division or modulo by zero (at test_sdk.py:"), message)

    def test_a_price_or_amount_that_is_not_an_integer_is_refused_naming_it(self):
        cases = [
            (lambda r: sdk.allow().price(1.5), "`price` must be an integer, not 1.5"),
            (lambda r: sdk.allow().price(float("nan")), "`price` must be an integer, not nan"),
            (lambda r: sdk.allow().price(True), "`price` must be an integer, not True"),
            (
                lambda r: sdk.allow().consume("DKK", 2.5),
                "the amount of effect `Consume` must be an integer, not 2.5",
            ),
            (
                lambda r: sdk.allow().count("visits", 0.5),
                "the amount of effect `Count` must be an integer, not 0.5",
            ),
            (
                lambda r: sdk.allow().grant("DKK", 5, 1.5),
                "the expiry of effect `Grant` must be an integer, not 1.5",
            ),
        ]
        for action, expected in cases:
            panicked = mock.Mock()
            with mock.patch.object(sdk.explain.diagnostics, "panicked", panicked):
                with self.assertRaises(TypeError) as raised:
                    sdk.decide(request(), action)
            self.assertEqual(str(raised.exception), expected)
            self.assertTrue(panicked.call_args.args[0].startswith(f"TypeError: {expected}"))
        # Integers pass, whatever their sign: the host bounds them.
        decision = sdk.decide(request(), lambda r: sdk.allow().price(-1).consume("DKK", 5))
        self.assertEqual(decision.price, -1)

    def test_an_action_must_return_a_decision(self):
        with mock.patch.object(sdk.explain.diagnostics, "panicked", mock.Mock()):
            with self.assertRaises(TypeError):
                sdk.decide(request(), lambda r: None)


class Guards(unittest.TestCase):
    def test_guards_name_the_call(self):
        guard = sdk.purity._forbidden("time.time()", sdk.purity._CLOCK)
        with self.assertRaisesRegex(sdk.ImpureCall, r"^time\.time\(\) is not available"):
            guard()


if __name__ == "__main__":
    unittest.main()
