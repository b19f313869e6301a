//! A venue host deciding alone while it cannot reach its city (docs/offline.md), and
//! bringing what it decided back when it can.
//!
//! Online, a venue forwards every decision (see `routes/upstream.rs`), noting the card of
//! each request it sends: until its copy of the city's journal holds the outcome, that
//! card is *tainted* — the venue cannot tell a request the city never got from an answer
//! that was lost, so it decides nothing alone for that card meanwhile. When a forward
//! fails, the request that failed is answered 503 (its fate is unknown) and the venue
//! decides alone from then on: through its lease (`Host::decide_alone`) for what its
//! program lets it decide, `pending` for what it defers, `offline` for the rest — each
//! answer written to its outbox (beside its journal copy) before it is given. A retry of
//! a kept request is answered what it was.
//!
//! A thread of its own ([`Alone::run`]) brings everything back once the city answers:
//! it uploads the outbox (in the venue's order; the city verifies and appends each
//! request once), drops what the copy then holds, takes a new lease, and only then lets
//! decisions be forwarded again. While online it renews the lease now and then.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use cardrules::ledger::Change;
use cardrules::offline::{Offline, Uploaded};
use cardrules::{Decision, Error, Host, Request};

use crate::upstream::{LeaseBody, UploadBody, Upstream};

/// How often a venue online takes a fresh lease.
const RENEW_EVERY: Duration = Duration::from_secs(600);
/// How often the venue looks whether there is anything to bring back.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// Requests uploaded at a time: each upload is appended whole or not at all.
const CHUNK: usize = 500;
/// How long a venue whose lease the city recalled waits before it takes another: the
/// change that wanted it goes through meanwhile.
const AFTER_RECALL: Duration = Duration::from_secs(30);

/// One request a venue took alone, as its outbox keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct Entry {
    item: Uploaded,
    /// What it changed in the venue's own view (none for a kept request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    change: Option<Change>,
}

/// A request sent to the city whose outcome the venue's copy does not hold yet.
#[derive(Debug, Clone)]
struct Sent {
    card: String,
    id: Option<String>,
    /// The city's journal position once it answered, if it did.
    position: Option<u64>,
}

#[derive(Default)]
struct Program {
    outbox: Vec<(u64, Entry)>,
    sent: Vec<Sent>,
    /// Where the city's journal stood once the venue last took its lease: until its copy
    /// gets there, it holds none it can use.
    lease_at: Option<u64>,
    leased: Option<Instant>,
    /// Whether the city refused the last upload (logged, reported).
    refused: Option<String>,
    /// When the venue last handed back a lease its city recalled.
    recalled: Option<Instant>,
    /// The last entry of the outbox the city took.
    uploaded: u64,
}

/// A venue host's offline state, shared by its routes and its thread.
pub struct Alone {
    host: Arc<Host>,
    city: Arc<dyn Upstream>,
    /// The venue's name, as its city knows it (learnt from the first lease).
    venue: Mutex<Option<String>>,
    /// Whether the venue decides alone (a forward failed, or something is to upload).
    offline: Mutex<bool>,
    programs: Mutex<BTreeMap<String, Program>>,
    counter: std::sync::atomic::AtomicU64,
}

