//! [`AccessBoundary`]: which resources, with which roles, a downscoped token may reach.

use serde_json::{Value, json};
use workload_auth_core::{Error, ErrorKind, Result};

/// Most rules one boundary may hold (the Security Token Service refuses more).
pub const MAX_RULES: usize = 10;

/// The prefix every available permission carries: downscoping works on predefined or custom
/// roles, not on single permissions.
const ROLE_PREFIX: &str = "inRole:";

/// A CEL condition that narrows a rule to some of its resource's objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvailabilityCondition {
    /// The CEL expression, e.g.
    /// `resource.name.startsWith("projects/_/buckets/b/objects/customer-a")`.
    pub expression: String,
    /// A short name for the condition (optional).
    pub title: Option<String>,
    /// What the condition is for (optional).
    pub description: Option<String>,
}

impl AvailabilityCondition {
    /// A condition with only an expression.
    pub fn new(expression: impl Into<String>) -> Self {
        Self {
            expression: expression.into(),
            title: None,
            description: None,
        }
    }
}

/// One rule: a resource, the roles available on it, and an optional condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessBoundaryRule {
    /// The full resource name, e.g. `//storage.googleapis.com/projects/_/buckets/my-bucket`.
    pub available_resource: String,
    /// Roles available on the resource, each `inRole:ROLE`
    /// (e.g. `inRole:roles/storage.objectViewer`).
    pub available_permissions: Vec<String>,
    /// Narrows the rule to objects matching a CEL expression.
    pub availability_condition: Option<AvailabilityCondition>,
}

impl AccessBoundaryRule {
    /// A rule without a condition.
    pub fn new<P: Into<String>>(
        available_resource: impl Into<String>,
        available_permissions: impl IntoIterator<Item = P>,
    ) -> Self {
        Self {
            available_resource: available_resource.into(),
            available_permissions: available_permissions.into_iter().map(Into::into).collect(),
            availability_condition: None,
        }
    }

    /// This rule, narrowed by `condition`.
    #[must_use]
    pub fn with_condition(mut self, condition: AvailabilityCondition) -> Self {
        self.availability_condition = Some(condition);
        self
    }
}

/// A credential access boundary: the upper bound of what a downscoped token may do.
///
/// Checked when made ([`AccessBoundary::new`], [`AccessBoundary::from_json`]): 1 to
/// [`MAX_RULES`] rules, each with a resource and at least one `inRole:` permission, and a
/// non-empty expression when a condition is given. Errors name the rule and the field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessBoundary {
    rules: Vec<AccessBoundaryRule>,
}

fn invalid(message: String) -> Error {
    Error::new(ErrorKind::InvalidArgument, message).with_hint(
        "a credential access boundary holds 1 to 10 rules, each with an `availableResource` \
         and `availablePermissions` of the form inRole:ROLE",
    )
}

impl AccessBoundary {
    /// A boundary of `rules`, checked.
    pub fn new(rules: Vec<AccessBoundaryRule>) -> Result<Self> {
        if rules.is_empty() {
            return Err(invalid(
                "the access boundary has no rule in `accessBoundaryRules`; at least one is required"
                    .to_owned(),
            ));
        }
        if rules.len() > MAX_RULES {
            return Err(invalid(format!(
                "the access boundary has {} rules in `accessBoundaryRules`; at most {MAX_RULES} \
                 are allowed",
                rules.len()
            )));
        }
        for (i, rule) in rules.iter().enumerate() {
            check_rule(i, rule)?;
        }
        Ok(Self { rules })
    }

    /// The rules.
    pub fn rules(&self) -> &[AccessBoundaryRule] {
        &self.rules
    }

