//! ABCI events. Indexed attributes are what CometBFT's `tx_search` and
//! websocket subscriptions can filter on, e.g. `transfer.recipient='<hex>'`.

use compute_proto::JobId;
pub use tendermint_proto::v0_38::abci::{Event, EventAttribute};

/// Builds an event of `kind` from `(key, value, indexed)` attributes.
pub fn event(kind: &str, attributes: &[(&str, String, bool)]) -> Event {
    Event {
        r#type: kind.to_owned(),
        attributes: attributes
            .iter()
            .map(|(key, value, index)| EventAttribute {
                key: (*key).to_owned(),
                value: value.clone(),
                index: *index,
            })
            .collect(),
    }
}

/// An event about one task of a job: indexed `job` and `task` attributes,
/// then `rest`.
pub fn task_event(kind: &str, job: &JobId, task: u32, rest: &[(&str, String, bool)]) -> Event {
    let mut attributes = vec![
        ("job", job.to_hex(), true),
        ("task", task.to_string(), true),
    ];
    attributes.extend(rest.iter().cloned());
    event(kind, &attributes)
}
