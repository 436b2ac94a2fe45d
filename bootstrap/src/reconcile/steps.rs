//! The step registry: one entry per built step. A step missing here is reported as
//! "not implemented yet" by the runner.

use super::Step;

pub(super) fn registry() -> Vec<Box<dyn Step>> {
    let mut steps: Vec<Box<dyn Step>> = Vec::new();
    // cluster, namespaces, search-attributes
    steps.extend(crate::temporal::steps());
    steps
}
