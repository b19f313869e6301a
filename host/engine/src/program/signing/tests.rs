//! Signing, verifying and trusting program directories, and refusing every tampering.

use super::*;

const MANIFEST: &str = "program = \"bergen\"\nname = \"B\"\ntime-zone = \"Europe/Oslo\"\nlanguages = [\"en\"]\ncomponent = \"policy.wasm\"\nassets = [\"NOK\"]\n";
const HOLDERS: &str =
    "[[holders]]\ncard = \"AK-1\"\nbirth-date = \"2010-01-01\"\nmunicipality = \"bergen\"\n";

/// A program directory `bergen` in `temp`, with a suite.
fn program(temp: &Path) -> std::path::PathBuf {
    let dir = temp.join("bergen");
    std::fs::create_dir_all(dir.join("suites")).unwrap();
    std::fs::write(dir.join("policy.wasm"), b"component bytes").unwrap();
    std::fs::write(dir.join("policy.toml"), MANIFEST).unwrap();
    std::fs::write(dir.join("catalogue.toml"), "# no offers\n").unwrap();
    std::fs::write(dir.join("holders.toml"), HOLDERS).unwrap();
    std::fs::write(dir.join("suites/basic.toml"), "# steps\n").unwrap();
    dir
}

fn verify(trust: &Trust, dir: &Path) -> Result<(), String> {
    let read = crate::program::manifest::read_program_bytes(dir).unwrap();
    trust.verify(
        "bergen",
        read.signature.as_deref(),
        &read.files,
        &read.component,
    )
}

#[test]
fn a_signed_program_verifies_and_a_change_to_any_file_read_is_refused_naming_it() {
    let temp = tempfile::tempdir().unwrap();
    let dir = program(temp.path());
    let keys = keygen().unwrap();
    let trust = Trust::nobody().with_key("bergen", &keys.public).unwrap();
    assert!(verify(&trust, &dir).unwrap_err().starts_with("unsigned"));

    let signed = sign(&keys.secret, &dir).unwrap();
    let covered: Vec<&str> = signed.files.keys().map(String::as_str).collect();
    assert_eq!(
        covered,
        [
            "catalogue.toml",
            "holders.toml",
            "policy.toml",
            "policy.wasm",
            "suites/basic.toml"
        ]
    );
    verify(&trust, &dir).unwrap();
    let wildcard = Trust::nobody().with_key("*", &keys.public).unwrap();
    verify(&wildcard, &dir).unwrap();
    // Files the host never reads are not covered.
    std::fs::write(dir.join("README.md"), "notes").unwrap();
    verify(&trust, &dir).unwrap();

    let changes: [(&str, &[u8], &str); 5] = [
        (
            "policy.wasm",
            b"component bytes!",
            "the component was changed after signing: `policy.wasm` has digest",
        ),
        (
            "policy.toml",
            b"# more fuel\n",
            "`policy.toml` was changed after signing",
        ),
        (
            "catalogue.toml",
            b"# a cheaper price\n",
            "`catalogue.toml` was changed after signing",
        ),
        (
            "holders.toml",
            b"# a richer holder\n",
            "`holders.toml` was changed after signing",
        ),
        (
            "suites/basic.toml",
            b"# a weaker gate\n",
            "`suites/basic.toml` was changed after signing",
        ),
    ];
    for (file, more, expected) in changes {
        let path = dir.join(file);
        let original = std::fs::read(&path).unwrap();
        std::fs::write(&path, [original.as_slice(), more].concat()).unwrap();
        let error = verify(&trust, &dir).unwrap_err();
        assert!(error.starts_with(expected), "{file}: {error}");
        std::fs::write(&path, original).unwrap();
        verify(&trust, &dir).unwrap();
    }

    std::fs::write(dir.join("suites/extra.toml"), "# steps\n").unwrap();
    let error = verify(&trust, &dir).unwrap_err();
    assert!(
        error.starts_with("`suites/extra.toml` was added after signing"),
        "{error}"
    );
    std::fs::remove_file(dir.join("suites/extra.toml")).unwrap();
    std::fs::remove_file(dir.join("holders.toml")).unwrap();
    let error = verify(&trust, &dir).unwrap_err();
    assert!(
        error.starts_with("`holders.toml` was removed after signing"),
        "{error}"
    );
}

#[test]
fn a_signature_of_the_older_format_asks_to_sign_again() {
    let temp = tempfile::tempdir().unwrap();
    let dir = program(temp.path());
    let keys = keygen().unwrap();
    let trust = Trust::nobody().with_key("bergen", &keys.public).unwrap();
    std::fs::write(
        dir.join(SIGNATURE_FILE),
        format!(
            "program = \"bergen\"\ncomponent = \"sha256:00\"\nmanifest = \"sha256:00\"\nkey = \"{}\"\nsignature = \"AA==\"\n",
            keys.public
        ),
    )
    .unwrap();
    let error = verify(&trust, &dir).unwrap_err();
    assert!(
        error.contains("signed by an older `cardrules sign`")
            && error.ends_with("sign again with `cardrules sign`"),
        "{error}"
    );
}

#[test]
fn a_key_trusted_for_another_program_or_a_forged_signature_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let dir = program(temp.path());
    let (ours, theirs) = (keygen().unwrap(), keygen().unwrap());
    sign(&theirs.secret, &dir).unwrap();
    let trust = Trust::nobody()
        .with_key("bergen", &ours.public)
        .unwrap()
        .with_key("antwerpen", &theirs.public)
        .unwrap();
    let error = verify(&trust, &dir).unwrap_err();
    assert!(
        error.contains("does not trust for program `bergen`"),
        "{error}"
    );

    // Claim our key on their signature: the signature no longer verifies.
    let path = dir.join(SIGNATURE_FILE);
    let text = std::fs::read_to_string(&path).unwrap();
    let their_key = text.lines().find(|l| l.starts_with("key")).unwrap();
    std::fs::write(
        &path,
        text.replace(their_key, &format!("key = \"{}\"", ours.public)),
    )
    .unwrap();
    let error = verify(&trust, &dir).unwrap_err();
    assert!(error.contains("does not verify"), "{error}");

    // Signed by us, with a digest edited to match a changed catalogue: forged.
    sign(&ours.secret, &dir).unwrap();
    std::fs::write(dir.join("catalogue.toml"), "# cheaper\n").unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("\"catalogue.toml\""))
        .unwrap();
    std::fs::write(
        &path,
        text.replace(
            line,
            &format!("\"catalogue.toml\" = \"{}\"", digest(b"# cheaper\n")),
        ),
    )
    .unwrap();
    let error = verify(&trust, &dir).unwrap_err();
    assert!(error.contains("does not verify"), "{error}");
}

#[test]
fn keys_and_trust_files_are_checked() {
    assert!(Trust::nobody().with_key("bergen", "ed25519:short").is_err());
    assert!(parse_secret("ed25519:AAAA").is_err());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trust.toml");
    std::fs::write(&path, "[programs]\nbergen = [\"nonsense\"]\n").unwrap();
    let error = Trust::from_file(&path).unwrap_err().to_string();
    assert!(
        error.contains("program `bergen`") && error.contains("`nonsense`"),
        "{error}"
    );
    let keys = keygen().unwrap();
    std::fs::write(
        &path,
        format!("[programs]\nbergen = [\"{}\"]\n", keys.public),
    )
    .unwrap();
    assert!(!Trust::from_file(&path).unwrap().allows_unsigned());
}
