//! A program's files: the manifest (`policy.toml`), the catalogue (`catalogue.toml`) and
//! the demo holders (`holders.toml`), read and checked before anything runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::files::{
    MAX_COMPONENT_BYTES, MAX_TEXT_BYTES, collect_toml, parse_toml, read_file, utf8,
};
use super::schema::Schema;
use crate::error::{Error, Result};
use crate::model::{AttributeValue, Holder, Offer};
use crate::policy::{CEILING, Limits};

/// `policy.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Manifest {
    /// The program id; equals the directory's name.
    pub program: String,
    pub name: String,
    /// IANA time zone, e.g. `Europe/Oslo`.
    pub time_zone: String,
    /// Message languages; the first is the default.
    pub languages: Vec<String>,
    /// The component's path, relative to the program directory.
    pub component: PathBuf,
    /// The assets the policy's effects may name (e.g. `DKK`); an effect naming any other
    /// asset is refused and the decision becomes a `policy-error`.
    #[serde(default)]
    pub assets: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// How late a till may report a request: how far before the host's clock its `at`
    /// may lie (`"72h"`: a till offline over a long weekend); see [`crate::timing`].
    #[serde(
        default = "default_max_lateness",
        deserialize_with = "crate::timing::duration"
    )]
    pub max_lateness: jiff::SignedDuration,
    /// How far ahead of the host's clock a request's `at` may lie (`"5m"`), and how far
    /// from now a guardian's may.
    #[serde(
        default = "default_max_skew",
        deserialize_with = "crate::timing::duration"
    )]
    pub max_skew: jiff::SignedDuration,
    /// Values the policy reads with `config`; each must be declared in `[schema.config]`.
    #[serde(default)]
    pub config: BTreeMap<String, AttributeValue>,
    /// The offer attributes, holder attributes and config keys the policy reads, typed.
    #[serde(default)]
    pub schema: Schema,
    /// reason code → language → message.
    #[serde(default)]
    pub messages: BTreeMap<String, BTreeMap<String, String>>,
    /// What a card's allowances ask the policy (`GET …/allowances`).
    #[serde(default)]
    pub allowances: AllowanceActions,
    /// What the program does when a holder's personal data is to be erased
    /// (`[personal-data]`).
    #[serde(default)]
    pub personal_data: PersonalData,
    /// How long what no rule reads any more is kept (`[retention]`); nothing is removed
    /// without it.
    #[serde(default)]
    pub retention: Retention,
    /// What a venue host may decide while it cannot reach its city (`[offline]`); left
    /// out, a venue decides nothing alone.
    #[serde(default)]
    pub offline: OfflineTerms,
}

/// `[offline]`: what a program lends a venue host so that it can decide alone while it
/// cannot reach its city, and what it keeps for the city (docs/offline.md).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct OfflineTerms {
    /// How long a lease lets a venue decide alone after the city granted it ("12h").
    #[serde(default, deserialize_with = "period")]
    pub lease: Option<jiff::SignedDuration>,
    /// Actions a venue decides alone, on what its lease covers (else denied `offline`).
    #[serde(default)]
    pub decide: Vec<String>,
    /// Actions a venue keeps while it is offline and the city decides when it is back.
    #[serde(default)]
    pub defer: Vec<String>,
    /// Actions the city itself keeps waiting (answered `pending`) while a venue that cannot
    /// be reached holds what they change, and decides once the venue hands its lease
    /// back — ordered after what the venue decided alone (Albertslund's `block-card`).
    #[serde(default)]
    pub wait: Vec<String>,
    /// Counters the venue holds alone while its lease runs; `{offer}` stands for each
    /// offer at the venue's locations, `{location}` for each of its locations.
    #[serde(default)]
    pub counters: Vec<String>,
    /// Whose cards the lease covers: `"all"`, or `"status:…"` — the cards whose holder
    /// has that status (`{location}` as above) when the lease is granted.
    #[serde(default)]
    pub cards: Option<String>,
    /// Part of each covered card's balance of one asset lent to the venue.
    #[serde(default)]
    pub escrow: Option<EscrowTerms>,
}

/// `[offline.escrow]`: up to `amount` units of `asset` of each covered card, or its whole
/// balance if less, spendable only by the venue until returned.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct EscrowTerms {
    pub asset: String,
    pub amount: i64,
}

