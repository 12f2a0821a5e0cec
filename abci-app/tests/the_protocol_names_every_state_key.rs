//! docs/PROTOCOL.md, "State keys and values", describes every raw state key
//! that `abci-app/src/state/keys.rs` builds. Query proofs carry raw keys and
//! values, and a client written from the docs alone decodes them from that
//! section: a key it does not describe is one such a client cannot read.
//!
//! The checks read the two files as text: every string or byte-string
//! literal of `keys.rs` (its prefixes and fixed keys) must appear in the
//! section in double quotes, as the section writes prefixes, and every
//! `pub fn` of `keys.rs` must be named there as a constructor. The worked
//! example's hex must be what `keys.rs` builds.

use compute_abci::state::keys;
use compute_proto::{AccountId, JobId};
use sha2::{Digest, Sha256};

/// Heading words of the section (after its number).
const SECTION_TITLE: &str = "State keys and values";

fn read(relative: &str) -> String {
    let path = format!("{}/../{relative}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The section, from its `## <n>. State keys and values` heading to the
/// next `## ` heading or the end of the file.
fn section() -> String {
    let text = read("docs/PROTOCOL.md");
    let mut lines = text.lines();
    let mut found = false;
    for line in lines.by_ref() {
        if line.starts_with("## ") && line.contains(SECTION_TITLE) {
            found = true;
            break;
        }
    }
    assert!(
        found,
        "docs/PROTOCOL.md has no '## <n>. {SECTION_TITLE}' section"
    );
    lines
        .take_while(|line| !line.starts_with("## "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The code of keys.rs before its unit tests.
fn keys_code() -> String {
    let text = read("abci-app/src/state/keys.rs");
    let end = text.find("#[cfg(test)]").unwrap_or(text.len());
    // The prefixes clients build keys with live in the wire crate.
    let shared = read("proto/src/state.rs");
    let shared_end = shared.find("#[cfg(test)]").unwrap_or(shared.len());
    let shared: String = shared[..shared_end]
        .lines()
        .filter(|l| l.contains("_PREFIX: &[u8]"))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{}\n{shared}", &text[..end])
}

/// The string and byte-string literals of `code`, as written between their
/// quotes, outside comments.
fn literals(code: &str) -> Vec<String> {
    let chars: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match (chars[i], chars.get(i + 1)) {
            ('/', Some('/')) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                    i += 1;
                }
                i += 2;
            }
            ('"', _) => {
                let mut literal = String::new();
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' && i + 1 < chars.len() {
                        literal.push(chars[i]);
                        i += 1;
                    }
                    literal.push(chars[i]);
                    i += 1;
                }
                out.push(literal);
                i += 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// The names of the `pub fn`s of `code`.
fn constructors(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| line.trim_start().strip_prefix("pub fn "))
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn the_section_names_every_key_prefix() {
    let code = keys_code();
    let literals = literals(&code);
    // The parser found the prefixes at all (else every check below passes).
    assert!(
        literals.iter().any(|l| l == "acct/") && literals.iter().any(|l| l == "params"),
        "no key literals found in keys.rs: {literals:?}"
    );
    let section = section();
    let missing: Vec<&String> = literals
        .iter()
        .filter(|l| !section.contains(&format!("\"{l}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md, {SECTION_TITLE}, does not name these key prefixes of keys.rs (write each in double quotes, with its layout and value): {missing:?}"
    );
}

#[test]
fn the_section_names_every_key_constructor() {
    let names = constructors(&keys_code());
    assert!(
        names.iter().any(|n| n == "account"),
        "no constructors found in keys.rs: {names:?}"
    );
    let section = section();
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !section.contains(&format!("`{n}(")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md, {SECTION_TITLE}, does not name these key constructors of keys.rs (as `name(...)`): {missing:?}"
    );
}

#[test]
fn the_worked_example_is_what_keys_rs_builds() {
    // The section splits hex across parts and lines; compare without spaces.
    let section: String = section().chars().filter(|c| !c.is_whitespace()).collect();
    let id: [u8; 32] =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
            .expect("hex")
            .try_into()
            .expect("32 bytes");
    let key = keys::account(&AccountId(id));
    for shown in [hex::encode(&key), hex::encode(Sha256::digest(&key))] {
        assert!(
            section.contains(&shown),
            "the worked example does not show {shown} (the raw key of /account/<id>, and its sha256)"
        );
    }
    let job: [u8; 32] =
        hex::decode("5345ede3c511ce2f4e2993f657390f58d1bf747b05991b8cebe3fce6753cad44")
            .expect("hex")
            .try_into()
            .expect("32 bytes");
    let task = hex::encode(keys::task(&JobId(job), 2));
    assert!(
        section.contains(&task),
        "the worked example does not show {task} (task 2 of the job)"
    );
}
