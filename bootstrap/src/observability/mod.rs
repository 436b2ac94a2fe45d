//! Alert rules and dashboards: rendering (pure, `rules`) and the two loaders, the steps
//! `alert-rules` (Prometheus) and `dashboards` (Grafana).

pub mod grafana;
pub mod prometheus;
pub mod rules;