/// `[retention]`: how long the ledger keeps a program's events, its ended holders and
/// its access log. Each is a period such as `"400d"` or `"72h"`; left out, kept for ever.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Retention {
    /// How long an event stays in the journal after its time (a decision's request time,
    /// a registration's): older ones are folded into the program's base snapshot and
    /// removed. At least `max-lateness` + `max-skew`, so that a retried request id is
    /// always found; and no shorter than the longest window a rule reads (the manifest's
    /// author knows it; the host cannot).
    #[serde(default, deserialize_with = "period")]
    pub decisions: Option<jiff::SignedDuration>,
    /// How long the holder of a stopped card keeps its personal data after the card's last
    /// event: then it is erased, by `retention` (unless money is left on it).
    #[serde(default, deserialize_with = "period")]
    pub holders: Option<jiff::SignedDuration>,
    /// How long an entry of the access log is kept.
    #[serde(default, deserialize_with = "period")]
    pub access_log: Option<jiff::SignedDuration>,
}

impl Retention {
    /// Whether anything is to be removed at all.
    pub fn any(&self) -> bool {
        self.decisions.is_some() || self.holders.is_some() || self.access_log.is_some()
    }
}

/// A retention period: whole days (`"400d"`) or a duration (`"72h"`, `"90m"`).
fn period<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> std::result::Result<Option<jiff::SignedDuration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let parsed = match text.strip_suffix('d').map(str::parse::<i64>) {
        Some(Ok(days)) if (1..=36_500).contains(&days) => {
            Ok(jiff::SignedDuration::from_secs(days * 86_400))
        }
        Some(_) => Err(format!(
            "`{text}`: days must be a whole number from 1 to 36500"
        )),
        None => text
            .parse::<jiff::SignedDuration>()
            .map_err(|e| format!("`{text}` is not a period such as \"400d\" or \"72h\": {e}")),
    };
    match parsed {
        Ok(period) if period.is_positive() => Ok(Some(period)),
        Ok(_) => Err(serde::de::Error::custom(format!(
            "`{text}`: a retention period is longer than 0"
        ))),
        Err(why) => Err(serde::de::Error::custom(why)),
    }
}

/// `[personal-data]`: how a holder of the program is erased, or why it cannot be.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PersonalData {
    /// `erase` (the default): an admin may erase a holder; `restrict`: a duty to archive
    /// (named in `archive`) keeps holders' data, so erasure is refused and a holder can
    /// only be restricted.
    #[serde(default)]
    pub erasure: ErasureRule,
    /// The law or duty that keeps holders' data, shown when erasure is refused.
    #[serde(default)]
    pub archive: Option<String>,
    /// Assets that must be spent or paid out before a holder is erased (money); units of
    /// the others lapse with the erasure, recorded as forfeits in its event.
    #[serde(default)]
    pub settle: Vec<String>,
    /// The action that pays out what is left (named when erasure is refused).
    #[serde(default)]
    pub settle_with: Option<String>,
}

/// Whether a program's holders can be erased.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErasureRule {
    #[default]
    Erase,
    Restrict,
}

fn default_max_lateness() -> jiff::SignedDuration {
    crate::timing::DEFAULT_MAX_LATENESS
}

fn default_max_skew() -> jiff::SignedDuration {
    crate::timing::DEFAULT_MAX_SKEW
}

impl Manifest {
    /// The bounds on a reported request's `at` (`max-lateness`, `max-skew`).
    pub fn time_bounds(&self) -> crate::timing::TimeBounds {
        crate::timing::TimeBounds {
            max_lateness: self.max_lateness,
            max_skew: self.max_skew,
        }
    }
}

