//! The host: the programs it serves (and why others were refused) plus the ledger, and
//! the entry points that join them — deciding a request, registering a holder, reading a
//! card. Deciding itself is [`crate::decide`], run in the program's ledger lane.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use parking_lot::RwLock;
use serde::Serialize;

use crate::allowance::{self, AllowanceQuery, Allowances};
use crate::decide::{self, Asked};
use crate::error::{Error, Result};
use crate::history::{self, History, HistoryPage};
use crate::ids;
use crate::ledger::{Change, HistoryQuery, Journal, Ledger, Staged, View};
use crate::model::{AttributeValue, Decision, Holder, Request};
use crate::policy::Sandbox;
use crate::program::signing::Trust;
use crate::program::{ERASED, Program};
use crate::timing::{Clock, Reporter};

/// A card as `GET …/cards/{card}` (and `PUT` or `PATCH …/holders/{card}`) shows it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct CardView {
    pub program: String,
    pub card: String,
    /// `active`, `blocked` or `stopped` (a [`crate::model::CardState`]), or `erased` for a card whose
    /// holder was erased.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "active"))]
    pub state: &'static str,
    /// (Addition.) The holder is restricted: its data is kept, nothing is decided.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub restricted: bool,
    pub statuses: Vec<String>,
    /// (Addition.) The holder's birth date and registered municipality: a registration
    /// desk changing a holder sends them back whole (`PUT …/holders/{card}`). Left out
    /// for callers that have no need of them (a till, a venue): see
    /// [`CardView::without_personal_data`].
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Date))]
    pub birth_date: Option<jiff::civil::Date>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub municipality: Option<String>,
    /// The holder's attributes (addition: a guardian's portal shows the limits it set).
    pub attributes: BTreeMap<String, AttributeValue>,
    pub balances: BTreeMap<String, i64>,
    /// (Addition.) Part of the balances lent to a venue for deciding alone while it cannot
    /// reach the city (docs/offline.md): only that venue may spend it until it hands it
    /// back. A parents' portal shows it as part of the balance, held by the venue.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<Held>,
}

/// Units of an asset of a card escrowed to a venue.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Held {
    pub venue: String,
    pub asset: String,
    pub units: i64,
}

/// Everything the ledger holds about a holder ([`Host::export`]).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Export {
    pub program: String,
    pub card: String,
    /// The holder's cards, this one and those it replaced.
    pub cards: Vec<String>,
    /// The card as it stands: facts, statuses, attributes, balances.
    pub holder: CardView,
    /// Each registration or change of the holder's facts, oldest first.
    pub registrations: Vec<Registration>,
    /// Every entry of its statement, oldest first.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub statement: Vec<history::Entry>,
}

/// One registration of a holder's facts, as the journal keeps it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct Registration {
    pub seq: u64,
    /// When (none for registrations journaled before they were timed).
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = DateTime))]
    pub at: Option<jiff::Timestamp>,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub holder: Holder,
}

impl CardView {
    /// The view without the holder's birth date and municipality: what a till needs to
    /// serve a card is its state, statuses and balances, not who the child is.
    pub fn without_personal_data(mut self) -> CardView {
        self.birth_date = None;
        self.municipality = None;
        self
    }
}

/// `card` as `GET …/cards/{card}` shows it, if the program knows it: its holder's facts,
/// or none for a card whose holder was erased.
pub(crate) fn card_view(
    program: &str,
    state: &crate::ledger::State,
    card: &str,
    at: i64,
) -> Option<CardView> {
    let view = |state_name: &'static str| CardView {
        program: program.to_string(),
        card: card.to_string(),
        state: state_name,
        restricted: state.restricted(card),
        statuses: Vec::new(),
        birth_date: None,
        municipality: None,
        attributes: BTreeMap::new(),
        balances: state.balances(card, at),
        held: state
            .tenures()
            .iter()
            .filter_map(|(venue, tenure)| {
                let asset = tenure.lease.as_ref()?.asset.clone()?;
                let units = tenure.remaining(card, &asset);
                (units > 0).then(|| Held {
                    venue: venue.clone(),
                    asset,
                    units,
                })
            })
            .collect(),
    };
    if let Some(holder) = state.holder(card) {
        return Some(CardView {
            statuses: holder.statuses.clone(),
            birth_date: Some(holder.birth_date),
            municipality: Some(holder.municipality.clone()),
            attributes: holder.attributes.clone(),
            ..view(holder.state.as_str())
        });
    }
    state.erased(card).map(|_| view(ERASED))
}

