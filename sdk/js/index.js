// The JavaScript SDK for cardrules policies: world `cardrules:policy@0.2.0` in plain
// objects, plus the helpers every policy needs, so that a `policy.js` reads like its rule
// book and explains its decisions with no extra code. It mirrors the Rust SDK
// (guest-rules/sdk): the same helpers under their JavaScript names, the same checks.
//
// A policy is an ES module exporting `describe` and `evaluate`:
//
//   import { allow, check, count, decide, deny, policyInfo, required, within, Until,
//            ledger, UNKNOWN_ACTION } from '@cardrules/sdk';
//
//   export const describe = () => policyInfo('bergen', '2024.1.0', ['redeem'], [...]);
//
//   export const evaluate = (req) => decide(req, () => {
//     switch (req.action) {
//       case 'redeem': return redeem(req);
//       default: return deny(UNKNOWN_ACTION);
//     }
//   });
//
//   function redeem(req) {
//     const offer = required(req.offer);
//     check('card-active', req.holder.state === 'active', 'card-inactive');
//     const limit = attrInt(offer, 'yearly-limit');
//     if (limit !== null) {
//       const used = ledger.countIn(req.holder.card, 'visits', 'year', req.at);
//       within('yearly-limit', 'quota-exhausted', used, limit, Until.endOf('year', req.at));
//     }
//     return allow({ admitted: req.party, price: 0, effects: [count('visits', 1)] });
//   }
//
// Rules are checked in the order they are written. A rule helper that fails throws a
// `Denied`, which `decide` turns into the denied decision: the first failing rule decides,
// as the municipal rule books say. Each helper also records a check (rule, passed, reason,
// and for a counting rule used, limit and until) — but only while `decide` runs a request
// that asks to `explain`; otherwise nothing is recorded and the host is not asked for
// window ends, so an unexplained decision costs no more than the rules themselves.
//
// Numbers are plain JavaScript numbers throughout (instants, amounts, counts): exact up to
// 2^53, far beyond any øre amount or second count a ledger holds. The SDK converts to and
// from BigInt itself when the engine passes 64-bit integers as BigInt (ComponentizeJS);
// componentize-qjs passes numbers.
//
// A policy is pure: it imports its world and nothing else — no clock, no randomness, no
// console. `Date.now()`, `Math.random()` and `console.log` either trap or are not there
// (sdk/js/README.md, "Determinism"). An exception other than `Denied` escaping the
// action is reported to the host through `diagnostics.panicked` (its message and where
// it was thrown) and then traps: the host answers `policy-error` with that message.

import * as rawLedger from 'cardrules:policy/ledger@0.2.0';
import * as rawCalendar from 'cardrules:policy/calendar@0.2.0';
import { panicked } from 'cardrules:policy/diagnostics@0.2.0';

/**
 * @typedef {number} Instant Whole seconds since 1970-01-01T00:00:00Z.
 * @typedef {{ year: number, month: number, day: number }} Date
 * @typedef {{ date: Date, hour: number, minute: number, second: number, weekday: number }} LocalTime
 * @typedef {{ tag: 'text', val: string } | { tag: 'integer', val: number } | { tag: 'boolean', val: boolean }} Value
 * @typedef {{ key: string, value: Value }} Attribute
 * @typedef {'active' | 'blocked' | 'stopped'} CardState
 * @typedef {{ card: string, birthDate: Date, municipality: string, statuses: string[],
 *             state: CardState, attributes: Attribute[] }} Holder
 * @typedef {{ id: string, name: string, provider: string, category: string, location: string,
 *             startsAt: Instant | null, endsAt: Instant | null, attributes: Attribute[] }} Offer
 * @typedef {{ action: string, at: Instant, local: LocalTime, holder: Holder, offer: Offer | null,
 *             party: number, amount: number | null, asset: string | null, toCard: string | null,
 *             newCard: string | null, explain: boolean }} Request
 * @typedef {'day' | 'iso-week' | 'month' | 'semester' | 'year'} Period
 * @typedef {{ start: Instant, end: Instant }} Window
 * @typedef {{ tag: 'count', val: { counter: string, amount: number } }
 *         | { tag: 'grant', val: { asset: string, amount: number, expires: Instant | null } }
 *         | { tag: 'consume', val: { asset: string, amount: number } }
 *         | { tag: 'transfer', val: { toCard: string, asset: string, amount: number } }
 *         | { tag: 'forfeit', val: string }
 *         | { tag: 'set-state', val: CardState }
 *         | { tag: 'move-card', val: string }} Effect
 * @typedef {{ rule: string, passed: boolean, reason: string, used: number | null,
 *             limit: number | null, until: Instant | null }} Check
 * @typedef {{ allow: boolean, reason: string, admitted: number, price: number | null,
 *             notes: string[], effects: Effect[], checks: Check[] }} Decision
 * @typedef {{ program: string, version: string, actions: string[], reasons: string[] }} PolicyInfo
 */

