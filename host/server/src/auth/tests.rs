//! The auth file's parsing, each role's rights, and new tokens.
use super::*;

fn parse(text: &str) -> Result<Tokens, String> {
    Tokens::parse(text, Path::new("auth.toml")).map_err(|e| e.to_string())
}

fn entry(name: &str, token: &str, role: &str, rest: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\n{rest}\n",
        sha256_hex(token)
    )
}

fn caller(tokens: &Tokens, token: &str) -> Arc<Caller> {
    tokens.identify(token).unwrap()
}

fn three() -> Tokens {
    let text = [
        entry(
            "till-1",
            "t-secret",
            "terminal",
            "programs = [\"albertslund\"]\nactions = [\"purchase\"]",
        ),
        entry(
            "desk",
            "r-secret",
            "registrar",
            "programs = [\"albertslund\", \"bergen\"]",
        ),
        entry("ops", "a-secret", "admin", "programs = [\"*\"]"),
        entry(
            "parent",
            "g-secret",
            "guardian",
            "programs = [\"albertslund\"]\nactions = [\"top-up\", \"block-card\"]\ncards = [\"BK-2002\"]",
        ),
    ]
    .concat();
    parse(&text).unwrap()
}

#[test]
fn a_good_file_identifies_its_tokens_and_nothing_else() {
    let tokens = three();
    assert_eq!(tokens.len(), 4);
    let till = caller(&tokens, "t-secret");
    assert_eq!((till.name(), till.role()), ("till-1", Role::Terminal));
    assert_eq!(caller(&tokens, "r-secret").role(), Role::Registrar);
    assert_eq!(caller(&tokens, "a-secret").name(), "ops");
    assert_eq!(caller(&tokens, "g-secret").role(), Role::Guardian);
    for unknown in [
        "",
        "t-secret ",
        "T-SECRET",
        "a-secre",
        &sha256_hex("a-secret"),
    ] {
        assert!(tokens.identify(unknown).is_none(), "{unknown:?}");
    }
}

#[test]
fn uppercase_hashes_are_accepted() {
    let text = format!(
        "[[tokens]]\nname = \"x\"\nsha256 = \"{}\"\nrole = \"admin\"\nprograms = [\"*\"]\n",
        sha256_hex("s").to_uppercase()
    );
    assert_eq!(caller(&parse(&text).unwrap(), "s").name(), "x");
}