/// `[allowances]`: the actions a card's allowances ask about. Each must be an action the
/// policy describes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct AllowanceActions {
    /// Actions that take an offer: asked once for every offer of the catalogue.
    #[serde(default)]
    pub per_offer: Vec<String>,
    /// Actions asked once for the card, without an offer.
    #[serde(default)]
    pub per_card: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Catalogue {
    #[serde(default)]
    offers: Vec<Offer>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Holders {
    #[serde(default)]
    holders: Vec<Holder>,
}

/// Everything in a program's directory except the compiled component, parsed from the
/// bytes of [`ProgramBytes`].
#[derive(Debug, Clone)]
pub struct ProgramFiles {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub catalogue: HashMap<String, Offer>,
    pub holders: Vec<Holder>,
    pub component_path: PathBuf,
    /// The suites that gate a reload (`suites/**/*.toml`), as read with the other files:
    /// the suites run are the suites a signature covers.
    pub suites: Arc<Vec<(PathBuf, String)>>,
}

/// The manifest file of a program directory.
pub const MANIFEST_FILE: &str = "policy.toml";
/// The catalogue file of a program directory.
pub const CATALOGUE_FILE: &str = "catalogue.toml";
/// The demo holders file of a program directory (optional).
pub const HOLDERS_FILE: &str = "holders.toml";
/// The directory of a program's own suites, which gate a reload.
pub const SUITES_DIR: &str = "suites";
/// The signature of a program directory (see [`super::signing`]).
pub const SIGNATURE_FILE: &str = "policy.sig";

/// Every file of a program directory that the host reads — the manifest, the component it
/// names, the catalogue, the demo holders and the suites that gate a reload — each read
/// once, keyed by its path relative to the directory (`/`-separated). A signature covers
/// exactly these bytes, and these bytes are what is parsed and compiled.
#[derive(Debug)]
pub struct ProgramBytes {
    pub dir: PathBuf,
    /// The directory's name, which must be the program id.
    pub name: String,
    /// `policy.toml`, parsed once (to find the component) and checked by
    /// [`parse_program`].
    pub manifest: Manifest,
    /// The key of the component in `files` (the manifest's `component`).
    pub component: String,
    pub files: BTreeMap<String, Vec<u8>>,
    /// `policy.sig`, if there is one (it covers `files`, not itself).
    pub signature: Option<Vec<u8>>,
}

impl ProgramBytes {
    /// The bytes of the component.
    pub fn component_bytes(&self) -> &[u8] {
        self.files
            .get(&self.component)
            .map_or(&[][..], Vec::as_slice)
    }
}

/// Builds the catalogue index, refusing duplicate ids.
pub fn index_offers(offers: Vec<Offer>, source: &Path) -> Result<HashMap<String, Offer>> {
    let mut index = HashMap::new();
    for offer in offers {
        if offer.id.is_empty() {
            return Err(Error::invalid(format!(
                "`{}`: an offer has an empty id",
                source.display()
            )));
        }
        if let Some(why) = crate::ids::problem(crate::ids::Kind::Offer, &offer.id) {
            return Err(Error::invalid(format!(
                "`{}`: the `id` of an offer {why}",
                source.display()
            )));
        }
        if let Some(old) = index.insert(offer.id.clone(), offer) {
            return Err(Error::invalid(format!(
                "`{}`: offer `{}` is listed twice",
                source.display(),
                old.id
            )));
        }
    }
    Ok(index)
}

/// Reads every file of the program directory `dir` that the host uses, once (see
/// [`ProgramBytes`]); `policy.toml` is parsed here, once, to find the component.
pub fn read_program_bytes(dir: &Path) -> Result<ProgramBytes> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let fail = |e: Error| Error::load(&name, e);
    let mut files = BTreeMap::new();
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_bytes = read_file(&manifest_path, MAX_TEXT_BYTES).map_err(fail)?;
    let manifest: Manifest = parse_toml(
        utf8(&manifest_bytes, &manifest_path).map_err(fail)?,
        &manifest_path,
    )
    .map_err(fail)?;
    files.insert(MANIFEST_FILE.to_string(), manifest_bytes);
    let component = manifest.component.to_string_lossy().replace('\\', "/");
    let component_path = dir.join(&manifest.component);
    let component_bytes = read_file(&component_path, MAX_COMPONENT_BYTES).map_err(|e| {
        Error::load(
            &name,
            format!("{e} (build the policies: `cargo build --release` for Rust, `cardrules build` for Python and JavaScript)"),
        )
    })?;
    files.insert(component.clone(), component_bytes);
    files.insert(
        CATALOGUE_FILE.to_string(),
        read_file(&dir.join(CATALOGUE_FILE), MAX_TEXT_BYTES).map_err(fail)?,
    );
    let holders_path = dir.join(HOLDERS_FILE);
    if std::fs::symlink_metadata(&holders_path).is_ok() {
        files.insert(
            HOLDERS_FILE.to_string(),
            read_file(&holders_path, MAX_TEXT_BYTES).map_err(fail)?,
        );
    }
    let suites = dir.join(SUITES_DIR);
    if suites.is_dir() {
        let mut found = Vec::new();
        collect_toml(&suites, &mut found).map_err(fail)?;
        for path in found {
            let relative = path
                .strip_prefix(dir)
                .ok()
                .and_then(Path::to_str)
                .ok_or_else(|| {
                    fail(Error::invalid(format!(
                        "cannot read `{}`: its name is not UTF-8",
                        path.display()
                    )))
                })?
                .replace('\\', "/");
            files.insert(relative, read_file(&path, MAX_TEXT_BYTES).map_err(fail)?);
        }
    }
    let signature_path = dir.join(SIGNATURE_FILE);
    let signature = match std::fs::symlink_metadata(&signature_path) {
        Err(_) => None,
        Ok(_) => Some(read_file(&signature_path, MAX_TEXT_BYTES).map_err(fail)?),
    };
    Ok(ProgramBytes {
        dir: dir.to_path_buf(),
        name,
        manifest,
        component,
        files,
        signature,
    })
}