impl Alone {
    /// The venue's offline state, its outbox read back from its ledger.
    pub fn new(host: Arc<Host>, city: Arc<dyn Upstream>) -> Alone {
        let mut programs = BTreeMap::new();
        let journal = host.ledger().journal().clone();
        for program in host.programs() {
            let mut state = Program::default();
            match journal.outbox(program.id()) {
                Ok(kept) => {
                    for (seq, text) in kept {
                        match serde_json::from_str::<Entry>(&text) {
                            Ok(entry) => state.outbox.push((seq, entry)),
                            Err(e) => tracing::error!(
                                "entry {seq} of the outbox of `{}` cannot be read: {e}",
                                program.id()
                            ),
                        }
                    }
                }
                Err(e) => tracing::error!("cannot read the outbox of `{}`: {e}", program.id()),
            }
            programs.insert(program.id().to_string(), state);
        }
        let offline = programs.values().any(|p| !p.outbox.is_empty());
        Alone {
            host,
            city,
            venue: Mutex::new(None),
            offline: Mutex::new(offline),
            programs: Mutex::new(programs),
            counter: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Whether decisions are decided here rather than forwarded.
    pub fn offline(&self) -> bool {
        *self.offline.lock()
    }

    /// Requests held for the city, over all programs.
    pub fn backlog(&self) -> u64 {
        self.programs
            .lock()
            .values()
            .map(|p| p.outbox.len() as u64)
            .sum()
    }

    /// Notes a request about to be forwarded: its card is tainted until the copy holds it.
    pub(crate) fn sending(&self, request: &Request) {
        let mut programs = self.programs.lock();
        let program = programs.entry(request.program.clone()).or_default();
        program.sent.push(Sent {
            card: request.card.clone(),
            id: request.id.clone(),
            position: None,
        });
    }

    /// The city answered the forwarded request (at `position` of its journal, if said).
    pub(crate) fn answered(&self, request: &Request, position: Option<u64>) {
        let mut programs = self.programs.lock();
        if let Some(program) = programs.get_mut(&request.program)
            && let Some(sent) = program
                .sent
                .iter_mut()
                .rev()
                .find(|s| s.card == request.card && s.id == request.id && s.position.is_none())
        {
            sent.position = Some(position.unwrap_or(u64::MAX));
        }
    }

    /// A forward failed: decide alone from now on.
    pub(crate) fn lost(&self, why: &str) {
        let mut offline = self.offline.lock();
        if !*offline {
            tracing::warn!(
                "the city cannot be reached ({why}): deciding alone under the venue's leases"
            );
        }
        *offline = true;
    }

    /// Decides `request` alone, keeps it in the outbox, and answers it; none if the venue
    /// is back online meanwhile (forward it).
    pub(crate) fn decide(&self, request: &Request) -> cardrules::Result<Option<Decision>> {
        let program = self.host.program(&request.program)?;
        let mut programs = self.programs.lock();
        // Going back online happens under the same lock: nothing decided alone is left
        // behind a forwarded decision.
        if !self.offline() {
            return Ok(None);
        }
        let state = programs.entry(request.program.clone()).or_default();
        if let Some(id) = &request.id {
            if let Some((_, entry)) = state
                .outbox
                .iter()
                .find(|(_, e)| e.item.request.id.as_deref() == Some(id))
            {
                if entry.item.request.card != request.card
                    || entry.item.request.action != request.action
                {
                    return Err(Error::IdReused(id.clone()));
                }
                let mut decision =
                    entry.item.decision.clone().unwrap_or_else(|| {
                        cardrules::offline::pending(&program, &entry.item.request)
                    });
                decision.replayed = true;
                return Ok(Some(decision));
            }
            if state.sent.iter().any(|s| s.id.as_deref() == Some(id)) {
                return Err(Error::unavailable(
                    format!("request `{id}`"),
                    "it went to the city before the link dropped, and its outcome is not known here: try it again once the venue reaches its city",
                ));
            }
        }
        let venue = self.venue.lock().clone().unwrap_or_default();
        let mut request = request.clone();
        request.venue = Some(venue.clone());
        request.dry_run = false;
        if request.id.is_none() {
            let n = self
                .counter
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let now = jiff::Timestamp::now().as_millisecond();
            request.id = Some(format!("offline-{venue}-{now}-{n}"));
        }
        let (decision, change) = match cardrules::offline::offline_rule(&program, &request.action) {
            Offline::Defer => (cardrules::offline::pending(&program, &request), None),
            _ => {
                let copied = self.host.ledger().read(program.id(), |s| s.seq())?;
                let mut overlay: Vec<Change> = state
                    .outbox
                    .iter()
                    .filter_map(|(_, e)| e.change.clone())
                    .collect();
                if venue.is_empty() || state.lease_at.is_none_or(|at| copied < at) {
                    // A lease it took (or gave back) is not in its copy yet: it holds none.
                    overlay.push(Change::Returned {
                        venue: venue.clone(),
                        at: 0,
                        by: venue.clone(),
                    });
                }
                let tainted: BTreeSet<String> = state.sent.iter().map(|s| s.card.clone()).collect();
                // It stops `max-skew` before its lease runs out on its own clock.
                let now =
                    jiff::Timestamp::now().as_second() + program.files.manifest.max_skew.as_secs();
                let (decision, change) = self.host.decide_alone(
                    &venue,
                    &request,
                    now,
                    &Arc::new(overlay),
                    &Arc::new(tainted),
                )?;
                (decision, Some(change))
            }
        };
        let entry = Entry {
            item: Uploaded {
                request,
                decision: (!decision.pending).then(|| decision.clone()),
            },
            change,
        };
        let seq = state.outbox.last().map_or(1, |(seq, _)| seq + 1);
        let text = serde_json::to_string(&entry)
            .map_err(|e| Error::host("cannot encode an outbox entry", e))?;
        // Durable before it is answered.
        self.host
            .ledger()
            .journal()
            .keep_outbox(program.id(), seq, &text)?;
        state.outbox.push((seq, entry));
        Ok(Some(decision))
    }

    /// Brings back what can be brought back now; runs until the process ends.
    pub fn run(self: Arc<Self>) {
        loop {
            std::thread::sleep(LOOK_EVERY);
            let names: Vec<String> = self
                .host
                .programs()
                .iter()
                .map(|p| p.id().to_string())
                .collect();
            let mut all_back = true;
            for program in &names {
                match self.bring_back(program) {
                    Ok(back) => all_back &= back,
                    Err(why) => {
                        all_back = false;
                        tracing::debug!("cannot bring `{program}` back to the city yet: {why}");
                    }
                }
            }
            // Back online once the city took everything decided alone: under the lock
            // that deciding alone takes, so nothing is decided alone after the check.
            let mut programs = self.programs.lock();
            let mut offline = self.offline.lock();
            let taken = programs
                .values()
                .all(|p| p.outbox.last().is_none_or(|(seq, _)| *seq <= p.uploaded));
            if *offline && all_back && taken {
                tracing::info!(
                    "the city took everything decided alone: decisions are forwarded to it again"
                );
                *offline = false;
                // A fresh lease at the next look: the old one's escrow was spent alone.
                for program in programs.values_mut() {
                    program.leased = None;
                }
            }
        }
    }

    /// For one program: drops what the copy holds, uploads the rest, takes a lease when
    /// due. Whether nothing is left to bring back.
    fn bring_back(&self, program: &str) -> Result<bool, String> {
        let journal = self.host.ledger().journal().clone();
        let copied = self
            .host
            .ledger()
            .read(program, |s| s.seq())
            .map_err(|e| e.to_string())?;
        // What the copy holds is the city's now.
        let (dropped, upload, due) = {
            let mut programs = self.programs.lock();
            let state = programs.entry(program.to_string()).or_default();
            let mut dropped = Vec::new();
            for (seq, entry) in &state.outbox {
                let id = entry.item.request.id.as_deref().unwrap_or("");
                if journal
                    .recorded(program, id)
                    .map_err(|e| e.to_string())?
                    .is_some()
                {
                    dropped.push(*seq);
                }
            }
            state.outbox.retain(|(seq, _)| !dropped.contains(seq));
            state.sent.retain(|sent| {
                let held = sent
                    .id
                    .as_deref()
                    .is_some_and(|id| journal.recorded(program, id).ok().flatten().is_some());
                !held && sent.position.is_none_or(|at| at > copied)
            });
            let upload: Vec<(u64, Uploaded)> = state
                .outbox
                .iter()
                .filter(|(seq, _)| *seq > state.uploaded)
                .take(CHUNK)
                .map(|(seq, e)| (*seq, e.item.clone()))
                .collect();
            let due = state.leased.is_none_or(|at| at.elapsed() >= RENEW_EVERY);
            (dropped, upload, due)
        };
        if !dropped.is_empty() {
            journal
                .drop_outbox(program, &dropped)
                .map_err(|e| e.to_string())?;
        }
        if !upload.is_empty() {
            let count = upload.len();
            let last = upload.last().map_or(0, |(seq, _)| *seq);
            let items = upload.into_iter().map(|(_, item)| item).collect();
            let body = serde_json::to_string(&UploadBody { items }).map_err(|e| e.to_string())?;
            let answer = self
                .city
                .send(
                    "POST",
                    &format!("/v1/venue/programs/{program}/upload"),
                    Some(&body),
                )
                .map_err(|e| e.0)?;
            let mut programs = self.programs.lock();
            let state = programs.entry(program.to_string()).or_default();
            if answer.status != 200 {
                let why = String::from_utf8_lossy(&answer.body).into_owned();
                if state.refused.as_deref() != Some(why.as_str()) {
                    tracing::error!(
                        "the city refused an upload of {count} requests of `{program}` the venue decided alone: {why}; they stay in its outbox"
                    );
                }
                state.refused = Some(why.clone());
                return Err(format!("the city refused the upload: {why}"));
            }
            state.refused = None;
            // Taken: the copy will hold them; they are dropped once it does.
            state.uploaded = state.uploaded.max(last);
            return Ok(state
                .outbox
                .last()
                .is_none_or(|(seq, _)| *seq <= state.uploaded));
        }
        // A lease the city recalled is handed back at once (once what was decided under
        // it is uploaded, which it is by now), and none taken for a while.
        let name = self.venue.lock().clone();
        let recalled = match &name {
            Some(venue) => self
                .host
                .tenure(program, venue)
                .map_err(|e| e.to_string())?
                .is_some_and(|t| t.lease.is_some() && t.recalled),
            None => false,
        };
        if recalled {
            let answer = self
                .city
                .send(
                    "DELETE",
                    &format!("/v1/venue/programs/{program}/lease"),
                    None,
                )
                .map_err(|e| e.0)?;
            if answer.status != 200 {
                return Err(format!(
                    "the city answered {} to a hand-back",
                    answer.status
                ));
            }
            let lease: LeaseBody =
                serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
            tracing::info!("handed the lease of `{program}` back: the city recalled it");
            let mut programs = self.programs.lock();
            let state = programs.entry(program.to_string()).or_default();
            state.lease_at = Some(lease.position);
            state.recalled = Some(Instant::now());
            return Ok(true);
        }
        let pausing = {
            let programs = self.programs.lock();
            programs
                .get(program)
                .and_then(|p| p.recalled)
                .is_some_and(|at| at.elapsed() < AFTER_RECALL)
        };
        if (self.offline() || due) && !pausing {
            let answer = self
                .city
                .send(
                    "POST",
                    &format!("/v1/venue/programs/{program}/lease"),
                    Some("{}"),
                )
                .map_err(|e| e.0)?;
            if answer.status != 200 {
                return Err(format!(
                    "the city answered {} to a lease: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                ));
            }
            let lease: LeaseBody =
                serde_json::from_slice(&answer.body).map_err(|e| e.to_string())?;
            *self.venue.lock() = Some(lease.venue.clone());
            let mut programs = self.programs.lock();
            let state = programs.entry(program.to_string()).or_default();
            state.lease_at = Some(lease.position);
            state.leased = Some(Instant::now());
            // A request sent before this lease whose answer was lost is in the city's
            // journal before the lease, if at all: its card is settled once the copy
            // gets there.
            for sent in &mut state.sent {
                if sent.position.is_none() {
                    sent.position = Some(lease.position);
                }
            }
        }
        Ok(true)
    }
}
