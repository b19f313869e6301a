// The console's own words in the four languages the shipped programs speak. Messages
// from the host (a decision's `message`) come already in the program's language.
// To add a language: copy the `en` block, translate it, and list it in LANGUAGES.

export const LANGUAGES = { en: 'English', nb: 'Norsk bokmål', da: 'Dansk', nl: 'Nederlands' };

const WORDS = {
  en: {
    title: 'cardrules console', signIn: 'Sign in', token: 'Token',
    tokenHelp: 'The token you were given. It stays in this browser tab only.',
    signOut: 'Sign out', program: 'Program', language: 'Language',
    till: 'Till', desk: 'Desk', parents: 'Parents', programs: 'Programs',
    openServer: 'server without --auth: everything is allowed',
    card: 'Card number', cardHelp: 'Type or scan, then Enter',
    offer: 'Offer', action: 'Action', party: 'Persons', amount: 'Amount',
    amountHelp: 'in minor units (øre, cent)', check: 'Ask', allowed: 'ALLOWED', denied: 'DENIED',
    admitted: 'Admitted', price: 'Price', balances: 'Balances', notes: 'Notes',
    left: '{remaining} of {limit} left', renews: 'renews {date}',
    'note:verify-photo': 'Check the photo ID',
    find: 'Find card', cardNotFound: 'No such card.',
    register: 'Register or change a holder', birthDate: 'Birth date',
    birthDateHelp: 'YYYY-MM-DD', municipality: 'Municipality', statuses: 'Statuses',
    statusesHelp: 'comma-separated words', state: 'State', active: 'active',
    blocked: 'blocked', stopped: 'stopped', unset: '—', yes: 'yes', no: 'no',
    save: 'Save', saved: 'Saved.', edit: 'Change holder', block: 'Block card',
    unblock: 'Unblock card', replace: 'Replace card', newCard: 'New card number',
    statement: 'Statement', since: 'From', until: 'To', show: 'Show',
    why: 'Why?', when: 'When', what: 'What', outcome: 'Outcome', more: 'More',
    registered: 'registered', replaced: 'replaced to {card}', attributes: 'Attributes',
    checks: 'Checks', reads: 'Reads', rule: 'Rule', reason: 'Reason', used: 'Used',
    limit: 'Limit', untilCol: 'Until', held: 'held', failed: 'failed',
    recorded: 'As recorded', explained: 'Explained now',
    otherVersion: 'The program was updated since: this explanation is the version served now.',
    myCards: 'My cards', topUp: 'Top up', settings: "Parents' settings",
    blockLost: 'Block lost card', confirmBlock: 'Block card {card}? Only the desk can undo it.',
    allowances: 'What is left', done: 'Done.',
    served: 'Programs served', version: 'Version', digest: 'Digest', world: 'World',
    loadedAt: 'Loaded', languages: 'Languages', offers: 'Offers', refused: 'Refused updates',
    none: 'None.', coverage: 'Coverage of its suites', runSuites: 'Run suites',
    stepsPassed: '{passed} of {steps} steps passed', checksBoth: '{n} of {m} checks seen both holding and failing',
    reasonsDenied: '{n} of {m} reasons seen as a denial', venues: 'Venues', venue: 'Venue',
    online: 'Online', lastContact: 'Last contact', position: 'Position', error: 'Error',
    signedInAs: '{name}, {role}', roleNone: 'This token has no view here.',
  },
  nb: {
    title: 'cardrules-konsoll', signIn: 'Logg inn', token: 'Nøkkel',
    tokenHelp: 'Nøkkelen du har fått. Den blir bare i denne fanen.',
    signOut: 'Logg ut', program: 'Ordning', language: 'Språk',
    till: 'Kasse', desk: 'Skranke', parents: 'Foreldre', programs: 'Ordninger',
    openServer: 'server uten --auth: alt er tillatt',
    card: 'Kortnummer', cardHelp: 'Skriv eller skann, trykk Enter',
    offer: 'Tilbud', action: 'Handling', party: 'Personer', amount: 'Beløp',
    amountHelp: 'i øre', check: 'Spør', allowed: 'GODKJENT', denied: 'AVVIST',
    admitted: 'Slipper inn', price: 'Pris', balances: 'Saldo', notes: 'Merknader',
    left: '{remaining} av {limit} igjen', renews: 'fornyes {date}',
    'note:verify-photo': 'Kontroller legitimasjon med bilde',
    find: 'Finn kort', cardNotFound: 'Kortet finnes ikke.',
    register: 'Registrer eller endre innehaver', birthDate: 'Fødselsdato',
    birthDateHelp: 'ÅÅÅÅ-MM-DD', municipality: 'Kommune', statuses: 'Status',
    statusesHelp: 'ord skilt med komma', state: 'Tilstand', active: 'aktiv',
    blocked: 'sperret', stopped: 'avsluttet', unset: '—', yes: 'ja', no: 'nei',
    save: 'Lagre', saved: 'Lagret.', edit: 'Endre innehaver', block: 'Sperr kort',
    unblock: 'Opphev sperre', replace: 'Bytt kort', newCard: 'Nytt kortnummer',
    statement: 'Kontoutskrift', since: 'Fra', until: 'Til', show: 'Vis',
    why: 'Hvorfor?', when: 'Når', what: 'Hva', outcome: 'Utfall', more: 'Mer',
    registered: 'registrert', replaced: 'byttet til {card}', attributes: 'Egenskaper',
    checks: 'Kontroller', reads: 'Oppslag', rule: 'Regel', reason: 'Årsak', used: 'Brukt',
    limit: 'Grense', untilCol: 'Til', held: 'holdt', failed: 'feilet',
    recorded: 'Slik det ble registrert', explained: 'Forklart nå',
    otherVersion: 'Ordningen er oppdatert siden: forklaringen gjelder versjonen som kjører nå.',
    myCards: 'Mine kort', topUp: 'Fyll på', settings: 'Foreldrenes innstillinger',
    blockLost: 'Sperr mistet kort', confirmBlock: 'Sperre kort {card}? Bare skranken kan oppheve det.',
    allowances: 'Dette er igjen', done: 'Utført.',
    served: 'Ordninger i drift', version: 'Versjon', digest: 'Sjekksum', world: 'Verden',
    loadedAt: 'Lastet', languages: 'Språk', offers: 'Tilbud', refused: 'Avviste oppdateringer',
    none: 'Ingen.', coverage: 'Dekning av testene', runSuites: 'Kjør testene',
    stepsPassed: '{passed} av {steps} steg bestått', checksBoth: '{n} av {m} kontroller sett både holde og feile',
    reasonsDenied: '{n} av {m} årsaker sett som avslag', venues: 'Steder', venue: 'Sted',
    online: 'Tilkoblet', lastContact: 'Sist kontakt', position: 'Posisjon', error: 'Feil',
    signedInAs: '{name}, {role}', roleNone: 'Denne nøkkelen har ingen visning her.',
  },
  da: {
    title: 'cardrules-konsol', signIn: 'Log ind', token: 'Nøgle',
    tokenHelp: 'Den nøgle, du har fået. Den bliver kun i denne fane.',
    signOut: 'Log ud', program: 'Ordning', language: 'Sprog',
    till: 'Kasse', desk: 'Skranke', parents: 'Forældre', programs: 'Ordninger',
    openServer: 'server uden --auth: alt er tilladt',
    card: 'Kortnummer', cardHelp: 'Skriv eller scan, tryk Enter',
    offer: 'Tilbud', action: 'Handling', party: 'Personer', amount: 'Beløb',
    amountHelp: 'i øre', check: 'Spørg', allowed: 'GODKENDT', denied: 'AFVIST',
    admitted: 'Lukkes ind', price: 'Pris', balances: 'Saldo', notes: 'Bemærkninger',
    left: '{remaining} af {limit} tilbage', renews: 'fornyes {date}',
    'note:verify-photo': 'Kontrollér billed-id',
    find: 'Find kort', cardNotFound: 'Kortet findes ikke.',
    register: 'Registrér eller ret kortholder', birthDate: 'Fødselsdato',
    birthDateHelp: 'ÅÅÅÅ-MM-DD', municipality: 'Kommune', statuses: 'Status',
    statusesHelp: 'ord adskilt af komma', state: 'Tilstand', active: 'aktivt',
    blocked: 'spærret', stopped: 'stoppet', unset: '—', yes: 'ja', no: 'nej',
    save: 'Gem', saved: 'Gemt.', edit: 'Ret kortholder', block: 'Spær kort',
    unblock: 'Ophæv spærring', replace: 'Erstat kort', newCard: 'Nyt kortnummer',
    statement: 'Kontoudtog', since: 'Fra', until: 'Til', show: 'Vis',
    why: 'Hvorfor?', when: 'Hvornår', what: 'Hvad', outcome: 'Udfald', more: 'Mere',
    registered: 'registreret', replaced: 'erstattet af {card}', attributes: 'Egenskaber',
    checks: 'Kontroller', reads: 'Opslag', rule: 'Regel', reason: 'Årsag', used: 'Brugt',
    limit: 'Grænse', untilCol: 'Til', held: 'holdt', failed: 'fejlede',
    recorded: 'Som registreret', explained: 'Forklaret nu',
    otherVersion: 'Ordningen er opdateret siden: forklaringen gælder den version, der kører nu.',
    myCards: 'Mine kort', topUp: 'Optank', settings: 'Forældrenes indstillinger',
    blockLost: 'Spær mistet kort', confirmBlock: 'Spær kort {card}? Kun skranken kan ophæve det.',
    allowances: 'Det er tilbage', done: 'Udført.',
    served: 'Ordninger i drift', version: 'Version', digest: 'Tjeksum', world: 'Verden',
    loadedAt: 'Indlæst', languages: 'Sprog', offers: 'Tilbud', refused: 'Afviste opdateringer',
    none: 'Ingen.', coverage: 'Dækning af testene', runSuites: 'Kør testene',
    stepsPassed: '{passed} af {steps} trin bestået', checksBoth: '{n} af {m} kontroller set både holde og fejle',
    reasonsDenied: '{n} af {m} årsager set som afslag', venues: 'Steder', venue: 'Sted',
    online: 'Forbundet', lastContact: 'Sidste kontakt', position: 'Position', error: 'Fejl',
    signedInAs: '{name}, {role}', roleNone: 'Denne nøgle har ingen visning her.',
  },
  nl: {
    title: 'cardrules-console', signIn: 'Aanmelden', token: 'Sleutel',
    tokenHelp: 'De sleutel die u kreeg. Hij blijft alleen in dit tabblad.',
    signOut: 'Afmelden', program: 'Programma', language: 'Taal',
    till: 'Kassa', desk: 'Balie', parents: 'Ouders', programs: 'Programma’s',
    openServer: 'server zonder --auth: alles is toegestaan',
    card: 'Kaartnummer', cardHelp: 'Typ of scan, dan Enter',
    offer: 'Aanbod', action: 'Handeling', party: 'Personen', amount: 'Bedrag',
    amountHelp: 'in cent', check: 'Vraag', allowed: 'TOEGESTAAN', denied: 'GEWEIGERD',
    admitted: 'Toegelaten', price: 'Prijs', balances: 'Saldo', notes: 'Opmerkingen',
    left: '{remaining} van {limit} over', renews: 'vernieuwt {date}',
    'note:verify-photo': 'Controleer identiteitsbewijs met foto',
    find: 'Kaart zoeken', cardNotFound: 'Deze kaart bestaat niet.',
    register: 'Houder registreren of wijzigen', birthDate: 'Geboortedatum',
    birthDateHelp: 'JJJJ-MM-DD', municipality: 'Gemeente', statuses: 'Statussen',
    statusesHelp: 'woorden gescheiden door komma’s', state: 'Toestand', active: 'actief',
    blocked: 'geblokkeerd', stopped: 'gestopt', unset: '—', yes: 'ja', no: 'nee',
    save: 'Opslaan', saved: 'Opgeslagen.', edit: 'Houder wijzigen', block: 'Kaart blokkeren',
    unblock: 'Blokkering opheffen', replace: 'Kaart vervangen', newCard: 'Nieuw kaartnummer',
    statement: 'Overzicht', since: 'Van', until: 'Tot', show: 'Toon',
    why: 'Waarom?', when: 'Wanneer', what: 'Wat', outcome: 'Uitkomst', more: 'Meer',
    registered: 'geregistreerd', replaced: 'vervangen door {card}', attributes: 'Kenmerken',
    checks: 'Controles', reads: 'Opvragingen', rule: 'Regel', reason: 'Reden', used: 'Gebruikt',
    limit: 'Grens', untilCol: 'Tot', held: 'voldaan', failed: 'niet voldaan',
    recorded: 'Zoals geregistreerd', explained: 'Nu uitgelegd',
    otherVersion: 'Het programma is sindsdien bijgewerkt: deze uitleg is van de huidige versie.',
    myCards: 'Mijn kaarten', topUp: 'Opladen', settings: 'Instellingen van de ouders',
    blockLost: 'Verloren kaart blokkeren', confirmBlock: 'Kaart {card} blokkeren? Alleen de balie kan dat ongedaan maken.',
    allowances: 'Wat er nog over is', done: 'Gedaan.',
    served: 'Actieve programma’s', version: 'Versie', digest: 'Controlesom', world: 'Wereld',
    loadedAt: 'Geladen', languages: 'Talen', offers: 'Aanbod', refused: 'Geweigerde updates',
    none: 'Geen.', coverage: 'Dekking van de testsuites', runSuites: 'Suites uitvoeren',
    stepsPassed: '{passed} van {steps} stappen geslaagd', checksBoth: '{n} van {m} controles zowel voldaan als niet voldaan gezien',
    reasonsDenied: '{n} van {m} redenen als weigering gezien', venues: 'Locaties', venue: 'Locatie',
    online: 'Online', lastContact: 'Laatste contact', position: 'Positie', error: 'Fout',
    signedInAs: '{name}, {role}', roleNone: 'Deze sleutel heeft hier geen weergave.',
  },
};

