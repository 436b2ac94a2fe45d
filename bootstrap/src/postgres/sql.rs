//! Splitting schema files into statements, and the checks run on each statement. Pure.
//!
//! The splitter understands what PostgreSQL itself understands in a script: `'...'` strings
//! (with `''` escapes, and backslash escapes in `E'...'`), `"..."` identifiers, dollar-quoted
//! bodies (`$$ ... $$`, `$tag$ ... $tag$`), `--` line comments and nested `/* */` comments. A `;`
//! inside any of these does not end a statement. Comments are removed from the statement text.

use std::fmt;

/// Statement kinds accepted in a schema file (the same list `temporal-sql-tool` accepts).
pub const ALLOWED_KEYWORDS: [&str; 5] = ["CREATE", "ALTER", "INSERT", "DROP", "DO"];

/// One statement of a schema file, without its terminating `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    /// 1-based line of the statement's first non-blank character in its file.
    pub line: usize,
}

impl Statement {
    /// The first word, uppercased (`CREATE`, `DO`, ...).
    pub fn keyword(&self) -> String {
        self.text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .find(|w| !w.is_empty())
            .unwrap_or("")
            .to_ascii_uppercase()
    }

    pub fn is_allowed(&self) -> bool {
        ALLOWED_KEYWORDS.contains(&self.keyword().as_str())
    }

    /// The table a statement rewrites in full, when it adds a `GENERATED ... STORED` column
    /// (PostgreSQL rewrites every row of the table under an exclusive lock to fill it).
    pub fn rewritten_table(&self) -> Option<String> {
        let words = words_outside_parens(&self.text);
        let upper: Vec<String> = words.iter().map(|w| w.to_ascii_uppercase()).collect();
        if upper.len() < 3 || upper[0] != "ALTER" || upper[1] != "TABLE" {
            return None;
        }
        let has = |w: &str| upper.iter().any(|u| u == w);
        let full = self.text.to_ascii_uppercase();
        if !(has("ADD") && full.contains("GENERATED") && has("STORED")) {
            return None;
        }
        let mut i = 2;
        while i < upper.len() && matches!(upper[i].as_str(), "IF" | "EXISTS" | "ONLY") {
            i += 1;
        }
        let name = words.get(i)?;
        // `schema.table` or `"Table"`: keep the last part; unquoted names fold to lower case.
        let last = name.rsplit('.').next().unwrap_or(name);
        if last.starts_with('"') {
            Some(last.trim_matches('"').replace("\"\"", "\""))
        } else {
            Some(last.to_lowercase())
        }
    }
}

/// A schema file that cannot be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Normal,
    Single { escapes: bool, start: usize },
    Double { start: usize },
    Dollar { tag: String, start: usize },
    LineComment,
    Block { depth: usize, start: usize },
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

