//! What the client has seen of the tenant's dialect: the points where the vendor's documents
//! disagree or are silent (list casing, paging, the delete and validate replies, the time unit).
//! Recorded as replies arrive, shared by every client of one tenant, read by `doctor` and the
//! broker. Observation only: nothing here changes how a reply is decoded.

use serde::Serialize;

use super::replies::DeleteOutcome;
use super::time_unit::TimeUnit;
use super::wire::KeyRecord;

/// How `get_api_keys` spells its fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListCasing {
    /// `DATA`/`TOTAL_COUNT`/`FILTER_COUNT`, as documented.
    Upper,
    /// `data`/`total_count`/`filter_count`.
    Lower,
}

/// Whether the tenant honours `search_from`/`search_to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Paging {
    /// Every match fitted in one page: nothing learned.
    Unknown,
    /// A later page brought new keys.
    Honoured,
    /// The tenant returned more than a page, or the same page again.
    Ignored,
}

/// How `delete` answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReplyShape {
    /// `{"update_count": n}`
    UpdateCount,
    /// `{"reply": true}` without a count.
    ReplyTrue,
}

/// Which form of `validate` the tenant answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidateForm {
    /// `GET /api_keys/validate` (the vendor's Go SDK).
    Get,
    /// `POST /api_keys/validate/` with `{"request_data": {}}` (a vendor request collection).
    Post,
}

/// The dialect seen so far; `None` where no reply has told yet.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ObservedDialect {
    pub list_casing: Option<ListCasing>,
    pub paging: Option<Paging>,
    pub delete_reply: Option<DeleteReplyShape>,
    pub validate: Option<ValidateForm>,
    /// From the `creation_time` (else `expiration`) of listed records, see
    /// [`TimeUnit::from_records`]; the latest listing with evidence wins.
    pub time_unit: Option<TimeUnit>,
}

impl ObservedDialect {
    pub(super) fn saw_list(&mut self, casing: Option<ListCasing>, records: &[KeyRecord]) {
        if casing.is_some() {
            self.list_casing = casing;
        }
        if let Some(unit) = TimeUnit::from_records(records) {
            self.time_unit = Some(unit);
        }
    }

    pub(super) fn saw_paging(&mut self, paging: Paging) {
        // One page tells nothing; never forget what a longer listing showed.
        if paging != Paging::Unknown || self.paging.is_none() {
            self.paging = Some(paging);
        }
    }

    pub(super) fn saw_delete(&mut self, outcome: DeleteOutcome) {
        self.delete_reply = Some(match outcome {
            DeleteOutcome::Count(_) => DeleteReplyShape::UpdateCount,
            DeleteOutcome::Accepted => DeleteReplyShape::ReplyTrue,
        });
    }
}

/// The casing of a list reply body, from its field names.
pub(super) fn list_casing(body: &[u8]) -> Option<ListCasing> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let list = value.get("reply").unwrap_or(&value);
    if list.get("DATA").is_some() {
        Some(ListCasing::Upper)
    } else if list.get("data").is_some() {
        Some(ListCasing::Lower)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casing_and_paging_are_remembered() {
        assert_eq!(
            list_casing(br#"{"reply":{"DATA":[]}}"#),
            Some(ListCasing::Upper)
        );
        assert_eq!(list_casing(br#"{"data":[]}"#), Some(ListCasing::Lower));
        assert_eq!(list_casing(b"[]"), None);
        let mut seen = ObservedDialect::default();
        seen.saw_paging(Paging::Unknown);
        assert_eq!(seen.paging, Some(Paging::Unknown));
        seen.saw_paging(Paging::Ignored);
        seen.saw_paging(Paging::Unknown);
        assert_eq!(seen.paging, Some(Paging::Ignored));
        seen.saw_delete(DeleteOutcome::Accepted);
        assert_eq!(seen.delete_reply, Some(DeleteReplyShape::ReplyTrue));
    }
}