/// Reads a program directory: manifest, catalogue, demo holders and suites.
#[cfg(test)]
pub(crate) fn read_program(dir: &Path) -> Result<ProgramFiles> {
    parse_program(&read_program_bytes(dir)?)
}

/// Parses and checks the files read by [`read_program_bytes`]: manifest, catalogue, demo
/// holders and the suites' text (the suites are parsed when they run).
pub fn parse_program(bytes: &ProgramBytes) -> Result<ProgramFiles> {
    let (dir, name) = (&bytes.dir, &bytes.name);
    let fail = |e: Error| Error::load(name, e);
    let refuse = |why: String| Error::load(name, why);
    let text = |file: &str| -> Result<Option<&str>> {
        match bytes.files.get(file) {
            None => Ok(None),
            Some(b) => utf8(b, &dir.join(file)).map(Some).map_err(fail),
        }
    };
    let manifest = bytes.manifest.clone();
    check_manifest(&manifest, Some(name)).map_err(fail)?;
    let schema = &manifest.schema;
    let catalogue_path = dir.join(CATALOGUE_FILE);
    let offers =
        parse_offers(text(CATALOGUE_FILE)?.unwrap_or_default(), &catalogue_path).map_err(fail)?;
    for offer in &offers {
        schema
            .check_offer(offer)
            .map_err(|why| refuse(format!("`catalogue.toml`, {why}")))?;
    }
    let catalogue = index_offers(offers, &catalogue_path).map_err(fail)?;
    let holders = match text(HOLDERS_FILE)? {
        Some(holders) => parse_holders(holders, &dir.join(HOLDERS_FILE)).map_err(fail)?,
        None => Vec::new(),
    };
    for holder in &holders {
        schema
            .check_holder(holder)
            .map_err(|why| refuse(format!("`holders.toml`, {why}")))?;
    }
    let prefix = format!("{SUITES_DIR}/");
    let mut suites = Vec::new();
    for (file, _) in bytes.files.range(prefix.clone()..) {
        if !file.starts_with(&prefix) {
            break;
        }
        if *file == bytes.component {
            continue;
        }
        suites.push((dir.join(file), text(file)?.unwrap_or_default().to_string()));
    }
    let component_path = dir.join(&manifest.component);
    Ok(ProgramFiles {
        dir: dir.to_path_buf(),
        manifest,
        catalogue,
        holders,
        component_path,
        suites: Arc::new(suites),
    })
}

