// Det Digitale Betalingskort, Albertslund Kommune: a prepaid card children use to buy
// food and materials at the youth clubs (rule book: docs/programs.md, `albertslund`).
// Money is the asset `DKK`, in øre; parents top it up and may restrict purchases; the
// cashier checks the photo. Every rule is a check of the SDK, so an explained decision
// lists them in the rule book's order.
//
// The JavaScript twin of guest-rules/programs/albertslund: same rules, names, reasons,
// order, effects and notes. Build: tools/js/build.sh examples/js/policies/albertslund

import {
  BAD_REQUEST, OK, UNKNOWN_ACTION, Until, allow, atMost, attrInt, attrText, check,
  checkCounted, configInt, configText, consume, count, decide, deny, describing, grant,
  hasStatus, ledger, moveCard, policyInfo, required, setState, withinAmount,
} from '@cardrules/sdk';

const PROGRAM = 'albertslund';
const VERSION = '2024.1.0';

/** The money asset, in øre. */
const DKK = 'DKK';
/** Counts øre spent, for the daily limit of rule 6. */
const SPENT = 'spent';
/**
 * Recorded on the old card when it is replaced, after the card has moved: usage history
 * moves to the new card with the holder, and this marker must stay behind on the old one.
 */
const REPLACED = 'replaced';

const CARD_BLOCKED = 'card-blocked';
const CARD_REPLACED = 'card-replaced';
const CARD_NOT_BLOCKED = 'card-not-blocked';
const INSUFFICIENT_FUNDS = 'insufficient-funds';
/** A replacement card number that already belongs to a holder. */
const CARD_IN_USE = 'card-in-use';

export const describe = describing(() =>
  policyInfo(
    PROGRAM,
    VERSION,
    [
      'purchase',
      'top-up',
      'enable-auto-top-up',
      'replace-card',
      'block-card',
      'unblock-card',
      'close-account',
    ],
    [
      OK,
      CARD_BLOCKED,
      'not-a-member',
      'offer-not-participating',
      'category-blocked',
      'purchase-limit',
      'daily-limit',
      INSUFFICIENT_FUNDS,
      'minimum-balance',
      CARD_IN_USE,
      CARD_REPLACED,
      CARD_NOT_BLOCKED,
      UNKNOWN_ACTION,
      BAD_REQUEST,
    ],
  ),
);

export const evaluate = (req) =>
  decide(req, () => {
    switch (req.action) {
      case 'purchase':
        return purchase(req);
      case 'top-up':
        return topUp(req);
      case 'enable-auto-top-up':
        return enableAutoTopUp(req);
      case 'replace-card':
        return replaceCard(req);
      case 'block-card':
        return allow({ effects: [setState('blocked')] });
      case 'unblock-card':
        return unblockCard(req);
      case 'close-account':
        return closeAccount(req);
      default:
        return deny(UNKNOWN_ACTION);
    }
  });

/** The participating clubs (*config* `clubs`, comma-separated). */
const clubs = () =>
  configText('clubs', 'bakkens-hjerte,storagergard')
    .split(',')
    .map((club) => club.trim())
    .filter((club) => club !== '');

const balance = (req) => ledger.balance(req.holder.card, DKK, req.at);

/** A positive `amount`, or a `bad-request` denial. */
// At least 1: the host refuses any other amount before a policy sees it.
const positiveAmount = (req) => required(req.amount);

/** Every action but `block-card` needs a card that is not blocked. */
const notBlocked = (req) => check('not-blocked', req.holder.state !== 'blocked', CARD_BLOCKED);

