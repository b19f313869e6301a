//! Who may call the API (`cardrules serve --auth FILE`, docs/contract.md "Access control"):
//! the auth file of token hashes, the rights of each role, and new tokens for
//! `cardrules token`.
//!
//! The file holds each token's SHA-256, never the token: a presented bearer token is hashed
//! and compared with every entry in constant time. A token's `name` is what logs show.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What a token may do. The roles are not ordered: a guardian may change a holder's
/// attributes, which a terminal may not, but only for its own cards (see [`Caller::may_call`]
/// for the table of routes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A point of sale: decisions for its programs (and only its `actions`, if listed), and
    /// reading cards.
    Terminal,
    /// A terminal that may also register and replace holders, without starting balances.
    Registrar,
    /// Every route, including listing programs and creating cards with starting balances.
    Admin,
    /// A parent's portal: for its `cards` only, reading them, the decisions its `actions`
    /// allow, and changing the attributes the program's schema marks `guardian = true`.
    Guardian,
    /// A venue host (`serve --upstream`): pulls its programs and the journal they need,
    /// forwards its tills' decisions for offers at its `locations`, reads cards as a till
    /// does, and reports its status. Never registers holders or changes them.
    Venue,
}

impl Role {
    /// The role's name, as the auth file and `--role` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Terminal => "terminal",
            Role::Registrar => "registrar",
            Role::Admin => "admin",
            Role::Guardian => "guardian",
            Role::Venue => "venue",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = AuthError;

    fn from_str(s: &str) -> Result<Role, AuthError> {
        match s {
            "terminal" => Ok(Role::Terminal),
            "registrar" => Ok(Role::Registrar),
            "admin" => Ok(Role::Admin),
            "guardian" => Ok(Role::Guardian),
            "venue" => Ok(Role::Venue),
            _ => Err(AuthError(format!(
                "unknown role `{s}`: expected `terminal`, `registrar`, `admin`, `guardian` or `venue`"
            ))),
        }
    }
}

/// An auth file that cannot be used, or a token entry that cannot be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthError(String);

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AuthError {}

/// A `[[tokens]]` entry of the auth file, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Shown in logs; never the secret.
    pub name: String,
    /// The hex SHA-256 of the token.
    pub sha256: String,
    pub role: Role,
    /// Program ids, or `["*"]` for every program; exactly one program for role `guardian`.
    pub programs: Vec<String>,
    /// The actions a terminal may ask for (every action when left out), or a guardian
    /// (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<String>>,
    /// The only cards a guardian may act for (required for role `guardian`, refused for
    /// every other role).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cards: Option<Vec<String>>,
    /// The catalogue locations a venue is (required for role `venue`, refused for every
    /// other role): it decides only for offers at these, or for requests naming no offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<Vec<String>>,
    /// When the token stops being accepted (RFC 3339); none: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<String>,
}

/// The auth file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    tokens: Vec<TokenEntry>,
}

/// The programs a token may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Programs {
    All,
    Only(BTreeSet<String>),
}

/// A known caller: what a presented token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    name: String,
    role: Role,
    programs: Programs,
    actions: Option<BTreeSet<String>>,
    /// A guardian's cards; `None`: every card of its programs.
    cards: Option<BTreeSet<String>>,
    /// A venue's catalogue locations; `None` for every other role.
    locations: Option<BTreeSet<String>>,
    /// When the token expires (seconds since the epoch); `None`: never.
    expires: Option<i64>,
}