// --- Purity: a policy has no clock and no randomness. Without WASI the engine's clock
// traps with no message (`unreachable`) and `Math.random` replays the sequence seeded when
// the component was built; both are bugs in a policy, so say so instead, with a message
// that reaches the host (`decide` reports it through `diagnostics.panicked`). Instants
// built from a number (`new Date(req.at * 1000)`) keep working.

/** @param {string} what @param {string} instead */
const impure = (what, instead) => () => {
  throw new Error(`${what} is not available to a policy: ${instead}`);
};
const NO_CLOCK = 'use req.at and req.local, and calendar for periods';
const EngineDate = globalThis.Date;
EngineDate.now = impure('Date.now()', NO_CLOCK);
globalThis.Date = new Proxy(EngineDate, {
  apply: impure('Date()', NO_CLOCK),
  construct(target, args, newTarget) {
    if (args.length === 0) impure('new Date()', NO_CLOCK)();
    return Reflect.construct(target, args, newTarget);
  },
});
Math.random = impure('Math.random()', 'a decision must not depend on chance');

/** The reason a policy gives for an action it does not know. */
export const UNKNOWN_ACTION = 'unknown-action';
/** The reason a policy gives when a field the action needs is missing or out of range. */
export const BAD_REQUEST = 'bad-request';
/** The reason of every allowed decision that has no more specific one. */
export const OK = 'ok';

// --- Numbers: plain numbers for the policy, BigInt on the wire when the engine wants it.

/** Whether the engine passes s64/u64 as BigInt (ComponentizeJS); set by `decide`. */
let wide = false;

/** @param {number | bigint | null | undefined} v */
const num = (v) => (typeof v === 'bigint' ? Number(v) : v);
/** @param {number | null | undefined} v */
const wire = (v) => (wide && typeof v === 'number' ? BigInt(v) : v);
/** @param {number | null | undefined} v */
const wireOpt = (v) => (v === undefined || v === null ? null : wire(v));

/**
 * Refuses a number the host would misread as an amount: NaN, 1.5, Infinity, or one past
 * 2^53 (no longer exact) would otherwise reach it as some other integer, or as none.
 * @param {string} what @param {unknown} v
 */
function integer(what, v) {
  if (v === null || v === undefined || typeof v === 'bigint' || Number.isSafeInteger(v)) return;
  const shown = typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v);
  throw new TypeError(`${what} must be an integer, not ${shown}`);
}

/**
 * The decision's price and its effects' amounts and expiries are integers, or the
 * decision is refused (a `policy-error` naming the value), never rounded.
 * @param {Decision} d
 */
function checkNumbers(d) {
  integer('`price`', d?.price);
  for (const e of d?.effects ?? []) {
    if (e?.val !== null && typeof e?.val === 'object') {
      if ('amount' in e.val) integer(`the amount of effect \`${e.tag}\``, e.val.amount);
      if ('expires' in e.val) integer(`the expiry of effect \`${e.tag}\``, e.val.expires);
    }
  }
}