/** Buys `offer` for `amount` øre at a club. */
function purchase(req) {
  const holder = req.holder;
  const offer = required(req.offer);
  const amount = positiveAmount(req);
  const participating = clubs();

  // 1. The card is not blocked.
  notBlocked(req);
  // 2. The holder is a member of a participating club.
  const member = participating.some((club) => hasStatus(holder, `member:${club}`));
  check('member', member, 'not-a-member');
  // 3. The offer is sold at a participating club.
  check('participating', participating.includes(offer.location), 'offer-not-participating');
  // 4. The parent has not blocked the offer's category.
  const blocked = attrText(holder, 'blocked-categories') ?? '';
  const isBlocked = blocked.split(',').some((c) => c.trim() === offer.category);
  check('category', !isBlocked, 'category-blocked');
  // 5. At most the parent's limit per purchase: the amount asked against it.
  const purchaseLimit = attrInt(holder, 'purchase-limit');
  if (purchaseLimit !== null) {
    atMost('purchase-limit', 'purchase-limit', amount, purchaseLimit, Until.none);
  }
  // 6. At most the parent's limit per local day, this purchase included: spent today,
  // until the next local midnight.
  const dailyLimit = attrInt(holder, 'daily-limit');
  if (dailyLimit !== null) {
    const today = ledger.countIn(holder.card, SPENT, 'day', req.at);
    const midnight = Until.endOf('day', req.at);
    withinAmount('daily-limit', 'daily-limit', today, amount, dailyLimit, midnight);
  }
  // 7. Enough money on the card: the amount asked against the unexpired balance.
  const funds = balance(req);
  atMost('funds', INSUFFICIENT_FUNDS, amount, funds, Until.none);

  const decision = allow({
    price: amount,
    effects: [consume(DKK, amount), count(SPENT, amount)],
    notes: ['verify-photo'],
  });
  const below = attrInt(holder, 'auto-top-up-below');
  const topUp = attrInt(holder, 'auto-top-up-amount');
  if (below !== null && topUp !== null && funds - amount < below && topUp > 0) {
    decision.effects.push(grant(DKK, topUp));
    decision.notes.push('auto-top-up');
  }
  return decision;
}

/** Credits `amount` øre, paid by the parent. */
function topUp(req) {
  const amount = positiveAmount(req);
  notBlocked(req);
  return allow({ effects: [grant(DKK, amount)] });
}

/** Whether the parent may switch automatic top-up on: only from a minimum balance. */
function enableAutoTopUp(req) {
  notBlocked(req);
  const minimum = configInt('auto-top-up-minimum-balance', 5000);
  check('minimum-balance', balance(req) >= minimum, 'minimum-balance');
  return allow();
}

/** Replaces a lost, stolen or damaged card for a fee paid from the old card. */
function replaceCard(req) {
  const newCard = required(req.newCard);
  notBlocked(req);
  // The fee against the unexpired balance (the fee is config, not a number the host
  // counted, so the check reports the balance alone).
  const fee = configInt('replacement-fee', 2500);
  const funds = balance(req);
  checkCounted('funds', funds >= fee, INSUFFICIENT_FUNDS, null, funds, Until.none);
  const taken = ledger.findHolder(newCard) !== null;
  check('new-card-free', !taken, CARD_IN_USE);
  const decision = allow({ price: fee });
  if (fee > 0) decision.effects.push(consume(DKK, fee));
  // Effects apply in order to the acting card: the marker is recorded after the move, so
  // that it stays on the old card while the usage history moves to the new one.
  decision.effects.push(moveCard(newCard), count(REPLACED, 1));
  return decision;
}

/**
 * Unblocks a card the parents' portal blocked, so that a replacement can be ordered and
 * its fee paid from the old card; the replacement blocks the old card again, for good.
 */
function unblockCard(req) {
  // A replaced card stays blocked: its holder continues on the new card. Whether it was
  // ever replaced, not only before `at`: an unblock stamped before the replacement that
  // arrives after it must not bring the old card back either.
  const replaced = ledger.lastUse(req.holder.card, REPLACED) !== null;
  check('not-replaced', !replaced, CARD_REPLACED);
  check('blocked', req.holder.state === 'blocked', CARD_NOT_BLOCKED);
  return allow({ effects: [setState('active')] });
}

/** Pays the whole balance out to the registered parent. */
function closeAccount(req) {
  const funds = balance(req);
  const decision = allow({ notes: ['payout-to-parent'] });
  if (funds > 0) decision.effects.push(consume(DKK, funds));
  return decision;
}