/// The routes whose use depends on the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /v1/decisions`
    Decide,
    /// `GET /v1/programs/{program}/cards/{card}`
    Card,
    /// `PUT /v1/programs/{program}/holders/{card}`
    Register,
    /// `PATCH /v1/programs/{program}/holders/{card}`
    UpdateHolder,
    /// `GET /v1/programs/{program}/cards/{card}/allowances`
    Allowances,
    /// `GET /v1/programs/{program}/cards/{card}/history`
    History,
    /// `GET /v1/programs`
    Programs,
    /// `GET /metrics`
    Metrics,
    /// `PUT /v1/programs/{program}/policy`
    Publish,
    /// `GET /v1/venue/programs` and what follows from it: a program's files
    /// (`…/programs/{program}/bundle`), its journal (`…/programs/{program}/journal`) and
    /// a compacted journal's base snapshot (`…/programs/{program}/base`)
    Rollout,
    /// `PUT /v1/venue/status`
    VenueStatus,
    /// `GET /v1/venues`
    Venues,
    /// `GET /v1/caller`: who the token is and what it may do
    Caller,
    /// `GET /v1/programs/{program}`: a program's catalogue, schema and languages
    Program,
    /// `GET /v1/programs/{program}/coverage`: its own suites, run now
    Coverage,
    /// `GET /v1/programs/{program}/cards/{card}/history/{seq}/why`
    Why,
    /// `GET /v1/programs/{program}/cards/{card}/access-log`
    AccessLog,
    /// `GET /v1/programs/{program}/cards/{card}/export`
    Export,
    /// `DELETE /v1/programs/{program}/holders/{card}`: erase a holder's personal data
    Erase,
    /// `PUT /v1/programs/{program}/holders/{card}/restriction`
    Restrict,
    /// `POST`/`DELETE /v1/venue/programs/{program}/lease` and `POST …/upload`: a venue
    /// takes or hands back its lease, and uploads what it decided alone
    Lease,
}

impl Route {
    /// The route as the contract writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Decide => "POST /v1/decisions",
            Route::Card => "GET /v1/programs/{program}/cards/{card}",
            Route::Register => "PUT /v1/programs/{program}/holders/{card}",
            Route::UpdateHolder => "PATCH /v1/programs/{program}/holders/{card}",
            Route::Allowances => "GET /v1/programs/{program}/cards/{card}/allowances",
            Route::History => "GET /v1/programs/{program}/cards/{card}/history",
            Route::Programs => "GET /v1/programs",
            Route::Metrics => "GET /metrics",
            Route::Publish => "PUT /v1/programs/{program}/policy",
            Route::Rollout => "GET /v1/venue/programs",
            Route::VenueStatus => "PUT /v1/venue/status",
            Route::Venues => "GET /v1/venues",
            Route::Caller => "GET /v1/caller",
            Route::Program => "GET /v1/programs/{program}",
            Route::Coverage => "GET /v1/programs/{program}/coverage",
            Route::Why => "GET /v1/programs/{program}/cards/{card}/history/{seq}/why",
            Route::AccessLog => "GET /v1/programs/{program}/cards/{card}/access-log",
            Route::Export => "GET /v1/programs/{program}/cards/{card}/export",
            Route::Erase => "DELETE /v1/programs/{program}/holders/{card}",
            Route::Restrict => "PUT /v1/programs/{program}/holders/{card}/restriction",
            Route::Lease => "POST /v1/venue/programs/{program}/lease",
        }
    }

    /// Every route whose use depends on the role.
    pub const ALL: [Route; 21] = [
        Route::Decide,
        Route::Card,
        Route::Register,
        Route::UpdateHolder,
        Route::Allowances,
        Route::History,
        Route::Programs,
        Route::Metrics,
        Route::Publish,
        Route::Rollout,
        Route::VenueStatus,
        Route::Venues,
        Route::Caller,
        Route::Program,
        Route::Coverage,
        Route::Why,
        Route::AccessLog,
        Route::Export,
        Route::Erase,
        Route::Restrict,
        Route::Lease,
    ];
}

impl Role {
    /// Every role, as the table of rights lists them.
    pub const ALL: [Role; 5] = [
        Role::Terminal,
        Role::Registrar,
        Role::Admin,
        Role::Guardian,
        Role::Venue,
    ];

    /// The routes the role may call: the whole table of rights. A guardian's routes are
    /// further bound to its cards ([`Caller::may_act_for_card`]), every role's to its
    /// programs ([`Caller::may_act_for`]).
    fn routes(self) -> &'static [Route] {
        use Route::*;
        match self {
            Role::Terminal => &[Decide, Card, Allowances, History, Why, Caller, Program],
            Role::Registrar => &[
                Decide,
                Card,
                Allowances,
                History,
                Why,
                Register,
                UpdateHolder,
                Publish,
                Caller,
                Program,
                Export,
            ],
            Role::Admin => &Route::ALL,
            Role::Guardian => &[
                Decide,
                Card,
                Allowances,
                History,
                Why,
                UpdateHolder,
                Caller,
                Program,
                Export,
            ],
            Role::Venue => &[
                Decide,
                Card,
                Allowances,
                History,
                Why,
                Rollout,
                VenueStatus,
                Lease,
            ],
        }
    }
}