/// The checks on a parsed `policy.toml`: it names the program of its directory (when
/// `directory` is known), lists at least one language, stays under the host's ceilings,
/// has a well-formed `[schema]`, and its `[config]` matches `[schema.config]`.
pub(crate) fn check_manifest(manifest: &Manifest, directory: Option<&str>) -> Result<()> {
    if let Some(name) = directory
        && manifest.program != name
    {
        return Err(Error::invalid(format!(
            "`policy.toml` names program `{}`, but its directory is `{name}`",
            manifest.program
        )));
    }
    if let Some(why) = crate::ids::problem(crate::ids::Kind::Program, &manifest.program) {
        return Err(Error::invalid(format!("`policy.toml`: `program` {why}")));
    }
    if manifest.languages.is_empty() {
        return Err(Error::invalid("`policy.toml` lists no languages"));
    }
    let (asked, most) = (&manifest.limits, &CEILING);
    let over = [
        ("fuel", asked.fuel, most.fuel),
        ("deadline-ms", asked.deadline_ms, most.deadline_ms),
        (
            "memory-bytes",
            asked.memory_bytes as u64,
            most.memory_bytes as u64,
        ),
        (
            "table-elements",
            asked.table_elements as u64,
            most.table_elements as u64,
        ),
        (
            "max-effects",
            asked.max_effects as u64,
            most.max_effects as u64,
        ),
        (
            "max-checks",
            asked.max_checks as u64,
            most.max_checks as u64,
        ),
        (
            "max-output-bytes",
            asked.max_output_bytes as u64,
            most.max_output_bytes as u64,
        ),
    ];
    for (name, asked, most) in over {
        if asked > most {
            return Err(Error::invalid(format!(
                "`policy.toml` asks for `{name}` = {asked}, above the host's ceiling of {most}"
            )));
        }
    }
    if let Some(decisions) = manifest.retention.decisions {
        let bound = manifest.max_lateness.saturating_add(manifest.max_skew);
        if decisions < bound {
            return Err(Error::invalid(format!(
                "`policy.toml`, `[retention]`: `decisions` ({decisions:#}) is shorter than `max-lateness` + `max-skew` ({bound:#}): a till's retry of an older request would no longer be found, and could be decided twice"
            )));
        }
    }
    check_offline(manifest)?;
    for asset in &manifest.personal_data.settle {
        if !manifest.assets.contains(asset) {
            return Err(Error::invalid(format!(
                "`policy.toml`, `[personal-data]`: `settle` names asset `{asset}`, which is not among the program's `assets`"
            )));
        }
    }
    if manifest.personal_data.erasure == ErasureRule::Restrict
        && manifest.personal_data.archive.is_none()
    {
        return Err(Error::invalid(
            "`policy.toml`, `[personal-data]`: `erasure = \"restrict\"` needs `archive`, the duty that keeps holders' data",
        ));
    }
    manifest
        .schema
        .check()
        .map_err(|why| Error::invalid(format!("`policy.toml`: {why}")))?;
    manifest
        .schema
        .check_config(&manifest.config)
        .map_err(|why| Error::invalid(format!("`policy.toml`, `[config]`: {why}")))?;
    Ok(())
}

/// Parses a `catalogue.toml` read from `source` into its index of offers by id. (Its
/// attributes are checked against a manifest's schema when a program is read.)
pub(crate) fn parse_catalogue(text: &str, source: &Path) -> Result<HashMap<String, Offer>> {
    index_offers(parse_offers(text, source)?, source)
}

/// Parses a `catalogue.toml` read from `source` into its offers, in the file's order.
fn parse_offers(text: &str, source: &Path) -> Result<Vec<Offer>> {
    Ok(parse_toml::<Catalogue>(text, source)?.offers)
}

/// Parses a `holders.toml` read from `source`.
pub(crate) fn parse_holders(text: &str, source: &Path) -> Result<Vec<Holder>> {
    Ok(parse_toml::<Holders>(text, source)?.holders)
}

/// `[offline]` must be whole: a lease length when anything is decided alone, an escrow of
/// one of the program's assets within the ledger's bounds, and cards named as the host
/// understands them.
fn check_offline(manifest: &Manifest) -> Result<()> {
    let terms = &manifest.offline;
    let bad = |why: String| Err(Error::invalid(format!("`policy.toml`, `[offline]`: {why}")));
    if !terms.decide.is_empty() && terms.lease.is_none() {
        return bad("`decide` names actions, so `lease` must say how long a lease runs".into());
    }
    if let Some(action) = terms.decide.iter().find(|a| terms.defer.contains(a)) {
        return bad(format!("action `{action}` is both decided and deferred"));
    }
    if let Some(cards) = &terms.cards
        && cards != "all"
        && !cards.starts_with("status:")
    {
        return bad(format!(
            "`cards` is `{cards}`: it must be \"all\" or \"status:<status>\""
        ));
    }
    if let Some(escrow) = &terms.escrow {
        if !manifest.assets.contains(&escrow.asset) {
            return bad(format!(
                "the escrow's asset `{}` is not among the program's `assets`",
                escrow.asset
            ));
        }
        if !(1..=crate::ledger::MAX_UNITS).contains(&escrow.amount) {
            return bad(format!(
                "the escrow's `amount` must be between 1 and {}, not {}",
                crate::ledger::MAX_UNITS,
                escrow.amount
            ));
        }
        if terms.cards.is_none() {
            return bad("an escrow needs `cards`: whose balances are lent".into());
        }
    }
    Ok(())
}