/// What an erasure did (`DELETE …/holders/{card}`, `cardrules ledger erase`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Erasure {
    pub program: String,
    pub card: String,
    /// `erased`.
    pub state: &'static str,
    /// The holder's cards whose personal data is gone: this one and those it replaced.
    pub cards: Vec<String>,
    /// Units that lapsed with the erasure, by asset (assets the program does not ask to
    /// be paid out first).
    pub forfeited: BTreeMap<String, i64>,
    /// False when the holder had been erased already: nothing was done again.
    pub done: bool,
}

/// Programs and a ledger: what answers requests.
pub struct Host {
    pub(crate) sandbox: Arc<Sandbox>,
    programs: RwLock<HashMap<String, Arc<Program>>>,
    /// Programs that could not be loaded, with why; requests for them get that error.
    broken: RwLock<HashMap<String, String>>,
    pub(crate) ledger: Arc<Ledger>,
    /// Whose signatures make a program loadable.
    trust: Trust,
    /// Whether decisions are evaluated by their callers before the lane (see
    /// [`Host::with_proposals`]).
    proposing: bool,
    /// What "now" is, for the bounds on a reported request's `at` ([`Host::decide_as`]).
    pub(crate) clock: Arc<dyn Clock>,
    /// Whether programs' demo holders are registered into an empty journal (see
    /// [`Host::with_demo_holders`]).
    demo_holders: bool,
    /// How long a change the venues' leases hold back waits for them to hand them back
    /// (see [`Host::with_patience`]).
    patience: std::time::Duration,
}

impl Host {
    /// A host with no programs yet, over the ledger kept in `journal`. It trusts nobody:
    /// set [`Host::with_trust`] before loading programs (programs inserted directly are
    /// not checked).
    pub fn new(sandbox: Arc<Sandbox>, journal: Arc<dyn Journal>) -> Host {
        Host {
            sandbox,
            programs: RwLock::new(HashMap::new()),
            broken: RwLock::new(HashMap::new()),
            ledger: Arc::new(Ledger::new(journal)),
            trust: Trust::nobody(),
            proposing: true,
            clock: crate::timing::system_clock(),
            demo_holders: true,
            patience: std::time::Duration::ZERO,
        }
    }

    /// The same host, registering its programs' demo holders into an empty journal as they
    /// are served (`true`, the default) or never (`false`: a venue host, whose ledger
    /// follows its city's journal and must hold nothing the city's does not).
    pub fn with_demo_holders(mut self, register: bool) -> Host {
        self.demo_holders = register;
        self
    }

