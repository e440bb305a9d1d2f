//! "Oldest wins": the one rule every conflict between objects follows (two Stages claiming a
//! host and base path, or disagreeing on an API's flavour; two ApiRoutes of one shape with
//! overlapping methods; and the API keys and usage plans to come). The older object keeps
//! what it claims; the younger gets Accepted=False, reason Conflict, naming the older one.

use super::conditions::Failure;
use crate::model::Meta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tollhouse_snapshot::Reason;

/// An object that can lose a conflict.
pub(super) trait Contender {
    /// Its metadata, for its age.
    fn meta(&self) -> &Meta;
    /// Whether it is still in the running (valid so far).
    fn contends(&self) -> bool;
    /// Marks it not accepted.
    fn reject(&mut self, failure: Failure);
}

/// Sort key meaning "older first": creation time, then first-seen order, then namespace/name.
fn age(meta: &Meta) -> (bool, Option<&Time>, u64, &str, &str) {
    (
        meta.created.is_none(),
        meta.created.as_ref(),
        meta.seen,
        &meta.namespace,
        &meta.name,
    )
}

/// Offers every contending object, oldest first, to `claim`, which either records what the
/// object claims (`Ok`) or says which older object already holds it (`Err`, the message): then
/// the object is rejected with reason Conflict.
pub(super) fn oldest_wins<C: Contender>(
    items: &mut [C],
    mut claim: impl FnMut(&C) -> Result<(), String>,
) {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by(|&a, &b| age(items[a].meta()).cmp(&age(items[b].meta())));
    for i in order {
        let item = &mut items[i];
        if !item.contends() {
            continue;
        }
        if let Err(message) = claim(item) {
            item.reject(Failure {
                reason: Reason::Conflict,
                message,
            });
        }
    }
}

/// `items` oldest first, by the same rule as [`oldest_wins`].
pub(super) fn by_age<T>(items: &[crate::model::Resource<T>]) -> Vec<&crate::model::Resource<T>> {
    let mut sorted: Vec<_> = items.iter().collect();
    sorted.sort_by(|a, b| age(&a.meta).cmp(&age(&b.meta)));
    sorted
}

/// `namespace/name` of an object, as conflict messages name the holder.
pub(super) fn holder(meta: &Meta) -> String {
    format!("{}/{}", meta.namespace, meta.name)
}