/** @param {Attribute[]} attributes */
function numAttributes(attributes) {
  for (const a of attributes) {
    if (a.value.tag === 'integer') a.value.val = num(a.value.val);
  }
}

/** @param {Holder | null | undefined} holder */
function numHolder(holder) {
  if (holder) numAttributes(holder.attributes);
  return holder ?? null;
}

// --- Decisions

/**
 * An allowed decision: reason `ok` unless given, nobody admitted, no price, no notes and
 * no effects unless given. Plain object: add to `notes` and `effects` as the rules go.
 * @param {{ reason?: string, admitted?: number, price?: number | null, notes?: string[],
 *           effects?: Effect[] }} [fields]
 * @returns {Decision}
 */
export function allow(fields = {}) {
  return {
    allow: true,
    reason: fields.reason ?? OK,
    admitted: fields.admitted ?? 0,
    price: fields.price ?? null,
    notes: fields.notes ?? [],
    effects: fields.effects ?? [],
    checks: [],
  };
}

/**
 * A denied decision with `reason` and no check of its own: for an action that is always
 * refused (an unknown action, a ticket that is never refunded), where no rule could have
 * held. Return it from the action; see `refuse` to record a failed check.
 * @param {string} reason
 * @returns {Decision}
 */
export function deny(reason) {
  return {
    allow: false,
    reason,
    admitted: 0,
    price: null,
    notes: [],
    effects: [],
    checks: [],
  };
}

/**
 * What a failing rule throws: `decide` catches it and answers `deny(reason)`. Not an
 * `Error` (no stack is captured: a denial is an answer, not a fault). Throw one yourself
 * to stop an action with a reason that no recorded rule gave.
 */
export class Denied {
  /** @param {string} reason */
  constructor(reason) {
    /** The reason code the action is denied with. */
    this.reason = reason;
  }
}

/**
 * The value of an optional request field, or a `bad-request` denial when it is missing
 * (`null` or `undefined`). The request's shape, not a rule: no check is recorded.
 * @template T
 * @param {T | null | undefined} field
 * @returns {T}
 */
export function required(field) {
  if (field === null || field === undefined) throw new Denied(BAD_REQUEST);
  return field;
}

/**
 * The answer of `describe`.
 * @param {string} program Must equal the manifest's program id.
 * @param {string} version The policy's own version, shown in every decision.
 * @param {string[]} actions The actions it understands.
 * @param {string[]} reasons Every reason code it can return.
 * @returns {PolicyInfo}
 */
export function policyInfo(program, version, actions, reasons) {
  return { program, version, actions: [...actions], reasons: [...reasons] };
}

// --- Effects: what the host commits if the decision is allowed, in order.

/**
 * Records `amount` under `counter` for the acting card (a visit: 1; øre spent).
 * @param {string} counter @param {number} amount @returns {Effect}
 */
export const count = (counter, amount) => ({ tag: 'count', val: { counter, amount } });
/**
 * Adds `amount` units of `asset` to the acting card, expiring at `expires` if given.
 * @param {string} asset @param {number} amount @param {Instant | null} [expires] @returns {Effect}
 */
export const grant = (asset, amount, expires = null) => ({
  tag: 'grant',
  val: { asset, amount, expires },
});
/**
 * Removes `amount` units of `asset` from the acting card, earliest expiry first.
 * @param {string} asset @param {number} amount @returns {Effect}
 */
export const consume = (asset, amount) => ({ tag: 'consume', val: { asset, amount } });
/**
 * Moves `amount` unexpired units of `asset` to `toCard`.
 * @param {string} toCard @param {string} asset @param {number} amount @returns {Effect}
 */
export const transfer = (toCard, asset, amount) => ({
  tag: 'transfer',
  val: { toCard, asset, amount },
});
/** Drops every unit of `asset` from the acting card. @param {string} asset @returns {Effect} */
export const forfeit = (asset) => ({ tag: 'forfeit', val: asset });
/** Changes the acting card's state. @param {CardState} state @returns {Effect} */
export const setState = (state) => ({ tag: 'set-state', val: state });
/**
 * The holder continues on `newCard`; the acting card becomes `blocked`.
 * @param {string} newCard @returns {Effect}
 */
