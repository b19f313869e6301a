#!/usr/bin/env node
// Decides the same requests with two builds of the same programs and reports every
// difference in the explained decisions: allow, reason, message, admitted, price, notes,
// balances, state, checks and reads (each host call, in order). Suites prove the rules;
// this proves a port (here: the JavaScript programs against the Rust ones) answers, reads
// and explains exactly alike, on a shared history.
//
//   node tools/js/differential.mjs CARDRULES POLICIES_A POLICIES_B [COUNT]
//
// The requests are generated from a fixed seed over bergen's and albertslund's demo
// holders and catalogues (plus unknown cards, actions and missing fields), sorted by time,
// and committed one by one on a fresh ledger per side, so counts and balances evolve
// alike. Exit 1 if anything differs.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const [cardrules, left, right, countArg] = process.argv.slice(2);
if (!right) {
  console.error('usage: differential.mjs CARDRULES POLICIES_A POLICIES_B [COUNT]');
  process.exit(2);
}
const count = Number(countArg ?? 200);

let seed = 25;
const rand = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const pick = (xs) => xs[Math.floor(rand() * xs.length)];
const pad = (n) => String(n).padStart(2, '0');
const days = ['2024-01-15', '2024-03-01', '2024-06-30', '2024-07-01', '2024-12-31', '2025-01-02', '2025-04-12', '2026-04-12'];
const at = (minute) => `${pick(days)}T${pad(Math.floor(rand() * 24))}:${minute}:00+01:00`;

const bergen = () => {
  const r = {
    program: 'bergen', card: pick(['AK-1001', 'AK-1002', 'AK-1003', 'AK-1004', 'AK-9999']),
    action: pick(['redeem', 'redeem', 'redeem', 'redeem', 'redeem', 'redeem', 'void', 'fly']),
    at: at('30'), party: pick([1, 1, 1, 2, 2, 3]), explain: true,
  };
  if (rand() < 0.95) {
    r.offer = pick(['kode-museum', 'bymuseet-bryggen', 'akvariet', 'grieghallen-bfo', 'bergen-kino',
      'lagunen-kino', 'brann-fotballskole', 'klatring-bratte-rom', 'speider-fana', 'kulturskolen-piano']);
  }
  return r;
};
let nextCard = 3000;
const albertslund = () => {
  const action = pick(['purchase', 'purchase', 'purchase', 'purchase', 'purchase', 'purchase', 'top-up', 'top-up',
    'enable-auto-top-up', 'replace-card', 'block-card', 'unblock-card', 'unblock-card', 'close-account', 'dance']);
  const r = { program: 'albertslund', card: pick(['BK-2001', 'BK-2002']), action, at: at('10'), explain: true };
  if (action === 'purchase') {
    if (rand() < 0.95) r.offer = pick(['bh-toast', 'bh-saftevand', 'bh-slik', 'sg-aftensmad', 'sg-perler', 'sg-garn', 'svoemmehal-kiosk']);
    if (rand() < 0.95) r.amount = pick([500, 1000, 1500, 2500, 4000, 9000]);
  }
  if (action === 'top-up' && rand() < 0.9) r.amount = pick([1000, 5000, 20000]);
  if (action === 'replace-card' && rand() < 0.9) r['new-card'] = pick([`BK-${++nextCard}`, 'BK-2001', 'BK-2002']);
  return r;
};
const requests = Array.from({ length: count }, (_, i) => (i % 2 ? albertslund() : bergen()));
requests.sort((a, b) => (a.at < b.at ? -1 : a.at > b.at ? 1 : 0));

const scratch = mkdtempSync(join(tmpdir(), 'cardrules-differential-'));
const decide = (policies, ledger, request) => {
  let out;
  try {
    out = execFileSync(cardrules, ['decide', '--allow-unsigned', '--explain', '--policies', policies,
      '--ledger', join(scratch, ledger), '--request', '-'], { input: JSON.stringify(request), stdio: ['pipe', 'pipe', 'ignore'] });
  } catch (e) {
    return { failed: String(e.stdout ?? e.message) };
  }
  const d = JSON.parse(out);
  delete d.policy; // version and digest: the builds differ by design
  delete d.fuel; //   the engines differ by design
  return d;
};

let differ = 0;
const outcomes = new Map();
try {
  for (const [i, request] of requests.entries()) {
    const a = JSON.stringify(decide(left, 'a.sqlite', request));
    const decided = decide(right, 'b.sqlite', request);
    const b = JSON.stringify(decided);
    const outcome = decided.failed ? 'failed' : `${decided.allow ? 'allowed' : 'denied'} ${decided.reason}`;
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
    if (a !== b) {
      differ += 1;
      console.log(`request ${i}: ${JSON.stringify(request)}\n  ${left}: ${a}\n  ${right}: ${b}`);
    }
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
const tally = [...outcomes].sort((x, y) => y[1] - x[1]).map(([o, n]) => `${n} ${o}`).join(', ');
console.log(`${requests.length} requests (${tally}): ${differ} decided differently`);
process.exit(differ ? 1 : 0);