#[test]
fn the_rights_of_each_role() {
    let tokens = three();
    let venue_entry = entry(
        "bergen-kino",
        "v-secret",
        "venue",
        "programs = [\"bergen\"]\nlocations = [\"bergen-kino\"]",
    );
    let with_venue = parse(&venue_entry).unwrap();
    let (till, desk, ops, parent, venue) = (
        caller(&tokens, "t-secret"),
        caller(&tokens, "r-secret"),
        caller(&tokens, "a-secret"),
        caller(&tokens, "g-secret"),
        caller(&with_venue, "v-secret"),
    );
    use Route::*;
    // The table of rights, route by route; a guardian's are further bound to its cards,
    // a venue's decisions to its locations.
    let routes = [
        Decide,
        Card,
        Allowances,
        History,
        Register,
        UpdateHolder,
        Programs,
        Metrics,
        Publish,
        Rollout,
        VenueStatus,
        Venues,
        Caller,
        Program,
        Coverage,
        Why,
        AccessLog,
        Export,
        Erase,
        Restrict,
        Lease,
    ];
    let (t, f) = (true, false);
    for (who, allowed) in [
        (
            &till,
            [
                t, t, t, t, f, f, f, f, f, f, f, f, t, t, f, t, f, f, f, f, f,
            ],
        ),
        (
            &desk,
            [
                t, t, t, t, t, t, f, f, t, f, f, f, t, t, f, t, f, t, f, f, f,
            ],
        ),
        (&ops, [t; 21]),
        (
            &parent,
            [
                t, t, t, t, f, t, f, f, f, f, f, f, t, t, f, t, f, t, f, f, f,
            ],
        ),
        (
            &venue,
            [
                t, t, t, t, f, f, f, f, f, t, t, f, f, f, f, t, f, f, f, f, t,
            ],
        ),
    ] {
        for (route, allowed) in routes.into_iter().zip(allowed) {
            assert_eq!(
                who.may_call(route).is_ok(),
                allowed,
                "{} {route:?}",
                who.name()
            );
        }
    }
    assert_eq!(routes.len(), Route::ALL.len());
    assert!(venue.may_decide_at("bergen-kino", "bergen-kino").is_ok());
    let refusal = venue
        .may_decide_at("kode-museum", "kode")
        .unwrap_err()
        .to_string();
    assert!(refusal.contains("location `kode`"), "{refusal}");
    assert_eq!(venue.venue(), Some("bergen-kino"));
    assert_eq!(ops.venue(), None);
    let refusal = till.may_call(Programs).unwrap_err().to_string();
    assert_eq!(
        refusal,
        "role `terminal` may not call `GET /v1/programs`: that needs role `admin`"
    );
    assert!(
        desk.may_call(Programs)
            .unwrap_err()
            .to_string()
            .contains("role `registrar`")
    );
    assert_eq!(
        parent.may_call(Register).unwrap_err().to_string(),
        "role `guardian` may not call `PUT /v1/programs/{program}/holders/{card}`: that needs role `registrar` or `admin`"
    );
    assert_eq!(
        till.may_call(UpdateHolder).unwrap_err().to_string(),
        "role `terminal` may not call `PATCH /v1/programs/{program}/holders/{card}`: that needs role `registrar`, `admin` or `guardian`"
    );
    assert!(parent.is_guardian() && !ops.is_guardian() && !till.is_guardian());

    // Programs.
    assert!(till.may_act_for("albertslund").is_ok());
    assert_eq!(
        till.may_act_for("bergen").unwrap_err().to_string(),
        "this token may not act for program `bergen`"
    );
    assert!(desk.may_act_for("bergen").is_ok());
    assert!(desk.may_act_for("antwerpen").is_err());
    assert!(ops.may_act_for("anything").is_ok());

    // Cards: only a guardian's list restricts, after its programs.
    assert!(parent.may_act_for_card("albertslund", "BK-2002").is_ok());
    assert_eq!(
        parent
            .may_act_for_card("albertslund", "BK-2001")
            .unwrap_err()
            .to_string(),
        "this token may not act for card `BK-2001`: a guardian acts for its own cards only"
    );
    assert_eq!(
        parent
            .may_act_for_card("bergen", "BK-2002")
            .unwrap_err()
            .to_string(),
        "this token may not act for program `bergen`"
    );
    assert!(till.may_act_for_card("albertslund", "BK-2001").is_ok());
    assert!(till.may_act_for_card("bergen", "AK-1001").is_err());
    assert!(ops.may_act_for_card("bergen", "AK-1001").is_ok());

    // Actions: the terminal's and the guardian's lists restrict; a guardian decides for
    // its cards only.
    assert!(
        till.may_decide("albertslund", "BK-2001", "purchase")
            .is_ok()
    );
    assert_eq!(
        till.may_decide("albertslund", "BK-2001", "topup")
            .unwrap_err()
            .to_string(),
        "this token may not ask for action `topup` (it may ask for `purchase`)"
    );
    assert!(till.may_decide("bergen", "AK-1001", "purchase").is_err());
    assert!(desk.may_decide("bergen", "AK-1001", "redeem").is_ok());
    assert!(ops.may_decide("antwerpen", "A-3001", "transfer").is_ok());
    assert!(
        parent
            .may_decide("albertslund", "BK-2002", "top-up")
            .is_ok()
    );
    assert!(
        parent
            .may_decide("albertslund", "BK-2002", "block-card")
            .is_ok()
    );
    assert_eq!(
        parent
            .may_decide("albertslund", "BK-2002", "purchase")
            .unwrap_err()
            .to_string(),
        "this token may not ask for action `purchase` (it may ask for `block-card`, `top-up`)"
    );
    assert!(
        parent
            .may_decide("albertslund", "BK-2001", "top-up")
            .unwrap_err()
            .to_string()
            .contains("card `BK-2001`")
    );

    // Starting balances: only an admin gives non-zero ones.
    let none = BTreeMap::new();
    let zero = BTreeMap::from([("DKK".to_string(), 0)]);
    let some = BTreeMap::from([("DKK".to_string(), 5000), ("saving".to_string(), 0)]);
    assert!(desk.may_grant(&none).is_ok());
    assert!(desk.may_grant(&zero).is_ok());
    assert_eq!(
        desk.may_grant(&some).unwrap_err().to_string(),
        "role `registrar` may not give a card starting balances (`DKK`): that needs role `admin`"
    );
    assert!(ops.may_grant(&some).is_ok());
    assert!(parent.may_grant(&some).is_err());
}

