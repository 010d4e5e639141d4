//! The `filters` of `get_api_keys` and `delete`: parsing (400 for malformed shapes, 500 for
//! unsupported fields or operators, like the tenant's other semantic errors) and matching.

use serde_json::{Value, json};

use super::Dialect;
use super::errors::ApiError;
use super::state;

/// One parsed filter of `get_api_keys` / `delete`.
#[derive(Debug, PartialEq)]
pub(super) enum Predicate {
    IdIn(Vec<i64>),
    ExpirationGte(i64),
    ExpirationLte(i64),
    /// The key holds every one of these roles.
    RolesContain(Vec<String>),
}

impl Predicate {
    /// Filter values arrive in the dialect's unit; the inventory keeps ms.
    pub(super) fn in_ms(self, dialect: &Dialect) -> Predicate {
        match self {
            Predicate::ExpirationGte(t) => Predicate::ExpirationGte(dialect.to_ms(t)),
            Predicate::ExpirationLte(t) => Predicate::ExpirationLte(dialect.to_ms(t)),
            other => other,
        }
    }

    pub(super) fn matches(&self, k: &state::KeyEntry) -> bool {
        match self {
            Predicate::IdIn(ids) => ids.contains(&k.id),
            // A key that never expires (`null`) counts as expiring at +infinity.
            Predicate::ExpirationGte(t) => k.expiration.is_none_or(|e| e >= *t),
            Predicate::ExpirationLte(t) => k.expiration.is_some_and(|e| e <= *t),
            Predicate::RolesContain(roles) => roles.iter().all(|r| k.roles.contains(r)),
        }
    }
}

/// Parse `filters`. Malformed shapes and ill-typed values are 400; well-formed filters on an
/// unsupported field or operator are 500, like the tenant's other semantic errors.
pub(super) fn parse_filters(value: Option<&Value>) -> Result<Vec<Predicate>, ApiError> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::bad_request("filters must be an array")),
    };
    let mut out = Vec::new();
    for item in items {
        let obj = item
            .as_object()
            .ok_or_else(|| ApiError::bad_request("each filter must be an object"))?;
        let field = obj
            .get("field")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("filter field must be a string"))?;
        let operator = obj
            .get("operator")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::bad_request("filter operator must be a string"))?;
        let value = obj
            .get("value")
            .ok_or_else(|| ApiError::bad_request("filter value is missing"))?;
        let int = |v: &Value| {
            v.as_i64().ok_or_else(|| {
                ApiError::bad_request(format!("filter on {field}: value must be an integer"))
            })
        };
        let predicate = match (field, operator.to_ascii_lowercase().as_str()) {
            ("id", "in") => match value {
                Value::Array(ids) => Predicate::IdIn(ids.iter().map(int).collect::<Result<_, _>>()?),
                single => Predicate::IdIn(vec![int(single)?]),
            },
            ("expiration", "gte") => Predicate::ExpirationGte(int(value)?),
            ("expiration", "lte") => Predicate::ExpirationLte(int(value)?),
            ("roles", "contains") => match value {
                Value::String(r) => Predicate::RolesContain(vec![r.clone()]),
                Value::Array(rs) => Predicate::RolesContain(
                    rs.iter()
                        .map(|r| {
                            r.as_str().map(str::to_string).ok_or_else(|| {
                                ApiError::bad_request("filter on roles: value must be a role name or an array of them")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
                _ => {
                    return Err(ApiError::bad_request(
                        "filter on roles: value must be a role name or an array of them",
                    ));
                }
            },
            _ => {
                return Err(ApiError::general(format!(
                    "Unsupported filter: field {field:?} with operator {operator:?}"
                ))
                .with_extra(json!([{"field": field, "operator": operator}])));
            }
        };
        out.push(predicate);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_parse_and_classify_errors() {
        let ok = json!([
            {"field": "id", "operator": "in", "value": [1, 2]},
            {"field": "expiration", "operator": "gte", "value": 5},
            {"field": "roles", "operator": "contains", "value": "CLI Role"},
        ]);
        assert_eq!(
            parse_filters(Some(&ok)).unwrap(),
            vec![
                Predicate::IdIn(vec![1, 2]),
                Predicate::ExpirationGte(5),
                Predicate::RolesContain(vec!["CLI Role".into()]),
            ]
        );
        let unknown = json!([{"field": "name", "operator": "in", "value": [1]}]);
        assert_eq!(parse_filters(Some(&unknown)).unwrap_err().status, 500);
        let ill_typed = json!([{"field": "id", "operator": "in", "value": ["x"]}]);
        assert_eq!(parse_filters(Some(&ill_typed)).unwrap_err().status, 400);
        assert_eq!(parse_filters(Some(&json!({}))).unwrap_err().status, 400);
    }
}