/// Splits a SQL script into statements. Empty statements (`;;`, comment-only tails) are dropped.
pub fn split(script: &str) -> Result<Vec<Statement>, SplitError> {
    let chars: Vec<char> = script.chars().collect();
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_line: Option<usize> = None;
    let mut line = 1usize;
    let mut state = State::Normal;
    let mut i = 0;

    fn push_char(cur: &mut String, cur_line: &mut Option<usize>, line: usize, c: char) {
        if cur_line.is_none() && !c.is_whitespace() {
            *cur_line = Some(line);
        }
        if cur_line.is_some() {
            cur.push(c);
        }
    }

    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        match &mut state {
            State::Normal => match c {
                ';' => {
                    let text = cur.trim_end().to_string();
                    if let (false, Some(l)) = (text.is_empty(), cur_line) {
                        out.push(Statement { text, line: l });
                    }
                    cur.clear();
                    cur_line = None;
                }
                '-' if next == Some('-') => {
                    state = State::LineComment;
                    i += 1;
                }
                '/' if next == Some('*') => {
                    state = State::Block {
                        depth: 1,
                        start: line,
                    };
                    // A comment separates tokens like whitespace does.
                    if cur_line.is_some() {
                        cur.push(' ');
                    }
                    i += 1;
                }
                '\'' => {
                    let prev = if i > 0 { Some(chars[i - 1]) } else { None };
                    let before = if i > 1 { Some(chars[i - 2]) } else { None };
                    let escapes =
                        matches!(prev, Some('e' | 'E')) && !before.is_some_and(is_ident_char);
                    state = State::Single {
                        escapes,
                        start: line,
                    };
                    push_char(&mut cur, &mut cur_line, line, c);
                }
                '"' => {
                    state = State::Double { start: line };
                    push_char(&mut cur, &mut cur_line, line, c);
                }
                '$' if !(i > 0 && is_ident_char(chars[i - 1])) => {
                    // `$tag$` or `$$`; `$1` (a parameter) is not a quote.
                    let mut j = i + 1;
                    while j < chars.len() && (chars[j].is_alphanumeric() || chars[j] == '_') {
                        j += 1;
                    }
                    let tag: String = chars[i + 1..j].iter().collect();
                    let valid_tag =
                        tag.is_empty() || !tag.starts_with(|ch: char| ch.is_ascii_digit());
                    if j < chars.len() && chars[j] == '$' && valid_tag {
                        for &ch in &chars[i..=j] {
                            push_char(&mut cur, &mut cur_line, line, ch);
                        }
                        state = State::Dollar { tag, start: line };
                        i = j;
                    } else {
                        push_char(&mut cur, &mut cur_line, line, c);
                    }
                }
                _ => push_char(&mut cur, &mut cur_line, line, c),
            },
            State::Single { escapes, .. } => {
                push_char(&mut cur, &mut cur_line, line, c);
                if *escapes && c == '\\' {
                    if let Some(n) = next {
                        push_char(&mut cur, &mut cur_line, line, n);
                        if n == '\n' {
                            line += 1;
                        }
                        i += 1;
                    }
                } else if c == '\'' {
                    if next == Some('\'') {
                        push_char(&mut cur, &mut cur_line, line, '\'');
                        i += 1;
                    } else {
                        state = State::Normal;
                    }
                }
            }
            State::Double { .. } => {
                push_char(&mut cur, &mut cur_line, line, c);
                if c == '"' {
                    if next == Some('"') {
                        push_char(&mut cur, &mut cur_line, line, '"');
                        i += 1;
                    } else {
                        state = State::Normal;
                    }
                }
            }
            State::Dollar { tag, .. } => {
                if c == '$' {
                    let close: Vec<char> = format!("${tag}$").chars().collect();
                    if chars[i..].starts_with(&close) {
                        for &ch in &close {
                            push_char(&mut cur, &mut cur_line, line, ch);
                        }
                        i += close.len();
                        state = State::Normal;
                        continue;
                    }
                }
                push_char(&mut cur, &mut cur_line, line, c);
            }
            State::LineComment => {
                if c == '\n' {
                    state = State::Normal;
                    if cur_line.is_some() {
                        cur.push('\n');
                    }
                }
            }
            State::Block { depth, .. } => {
                if c == '*' && next == Some('/') {
                    *depth -= 1;
                    i += 1;
                    if *depth == 0 {
                        state = State::Normal;
                    }
                } else if c == '/' && next == Some('*') {
                    *depth += 1;
                    i += 1;
                }
            }
        }
        if c == '\n' {
            line += 1;
        }
        i += 1;
    }

    let unterminated = |what: &str, start: usize| SplitError {
        line: start,
        message: format!("{what} opened here is never closed"),
    };
    match state {
        State::Normal | State::LineComment => {}
        State::Single { start, .. } => return Err(unterminated("string literal '...'", start)),
        State::Double { start } => return Err(unterminated("quoted identifier \"...\"", start)),
        State::Dollar { tag, start } => {
            return Err(unterminated(&format!("dollar-quoted body ${tag}$"), start));
        }
        State::Block { start, .. } => return Err(unterminated("comment /* */", start)),
    }
    let text = cur.trim_end().to_string();
    if let (false, Some(l)) = (text.is_empty(), cur_line) {
        out.push(Statement { text, line: l });
    }
    Ok(out)
}

fn flush(words: &mut Vec<String>, cur: &mut String) {
    if !cur.is_empty() {
        words.push(std::mem::take(cur));
    }
}