    /// The same host, telling the time by `clock` (the system's by default): tests set
    /// the time instead of waiting for it.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Host {
        self.clock = clock;
        self
    }

    /// The same host, with each decision evaluated by its caller's thread on the state as
    /// it stands and then checked by the program's lane (`true`, the default: a
    /// program's decisions evaluate in parallel), or evaluated one at a time in the lane
    /// (`false`: what benchmarks compare with).
    /// Lets a change that a venue's lease holds back (a holder's, or a decision on what a
    /// venue decides alone; [`Error::Held`]) recall the lease and wait up to `patience`
    /// for the venue to hand it back — a connected venue does so within a second — before
    /// it is refused. Without it (the default), it is refused at once, the lease recalled.
    pub fn with_patience(mut self, patience: std::time::Duration) -> Host {
        self.patience = patience;
        self
    }

    /// Runs `attempt`; while a lease holds it back, recalls the lease and tries again,
    /// for up to the host's patience.
    fn held_back<T>(&self, program: &str, attempt: impl Fn() -> Result<T>) -> Result<T> {
        let started = std::time::Instant::now();
        loop {
            match attempt() {
                Err(Error::Held {
                    venues, why, card, ..
                }) => {
                    self.recall(program, &venues)?;
                    if started.elapsed() >= self.patience {
                        return Err(Error::Held {
                            program: program.to_string(),
                            card,
                            why,
                            venues,
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    pub fn with_proposals(mut self, proposing: bool) -> Host {
        self.proposing = proposing;
        self
    }

    /// The same host, loading only programs signed by keys `trust` trusts (or unsigned
    /// ones, with [`Trust::allow_unsigned`]).
    pub fn with_trust(mut self, trust: Trust) -> Host {
        self.trust = trust;
        self
    }

    /// The sandbox policies are compiled in.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// Remembers why the program in `dir` was refused, for [`Host::refused`] and for
    /// requests to a program that has no running version.
    pub(crate) fn refuse(&self, dir: &Path, error: &Error) {
        let (name, reason) = match error {
            Error::Load { program, source } => (program.clone(), source.to_string()),
            other => (
                dir.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                other.to_string(),
            ),
        };
        self.broken.write().insert(name, reason);
    }

    /// Programs whose latest files were refused, with why (sorted by program). A refused
    /// program may still be served in its previous version.
    pub fn refused(&self) -> Vec<(String, String)> {
        let mut all: Vec<_> = self
            .broken
            .read()
            .iter()
            .map(|(program, why)| (program.clone(), why.clone()))
            .collect();
        all.sort();
        all
    }

    /// Serves `program` (replacing an earlier version of it).
    pub fn insert(&self, program: Arc<Program>) {
        self.broken.write().remove(program.id());
        self.programs
            .write()
            .insert(program.id().to_string(), program);
    }

    /// The loaded program `id`. The one door of program ids (requests, routes, commands):
    /// one that no program could have is the caller's error, not an unknown program.
    pub fn program(&self, id: &str) -> Result<Arc<Program>> {
        ids::check(ids::Kind::Program, "program", id)?;
        if let Some(program) = self.programs.read().get(id) {
            return Ok(program.clone());
        }
        match self.broken.read().get(id) {
            Some(why) => Err(Error::load(
                id,
                why.trim_start_matches(&format!("cannot load policy `{id}`: "))
                    .to_string(),
            )),
            None => Err(Error::UnknownProgram(id.to_string())),
        }
    }

    /// Every loaded program, by id.
    pub fn programs(&self) -> Vec<Arc<Program>> {
        let mut all: Vec<_> = self.programs.read().values().cloned().collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    /// The trust programs are loaded with.
    pub(crate) fn trust(&self) -> &Trust {
        &self.trust
    }

    /// The trust the host's own programs are loaded with, for loading candidates beside
    /// them (shadow evaluation): a candidate must be signed like a served version.
    pub fn trust_for_candidates(&self) -> Trust {
        self.trust.clone()
    }

    /// The ledger: programs' states over the journal.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Registers (or replaces) a holder; returns whether the card was new. Starting
    /// balances are only for new cards.
    pub fn register(&self, program: &str, holder: &Holder) -> Result<bool> {
        self.held_back(program, || self.register_now(program, holder))
    }

    fn register_now(&self, program: &str, holder: &Holder) -> Result<bool> {
        let program = self.program(program)?;
        program.check_holder(holder)?;
        let holder = holder.clone();
        let id = program.id().to_string();
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            // Registering a replaced card would make it active again, beside its holder's
            // new card, and with none of the usage that moved with the holder.
            if let Some(by) = state.replaced_by(&holder.card) {
                return Err(Error::Replaced {
                    program: id.clone(),
                    card: holder.card.clone(),
                    by: by.to_string(),
                });
            }
            let created = state.holder(&holder.card).is_none();
            held(&id, state, &holder.card)?;
            let change = Change::Registered {
                holder: holder.clone(),
                at: Some(jiff::Timestamp::now().as_second()),
            };
            state
                .apply_change(&change)
                .map_err(|refused| Error::invalid(refused.0))?;
            Ok(Staged {
                changes: vec![change],
                answer: created,
            })
        })
    }

    /// Registers the program's demo holders (checked when the program was loaded) into an
    /// empty journal only: they are for a new ledger. A journal with events says itself
    /// who its holders are; registering them again there would write them into it on the
    /// word of whatever state a start found.
    pub fn register_demo_holders(&self, program: &str) -> Result<usize> {
        if !self.demo_holders {
            return Ok(0);
        }
        let program = self.program(program)?;
        let demo = program.clone();
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            if state.seq() > 0 {
                return Ok(Staged::nothing(0));
            }
            let mut changes = Vec::new();
            for holder in &demo.files.holders {
                if state.holder(&holder.card).is_none() {
                    let change = Change::Registered {
                        holder: holder.clone(),
                        at: Some(jiff::Timestamp::now().as_second()),
                    };
                    state
                        .apply_change(&change)
                        .map_err(|refused| Error::invalid(refused.0))?;
                    changes.push(change);
                }
            }
            let added = changes.len();
            Ok(Staged {
                changes,
                answer: added,
            })
        })
    }

    /// A card's state, statuses and balances at `at`, if the card is known.
    pub fn card(&self, program: &str, card: &str, at: i64) -> Result<Option<CardView>> {
        let program = self.program(program)?;
        ids::check(ids::Kind::Card, "card", card)?;
        self.ledger.read(program.id(), |state| {
            card_view(program.id(), state, card, at)
        })
    }

    /// Erases the personal data of the holder of `card` (GDPR Art. 17), asked by `by` (a
    /// token's name): every registration of its facts on any of its cards is rewritten
    /// without them, in every copy the ledger writes (see [`Change::Erased`]), and the
    /// card is decided on no more. Amounts, times, offers and outcomes stay, so balances,
    /// totals and capacity tallies are unchanged. Refused ([`Error::Kept`]) while the card
    /// holds units of an asset the program has paid out first (money), and in a program
    /// whose archive duty keeps holders' data. Erasing an erased holder again does nothing.
    pub fn erase(&self, program: &str, card: &str, by: &str) -> Result<Erasure> {
        self.held_back(program, || self.erase_now(program, card, by))
    }

    fn erase_now(&self, program: &str, card: &str, by: &str) -> Result<Erasure> {
        let program = self.program(program)?;
        ids::check(ids::Kind::Card, "card", card)?;
        let id = program.id().to_string();
        let rules = program.files.manifest.personal_data.clone();
        if rules.erasure == crate::program::manifest::ErasureRule::Restrict {
            return Err(Error::Kept(format!(
                "program `{id}` keeps its holders' data under {}: holder `{card}` cannot be erased; restrict it instead (`PUT /v1/programs/{id}/holders/{card}/restriction`)",
                rules.archive.as_deref().unwrap_or("its archive duty")
            )));
        }
        let now = self.clock.now().as_second();
        let (card, by) = (card.to_string(), by.to_string());
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            if state.erased(&card).is_some() {
                return Ok(Staged::nothing(Erasure {
                    program: id.clone(),
                    card: card.clone(),
                    state: ERASED,
                    cards: state.lineage(&card),
                    forfeited: BTreeMap::new(),
                    done: false,
                }));
            }
            if state.holder(&card).is_none() {
                return Err(match state.replaced_by(&card) {
                    Some(by) => Error::Replaced {
                        program: id.clone(),
                        card: card.clone(),
                        by: by.to_string(),
                    },
                    None => Error::UnknownCard {
                        program: id.clone(),
                        card: card.clone(),
                    },
                });
            }
            held(&id, state, &card)?;
            let balances = state.balances(&card, now);
            for asset in &rules.settle {
                if let Some(units) = balances.get(asset).filter(|u| **u > 0) {
                    let how = match &rules.settle_with {
                        Some(action) => format!("pay it out first (`{action}`)"),
                        None => "pay it out first".to_string(),
                    };
                    return Err(Error::Kept(format!(
                        "card `{card}` of program `{id}` still holds {units} `{asset}`: {how}, then erase its holder"
                    )));
                }
            }
            let mut assets: Vec<String> = state.lots(&card).iter().map(|l| l.asset.clone()).collect();
            assets.sort_unstable();
            assets.dedup();
            let forfeited: BTreeMap<String, i64> = balances
                .into_iter()
                .filter(|(asset, units)| !rules.settle.contains(asset) && *units > 0)
                .collect();
            let change = Change::Erased {
                card: card.clone(),
                at: now,
                cards: state.lineage(&card),
                effects: assets
                    .into_iter()
                    .map(|asset| crate::ledger::Effect::Forfeit { asset })
                    .collect(),
                by: by.clone(),
            };
            state
                .apply_change(&change)
                .map_err(|refused| Error::invalid(refused.0))?;
            Ok(Staged {
                changes: vec![change],
                answer: Erasure {
                    program: id.clone(),
                    card: card.clone(),
                    state: ERASED,
                    cards: state.lineage(&card),
                    forfeited,
                    done: true,
                },
            })
        })
    }

    /// Restricts the holder of `card` (GDPR Art. 18: its data kept, nothing decided on
    /// the card: decisions are denied `restricted`), or lifts the restriction; asked by
    /// `by`. Returns the card as it is now.
    pub fn restrict(
        &self,
        program: &str,
        card: &str,
        restricted: bool,
        by: &str,
    ) -> Result<CardView> {
        self.held_back(program, || self.restrict_now(program, card, restricted, by))
    }

    fn restrict_now(
        &self,
        program: &str,
        card: &str,
        restricted: bool,
        by: &str,
    ) -> Result<CardView> {
        let program = self.program(program)?;
        ids::check(ids::Kind::Card, "card", card)?;
        let id = program.id().to_string();
        let now = self.clock.now().as_second();
        let (changed, by) = (card.to_string(), by.to_string());
        self.ledger
            .submit(program.id(), move |tx| {
                let card = &changed;
                let state = tx.state();
                if !state.known(card) {
                    return Err(Error::UnknownCard {
                        program: id.clone(),
                        card: card.clone(),
                    });
                }
                held(&id, state, card)?;
                if state.restricted(card) == restricted {
                    return Ok(Staged::nothing(card_view(&id, state, card, now)));
                }
                let change = Change::Restricted {
                    card: card.clone(),
                    at: now,
                    restricted,
                    by: by.clone(),
                };
                state
                    .apply_change(&change)
                    .map_err(|refused| Error::invalid(refused.0))?;
                Ok(Staged {
                    changes: vec![change],
                    answer: card_view(&id, state, card, now),
                })
            })
            .and_then(|view| {
                view.ok_or_else(|| Error::UnknownCard {
                    program: program.id().to_string(),
                    card: card.to_string(),
                })
            })
    }

    /// What `card` may still do (see [`crate::allowance`]), or `None` if the card is
    /// unknown. Commits nothing.
    pub fn allowances(
        &self,
        program: &str,
        card: &str,
        query: &AllowanceQuery,
    ) -> Result<Option<Allowances>> {
        let program = self.program(program)?;
        ids::check(ids::Kind::Card, "card", card)?;
        let sandbox = self.sandbox.clone();
        self.ledger.examine(program.id(), |state| {
            allowance::allowances_on(&sandbox, &program, card, query, state)
        })?
    }

    /// A page of `card`'s statement (see [`crate::history`]), or `None` if the card is
    /// unknown.
    /// Everything the ledger holds about the holder of `card` (GDPR Art. 15 and 20): the
    /// card as it stands, each registration of the holder's facts on any of its cards
    /// with when, and its whole statement; `None` for an unknown card. Read page by
    /// page, so a long history costs memory for itself only.
    pub fn export(&self, program: &str, card: &str, at: i64) -> Result<Option<Export>> {
        let Some(view) = self.card(program, card, at)? else {
            return Ok(None);
        };
        let program = self.program(program)?;
        let id = program.id();
        let Some(cards) = self
            .ledger
            .read(id, |state| state.known(card).then(|| state.lineage(card)))?
        else {
            return Ok(None);
        };
        let (mut registrations, mut statement, mut after) = (Vec::new(), Vec::new(), 0);
        loop {
            let query = HistoryQuery {
                cards: &cards,
                after,
                since: None,
                until: None,
                limit: history::MAX_LIMIT,
            };
            let events = self.ledger.journal().history(id, &query)?;
            let Some(last) = events.last().map(|e| e.seq) else {
                break;
            };
            for event in events {
                if let Change::Registered { holder, at } = &event.change {
                    registrations.push(Registration {
                        seq: event.seq,
                        at: at.and_then(|s| jiff::Timestamp::from_second(s).ok()),
                        holder: holder.clone(),
                    });
                }
                statement.push(history::entry(id, event)?);
            }
            after = last;
        }
        Ok(Some(Export {
            program: id.to_string(),
            card: card.to_string(),
            cards,
            holder: view,
            registrations,
            statement,
        }))
    }

    pub fn history(
        &self,
        program: &str,
        card: &str,
        page: &HistoryPage,
    ) -> Result<Option<History>> {
        let program = self.program(program)?;
        ids::check(ids::Kind::Card, "card", card)?;
        let id = program.id();
        let after = match &page.after {
            Some(cursor) => history::position(id, card, cursor)?,
            None => 0,
        };
        let limit = page.limit.clamp(1, history::MAX_LIMIT);
        let Some(cards) = self
            .ledger
            .read(id, |state| state.known(card).then(|| state.lineage(card)))?
        else {
            return Ok(None);
        };
        let query = HistoryQuery {
            cards: &cards,
            after,
            since: page.since.map(|t| t.as_second()),
            until: page.until.map(|t| t.as_second()),
            // One more than asked: whether there is a next page.
            limit: limit + 1,
        };
        let mut events = self.ledger.journal().history(id, &query)?;
        let more = events.len() > limit;
        events.truncate(limit);
        let next = match (more, events.last()) {
            (true, Some(last)) => Some(history::cursor(id, card, last.seq)),
            _ => None,
        };
        let entries = events
            .into_iter()
            .map(|event| history::entry(id, event))
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(History {
            program: id.to_string(),
            card: card.to_string(),
            entries,
            next,
        }))
    }

    /// Decides `request` and, unless it is a dry run, commits its effects and records it;
    /// returns once the decision is durable. The decision names the very version of the
    /// program that decided it (`policy`), even if another is served by then.
    pub fn decide(&self, request: &Request) -> Result<Decision> {
        self.decide_by(request).map(|(_, decision)| decision)
    }

    /// [`Host::decide`], also answering the version of the program that decided (for
    /// metrics and logs: under hot reload, looking the program up again afterwards could
    /// find a newer one).
    pub fn decide_by(&self, request: &Request) -> Result<(Arc<Program>, Decision)> {
        self.decide_reported(request, None)
    }

    /// [`Host::decide_by`] for a request that `reporter` reports now: its `at` must lie
    /// within its program's `max-lateness` and `max-skew` of the host's clock (see
    /// [`crate::timing`]), else it is the caller's error, naming the bound. A retry of a
    /// recorded id is answered its decision whenever it comes: nothing new is decided.
    pub fn decide_as(
        &self,
        request: &Request,
        reporter: Reporter,
    ) -> Result<(Arc<Program>, Decision)> {
        self.decide_reported(request, Some(reporter))
    }

    /// Decides `request`, its `at` bounded if a `reporter` reports it.
    fn decide_reported(
        &self,
        request: &Request,
        reporter: Option<Reporter>,
    ) -> Result<(Arc<Program>, Decision)> {
        let program = self.program(&request.program)?;
        let waits = !request.dry_run
            && request.id.is_some()
            && program
                .files
                .manifest
                .offline
                .wait
                .contains(&request.action);
        if waits && let Some(id) = &request.id {
            // A retry of a request that waits for a venue's lease: still pending.
            let waiting = self
                .ledger
                .read(program.id(), |s| s.waiting_for(id).is_some())?;
            if waiting {
                return Ok((program.clone(), crate::offline::pending(&program, request)));
            }
        }
        match self.held_back(&request.program, || self.decide_now(request, reporter)) {
            Err(Error::Held { venues, .. }) if waits && !venues.is_empty() => {
                self.keep_waiting(&program, request, &venues[0])
            }
            other => other,
        }
    }

    /// Keeps `request` waiting for `venue`'s lease (its program's `[offline] wait`):
    /// journaled, answered `pending`, decided once the venue hands its lease back.
    fn keep_waiting(
        &self,
        program: &Arc<Program>,
        request: &Request,
        venue: &str,
    ) -> Result<(Arc<Program>, Decision)> {
        let fingerprint = decide::fingerprint(request)?;
        let (id, card, venue) = (
            request.id.clone().unwrap_or_default(),
            request.card.clone(),
            venue.to_string(),
        );
        let at = request.at.as_second();
        self.ledger.submit(program.id(), move |tx| {
            let state = tx.state();
            if state.waiting_for(&id).is_some() {
                return Ok(Staged::nothing(()));
            }
            let change = Change::Waiting {
                card: card.clone(),
                at,
                venue: venue.clone(),
                request_id: id.clone(),
                request: fingerprint.clone(),
            };
            state
                .apply_change(&change)
                .map_err(|refused| Error::invalid(refused.0))?;
            Ok(Staged {
                changes: vec![change],
                answer: (),
            })
        })?;
        tracing::info!(
            program = program.id(),
            card = request.card,
            action = request.action,
            "kept waiting for a venue's lease: decided once the venue hands it back"
        );
        Ok((program.clone(), crate::offline::pending(program, request)))
    }

    /// Decides what waits for `venue`'s lease of `program`, in order, now that the venue
    /// handed it back (or is about to take a new one, everything it decided alone in).
    pub(crate) fn decide_waiting(&self, program: &str, venue: &str) -> Result<()> {
        let waiting = self.ledger.read(program, |s| {
            s.tenures()
                .get(venue)
                .map(|t| t.waiting.clone())
                .unwrap_or_default()
        })?;
        for (id, text) in waiting {
            let request: Request = serde_json::from_str(&text).map_err(|e| {
                Error::ledger(format!("a waiting request `{id}` cannot be read"), e)
            })?;
            match self.decide_now(&request, None) {
                Ok(_) => {}
                // Still held (by another venue): it waits on.
                Err(Error::Held { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn decide_now(
        &self,
        request: &Request,
        reporter: Option<Reporter>,
    ) -> Result<(Arc<Program>, Decision)> {
        let program = self.program(&request.program)?;
        let party = decide::check_request(&program, request)?;
        // The fingerprint is what a decision is recorded and compared under, computed here,
        // outside the program's lane. A dry run records nothing: it needs one only if its
        // id was recorded before (to replay that decision or refuse the id), which only
        // the lane can tell, so the pipeline computes it then.
        let fingerprint = match request.dry_run {
            true => None,
            false => Some(decide::fingerprint(request)?),
        };
        // A retried id is answered from the journal's index, outside the lane; a new one
        // is looked up again in the lane only among what was committed since this look.
        let looked_up = match request.id.as_deref() {
            None => None,
            Some(id) => {
                let position = self.ledger.position(program.id());
                if let Some(earlier) = self.ledger.journal().recorded(program.id(), id)? {
                    let decision = decide::replayed(id, &earlier, fingerprint.as_deref(), request)?;
                    return Ok((program, decision));
                }
                Some(position)
            }
        };
        if let Some(reporter) = reporter {
            program.files.manifest.time_bounds().check(
                program.id(),
                reporter,
                request.at,
                self.clock.now(),
            )?;
        }
        let asked = Asked {
            request,
            party,
            dry_run: request.dry_run,
            id: request.id.as_deref(),
            fingerprint: fingerprint.as_deref(),
            looked_up,
            alone: None,
        };
        // Evaluated here, on this thread, in parallel with the program's other callers;
        // the lane checks it and keeps it, or decides again (see `ledger/commit.rs`).
        let mut proposal = match self.proposing {
            true => self
                .ledger
                .reader(program.id())
                .and_then(|reader| decide::propose(&self.sandbox, &program, &asked, reader)),
            false => None,
        };
        let sandbox = self.sandbox.clone();
        // The lane runs the job on its own thread, perhaps more than once: it owns what it
        // decides on.
        let request = request.clone();
        let deciding = program.clone();
        let decision = self.ledger.submit(program.id(), move |tx| {
            let asked = Asked {
                request: &request,
                party,
                dry_run: request.dry_run,
                id: request.id.as_deref(),
                fingerprint: fingerprint.as_deref(),
                looked_up,
                alone: None,
            };
            // Only the first run can keep the proposal: a run again after a lost race is
            // on a state caught up with other writers, which no proposal was checked on.
            let proposed = proposal
                .take()
                .filter(|p| tx.unchanged(p.seen, &p.reads))
                .map(|p| p.evaluation);
            decide::decide_on(&sandbox, &deciding, &asked, tx.state(), proposed)
        })?;
        Ok((program, decision))
    }
}

/// Refuses a change to `card`'s holder while a venue's lease lets it read the holder as
/// the city last sent it: the venue may be deciding on it alone (see `crate::offline`).
fn held(program: &str, state: &crate::ledger::State, card: &str) -> Result<()> {
    if state.holder(card).is_none() {
        return Ok(());
    }
    let Some(lens) = crate::offline::Lens::city(state.tenures(), None) else {
        return Ok(());
    };
    match lens.holder_held(card) {
        Some(venue) => Err(Error::Held {
            program: program.to_string(),
            card: card.to_string(),
            why: format!("venue `{venue}` decides on its holder as it last knew it"),
            venues: lens.venues_on(card),
        }),
        None => Ok(()),
    }
}