export const moveCard = (newCard) => ({ tag: 'move-card', val: newCard });

// --- Checks: the rules, recorded while a request asks to explain.

/**
 * Until when a counted rule's count runs: the `until` of its check. The host accepts only
 * the end of a window it computed during the evaluation, never a moment the policy worked
 * out itself.
 */
export const Until = Object.freeze({
  /** The rule counts over no window (a limit per purchase, a balance): no `until`. */
  none: Object.freeze({ kind: 'none' }),
  /**
   * The end of the local `period` that contains `at`, e.g. `Until.endOf('year', req.at)`:
   * the next 1 January. Use the period and instant of the `ledger.countIn` whose answer is
   * `used`. The SDK asks the host (`calendar.periodOf`) only when explaining.
   * @param {Period} period @param {Instant} at
   */
  endOf: (period, at) => ({ kind: 'end-of', period, at }),
  /**
   * The end of a window `calendar.periodOf` answered during this evaluation.
   * @param {Window} window
   */
  windowEnd: (window) => ({ kind: 'window-end', end: window.end }),
});

/** Whether `decide` is running a request that asks to explain: then rules are recorded. */
let explaining = false;
/** @type {{ rule: string, reason: string, passed: boolean, used: number | null,
 *           limit: number | null, until: { kind: string, period?: Period, at?: Instant,
 *           end?: Instant } }[]} */
let recorded = [];

/**
 * Records the rule (when explaining) and throws its denial if it did not pass.
 * @param {string} rule @param {boolean} passed @param {string} reason
 * @param {number | null} used @param {number | null} limit @param {any} until
 */
function apply(rule, passed, reason, used, limit, until) {
  if (explaining) recorded.push({ rule, reason, passed, used, limit, until: until ?? Until.none });
  if (!passed) throw new Denied(reason);
}

/**
 * The rule named `rule`: passes when `holds`, else stops the action with a denial for
 * `reason`.
 * @param {string} rule @param {boolean} holds @param {string} reason
 */
export function check(rule, holds, reason) {
  apply(rule, Boolean(holds), reason, null, null, Until.none);
}

/**
 * Passes when `holds`, else stops the action with a denial for `reason`; the rule is
 * named after its reason. Use `check` to give it its own name.
 * @param {boolean} holds @param {string} reason
 */
export function ensure(holds, reason) {
  apply(reason, Boolean(holds), reason, null, null, Until.none);
}

/**
 * A rule that counts against a bound, with its numbers given as they are: passes when
 * `holds`. `used` must be a number the host answered during this evaluation (a `ledger`
 * read) or the request's `amount`, and `until` a window end of the host (`Until`); the
 * host refuses anything else as a `policy-error` when the decision is explained. Prefer
 * `within`, `withinAmount` and `atMost`, which also work out `holds`.
 * @param {string} rule @param {boolean} holds @param {string} reason
 * @param {number | null} used @param {number | null} limit @param {object} [until]
 */
export function checkCounted(rule, holds, reason, used, limit, until = Until.none) {
  apply(rule, Boolean(holds), reason, num(used) ?? null, num(limit) ?? null, until);
}

/**
 * A count with room for one more: passes when `used < limit`, e.g. visits this year
 * against a yearly limit.
 * @param {string} rule @param {string} reason @param {number} used @param {number} limit
 * @param {object} [until]
 */
export function within(rule, reason, used, limit, until = Until.none) {
  checkCounted(rule, used < limit, reason, used, limit, until);
}

/**
 * A running total with room for `amount` more: passes when `used + amount <= limit`, e.g.
 * øre spent today plus this purchase against a daily limit. Records `used` (before this
 * request).
 * @param {string} rule @param {string} reason @param {number} used @param {number} amount
 * @param {number} limit @param {object} [until]
 */
export function withinAmount(rule, reason, used, amount, limit, until = Until.none) {
  checkCounted(rule, used + amount <= limit, reason, used, limit, until);
}