/// Words of a statement outside parentheses and quotes (enough to read `ALTER TABLE x ADD ...`).
fn words_outside_parens(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            if depth == 0 {
                cur.push(c);
            }
            continue;
        }
        match c {
            '(' => {
                depth += 1;
                flush(&mut words, &mut cur);
            }
            ')' => depth = depth.saturating_sub(1),
            '"' | '\'' => {
                quote = Some(c);
                if depth == 0 {
                    cur.push(c);
                }
            }
            c if c.is_whitespace() || c == ',' => flush(&mut words, &mut cur),
            c if depth == 0 => cur.push(c),
            _ => {}
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// `name` as a quoted SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `value` as an escape-string literal (`E'...'`, backslashes and quotes escaped): the server
/// reads back exactly `value` whatever `standard_conforming_strings` is. The crate's one quoter
/// of SQL literals.
pub fn quote_literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<String> {
        split(s).unwrap().into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn splits_on_semicolons_outside_quotes_and_bodies() {
        let script = "-- header; not a statement\nCREATE TABLE a (x INT);\n\n\
            INSERT INTO a VALUES (1); INSERT INTO t VALUES ('x;y', 'it''s; fine', E'a\\';b');\n\
            DO $$ BEGIN PERFORM 1; PERFORM 2; END $$;\n\
            DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$;\n\
            CREATE TABLE \"we;ird\" (\"c;\" INT) /* a; comment /* nested; */ still */;\n\
            ALTER TABLE a ADD COLUMN y INT";
        let got = texts(script);
        assert_eq!(got.len(), 7, "{got:#?}");
        assert_eq!(got[0], "CREATE TABLE a (x INT)");
        assert_eq!(
            got[2],
            "INSERT INTO t VALUES ('x;y', 'it''s; fine', E'a\\';b')"
        );
        assert_eq!(got[3], "DO $$ BEGIN PERFORM 1; PERFORM 2; END $$");
        assert_eq!(got[4], "DO $body$ BEGIN RAISE NOTICE '$$;'; END $body$");
        assert_eq!(got[5], "CREATE TABLE \"we;ird\" (\"c;\" INT)");
        assert_eq!(got[6], "ALTER TABLE a ADD COLUMN y INT");
    }

    #[test]
    fn records_lines_and_drops_empty_statements() {
        let stmts =
            split("\n\n  ;;\n-- only a comment\nCREATE TABLE a (x INT);\n\nDROP TABLE b;\n-- tail")
                .unwrap();
        assert_eq!(stmts.len(), 2);
        assert_eq!(stmts[0].line, 5);
        assert_eq!(stmts[1].line, 7);
    }

    #[test]
    fn parameters_and_identifiers_with_dollars_are_not_quotes() {
        let got = texts("INSERT INTO a$b VALUES ($1); CREATE TABLE c (x INT)");
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn unterminated_constructs_are_errors_with_their_line() {
        let e = split("CREATE TABLE a (x INT);\nDO $$ BEGIN PERFORM 1;").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("$$"), "{e}");
        assert_eq!(split("INSERT INTO a VALUES ('x);").unwrap_err().line, 1);
        assert!(split("/* never closed").is_err());
    }

    #[test]
    fn keywords_are_checked_case_insensitively() {
        for ok in [
            "create table a (x int)",
            "ALTER TABLE a",
            "Insert into a values (1)",
            "DROP INDEX i",
            "DO $$ BEGIN END $$",
        ] {
            assert!(split(ok).unwrap()[0].is_allowed(), "{ok}");
        }
        for bad in [
            "UPDATE a SET x = 1",
            "DELETE FROM a",
            "SELECT 1",
            "GRANT ALL ON a TO b",
            "TRUNCATE a",
            "COPY a FROM STDIN",
        ] {
            assert!(!split(bad).unwrap()[0].is_allowed(), "{bad}");
        }
    }

    #[test]
    fn finds_tables_rewritten_by_stored_generated_columns() {
        let s = |t: &str| split(t).unwrap().remove(0).rewritten_table();
        assert_eq!(
            s(
                "ALTER TABLE executions_visibility ADD COLUMN x VARCHAR(255) GENERATED ALWAYS AS (search_attributes->>'x') STORED;"
            ),
            Some("executions_visibility".into())
        );
        assert_eq!(
            s(
                "ALTER TABLE IF EXISTS ONLY public.\"Vis\" ADD x INT GENERATED ALWAYS AS (y + 1) STORED"
            ),
            Some("Vis".into())
        );
        assert_eq!(
            s("ALTER TABLE Vis ADD x INT GENERATED ALWAYS AS (y) STORED"),
            Some("vis".into())
        );
        assert_eq!(s("ALTER TABLE a ADD COLUMN x INT"), None);
        assert_eq!(
            s("ALTER TABLE a ADD COLUMN x INT GENERATED ALWAYS AS IDENTITY"),
            None
        );
        assert_eq!(
            s("CREATE TABLE a (x INT GENERATED ALWAYS AS (1) STORED)"),
            None
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_literal("it's"), "E'it''s'");
        assert_eq!(quote_literal(r"a\b"), r"E'a\\b'");
    }
}
