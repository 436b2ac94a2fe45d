//! `postgres::sql::split` on arbitrary text.
//!
//! Invariants checked on every input that splits:
//! - nothing but whitespace, comments and the `;` ending each statement is dropped: the
//!   non-whitespace characters of the statements, in order, are those of the input once comments
//!   and top-level `;` are removed (computed by `reference_tokens` below, written independently of
//!   the splitter);
//! - statements are trimmed, non-empty, and their lines are in order and inside the input;
//! - splitting the statements again, joined with `;`, gives the same statements (the comment
//!   removal never changes how the rest is read);
//! - `is_allowed` agrees with `keyword` and `ALLOWED_KEYWORDS`; `rewritten_table` does not panic.
//!
//! Inputs split exactly when every quote and comment is closed (by the same reading); a refusal's
//! line is inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temporal_bootstrap::postgres::sql::{self, ALLOWED_KEYWORDS};

fuzz_target!(|data: &[u8]| {
    let Ok(script) = std::str::from_utf8(data) else {
        return;
    };
    let lines = script.matches('\n').count() + 1;
    let reference = reference_tokens(script);
    let statements = match sql::split(script) {
        Ok(s) => s,
        Err(e) => {
            assert!(
                (1..=lines).contains(&e.line),
                "error line {} outside 1..={lines}",
                e.line
            );
            assert!(
                reference.is_none(),
                "refused ({e}), but every quote and comment is closed"
            );
            return;
        }
    };

    let mut prev_line = 1;
    for s in &statements {
        assert!(!s.text.is_empty(), "empty statement kept");
        assert_eq!(s.text, s.text.trim(), "statement not trimmed");
        assert!(
            s.line >= prev_line && s.line <= lines,
            "statement line {} out of order or outside 1..={lines}",
            s.line
        );
        prev_line = s.line;
        assert_eq!(
            s.is_allowed(),
            ALLOWED_KEYWORDS.contains(&s.keyword().as_str())
        );
        let _ = s.rewritten_table();
    }

    let kept: String = statements
        .iter()
        .flat_map(|s| s.text.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    match reference {
        Some(expected) => assert_eq!(
            kept, expected,
            "split lost or invented text outside comments"
        ),
        None => panic!("split accepted a script with an open quote or comment"),
    }

    let joined = statements
        .iter()
        .map(|s| s.text.as_str())
        .collect::<Vec<_>>()
        .join(";\n");
    let again = match sql::split(&joined) {
        Ok(a) => a,
        Err(e) => panic!("re-splitting the statements failed: {e}"),
    };
    let texts = |v: &[sql::Statement]| v.iter().map(|s| s.text.clone()).collect::<Vec<_>>();
    assert_eq!(
        texts(&again),
        texts(&statements),
        "re-splitting changed the statements"
    );
});

/// The non-whitespace characters of `script` outside comments, without the `;` that end
/// statements; `None` when a quote or comment is left open (the splitter must refuse those).
///
/// A second, deliberately plain reading of PostgreSQL's lexical rules: quotes `'...'` (with `''`,
/// and backslash escapes after a standalone `E`), `"..."`, `$tag$...$tag$` (not after an
/// identifier character, tag not starting with a digit), `--` to end of line, nested `/* */`.
fn reference_tokens(script: &str) -> Option<String> {
    let c: Vec<char> = script.chars().collect();
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_' || ch == '$';
    let mut out = String::new();
    fn keep(ch: char, out: &mut String) {
        if !ch.is_whitespace() {
            out.push(ch);
        }
    }
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(k).copied();
        match c[i] {
            ';' => i += 1,
            '-' if at(i + 1) == Some('-') => {
                while i < c.len() && c[i] != '\n' {
                    i += 1;
                }
            }
            '/' if at(i + 1) == Some('*') => {
                let mut depth = 0usize;
                loop {
                    if at(i) == Some('/') && at(i + 1) == Some('*') {
                        depth += 1;
                        i += 2;
                    } else if at(i) == Some('*') && at(i + 1) == Some('/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else if i >= c.len() {
                        return None;
                    } else {
                        i += 1;
                    }
                }
            }
            '\'' => {
                let escapes =
                    i >= 1 && matches!(c[i - 1], 'e' | 'E') && !(i >= 2 && ident(c[i - 2]));
                keep('\'', &mut out);
                i += 1;
                loop {
                    match at(i) {
                        None => return None,
                        Some('\\') if escapes => {
                            keep('\\', &mut out);
                            if let Some(n) = at(i + 1) {
                                keep(n, &mut out);
                            }
                            i += 2;
                        }
                        Some('\'') if at(i + 1) == Some('\'') => {
                            keep('\'', &mut out);
                            keep('\'', &mut out);
                            i += 2;
                        }
                        Some('\'') => {
                            keep('\'', &mut out);
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            keep(ch, &mut out);
                            i += 1;
                        }
                    }
                }
            }
            '"' => {
                keep('"', &mut out);
                i += 1;
                loop {
                    match at(i) {
                        None => return None,
                        Some('"') if at(i + 1) == Some('"') => {
                            keep('"', &mut out);
                            keep('"', &mut out);
                            i += 2;
                        }
                        Some('"') => {
                            keep('"', &mut out);
                            i += 1;
                            break;
                        }
                        Some(ch) => {
                            keep(ch, &mut out);
                            i += 1;
                        }
                    }
                }
            }
            '$' if !(i >= 1 && ident(c[i - 1])) => {
                let mut j = i + 1;
                while j < c.len() && (c[j].is_alphanumeric() || c[j] == '_') {
                    j += 1;
                }
                let tag: String = c[i + 1..j.min(c.len())].iter().collect();
                let opens = at(j) == Some('$') && !tag.starts_with(|d: char| d.is_ascii_digit());
                if !opens {
                    keep('$', &mut out);
                    i += 1;
                    continue;
                }
                let delim: Vec<char> = format!("${tag}$").chars().collect();
                let body_start = j + 1;
                let close = (body_start..=c.len().saturating_sub(delim.len()))
                    .find(|&k| c[k..].starts_with(&delim))?;
                for &ch in &c[i..close + delim.len()] {
                    keep(ch, &mut out);
                }
                i = close + delim.len();
            }
            ch => {
                keep(ch, &mut out);
                i += 1;
            }
        }
    }
    Some(out)
}