/**
 * An amount against a bound: passes when `used <= limit`, e.g. the amount asked against a
 * limit per purchase or against the balance.
 * @param {string} rule @param {string} reason @param {number} used @param {number} limit
 * @param {object} [until]
 */
export function atMost(rule, reason, used, limit, until = Until.none) {
  checkCounted(rule, used <= limit, reason, used, limit, until);
}

/**
 * The value, when there is one (not `null`/`undefined`); else stops the action with a
 * denial for `reason`. The rule is recorded either way, e.g.
 * `const receiver = present('receiver', ledger.findHolder(req.toCard), 'unknown-card')`.
 * @template T
 * @param {string} rule @param {T | null | undefined} value @param {string} reason
 * @returns {T}
 */
export function present(rule, value, reason) {
  check(rule, value !== null && value !== undefined, reason);
  return /** @type {T} */ (value);
}

/**
 * A denied decision for `reason`, recorded as the failed check named `rule`: for a rule
 * that always denies, e.g. `return refuse('refund', 'no-refund')`.
 * @param {string} rule @param {string} reason @returns {Decision}
 */
export function refuse(rule, reason) {
  if (explaining) recorded.push({ rule, reason, passed: false, used: null, limit: null, until: Until.none });
  return deny(reason);
}

/**
 * Decides `req`: runs `action` (a function of the request, or a finished decision) and
 * answers its decision; a `Denied` thrown by a rule helper becomes `deny(reason)`. When
 * `req.explain` is true the decision carries the checks the rules recorded, in order
 * (after any the action put in `checks` itself), with each `until` asked of the host.
 *
 * Any other exception is a fault of the policy: its message and where it was thrown go to
 * the host (`diagnostics.panicked`), and the exception propagates, which traps the
 * instance; the host then answers `policy-error` with that message.
 *
 * Keep the host's contract: a denied decision's reason is that of its first failed check,
 * and an allowed decision has no failed check — so let a failing rule end the action (do
 * not catch `Denied`), and use plain `if`s for conditions that do not deny.
 * @param {Request} req
 * @param {((req: Request) => Decision) | Decision} action
 * @returns {Decision}
 */
export function decide(req, action) {
  wide = typeof req.at === 'bigint';
  if (wide) normalizeRequest(req);
  explaining = Boolean(req.explain);
  recorded = [];
  /** @type {Decision} */
  let decision;
  try {
    decision = typeof action === 'function' ? action(req) : action;
    checkNumbers(decision);
  } catch (e) {
    if (!(e instanceof Denied)) {
      explaining = false;
      report(e);
      throw e;
    }
    decision = deny(e.reason);
  }
  const entries = recorded;
  recorded = [];
  const explain = explaining;
  explaining = false;
  return finish(decision, explain ? entries : []);
}

/**
 * Exports `describe` and `evaluate` with faults reported: `describe` gets the same
 * `panicked` report as `decide` gives `evaluate`.
 * @param {() => PolicyInfo} describe
 * @returns {() => PolicyInfo}
 */
export function describing(describe) {
  return () => {
    try {
      return describe();
    } catch (e) {
      report(e);
      throw e;
    }
  };
}

/** @param {Request} req */
function normalizeRequest(req) {
  req.at = num(req.at);
  req.amount = num(req.amount) ?? null;
  numHolder(req.holder);
  if (req.offer) {
    req.offer.startsAt = num(req.offer.startsAt) ?? null;
    req.offer.endsAt = num(req.offer.endsAt) ?? null;
    numAttributes(req.offer.attributes);
  }
}

/**
 * The decision as the world's record: every field present, checks resolved, numbers as
 * the engine wants them.
 * @param {Decision} d @param {typeof recorded} entries @returns {Decision}
 */