let current = 'en';

/** Chooses the console's language: `wanted` if the console speaks it, else English. */
export function setLanguage(wanted) {
  current = Object.hasOwn(WORDS, wanted) ? wanted : 'en';
  document.documentElement.lang = current;
  return current;
}

export function language() {
  return current;
}

/** The console's word for `key`, with `{name}` placeholders filled from `vars`. */
export function t(key, vars = {}) {
  const text = WORDS[current][key] ?? WORDS.en[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, name) => String(vars[name] ?? ''));
}

/** Whether the console has a word for `key` (e.g. a known note). */
export function has(key) {
  return Object.hasOwn(WORDS[current], key) || Object.hasOwn(WORDS.en, key);
}

/** A time as the program's clock shows it, in the console's language. */
export function formatTime(iso, timeZone) {
  if (!iso) return '';
  return new Intl.DateTimeFormat(locale(), { dateStyle: 'medium', timeStyle: 'short', timeZone })
    .format(new Date(iso));
}

/** The day an `until` (local midnight, the end of a window) renews on: "1 January". */
export function formatRenewal(iso, timeZone) {
  if (!iso) return '';
  return new Intl.DateTimeFormat(locale(), { day: 'numeric', month: 'long', year: 'numeric', timeZone })
    .format(new Date(iso));
}

/** The locale of the console's language, for numbers and dates. */
export function locale() {
  return { nb: 'nb-NO', da: 'da-DK', nl: 'nl-BE', en: 'en-GB' }[current];
}
