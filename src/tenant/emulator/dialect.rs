//! The tenant dialects: where the vendor's documents disagree or are silent, the emulator can
//! speak each reading, so scanmint is tested against every one (`--dialect X[,Y]`, `all`).
//! Inside, the emulator always keeps epoch ms; a dialect only changes what goes over the wire.

use serde::{Deserialize, Serialize};

use super::{ErrorEnvelope, FailureKind, Faults};

/// How the API speaks where tenants differ. Part of [`Faults`], so it can change at run time.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct Dialect {
    /// `expiration` (sent and listed) and `creation_time` in epoch seconds, not ms. A ms value
    /// sent to `generate` is then taken as seconds: an expiry tens of thousands of years away.
    pub seconds: bool,
    pub delete_reply: DeleteReply,
    pub validate_reply: ValidateReply,
    /// `validate` answers only `POST /api_keys/validate/`; the documented `GET` is a 404.
    pub validate_post: bool,
    /// `get_api_keys` ignores `search_from`/`search_to` and returns every match.
    pub ignore_paging: bool,
    /// `err_code` is a string (`"403"`), not an integer.
    pub err_code_string: bool,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeleteReply {
    /// `{"reply": {"update_count": n}}`
    #[default]
    UpdateCount,
    /// `{"reply": true}`
    ReplyTrue,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ValidateReply {
    /// `true`
    #[default]
    Bool,
    /// `"true"`
    String,
    /// `{"reply": true}`
    Reply,
}

/// `generate` mints the key, then answers as if it failed: the caller cannot know whether it
/// landed. Counts down; the fault is gone after `remaining` such answers.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct UncertainGenerate {
    /// A status (e.g. 503) or `drop` (close the connection without a reply).
    pub kind: FailureKind,
    pub remaining: u32,
}

/// Every name `--dialect` takes: (name, part of `all`, what it does).
pub const DIALECTS: &[(&str, bool, &str)] = &[
    (
        "seconds",
        true,
        "expiration and creation_time in epoch seconds",
    ),
    (
        "delete-reply-true",
        true,
        "delete answers {\"reply\": true} without a count",
    ),
    (
        "validate-string",
        true,
        "validate answers \"true\" (a string)",
    ),
    (
        "validate-reply",
        false,
        "validate answers {\"reply\": true}",
    ),
    (
        "validate-post",
        true,
        "validate only as POST /api_keys/validate/ (GET is a 404)",
    ),
    (
        "lowercase-list",
        true,
        "get_api_keys answers data/total_count/filter_count",
    ),
    (
        "root-errors",
        false,
        "error fields at the root, err_code as a string",
    ),
    (
        "camel-errors",
        false,
        "errors as a root errorCode/message/details",
    ),
    (
        "metadata-errors",
        true,
        "errors as data.err_msg, data.metadata.err_code (a string) and data.metadata.err_extra",
    ),
    (
        "ignore-paging",
        true,
        "get_api_keys ignores search_from/search_to and returns every match",
    ),
    (
        "uncertain-generate",
        true,
        "the first 2 generates mint the key, then answer 503",
    ),
];

/// How many `generate`s the `uncertain-generate` dialect makes uncertain.
pub const UNCERTAIN_GENERATES: u32 = 2;

impl Faults {
    /// Turn on the dialects named in `spec` (comma-separated names from [`DIALECTS`], or
    /// `all`); later names win where two set the same thing.
    pub fn apply_dialects(&mut self, spec: &str) -> Result<(), String> {
        for name in spec.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "all" {
                for (name, in_all, _) in DIALECTS {
                    if *in_all {
                        self.apply_dialect(name)?;
                    }
                }
            } else {
                self.apply_dialect(name)?;
            }
        }
        Ok(())
    }

    /// Default faults speaking the dialects of `spec`.
    pub fn with_dialects(spec: &str) -> Result<Faults, String> {
        let mut faults = Faults::default();
        faults.apply_dialects(spec)?;
        Ok(faults)
    }

    fn apply_dialect(&mut self, name: &str) -> Result<(), String> {
        let d = &mut self.dialect;
        match name {
            "seconds" => d.seconds = true,
            "delete-reply-true" => d.delete_reply = DeleteReply::ReplyTrue,
            "validate-string" => d.validate_reply = ValidateReply::String,
            "validate-reply" => d.validate_reply = ValidateReply::Reply,
            "validate-post" => d.validate_post = true,
            "lowercase-list" => self.lowercase_list = true,
            "root-errors" => {
                self.error_envelope = ErrorEnvelope::Root;
                d.err_code_string = true;
            }
            "camel-errors" => self.error_envelope = ErrorEnvelope::Camel,
            "metadata-errors" => {
                self.error_envelope = ErrorEnvelope::Metadata;
                d.err_code_string = true;
            }
            "ignore-paging" => d.ignore_paging = true,
            "uncertain-generate" => {
                self.uncertain_generate = Some(UncertainGenerate {
                    kind: FailureKind::Status(503),
                    remaining: UNCERTAIN_GENERATES,
                })
            }
            other => {
                let names: Vec<&str> = DIALECTS.iter().map(|(n, _, _)| *n).collect();
                return Err(format!(
                    "unknown dialect {other:?}; expected all or any of {}",
                    names.join(", ")
                ));
            }
        }
        Ok(())
    }
}

impl Dialect {
    /// A timestamp from the wire (the dialect's unit) as epoch ms; saturating, so an absurd
    /// value stays absurd.
    pub fn to_ms(&self, wire: i64) -> i64 {
        if self.seconds {
            wire.saturating_mul(1000)
        } else {
            wire
        }
    }

    /// Epoch ms as the dialect writes it.
    pub fn from_ms(&self, ms: i64) -> i64 {
        if self.seconds {
            ms.div_euclid(1000)
        } else {
            ms
        }
    }

    pub fn unit_name(&self) -> &'static str {
        if self.seconds {
            "seconds"
        } else {
            "milliseconds"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_dialect_applies_and_all_combines_its_share() {
        for (name, _, _) in DIALECTS {
            let faults = Faults::with_dialects(name).unwrap();
            assert_ne!(faults, Faults::default(), "{name} changes nothing");
        }
        let all = Faults::with_dialects("all").unwrap();
        assert!(all.dialect.seconds && all.dialect.ignore_paging && all.dialect.validate_post);
        assert!(all.lowercase_list);
        assert_eq!(all.error_envelope, ErrorEnvelope::Metadata);
        assert_eq!(all.dialect.delete_reply, DeleteReply::ReplyTrue);
        assert_eq!(
            all.uncertain_generate.unwrap().remaining,
            UNCERTAIN_GENERATES
        );
        let two = Faults::with_dialects("seconds, lowercase-list").unwrap();
        assert!(two.dialect.seconds && two.lowercase_list && !two.dialect.ignore_paging);
        let err = Faults::with_dialects("seconds,klingon").unwrap_err();
        assert!(
            err.contains("klingon") && err.contains("ignore-paging"),
            "{err}"
        );
    }

    #[test]
    fn seconds_convert_both_ways() {
        let d = Dialect {
            seconds: true,
            ..Dialect::default()
        };
        assert_eq!(d.to_ms(1_773_147_108), 1_773_147_108_000);
        assert_eq!(d.from_ms(1_773_147_108_999), 1_773_147_108);
        assert_eq!(d.to_ms(i64::MAX), i64::MAX);
        assert_eq!(Dialect::default().to_ms(5), 5);
    }
}
