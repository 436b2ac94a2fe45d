//! Splitting schema files into statements, and the checks run on each statement. Pure.
//!
//! The splitter understands what PostgreSQL itself understands in a script: `'...'` strings
//! (with `''` escapes, and backslash escapes in `E'...'`), `"..."` identifiers, dollar-quoted
//! bodies (`$$ ... $$`, `$tag$ ... $tag$`), `--` line comments and nested `/* */` comments. A `;`
//! inside any of these does not end a statement. Comments are removed from the statement text.

use std::fmt;

/// Statement kinds accepted in a schema file: the list `temporal-sql-tool` accepts
/// (`whitelistedCQLPrefixes`; `DO` since 1.30, whose visibility v1.2 starts with a `DO` block),
/// compared case-sensitively as the tool does, so a folder the tool refuses is refused here.
pub const ALLOWED_KEYWORDS: [&str; 5] = ["CREATE", "ALTER", "INSERT", "DROP", "DO"];

/// One statement of a schema file, without its terminating `;`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub text: String,
    /// 1-based line of the statement's first non-blank character in its file.
    pub line: usize,
}

impl Statement {
    /// The first word as written (`CREATE`, `create`, `DO`, ...).
    pub fn keyword(&self) -> String {
        self.text
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .find(|w| !w.is_empty())
            .unwrap_or("")
            .to_string()
    }

    /// Whether the tool would run it: the first word is one of [`ALLOWED_KEYWORDS`], in capitals.
    pub fn is_allowed(&self) -> bool {
        ALLOWED_KEYWORDS.contains(&self.keyword().as_str())
    }

    /// Whether the error `sqlstate` from running this statement means its effect is already
    /// in place, left by an earlier run of the same version that stopped half-way (a crashed
    /// `temporal-sql-tool`, which commits statement by statement, or a version run outside a
    /// transaction). `temporal-sql-tool` skips such a statement when the message says "already
    /// exist" or "not found"; this compares SQLSTATEs, and a "does not exist" only counts for a
    /// statement that removes something (for an `ALTER TABLE ... ADD` it is a real error).
    pub fn already_took_effect(&self, sqlstate: &str) -> bool {
        match sqlstate {
            // duplicate_table (also index, sequence, view), duplicate_column, duplicate_object
            // (constraint, extension, type), duplicate_schema, duplicate_function
            "42P07" | "42701" | "42710" | "42P06" | "42723" => true,
            // undefined_table, undefined_column, undefined_object (index, type, constraint)
            "42P01" | "42703" | "42704" => self.removes(),
            _ => false,
        }
    }

    /// `DROP ...`, or an `ALTER ...` that only drops (`ALTER TABLE t DROP COLUMN c`).
    fn removes(&self) -> bool {
        let words: Vec<String> = words_outside_parens(&self.text)
            .iter()
            .map(|w| w.to_ascii_uppercase())
            .collect();
        match words.first().map(String::as_str) {
            Some("DROP") => true,
            Some("ALTER") => {
                words.iter().any(|w| w == "DROP")
                    && !words
                        .iter()
                        .any(|w| matches!(w.as_str(), "ADD" | "RENAME" | "TYPE" | "SET"))
            }
            _ => false,
        }
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
    let mut s = Splitter {
        chars: script.chars().collect(),
        i: 0,
        line: 1,
        state: State::Normal,
        cur: String::new(),
        cur_line: None,
        out: Vec::new(),
    };
    while s.i < s.chars.len() {
        let c = s.chars[s.i];
        let next = s.chars.get(s.i + 1).copied();
        match s.state {
            State::Normal => s.normal(c, next),
            State::Single { escapes, .. } => s.single(escapes, c, next),
            State::Double { .. } => s.double(c, next),
            State::Dollar { .. } => {
                if s.dollar_close(c) {
                    continue;
                }
                s.push(c);
            }
            State::LineComment => s.line_comment(c),
            State::Block { .. } => s.block(c, next),
        }
        if c == '\n' {
            s.line += 1;
        }
        s.i += 1;
    }
    s.finish()
}

/// The splitter's position in the script and the statement being collected. Each state has its
/// handler; a handler that consumes more than the current character advances `i` past the extra
/// ones (the loop in [`split`] advances past the current one).
struct Splitter {
    chars: Vec<char>,
    i: usize,
    line: usize,
    state: State,
    /// The statement so far, comments removed.
    cur: String,
    /// Line of its first non-blank character.
    cur_line: Option<usize>,
    out: Vec<Statement>,
}

impl Splitter {
    /// Adds `c` to the statement; leading whitespace is dropped.
    fn push(&mut self, c: char) {
        if self.cur_line.is_none() && !c.is_whitespace() {
            self.cur_line = Some(self.line);
        }
        if self.cur_line.is_some() {
            self.cur.push(c);
        }
    }

