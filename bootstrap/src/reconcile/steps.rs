//! The step registry: one entry per built step. A step missing here is reported as
//! "not implemented yet" by the runner.

use super::Step;

pub(super) fn registry() -> Vec<Box<dyn Step>> {
    vec![
        Box::new(crate::postgres::PersistenceStep::default()),
        Box::new(crate::postgres::VisibilityStep::default()),
    ]
}