/// Who the caller is and what it may do (`GET /v1/caller`): what a client shows its user
/// before asking for anything. Without `--auth`, every caller may do everything: `auth`
/// is false and the role is `admin`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CallerView {
    /// Whether the server checks tokens (`serve --auth`).
    pub auth: bool,
    /// The token's name (as logs show it); null without `--auth`.
    pub name: Option<String>,
    #[schema(value_type = String)]
    pub role: Role,
    /// The programs it acts for; `["*"]`: every program.
    pub programs: Vec<String>,
    /// The actions it may ask for; null: every action.
    pub actions: Option<Vec<String>>,
    /// A guardian's cards; null: every card of its programs.
    pub cards: Option<Vec<String>>,
    /// The programs served now that it may act for, by id.
    pub served: Vec<String>,
}

impl CallerView {
    /// What a caller may do on a server without `--auth`: everything.
    pub fn open() -> CallerView {
        CallerView {
            auth: false,
            name: None,
            role: Role::Admin,
            programs: vec!["*".to_string()],
            actions: None,
            cards: None,
            served: Vec::new(),
        }
    }
}

/// Why a known caller was refused (a 403): names the route, program, action or balance,
/// never the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal(String);

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Caller {
    /// The token's name, for logs.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether the caller's role may call `route` at all (the table is [`Role::routes`]).
    pub fn may_call(&self, route: Route) -> Result<(), Refusal> {
        if self.role.routes().contains(&route) {
            return Ok(());
        }
        let roles: Vec<String> = Role::ALL
            .into_iter()
            .filter(|role| role.routes().contains(&route))
            .map(|role| format!("`{role}`"))
            .collect();
        let roles = match roles.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => "a role no token has".to_string(),
        };
        Err(Refusal(format!(
            "role `{}` may not call `{}`: that needs role {roles}",
            self.role,
            route.as_str()
        )))
    }

    /// What the caller is, as `GET /v1/caller` shows it: never the token or its hash.
    pub fn view(&self) -> CallerView {
        CallerView {
            auth: true,
            name: Some(self.name.clone()),
            role: self.role,
            programs: match &self.programs {
                Programs::All => vec!["*".to_string()],
                Programs::Only(programs) => programs.iter().cloned().collect(),
            },
            actions: self.actions.as_ref().map(|a| a.iter().cloned().collect()),
            cards: self.cards.as_ref().map(|c| c.iter().cloned().collect()),
            served: Vec::new(),
        }
    }

    /// Whether the caller is a guardian: one whose changes to a holder are bound to the
    /// attributes the program's schema marks `guardian = true`.
    pub fn is_guardian(&self) -> bool {
        self.role == Role::Guardian
    }

    /// The venue the caller is, if it is a venue host's token: its name.
    pub fn venue(&self) -> Option<&str> {
        (self.role == Role::Venue).then_some(self.name.as_str())
    }

    /// A venue's catalogue locations (none for every other role).
    pub fn locations(&self) -> Vec<String> {
        self.locations
            .as_ref()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Whether the token has expired at `now` (seconds since the epoch).
    pub fn expired_at(&self, now: i64) -> Option<i64> {
        self.expires.filter(|expires| now >= *expires)
    }

    /// The programs the caller may act for, of `served`: all of them, or those it names.
    pub fn programs_of<'a>(&self, served: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        served
            .into_iter()
            .filter(|program| self.may_act_for(program).is_ok())
            .map(str::to_string)
            .collect()
    }

    /// Whether a venue may decide for an offer at `location` (any caller but a venue may).
    pub fn may_decide_at(&self, offer: &str, location: &str) -> Result<(), Refusal> {
        match &self.locations {
            Some(locations) if !locations.contains(location) => Err(Refusal(format!(
                "venue `{}` may not decide for offer `{offer}`: it is at location `{location}`, not one of the venue's ({})",
                self.name,
                locations
                    .iter()
                    .map(|l| format!("`{l}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the caller may act for `program`.
    pub fn may_act_for(&self, program: &str) -> Result<(), Refusal> {
        match &self.programs {
            Programs::All => Ok(()),
            Programs::Only(programs) if programs.contains(program) => Ok(()),
            Programs::Only(_) => Err(Refusal(format!(
                "this token may not act for program `{program}`"
            ))),
        }
    }

    /// Whether the caller may act for `card` of `program`: its programs first, then, for a
    /// guardian, its cards.
    pub fn may_act_for_card(&self, program: &str, card: &str) -> Result<(), Refusal> {
        self.may_act_for(program)?;
        match &self.cards {
            Some(cards) if !cards.contains(card) => Err(Refusal(format!(
                "this token may not act for card `{card}`: a guardian acts for its own cards only"
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the caller may ask `program` for a decision on `action` by `card` (the
    /// acting card; a transfer's `to-card` is not the caller's to choose for).
    pub fn may_decide(&self, program: &str, card: &str, action: &str) -> Result<(), Refusal> {
        self.may_call(Route::Decide)?;
        self.may_act_for_card(program, card)?;
        match &self.actions {
            Some(actions) if !actions.contains(action) => Err(Refusal(format!(
                "this token may not ask for action `{action}` (it may ask for {})",
                actions
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// Whether the caller may give a card these starting balances (asset → units): only an
    /// admin may give non-zero ones.
    pub fn may_grant(&self, balances: &BTreeMap<String, i64>) -> Result<(), Refusal> {
        let granted: Vec<String> = balances
            .iter()
            .filter(|(_, units)| **units != 0)
            .map(|(asset, _)| format!("`{asset}`"))
            .collect();
        if granted.is_empty() || self.role == Role::Admin {
            Ok(())
        } else {
            Err(Refusal(format!(
                "role `{}` may not give a card starting balances ({}): that needs role `admin`",
                self.role,
                granted.join(", ")
            )))
        }
    }
}

/// The known tokens, by the SHA-256 of each.
#[derive(Debug)]
pub struct Tokens {
    entries: Vec<([u8; 32], Arc<Caller>)>,
}

impl Tokens {
    /// Reads and checks the auth file at `path`.
    pub fn load(path: &Path) -> Result<Tokens, AuthError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| AuthError(format!("cannot read auth file `{}`: {e}", path.display())))?;
        Tokens::parse(&text, path)
    }

    /// Parses and checks an auth file's text; errors name `source` and the entry.
    pub fn parse(text: &str, source: &Path) -> Result<Tokens, AuthError> {
        // The one TOML parse path: errors name the file and the line.
        let file: AuthFile =
            cardrules::inputs::toml(text, source).map_err(|e| AuthError(e.to_string()))?;
        if file.tokens.is_empty() {
            return Err(AuthError(format!(
                "auth file `{}` lists no `[[tokens]]`: nobody could call the API",
                source.display()
            )));
        }
        let mut entries: Vec<([u8; 32], Arc<Caller>)> = Vec::with_capacity(file.tokens.len());
        for (index, entry) in file.tokens.iter().enumerate() {
            let number = index + 1;
            let what = if entry.name.is_empty() {
                format!("auth file `{}`, entry {number}", source.display())
            } else {
                format!(
                    "auth file `{}`, token `{}` (entry {number})",
                    source.display(),
                    entry.name
                )
            };
            let (digest, caller) =
                check_entry(entry).map_err(|problem| AuthError(format!("{what}: {problem}")))?;
            for (other, (other_digest, other_caller)) in entries.iter().enumerate() {
                let other = other + 1;
                if other_caller.name == caller.name {
                    return Err(AuthError(format!(
                        "{what}: the name is used by entry {other} too; names must be unique"
                    )));
                }
                if *other_digest == digest {
                    return Err(AuthError(format!(
                        "{what}: the same sha256 as token `{}` (entry {other}); every token must be different",
                        other_caller.name
                    )));
                }
            }
            entries.push((digest, Arc::new(caller)));
        }
        Ok(Tokens { entries })
    }

    /// How many tokens are known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is known (never true of a parsed file).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller a presented token stands for: its SHA-256 is compared with every entry's
    /// in constant time, without stopping at a match.
    pub fn identify(&self, token: &str) -> Option<Arc<Caller>> {
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for (digest, caller) in &self.entries {
            if bool::from(digest.ct_eq(&presented)) {
                found = Some(caller.clone());
            }
        }
        found
    }
}

/// Checks one entry: its name, hash, programs and actions.
fn check_entry(entry: &TokenEntry) -> Result<([u8; 32], Caller), String> {
    if entry.name.trim().is_empty() {
        return Err("`name` is empty".into());
    }
    if entry.name.chars().any(char::is_control) || entry.name.chars().count() > 100 {
        return Err("`name` must be at most 100 characters, none a control character".into());
    }
    let digest = parse_sha256(&entry.sha256)?;
    if entry.programs.is_empty() {
        return Err("`programs` is empty: list program ids, or `[\"*\"]` for every program".into());
    }
    let programs = if entry.programs.iter().any(|p| p == "*") {
        if entry.programs.len() > 1 {
            return Err(
                "`programs` lists `\"*\"` beside other programs: give one or the other".into(),
            );
        }
        Programs::All
    } else {
        Programs::Only(unique(&entry.programs, "programs", "program")?)
    };
    let actions = match &entry.actions {
        None if entry.role == Role::Guardian => {
            return Err(
                "role `guardian` must list its `actions`: with every action a guardian could \
                 `purchase` with its child's card; list what the portal does, e.g. \
                 `[\"top-up\", \"enable-auto-top-up\", \"block-card\"]`"
                    .into(),
            );
        }
        None => None,
        Some(_) if !matches!(entry.role, Role::Terminal | Role::Guardian) => {
            return Err(format!(
                "`actions` is for roles `terminal` and `guardian` only; role `{}` may ask for every action",
                entry.role
            ));
        }
        Some(actions) if actions.is_empty() => {
            return Err(
                "`actions` is empty: list the actions allowed, or leave it out to allow every action"
                    .into(),
            );
        }
        Some(actions) => Some(unique(actions, "actions", "action")?),
    };
    let cards = match &entry.cards {
        None if entry.role == Role::Guardian => {
            return Err(
                "role `guardian` needs `cards`: the only cards it may act for, e.g. `[\"BK-2002\"]`"
                    .into(),
            );
        }
        None => None,
        Some(_) if entry.role != Role::Guardian => {
            return Err(format!(
                "`cards` is for role `guardian` only; role `{}` acts for every card of its programs",
                entry.role
            ));
        }
        Some(cards) if cards.is_empty() => {
            return Err("`cards` is empty: list the cards the guardian may act for".into());
        }
        Some(cards) => Some(unique(cards, "cards", "card")?),
    };
    let locations = match &entry.locations {
        None if entry.role == Role::Venue => {
            return Err(
                "role `venue` needs `locations`: the catalogue locations the venue is, e.g. `[\"bergen-kino\"]`"
                    .into(),
            );
        }
        None => None,
        Some(_) if entry.role != Role::Venue => {
            return Err(format!(
                "`locations` is for role `venue` only; role `{}` is not a venue",
                entry.role
            ));
        }
        Some(locations) if locations.is_empty() => {
            return Err("`locations` is empty: list the catalogue locations the venue is".into());
        }
        Some(locations) => Some(unique(locations, "locations", "location")?),
    };
    if entry.role == Role::Venue && programs == Programs::All {
        return Err(
            "role `venue` must list its `programs`: a venue holds the journal of each program it serves, so `\"*\"` would hand it every program's cards"
                .into(),
        );
    }
    let expires = match &entry.expires {
        None => None,
        Some(text) => Some(
            cardrules::parse_instant(text)
                .map_err(|e| format!("`expires` `{text}`: {e}"))?
                .as_second(),
        ),
    };
    // Card ids are a program's own: `BK-2002` of one program is another child than
    // `BK-2002` of the next, so a guardian's cards mean something in one program only.
    if entry.role == Role::Guardian && !matches!(&programs, Programs::Only(p) if p.len() == 1) {
        return Err(format!(
            "role `guardian` must name one program, not {}: its `cards` are ids within that              program, and the same id in another program is another holder's card",
            entry
                .programs
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok((
        digest,
        Caller {
            name: entry.name.clone(),
            role: entry.role,
            programs,
            actions,
            cards,
            locations,
            expires,
        },
    ))
}

/// The items of a list, refusing empty and repeated ones.
fn unique(items: &[String], key: &str, what: &str) -> Result<BTreeSet<String>, String> {
    let mut set = BTreeSet::new();
    for item in items {
        if item.is_empty() {
            return Err(format!("`{key}` has an empty {what}"));
        }
        if !set.insert(item.clone()) {
            return Err(format!("`{key}` lists {what} `{item}` twice"));
        }
    }
    Ok(set)
}

/// A hex SHA-256: exactly 64 hex digits (either case).
fn parse_sha256(hex: &str) -> Result<[u8; 32], String> {
    let malformed = || {
        format!(
            "`sha256` must be 64 hex digits (the SHA-256 of the token), not {} characters{}",
            hex.chars().count(),
            if hex.chars().all(|c| c.is_ascii_hexdigit()) {
                ""
            } else {
                " with non-hex ones"
            }
        )
    };
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return Err(malformed());
    }
    let mut digest = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let high = hex_value(pair[0]).ok_or_else(malformed)?;
        let low = hex_value(pair[1]).ok_or_else(malformed)?;
        digest[i] = (high << 4) | low;
    }
    Ok(digest)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The lowercase hex SHA-256 of a token, as the auth file stores it.
pub fn sha256_hex(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new token and the auth file entry that admits it.
#[derive(Debug)]
pub struct NewToken {
    /// The secret: 32 random bytes, base64url without padding. Shown once, stored nowhere.
    pub token: String,
    /// The `[[tokens]]` entry to append to the auth file (TOML, ending in a newline).
    pub entry: String,
}

/// Makes a new random token for a caller named `name`, checked as the auth file would be.
/// `actions` and `cards` left empty are left out of the entry.
pub fn new_token(
    name: &str,
    role: Role,
    programs: &[String],
    actions: &[String],
    cards: &[String],
    locations: &[String],
) -> Result<NewToken, AuthError> {
    use base64::Engine;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret)
        .map_err(|e| AuthError(format!("cannot get random bytes for a token: {e}")))?;
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
    let entry = TokenEntry {
        name: name.to_string(),
        sha256: sha256_hex(&token),
        role,
        programs: programs.to_vec(),
        actions: (!actions.is_empty()).then(|| actions.to_vec()),
        cards: (!cards.is_empty()).then(|| cards.to_vec()),
        locations: (!locations.is_empty()).then(|| locations.to_vec()),
        expires: None,
    };
    check_entry(&entry).map_err(|problem| {
        AuthError(if name.is_empty() {
            format!("the token's {problem}")
        } else {
            format!("token `{name}`: {problem}")
        })
    })?;
    let entry = toml::to_string(&AuthFile {
        tokens: vec![entry],
    })
    .map_err(|e| AuthError(format!("cannot write the entry for token `{name}`: {e}")))?;
    Ok(NewToken { token, entry })
}

/// Whether `listen` (a `--listen` address) is a loopback address: an IP address in
/// 127.0.0.0/8 or `::1` (IPv4-mapped too), or `localhost`. Host names are not resolved;
/// any other is not loopback.
pub fn is_loopback_listen(listen: &str) -> bool {
    if let Ok(address) = listen.parse::<std::net::SocketAddr>() {
        return address.ip().to_canonical().is_loopback();
    }
    let host = listen.rsplit_once(':').map_or(listen, |(host, _)| host);
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return ip.to_canonical().is_loopback();
    }
    host.eq_ignore_ascii_case("localhost")
}

#[cfg(test)]
mod tests;
