//! Reading an inventory of any size. `search_from`/`search_to` appear only in third-party code,
//! so a tenant may ignore them: pages are advanced by what actually came back, the walk stops on
//! `FILTER_COUNT`, on a short or empty page, or on a page that brings nothing new, and exact
//! duplicates are dropped. Narrow filters (ids `in`, `expiration` `gte`) keep listings small.

use std::collections::HashMap;

use super::client::Client;
use super::dialect::Paging;
use super::error::PapiError;
use super::wire::{Filter, KeyRecord, ListRequest};

/// Records asked for per page.
pub const LIST_PAGE: u64 = 100;
/// Pages read at most in one listing (5,000 keys at the full page size).
pub const LIST_MAX_PAGES: u32 = 50;

/// Every key matching some filters, and what the walk learned.
#[derive(Debug, Clone, PartialEq)]
pub struct Listing {
    /// Each id once; a second, *different* record for an id is kept too (a tenant that lists
    /// one key two ways cannot be trusted about it, and the caller must see that).
    pub records: Vec<KeyRecord>,
    /// The tenant's `FILTER_COUNT` (0 when it sent none).
    pub filter_count: u64,
    pub total_count: u64,
    pub paging: Paging,
    /// Every matching key was read. False when the page limit was reached, or the tenant
    /// ignores paging and caps its reply below `FILTER_COUNT`: narrow the filters then.
    pub complete: bool,
    /// Exact copies of a record already read (repeated pages, overlapping pages).
    pub duplicates_dropped: usize,
    /// `get_api_keys` calls made.
    pub pages_read: u32,
}

impl Client {
    /// Every key matching `filters`, across pages (see the module comment). Prefer narrow
    /// filters: `Filter::ids` for known keys, `Filter::expiration_gte` for live ones.
    pub async fn list_all(&self, filters: Vec<Filter>) -> Result<Listing, PapiError> {
        let mut seen: HashMap<i64, Vec<KeyRecord>> = HashMap::new();
        let mut listing = Listing {
            records: Vec::new(),
            filter_count: 0,
            total_count: 0,
            paging: Paging::Unknown,
            complete: false,
            duplicates_dropped: 0,
            pages_read: 0,
        };
        let mut from = 0u64;
        while listing.pages_read < LIST_MAX_PAGES {
            let req = ListRequest {
                filters: filters.clone(),
                sort: None,
                search_from: Some(from),
                search_to: Some(from + LIST_PAGE),
            };
            let reply = self.get_api_keys(&req).await?;
            listing.pages_read += 1;
            listing.filter_count = reply.filter_count;
            listing.total_count = reply.total_count;
            let returned = reply.data.len() as u64;
            let mut added = 0;
            for record in reply.data {
                let copies = seen.entry(record.id).or_default();
                if copies.contains(&record) {
                    listing.duplicates_dropped += 1;
                } else {
                    copies.push(record.clone());
                    listing.records.push(record);
                    added += 1;
                }
            }
            let unique = seen.len() as u64;
            let counted = listing.filter_count > 0;
            if returned > LIST_PAGE {
                // More than a page: the tenant ignored search_to and sent everything.
                listing.paging = Paging::Ignored;
                listing.complete = true;
                break;
            }
            if listing.pages_read > 1 {
                if returned > 0 && added == 0 {
                    // The same page again: search_from is ignored; asking again cannot help.
                    listing.paging = Paging::Ignored;
                    listing.complete = counted && unique >= listing.filter_count;
                    break;
                }
                if added > 0 {
                    listing.paging = Paging::Honoured;
                }
            }
            if returned == 0 || (counted && unique >= listing.filter_count) {
                listing.complete = true;
                break;
            }
            // Without a count a short page is the last; with one, a tenant with smaller pages
            // is followed until the count is reached.
            if !counted && returned < LIST_PAGE {
                listing.complete = true;
                break;
            }
            from += returned;
        }
        if !listing.complete {
            tracing::warn!(
                pages = listing.pages_read,
                read = seen.len(),
                filter_count = listing.filter_count,
                paging = ?listing.paging,
                "inventory listing is incomplete"
            );
        }
        self.observe(|d| d.saw_paging(listing.paging));
        Ok(listing)
    }
}
