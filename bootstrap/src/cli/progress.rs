//! The terminal progress bar of schema migrations: draws the [`SchemaProgress`] events the
//! PostgreSQL adapter reports.
//!
//! Flow: [`schema_bar`] gives a receiver when stderr is a terminal; each apply with schema work
//! starts a bar (`Started`), names the version in progress, advances per statement, prints the
//! lines of applied versions above the bar, and clears it (`Finished`).
//!
//! Guarantees: nothing is drawn when stderr is not a terminal (logs carry the progress then).
//!
//! Assumptions: the steps of a run apply one after the other, so one bar at a time.
//!
//! Caveats: none known.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use crate::postgres::{ProgressSink, SchemaProgress};

/// A progress bar on stderr for schema migrations, or `None` when stderr is not a terminal.
pub fn schema_bar() -> Option<ProgressSink> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);
    Some(Arc::new(move |event| {
        // A poisoned lock only means an earlier event panicked while drawing: skip drawing.
        if let Ok(mut bar) = bar.lock() {
            draw(&mut bar, event);
        }
    }))
}

fn draw(bar: &mut Option<indicatif::ProgressBar>, event: SchemaProgress) {
    match event {
        SchemaProgress::Started { total } => {
            let b = indicatif::ProgressBar::new(total);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} {msg}")
            {
                b.set_style(style.progress_chars("=> "));
            }
            *bar = Some(b);
        }
        SchemaProgress::Version {
            database,
            version,
            description,
        } => {
            if let Some(b) = bar {
                b.set_message(format!("{database} v{version}: {description}"));
            }
        }
        SchemaProgress::Advanced(n) => {
            if let Some(b) = bar {
                b.inc(n);
            }
        }
        SchemaProgress::Line(line) => {
            if let Some(b) = bar {
                b.println(line);
            }
        }
        SchemaProgress::Finished => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
    }
}
