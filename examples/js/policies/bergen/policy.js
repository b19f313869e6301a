// Aktivitetskortet, Bergen kommune: free activities for children and young people from
// low-income families (rule book: docs/programs.md, `bergen`). Everything is free; the
// rules limit who may use the card, how many come along, and how often. Every rule is a
// check of the SDK, so an explained decision lists them in the rule book's order.
//
// The JavaScript twin of guest-rules/programs/bergen: same rules, names, reasons, order,
// effects and notes. Build: tools/js/build.sh examples/js/policies/bergen

import {
  BAD_REQUEST, OK, UNKNOWN_ACTION, Until, ageOn, allow, attrBool, attrInt, check, configInt,
  configText, count, decide, deny, describing, ledger, policyInfo, required, within,
} from '@cardrules/sdk';

const PROGRAM = 'bergen';
const VERSION = '2024.1.0';

/** Counts activations of one offer: the yearly limit of rule 6. */
const visits = (offer) => `visit:${offer}`;
/** Counts a card's leisure activities: the one-per-semester rule 7. */
const LEISURE = 'leisure';
/** Counts enrolments in one leisure activity over all cards: the capacity of rule 8. */
const enrolments = (offer) => `enrolment:${offer}`;

const PUBLIC_EVENT = 'public-event';
const LEISURE_ACTIVITY = 'leisure-activity';

export const describe = describing(() =>
  policyInfo(PROGRAM, VERSION, ['redeem', 'void'], [
    OK,
    'card-inactive',
    'not-resident',
    'age-out-of-range',
    'offer-not-participating',
    'party-too-large',
    'quota-exhausted',
    'semester-limit',
    'fully-booked',
    'no-refund',
    UNKNOWN_ACTION,
    BAD_REQUEST,
  ]),
);

export const evaluate = (req) =>
  decide(req, () => {
    switch (req.action) {
      case 'redeem':
        return redeem(req);
      // An activated ticket is used up whether it is used or not.
      case 'void':
        return deny('no-refund');
      default:
        return deny(UNKNOWN_ACTION);
    }
  });

/** Activates tickets for an offer for the holder and their companions. */
function redeem(req) {
  const holder = req.holder;
  const offer = required(req.offer);
  const leisure = offer.category === LEISURE_ACTIVITY;

  // 1. The card is active.
  check('card-active', holder.state === 'active', 'card-inactive');

  // 2. Registered residence is Bergen.
  const residence = configText('residence', PROGRAM);
  check('resident', holder.municipality === residence, 'not-resident');

  // 3. Age 0–17 on the day of use (local date).
  const age = ageOn(holder.birthDate, req.local.date);
  const maxAge = configInt('max-age', 17);
  check('age', age >= 0 && age <= maxAge, 'age-out-of-range');

  // 4. The offer takes part in the scheme.
  check('participating', attrBool(offer, 'participating') ?? true, 'offer-not-participating');

  // 5. Two tickets on public events, one on leisure activities and the culture school.
  const maxParty = offer.category === PUBLIC_EVENT ? configInt('public-event-party', 2) : 1;
  check('party-size', req.party <= maxParty, 'party-too-large');

  // 6. Offers with a yearly limit: N activations per card per local calendar year,
  // until the next 1 January.
  const limit = attrInt(offer, 'yearly-limit');
  if (limit !== null) {
    const used = ledger.countIn(holder.card, visits(offer.id), 'year', req.at);
    within('yearly-limit', 'quota-exhausted', used, limit, Until.endOf('year', req.at));
  }

  if (leisure) {
    // Both count until the next 1 January or 1 July.
    const semester = Until.endOf('semester', req.at);

    // 7. At most one leisure activity per card per semester.
    const taken = ledger.countIn(holder.card, LEISURE, 'semester', req.at);
    const perSemester = configInt('leisure-per-semester', 1);
    within('semester-limit', 'semester-limit', taken, perSemester, semester);

    // 8. Capacity per semester over all cards, first come first served.
    const capacity = attrInt(offer, 'capacity');
    if (capacity !== null) {
      const enrolled = ledger.countIn(null, enrolments(offer.id), 'semester', req.at);
      within('capacity', 'fully-booked', enrolled, capacity, semester);
    }
  }

  // One activation counts once, whether or not a companion comes along.
  const decision = allow({ admitted: req.party, price: 0, effects: [count(visits(offer.id), 1)] });
  if (leisure) decision.effects.push(count(LEISURE, 1), count(enrolments(offer.id), 1));
  return decision;
}
