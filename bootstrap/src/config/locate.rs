//! Maps field paths (`namespaces[0].search_attributes.CustomerId`) to source positions, so every
//! error, including the cross-field ones found after parsing, can say `FILE:LINE:COL`.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

/// Positions of every mapping key and sequence item of a YAML document.
#[derive(Debug, Default)]
pub struct PathIndex {
    positions: HashMap<String, Position>,
}

enum Frame {
    Map {
        path: String,
        expecting_key: bool,
        current_key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

impl PathIndex {
    /// Builds the index; a document the parser rejects yields an empty index (the syntax error is
    /// reported by the deserializer with its own position).
    pub fn build(text: &str) -> Self {
        let mut positions = HashMap::new();
        positions.insert(String::new(), Position { line: 1, col: 1 });
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let pos = Position {
                line: span.start.line(),
                col: span.start.col() + 1,
            };
            // The path of the node this event starts, if it is a value position.
            let node_path = |stack: &mut Vec<Frame>| -> Option<String> {
                match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Map {
                        path,
                        expecting_key,
                        current_key,
                    }) => {
                        if *expecting_key {
                            None
                        } else {
                            *expecting_key = true;
                            current_key.take().map(|k| join_key(path, &k))
                        }
                    }
                    Some(Frame::Seq { path, next }) => {
                        let p = format!("{path}[{next}]");
                        *next += 1;
                        Some(p)
                    }
                }
            };
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Map {
                        path,
                        expecting_key: true,
                        current_key,
                    }) = stack.last_mut()
                    {
                        let full = join_key(path, &value);
                        positions.entry(full).or_insert(pos);
                        *current_key = Some(value.to_string());
                        if let Some(Frame::Map { expecting_key, .. }) = stack.last_mut() {
                            *expecting_key = false;
                        }
                    } else if let Some(p) = node_path(&mut stack) {
                        positions.entry(p).or_insert(pos);
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_map = matches!(event, Event::MappingStart(..));
                    let p = node_path(&mut stack).unwrap_or_default();
                    positions.entry(p.clone()).or_insert(pos);
                    stack.push(if is_map {
                        Frame::Map {
                            path: p,
                            expecting_key: true,
                            current_key: None,
                        }
                    } else {
                        Frame::Seq { path: p, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Alias(..) => {
                    node_path(&mut stack);
                }
                _ => {}
            }
        }
        Self { positions }
    }

    /// The position of `path`, or of its nearest ancestor that exists in the document (a missing
    /// field is reported where its parent is).
    pub fn find(&self, path: &str) -> Position {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.positions.get(&p) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => {
                    return self
                        .positions
                        .get("")
                        .copied()
                        .unwrap_or(Position { line: 1, col: 1 });
                }
            }
        }
    }
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let doc = "cluster:\n  name: x\nnamespaces:\n  - name: a\n    search_attributes:\n      CustomerId: Keyword\n  - name: b\n";
        let idx = PathIndex::build(doc);
        assert_eq!(idx.find("cluster.name"), Position { line: 2, col: 3 });
        assert_eq!(
            idx.find("namespaces[0].search_attributes.CustomerId"),
            Position { line: 6, col: 7 }
        );
        assert_eq!(idx.find("namespaces[1].name"), Position { line: 7, col: 5 });
        // Missing fields resolve to the nearest ancestor.
        assert_eq!(
            idx.find("namespaces[1].retention"),
            Position { line: 7, col: 5 }
        );
    }
}