function finish(d, entries) {
  const checks = d.checks ?? [];
  if (entries.length > 0) {
    /** @type {Map<string, number>} */
    const ends = new Map();
    for (const e of entries) {
      checks.push({
        rule: e.rule,
        passed: e.passed,
        reason: e.reason,
        used: e.used,
        limit: e.limit,
        until: untilInstant(e.until, ends),
      });
    }
  }
  return {
    allow: Boolean(d.allow),
    reason: d.reason ?? (d.allow ? OK : BAD_REQUEST),
    admitted: d.admitted ?? 0,
    price: wireOpt(d.price),
    notes: d.notes ?? [],
    effects: wide ? (d.effects ?? []).map(wireEffect) : d.effects ?? [],
    checks: wide ? checks.map(wireCheck) : checks,
  };
}

/** @param {any} until @param {Map<string, number>} ends @returns {number | null} */
function untilInstant(until, ends) {
  switch (until?.kind) {
    case 'end-of': {
      const key = `${until.period}@${until.at}`;
      let end = ends.get(key);
      if (end === undefined) {
        end = calendar.periodOf(until.period, until.at).end;
        ends.set(key, end);
      }
      return end;
    }
    case 'window-end':
      return until.end;
    default:
      return null;
  }
}

/** @param {Effect} e */
function wireEffect(e) {
  switch (e.tag) {
    case 'count':
    case 'consume':
    case 'transfer':
      return { tag: e.tag, val: { ...e.val, amount: wire(e.val.amount) } };
    case 'grant':
      return { tag: e.tag, val: { ...e.val, amount: wire(e.val.amount), expires: wireOpt(e.val.expires) } };
    default:
      return e;
  }
}

/** @param {Check} c */
function wireCheck(c) {
  return { ...c, used: wireOpt(c.used), limit: wireOpt(c.limit), until: wireOpt(c.until) };
}

/** Sends the host the policy's last words: the exception's message and where. */
function report(e) {
  let message;
  if (e instanceof Error) {
    // The first frame in the policy's own code: past the SDK's, e.g. for `Date.now()`.
    const frames = String(e.stack ?? '')
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line.startsWith('at '));
    const where = frames.find((line) => !line.includes('/@cardrules/sdk/')) ?? frames[0];
    message = `${e.name}: ${e.message}${where ? ` (${where})` : ''}`;
  } else {
    message = `uncaught exception: ${String(e)}`;
  }
  try {
    panicked(message);
  } catch {
    // Reporting must not hide the fault itself.
  }
}

// --- Attributes, holders, config

/**
 * The raw value of attribute `key` of an offer or a holder (or of a list of attributes),
 * or `null` when absent.
 * @param {{ attributes: Attribute[] } | Attribute[]} of @param {string} key
 * @returns {Value | null}
 */
export function attr(of, key) {
  const list = Array.isArray(of) ? of : of.attributes;
  for (const a of list) if (a.key === key) return a.value;
  return null;
}

/** Text that parses as an integer the way the Rust SDK's `str::parse::<i64>` does. */
const INTEGER = /^[+-]?[0-9]+$/;

/**
 * The attribute as an integer (text that parses as one counts too), or `null`. The host
 * checks declared attributes against the manifest's `[schema]`, so `null` means absent.
 * @param {{ attributes: Attribute[] } | Attribute[]} of @param {string} key
 * @returns {number | null}
 */
export function attrInt(of, key) {
  const v = attr(of, key);
  if (v === null) return null;
  if (v.tag === 'integer') return num(v.val);
  if (v.tag === 'text') {
    const s = v.val.trim();
    return INTEGER.test(s) ? Number(s) : null;
  }
  return null;
}

/**
 * The attribute as a boolean (the text `true`/`false` counts too), or `null`.
 * @param {{ attributes: Attribute[] } | Attribute[]} of @param {string} key
 * @returns {boolean | null}
 */
export function attrBool(of, key) {
  const v = attr(of, key);
  if (v === null) return null;
  if (v.tag === 'boolean') return v.val;
  if (v.tag === 'text') {
    const s = v.val.trim();
    return s === 'true' ? true : s === 'false' ? false : null;
  }
  return null;
}

/**
 * The attribute as text, or `null` (also when it is not text).
 * @param {{ attributes: Attribute[] } | Attribute[]} of @param {string} key
 * @returns {string | null}
 */