    /// Reads a boundary from JSON, in the form the Security Token Service takes:
    /// `{"accessBoundary": {"accessBoundaryRules": [...]}}`, or the inner object alone.
    ///
    /// Longer than most functions on purpose: it validates untrusted JSON field by field, each
    /// with an error naming the rule and field, in the order the Security Token Service checks.
    pub fn from_json(json: &[u8]) -> Result<Self> {
        let value: Value = serde_json::from_slice(json).map_err(|e| {
            invalid(format!(
                "the access boundary is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let outer = value.get("accessBoundary").unwrap_or(&value);
        let Some(rules) = outer.get("accessBoundaryRules").and_then(Value::as_array) else {
            return Err(invalid(
                "the access boundary has no `accessBoundaryRules` array".to_owned(),
            ));
        };
        if rules.len() > MAX_RULES {
            return Err(invalid(format!(
                "the access boundary has {} rules in `accessBoundaryRules`; at most {MAX_RULES} \
                 are allowed",
                rules.len()
            )));
        }
        let text = |rule: &Value, i: usize, field: &str| -> Result<String> {
            match rule.get(field) {
                Some(Value::String(s)) => Ok(s.clone()),
                None => Err(invalid(format!(
                    "access boundary rule {i}: `{field}` is missing"
                ))),
                Some(_) => Err(invalid(format!(
                    "access boundary rule {i}: `{field}` is not a string"
                ))),
            }
        };
        let opt_text = |v: &Value, i: usize, field: &str| -> Result<Option<String>> {
            match v.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(invalid(format!(
                    "access boundary rule {i}: `availabilityCondition.{field}` is not a string"
                ))),
            }
        };
        let mut parsed = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let resource = text(rule, i, "availableResource")?;
            let permissions = match rule.get("availablePermissions") {
                Some(Value::Array(items)) => items
                    .iter()
                    .enumerate()
                    .map(|(j, p)| {
                        p.as_str().map(str::to_owned).ok_or_else(|| {
                            invalid(format!(
                                "access boundary rule {i}: `availablePermissions[{j}]` is not a \
                                 string"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?,
                None => Vec::new(),
                Some(_) => {
                    return Err(invalid(format!(
                        "access boundary rule {i}: `availablePermissions` is not an array"
                    )));
                }
            };
            let condition = match rule.get("availabilityCondition") {
                None | Some(Value::Null) => None,
                Some(c @ Value::Object(_)) => Some(AvailabilityCondition {
                    expression: match c.get("expression") {
                        Some(Value::String(s)) => s.clone(),
                        _ => {
                            return Err(invalid(format!(
                                "access boundary rule {i}: `availabilityCondition.expression` \
                                 is missing or not a string"
                            )));
                        }
                    },
                    title: opt_text(c, i, "title")?,
                    description: opt_text(c, i, "description")?,
                }),
                Some(_) => {
                    return Err(invalid(format!(
                        "access boundary rule {i}: `availabilityCondition` is not an object"
                    )));
                }
            };
            parsed.push(AccessBoundaryRule {
                available_resource: resource,
                available_permissions: permissions,
                availability_condition: condition,
            });
        }
        Self::new(parsed)
    }

    /// `{"accessBoundary": {"accessBoundaryRules": [...]}}`, the Security Token Service's
    /// `options` for a server-side downscoped token.
    pub fn to_json(&self) -> Value {
        let rules: Vec<Value> = self
            .rules
            .iter()
            .map(|rule| {
                let mut out = json!({
                    "availableResource": rule.available_resource,
                    "availablePermissions": rule.available_permissions,
                });
                if let Some(c) = &rule.availability_condition {
                    let mut condition = json!({ "expression": c.expression });
                    if let Some(title) = &c.title {
                        condition["title"] = json!(title);
                    }
                    if let Some(description) = &c.description {
                        condition["description"] = json!(description);
                    }
                    out["availabilityCondition"] = condition;
                }
                out
            })
            .collect();
        json!({ "accessBoundary": { "accessBoundaryRules": rules } })
    }
}

fn check_rule(i: usize, rule: &AccessBoundaryRule) -> Result<()> {
    if rule.available_resource.trim().is_empty() {
        return Err(invalid(format!(
            "access boundary rule {i}: `availableResource` is empty"
        )));
    }
    if rule.available_permissions.is_empty() {
        return Err(invalid(format!(
            "access boundary rule {i}: `availablePermissions` is empty; give at least one \
             inRole:ROLE"
        )));
    }
    for (j, permission) in rule.available_permissions.iter().enumerate() {
        let role = permission.strip_prefix(ROLE_PREFIX).unwrap_or("");
        if role.trim().is_empty() || permission.chars().any(char::is_whitespace) {
            return Err(invalid(format!(
                "access boundary rule {i}: `availablePermissions[{j}]` is {:?}; it must be \
                 inRole:ROLE (e.g. inRole:roles/storage.objectViewer)",
                workload_auth_core::text::snippet(permission, 80)
            )));
        }
    }
    if let Some(condition) = &rule.availability_condition
        && condition.expression.trim().is_empty()
    {
        return Err(invalid(format!(
            "access boundary rule {i}: `availabilityCondition.expression` is empty"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule() -> AccessBoundaryRule {
        AccessBoundaryRule::new(
            "//storage.googleapis.com/projects/_/buckets/b",
            ["inRole:roles/storage.objectViewer"],
        )
    }

    #[test]
    fn json_round_trip_in_the_sts_shape() {
        let boundary = AccessBoundary::new(vec![rule().with_condition(AvailabilityCondition {
            expression: "resource.name.startsWith(\"x\")".into(),
            title: Some("t".into()),
            description: None,
        })])
        .unwrap();
        let json = boundary.to_json();
        assert_eq!(
            json["accessBoundary"]["accessBoundaryRules"][0]["availabilityCondition"]["title"],
            "t"
        );
        let again = AccessBoundary::from_json(json.to_string().as_bytes()).unwrap();
        assert_eq!(again, boundary);
        let inner = json["accessBoundary"].to_string();
        assert_eq!(
            AccessBoundary::from_json(inner.as_bytes()).unwrap(),
            boundary
        );
    }

    #[test]
    fn bad_rules_name_the_field() {
        let cases: Vec<(Vec<AccessBoundaryRule>, &str)> = vec![
            (vec![], "accessBoundaryRules"),
            (vec![rule(); 11], "at most 10"),
            (
                vec![AccessBoundaryRule::new("", ["inRole:r"])],
                "`availableResource`",
            ),
            (
                vec![AccessBoundaryRule::new("r", Vec::<String>::new())],
                "`availablePermissions`",
            ),
            (
                vec![AccessBoundaryRule::new("r", ["inRole:a", "roles/b"])],
                "`availablePermissions[1]`",
            ),
            (
                vec![rule().with_condition(AvailabilityCondition::new(" "))],
                "`availabilityCondition.expression`",
            ),
        ];
        for (rules, needle) in cases {
            let e = AccessBoundary::new(rules).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument);
            assert!(e.message().contains(needle), "{needle}: {e}");
        }
        assert!(AccessBoundary::new(vec![rule(); 10]).is_ok());
    }
}