#[test]
fn malformed_files_are_refused_naming_the_file_and_entry() {
    let good = entry("a", "a", "admin", "programs = [\"*\"]");
    let cases: Vec<(String, &str)> = vec![
        ("tokens = 3".into(), "cannot parse `auth.toml` at line 1"),
        (String::new(), "missing field `tokens`"),
        ("tokens = []".into(), "lists no `[[tokens]]`"),
        (format!("{good}extra = 1\n"), "unknown field `extra`"),
        (format!("owner = \"x\"\n{good}"), "unknown field `owner`"),
        (
            entry("a", "a", "admin", "programs = [\"*\"]\nprogram = \"x\""),
            "unknown field `program`",
        ),
        (
            entry("a", "a", "root", "programs = [\"*\"]"),
            "unknown variant `root`",
        ),
        (
            "[[tokens]]\nname = \"a\"\nrole = \"admin\"\nprograms = [\"*\"]\n".into(),
            "missing field `sha256`",
        ),
        (
            "[[tokens]]\nname = \"a\"\nsha256 = \"abc\"\nrole = \"admin\"\nprograms = [\"*\"]\n"
                .into(),
            "token `a` (entry 1): `sha256` must be 64 hex digits (the SHA-256 of the token), not 3 characters",
        ),
        (
            format!(
                "[[tokens]]\nname = \"a\"\nsha256 = \"{}\"\nrole = \"admin\"\nprograms = [\"*\"]\n",
                "g".repeat(64)
            ),
            "not 64 characters with non-hex ones",
        ),
        (
            format!("{good}{}", entry("a", "b", "admin", "programs = [\"*\"]")),
            "token `a` (entry 2): the name is used by entry 1 too",
        ),
        (
            format!(
                "{good}{}",
                entry("b", "a", "terminal", "programs = [\"*\"]")
            ),
            "token `b` (entry 2): the same sha256 as token `a` (entry 1)",
        ),
        (
            entry("", "a", "admin", "programs = [\"*\"]"),
            "auth file `auth.toml`, entry 1: `name` is empty",
        ),
        (
            entry("a", "a", "admin", "programs = []"),
            "`programs` is empty",
        ),
        (
            entry("a", "a", "admin", "programs = [\"*\", \"bergen\"]"),
            "beside other programs",
        ),
        (
            entry("a", "a", "admin", "programs = [\"bergen\", \"bergen\"]"),
            "lists program `bergen` twice",
        ),
        (
            entry("a", "a", "admin", "programs = [\"\"]"),
            "`programs` has an empty program",
        ),
        (
            entry(
                "a",
                "a",
                "registrar",
                "programs = [\"*\"]\nactions = [\"purchase\"]",
            ),
            "`actions` is for roles `terminal` and `guardian` only",
        ),
        (
            entry("a", "a", "terminal", "programs = [\"*\"]\nactions = []"),
            "`actions` is empty",
        ),
        (
            entry("a", "a", "parent", "programs = [\"*\"]"),
            "unknown variant `parent`",
        ),
        (
            entry(
                "a",
                "a",
                "guardian",
                "programs = [\"albertslund\"]\ncards = [\"BK-2002\"]",
            ),
            "role `guardian` must list its `actions`: with every action a guardian could `purchase`",
        ),
        (
            entry(
                "a",
                "a",
                "guardian",
                "programs = [\"albertslund\"]\nactions = [\"top-up\"]",
            ),
            "role `guardian` needs `cards`",
        ),
        (
            entry(
                "a",
                "a",
                "guardian",
                "programs = [\"albertslund\"]\nactions = [\"top-up\"]\ncards = []",
            ),
            "`cards` is empty",
        ),
        (
            entry(
                "a",
                "a",
                "guardian",
                "programs = [\"albertslund\"]\nactions = [\"top-up\"]\ncards = [\"BK-1\", \"BK-1\"]",
            ),
            "`cards` lists card `BK-1` twice",
        ),
        (
            entry(
                "a",
                "a",
                "guardian",
                "programs = [\"albertslund\"]\nactions = [\"top-up\"]\ncards = [\"\"]",
            ),
            "`cards` has an empty card",
        ),
        (
            entry(
                "a",
                "a",
                "terminal",
                "programs = [\"*\"]\ncards = [\"BK-2002\"]",
            ),
            "`cards` is for role `guardian` only; role `terminal` acts for every card of its programs",
        ),
        (
            entry(
                "a",
                "a",
                "admin",
                "programs = [\"*\"]\ncards = [\"BK-2002\"]",
            ),
            "`cards` is for role `guardian` only",
        ),
    ];
    for (text, expected) in cases {
        let error = parse(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(error.contains(expected), "{error}\n  expected: {expected}");
        assert!(error.contains("auth.toml"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
    }
}

#[test]
fn a_guardian_token_names_exactly_one_program() {
    // Card ids are a program's own: with `*` (or two programs), a parent's `BK-2002` of
    // Albertslund was also Bergen's `BK-2002`, another child.
    let rest = "actions = [\"top-up\"]\ncards = [\"BK-2002\"]";
    for (programs, named) in [
        ("[\"*\"]", "not `*`"),
        (
            "[\"albertslund\", \"bergen\"]",
            "not `albertslund`, `bergen`",
        ),
    ] {
        let text = entry(
            "parent",
            "g",
            "guardian",
            &format!("programs = {programs}\n{rest}"),
        );
        let error = parse(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(
            error.contains("auth file `auth.toml`, token `parent` (entry 1): role `guardian` must name one program"),
            "{error}"
        );
        assert!(error.contains(named), "{error}");
        let made = new_token(
            "parent",
            Role::Guardian,
            &programs
                .trim_matches(['[', ']'])
                .split(", ")
                .map(|p| p.trim_matches('"').to_string())
                .collect::<Vec<_>>(),
            &["top-up".into()],
            &["BK-2002".into()],
            &[],
        );
        let error = made.unwrap_err().to_string();
        assert!(
            error.contains("role `guardian` must name one program"),
            "{error}"
        );
    }
    let one = parse(&entry(
        "parent",
        "g",
        "guardian",
        &format!("programs = [\"albertslund\"]\n{rest}"),
    ))
    .unwrap();
    let parent = caller(&one, "g");
    assert!(
        parent
            .may_decide("albertslund", "BK-2002", "top-up")
            .is_ok()
    );
    assert!(parent.may_act_for_card("bergen", "BK-2002").is_err());
}

#[test]
fn a_file_that_cannot_be_read_is_named() {
    let error = Tokens::load(Path::new("/no/such/auth.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("cannot read auth file `/no/such/auth.toml`: "),
        "{error}"
    );
}

#[test]
fn new_tokens_are_random_and_their_entries_parse_back() {
    let actions = ["purchase".to_string()];
    let made = new_token(
        "bakkens-hjerte-till-1",
        Role::Terminal,
        &["albertslund".into()],
        &actions,
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(made.token.len(), 43, "{}", made.token);
    assert!(
        made.token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert!(made.entry.starts_with("[[tokens]]\n"), "{}", made.entry);
    assert!(!made.entry.contains(&made.token));
    let other = new_token("other", Role::Admin, &["*".into()], &[], &[], &[]).unwrap();
    assert_ne!(made.token, other.token);
    assert!(!other.entry.contains("actions"), "{}", other.entry);
    assert!(!other.entry.contains("cards"), "{}", other.entry);
    let portal_actions = ["top-up".to_string(), "block-card".to_string()];
    let parent = new_token(
        "parent-of-bk-2002",
        Role::Guardian,
        &["albertslund".into()],
        &portal_actions,
        &["BK-2002".into()],
        &[],
    )
    .unwrap();
    assert!(
        parent.entry.contains("role = \"guardian\""),
        "{}",
        parent.entry
    );
    assert!(
        parent.entry.contains("cards = [\"BK-2002\"]"),
        "{}",
        parent.entry
    );

    let tokens = parse(&format!("{}{}{}", made.entry, other.entry, parent.entry)).unwrap();
    let till = caller(&tokens, &made.token);
    assert_eq!(till.name(), "bakkens-hjerte-till-1");
    assert!(
        till.may_decide("albertslund", "BK-2001", "purchase")
            .is_ok()
    );
    assert!(till.may_decide("albertslund", "BK-2001", "topup").is_err());
    assert_eq!(caller(&tokens, &other.token).role(), Role::Admin);
    let guardian = caller(&tokens, &parent.token);
    assert_eq!(guardian.role(), Role::Guardian);
    assert!(
        guardian
            .may_decide("albertslund", "BK-2002", "top-up")
            .is_ok()
    );
    assert!(
        guardian
            .may_decide("albertslund", "BK-2001", "top-up")
            .is_err()
    );
    assert!(
        guardian
            .may_decide("albertslund", "BK-2002", "purchase")
            .is_err()
    );

    // Checked as the file would be.
    let e = new_token("x", Role::Admin, &["*".into()], &actions, &[], &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("`actions` is for roles `terminal` and `guardian` only"),
        "{e}"
    );
    let e = new_token(
        "x",
        Role::Terminal,
        &["*".into()],
        &[],
        &["BK-1".into()],
        &[],
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("`cards` is for role `guardian` only"),
        "{e}"
    );
    let e = new_token("x", Role::Guardian, &["*".into()], &actions, &[], &[]).unwrap_err();
    assert!(e.to_string().contains("needs `cards`"), "{e}");
    let e = new_token(
        "x",
        Role::Guardian,
        &["*".into()],
        &[],
        &["BK-1".into()],
        &[],
    )
    .unwrap_err();
    assert!(e.to_string().contains("must list its `actions`"), "{e}");
    assert!(new_token("", Role::Admin, &["*".into()], &[], &[], &[]).is_err());
    assert!(new_token("x", Role::Admin, &[], &[], &[], &[]).is_err());
    // A name that needs quoting survives the round trip.
    let quoted = new_token(
        "till \"7\" \\ øst",
        Role::Terminal,
        &["*".into()],
        &[],
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        caller(&parse(&quoted.entry).unwrap(), &quoted.token).name(),
        "till \"7\" \\ øst"
    );
}

#[test]
fn roles_parse_by_name() {
    assert_eq!("registrar".parse::<Role>().unwrap(), Role::Registrar);
    assert_eq!("guardian".parse::<Role>().unwrap(), Role::Guardian);
    assert!("Admin".parse::<Role>().is_err());
    for role in Role::ALL {
        assert_eq!(role.as_str().parse::<Role>(), Ok(role));
    }
}

#[test]
fn loopback_listen_addresses() {
    for loopback in [
        "127.0.0.1:8080",
        "127.1.2.3:0",
        "[::1]:8080",
        "localhost:8080",
        "LOCALHOST:0",
        "[::ffff:127.0.0.1]:80",
    ] {
        assert!(is_loopback_listen(loopback), "{loopback}");
    }
    for open in [
        "0.0.0.0:8080",
        "[::]:8080",
        "192.168.1.10:80",
        "example.org:80",
        "localhost.example.org:80",
        "128.0.0.1:80",
    ] {
        assert!(!is_loopback_listen(open), "{open}");
    }
}

#[test]
fn a_venue_names_its_programs_and_locations_and_tokens_may_expire() {
    let venue = |rest: &str| parse(&entry("kino", "v", "venue", rest));
    assert!(venue("programs = [\"bergen\"]\nlocations = [\"bergen-kino\"]").is_ok());
    let cases = [
        ("programs = [\"bergen\"]", "role `venue` needs `locations`"),
        (
            "programs = [\"*\"]\nlocations = [\"bergen-kino\"]",
            "role `venue` must list its `programs`",
        ),
        (
            "programs = [\"bergen\"]\nlocations = []",
            "`locations` is empty",
        ),
        (
            "programs = [\"bergen\"]\nlocations = [\"a\", \"a\"]",
            "lists location `a` twice",
        ),
        (
            "programs = [\"bergen\"]\nlocations = [\"a\"]\nexpires = \"tomorrow\"",
            "`expires` `tomorrow`",
        ),
    ];
    for (rest, expected) in cases {
        let error = venue(rest).unwrap_err().to_string();
        assert!(error.contains(expected), "{rest}: {error}");
    }
    let error = parse(&entry(
        "till",
        "t",
        "terminal",
        "programs = [\"bergen\"]\nlocations = [\"a\"]",
    ))
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("`locations` is for role `venue` only"),
        "{error}"
    );
    let tokens = parse(&entry(
        "old",
        "o",
        "admin",
        "programs = [\"*\"]\nexpires = \"2020-01-01T00:00:00Z\"",
    ))
    .unwrap();
    let old = caller(&tokens, "o");
    assert_eq!(old.expired_at(1_577_836_799), None);
    assert_eq!(old.expired_at(1_577_836_800), Some(1_577_836_800));
}