    /// Ends the statement at a `;` (or the end of the script), dropping an empty one.
    fn end_statement(&mut self) {
        let text = self.cur.trim_end().to_string();
        if let (false, Some(l)) = (text.is_empty(), self.cur_line) {
            self.out.push(Statement { text, line: l });
        }
        self.cur.clear();
        self.cur_line = None;
    }

    fn normal(&mut self, c: char, next: Option<char>) {
        match c {
            ';' => self.end_statement(),
            '-' if next == Some('-') => {
                self.state = State::LineComment;
                self.i += 1;
            }
            '/' if next == Some('*') => {
                self.state = State::Block {
                    depth: 1,
                    start: self.line,
                };
                // A comment separates tokens like whitespace does.
                if self.cur_line.is_some() {
                    self.cur.push(' ');
                }
                self.i += 1;
            }
            '\'' => {
                let i = self.i;
                let prev = if i > 0 { Some(self.chars[i - 1]) } else { None };
                let before = if i > 1 { Some(self.chars[i - 2]) } else { None };
                let escapes = matches!(prev, Some('e' | 'E')) && !before.is_some_and(is_ident_char);
                self.state = State::Single {
                    escapes,
                    start: self.line,
                };
                self.push(c);
            }
            '"' => {
                self.state = State::Double { start: self.line };
                self.push(c);
            }
            '$' if !(self.i > 0 && is_ident_char(self.chars[self.i - 1])) => self.dollar_open(c),
            _ => self.push(c),
        }
    }

    /// `$tag$` or `$$` opens a dollar-quoted body; `$1` (a parameter) is not a quote.
    fn dollar_open(&mut self, c: char) {
        let i = self.i;
        let mut j = i + 1;
        while j < self.chars.len() && (self.chars[j].is_alphanumeric() || self.chars[j] == '_') {
            j += 1;
        }
        let tag: String = self.chars[i + 1..j].iter().collect();
        let valid_tag = tag.is_empty() || !tag.starts_with(|ch: char| ch.is_ascii_digit());
        if j < self.chars.len() && self.chars[j] == '$' && valid_tag {
            for k in i..=j {
                self.push(self.chars[k]);
            }
            self.state = State::Dollar {
                tag,
                start: self.line,
            };
            self.i = j;
        } else {
            self.push(c);
        }
    }

    /// Inside `'...'`: `''` is a quote; with `E'...'`, a backslash escapes the next character.
    fn single(&mut self, escapes: bool, c: char, next: Option<char>) {
        self.push(c);
        if escapes && c == '\\' {
            if let Some(n) = next {
                self.push(n);
                if n == '\n' {
                    self.line += 1;
                }
                self.i += 1;
            }
        } else if c == '\'' {
            if next == Some('\'') {
                self.push('\'');
                self.i += 1;
            } else {
                self.state = State::Normal;
            }
        }
    }

    /// Inside `"..."`: `""` is a quote.
    fn double(&mut self, c: char, next: Option<char>) {
        self.push(c);
        if c == '"' {
            if next == Some('"') {
                self.push('"');
                self.i += 1;
            } else {
                self.state = State::Normal;
            }
        }
    }