export function attrText(of, key) {
  const v = attr(of, key);
  return v !== null && v.tag === 'text' ? v.val : null;
}

/**
 * Whether the holder carries `status`.
 * @param {Holder} holder @param {string} status
 */
export const hasStatus = (holder, status) => holder.statuses.includes(status);

/**
 * Whole years between `birth` and `day`: the age on `day` of someone born on `birth`.
 * Someone born on 29 February turns a year older on 1 March in common years.
 * @param {Date} birth @param {Date} day @returns {number}
 */
export function ageOn(birth, day) {
  const hadBirthday = day.month > birth.month || (day.month === birth.month && day.day >= birth.day);
  return day.year - birth.year - (hadBirthday ? 0 : 1);
}

/**
 * An integer from the manifest's `[config]`, or `fallback` when the key is not set. The
 * host checks `[config]` against `[schema.config]` at load, so for a key declared
 * `type = "integer"` only an absent key gives `fallback`.
 * @param {string} key @param {number} fallback @returns {number}
 */
export function configInt(key, fallback) {
  const v = ledger.config(key);
  if (v === null) return fallback;
  const s = v.trim();
  return INTEGER.test(s) ? Number(s) : fallback;
}

/**
 * Text from the manifest's `[config]`, or `fallback` when the key is not set.
 * @param {string} key @param {string} fallback @returns {string}
 */
export function configText(key, fallback) {
  return ledger.config(key) ?? fallback;
}

// --- The host: ledger and calendar, in plain numbers.

/**
 * A read-only view of the ledger, scoped to the request's program. Counts, balances and
 * instants are plain numbers; absent answers are `null`.
 */
export const ledger = Object.freeze({
  /**
   * Sum recorded under `counter` in the local `period` containing `at`; `card` `null`
   * sums over every card of the program.
   * @param {string | null} card @param {string} counter @param {Period} period @param {Instant} at
   * @returns {number}
   */
  countIn: (card, counter, period, at) => num(rawLedger.countIn(card ?? null, counter, period, wire(at))),
  /**
   * Sum recorded under `counter` within `span`.
   * @param {string | null} card @param {string} counter @param {Window} span @returns {number}
   */
  countWithin: (card, counter, span) =>
    num(rawLedger.countWithin(card ?? null, counter, { start: wire(span.start), end: wire(span.end) })),
  /**
   * When `counter` was last recorded for `card`, or `null`.
   * @param {string} card @param {string} counter @returns {Instant | null}
   */
  lastUse: (card, counter) => num(rawLedger.lastUse(card, counter)) ?? null,
  /**
   * Units of `asset` held by `card` that have not expired at `at`.
   * @param {string} card @param {string} asset @param {Instant} at @returns {number}
   */
  balance: (card, asset, at) => num(rawLedger.balance(card, asset, wire(at))),
  /**
   * Another card's holder, if the card belongs to this program, or `null`.
   * @param {string} card @returns {Holder | null}
   */
  findHolder: (card) => numHolder(rawLedger.findHolder(card)),
  /**
   * A value from the manifest's `[config]`, as text, or `null`.
   * @param {string} key @returns {string | null}
   */
  config: (key) => rawLedger.config(key) ?? null,
});

/** Calendar arithmetic in the program's time zone, done by the host. */
export const calendar = Object.freeze({
  /** `at` on the program's wall clock. @param {Instant} at @returns {LocalTime} */
  local: (at) => rawCalendar.local(wire(at)),
  /**
   * The local `period` that contains `at`.
   * @param {Period} period @param {Instant} at @returns {Window}
   */
  periodOf: (period, at) => {
    const w = rawCalendar.periodOf(period, wire(at));
    return { start: num(w.start), end: num(w.end) };
  },
  /**
   * The same wall-clock time `months` calendar months later (earlier if negative).
   * @param {Instant} at @param {number} months @returns {Instant}
   */
  addMonths: (at, months) => num(rawCalendar.addMonths(wire(at), months)),
});