    /// Inside a dollar-quoted body: whether `c` starts its closing `$tag$`, which is then
    /// consumed whole (`i` moves past it).
    fn dollar_close(&mut self, c: char) -> bool {
        let State::Dollar { tag, .. } = &self.state else {
            return false;
        };
        if c != '$' {
            return false;
        }
        let close: Vec<char> = format!("${tag}$").chars().collect();
        if !self.chars[self.i..].starts_with(&close) {
            return false;
        }
        for &ch in &close {
            self.push(ch);
        }
        self.i += close.len();
        self.state = State::Normal;
        true
    }

    /// A `--` comment ends at the line's end; the newline is kept.
    fn line_comment(&mut self, c: char) {
        if c == '\n' {
            self.state = State::Normal;
            if self.cur_line.is_some() {
                self.cur.push('\n');
            }
        }
    }

    /// `/* */` comments nest.
    fn block(&mut self, c: char, next: Option<char>) {
        let State::Block { depth, .. } = &mut self.state else {
            return;
        };
        if c == '*' && next == Some('/') {
            *depth -= 1;
            self.i += 1;
            if *depth == 0 {
                self.state = State::Normal;
            }
        } else if c == '/' && next == Some('*') {
            *depth += 1;
            self.i += 1;
        }
    }

    /// The end of the script: an open quote or comment is an error; a last statement without
    /// `;` counts.
    fn finish(mut self) -> Result<Vec<Statement>, SplitError> {
        let unterminated = |what: &str, start: usize| SplitError {
            line: start,
            message: format!("{what} opened here is never closed"),
        };
        match &self.state {
            State::Normal | State::LineComment => {}
            State::Single { start, .. } => {
                return Err(unterminated("string literal '...'", *start));
            }
            State::Double { start } => {
                return Err(unterminated("quoted identifier \"...\"", *start));
            }
            State::Dollar { tag, start } => {
                return Err(unterminated(&format!("dollar-quoted body ${tag}$"), *start));
            }
            State::Block { start, .. } => return Err(unterminated("comment /* */", *start)),
        }
        self.end_statement();
        Ok(self.out)
    }
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
    fn keywords_are_checked_case_sensitively_like_the_tool() {
        for ok in [
            "CREATE table a (x int)",
            "ALTER TABLE a",
            "INSERT into a values (1)",
            "DROP INDEX i",
            "DO LANGUAGE 'plpgsql' $$ BEGIN END $$",
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
            // temporal-sql-tool refuses these: its prefixes are compared case-sensitively.
            "create table a (x int)",
            "Insert into a values (1)",
            "do $$ BEGIN END $$",
        ] {
            assert!(!split(bad).unwrap()[0].is_allowed(), "{bad}");
        }
    }

    #[test]
    fn statements_that_already_took_effect_are_told_by_sqlstate() {
        let st = |t: &str| split(t).unwrap().remove(0);
        let create = st("CREATE TABLE nexus_endpoints (id BYTEA NOT NULL, PRIMARY KEY (id))");
        assert!(create.already_took_effect("42P07"));
        assert!(!create.already_took_effect("42P01"));
        assert!(!create.already_took_effect("23505"));
        let add = st("ALTER TABLE executions_visibility ADD COLUMN x JSONB");
        assert!(add.already_took_effect("42701"));
        assert!(
            !add.already_took_effect("42P01"),
            "a missing table under an ADD is a real error"
        );
        let drop = st("DROP TABLE nexus_incoming_services");
        assert!(drop.already_took_effect("42P01"));
        assert!(st("DROP INDEX by_x").already_took_effect("42704"));
        let drop_column = st("ALTER TABLE current_executions DROP COLUMN data_encoding");
        assert!(drop_column.already_took_effect("42703"));
        assert!(!st("ALTER TABLE t DROP COLUMN a, ADD COLUMN b INT").already_took_effect("42703"));
        assert!(!st("INSERT INTO t VALUES (1)").already_took_effect("23505"));
        assert!(st("CREATE INDEX i ON t (x)").already_took_effect("42P07"));
        assert!(st("CREATE EXTENSION btree_gin").already_took_effect("42710"));
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
