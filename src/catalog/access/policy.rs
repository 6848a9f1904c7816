//! What a principal may do with a resource: scopes per verb, row policies built from token
//! claims (bound parameters added to every query), and field masks.

use std::fmt::Write as _;

use serde_json::Value as Json;

use super::condition::{parse_condition, Operand, Term, TermOp};
use crate::auth::Principal;
use crate::catalog::field::Field;
use crate::config::RowPolicyConfig;
use crate::source::select::{Condition, Relation};
use crate::source::{ColumnType, Param, Value};

/// Largest array claim an `IN` term binds (one parameter each).
const MAX_CLAIM_VALUES: usize = 1000;

/// Access rules of one resource, compiled from configuration.
#[derive(Debug, Clone, Default)]
pub struct ResourceAccess {
    /// Calls without a token are served.
    pub anonymous: bool,
    /// Scope needed to read; any valid token when `None`.
    pub read_scope: Option<String>,
    /// Scope needed to write.
    pub write_scope: Option<String>,
    /// Row policies, in configuration order.
    pub policies: Vec<RowPolicy>,
    /// Field index → scope needed to see it.
    pub masks: Vec<(usize, String)>,
    /// Field index → scope needed to write it.
    pub write_masks: Vec<(usize, String)>,
    /// The parent's row policies, for a resource nested under one that has them.
    pub inherited: Option<Box<Inherited>>,
}

/// Row policies a nested resource takes from its parent: a row is seen only when its parent
/// row is (`link IN (SELECT parent_key FROM parent WHERE <parent's policies>)`), on every path.
#[derive(Debug, Clone)]
pub struct Inherited {
    /// The parent resource, for messages.
    pub parent: String,
    /// The parent's access rules (its own inherited ones included).
    pub access: ResourceAccess,
    /// Where the parent's rows are.
    pub relation: Relation,
    /// The parent's key column.
    pub parent_key: String,
    /// This resource's column that holds the parent's key.
    pub link: String,
}

/// What a request intends to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `GET`, `HEAD`.
    Read,
    /// `POST`, `PATCH`, `DELETE`.
    Write,
}

/// A row filter for some principals.
#[derive(Debug, Clone)]
pub struct RowPolicy {
    /// Name for logs and problems.
    pub name: String,
    applies: Applies,
    terms: Vec<Term>,
}

impl RowPolicy {
    /// The columns its condition compares, as written in it or as the fields it names read
    /// them (`portico check` looks each up in the table).
    pub fn columns(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|t| t.column.as_str())
    }
}

#[derive(Debug, Clone)]
enum Applies {
    Always,
    WithScope(String),
    WithoutScope(String),
}

impl Applies {
    /// Whether the policy applies to `principal`.
    fn to(&self, principal: &Principal) -> bool {
        match self {
            Applies::Always => true,
            Applies::WithScope(s) => principal.has_scope(s),
            Applies::WithoutScope(s) => !principal.has_scope(s),
        }
    }
}

/// Fields hidden from a principal (indexes into the resource's fields).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldMask {
    hidden: Vec<usize>,
}

impl FieldMask {
    /// Whether field `index` is hidden.
    pub fn hides(&self, index: usize) -> bool {
        self.hidden.contains(&index)
    }

    /// Whether any field is hidden.
    pub fn is_empty(&self) -> bool {
        self.hidden.is_empty()
    }
}

/// What a principal may read of a resource.
#[derive(Debug, Clone, Default)]
pub struct Grant {
    /// Conditions added to every query (bound parameters from claims).
    pub conditions: Vec<Condition>,
    /// Fields the principal does not see.
    pub mask: FieldMask,
    /// Equal for principals that see exactly the same rows and fields (the cache key part).
    pub identity: String,
    /// The answer is what anyone without a token gets, so shared caches may keep it.
    pub shareable: bool,
    /// Fields this principal may not write, with the scope that would let it (writes only).
    pub unwritable: Vec<(usize, String)>,
    /// The parent resource whose row policies restrict this principal here; they need the
    /// parent's rows, so a change event alone cannot apply them.
    pub through_parent: Option<String>,
}

impl Grant {
    /// Whether rows or fields are withheld (a policy applied or a field is hidden), so
    /// responses depend on the caller and must not go to shared caches.
    pub fn is_restricted(&self) -> bool {
        !self.identity.is_empty()
    }
}

/// Why a principal may not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// The resource needs a token and the call has none.
    #[error("this resource needs a bearer token")]
    Unauthenticated,
    /// The token lacks a scope.
    #[error("the token lacks the scope `{0}`")]
    MissingScope(String),
    /// A row policy needs a claim the token does not carry (never unfiltered rows instead).
    #[error("row policy `{policy}` needs the claim `{claim}`, which the token does not carry")]
    MissingClaim {
        /// Policy name.
        policy: String,
        /// Claim path.
        claim: String,
    },
    /// A claim a row policy needs has a value it cannot use.
    #[error("row policy `{policy}` cannot use the claim `{claim}`: {message}")]
    BadClaim {
        /// Policy name.
        policy: String,
        /// Claim path.
        claim: String,
        /// Why.
        message: String,
    },
}

impl ResourceAccess {
    /// Compiles the access settings of a resource; problems are `(location suffix, message)`.
    pub fn compile(
        anonymous: bool,
        read_scope: Option<String>,
        write_scope: Option<String>,
        policies: &[RowPolicyConfig],
        fields: &[Field],
        masks: Vec<(usize, String)>,
        write_masks: Vec<(usize, String)>,
    ) -> Result<Self, Vec<(String, String)>> {
        let mut problems = Vec::new();
        let mut compiled = Vec::new();
        for (i, p) in policies.iter().enumerate() {
            let applies = match (&p.when_scope, &p.unless_scope) {
                (None, None) => Applies::Always,
                (Some(s), None) => Applies::WithScope(s.clone()),
                (None, Some(s)) => Applies::WithoutScope(s.clone()),
                (Some(_), Some(_)) => {
                    problems.push((
                        format!("row_policies[{i}]"),
                        "give `when_scope` or `unless_scope`, not both".to_string(),
                    ));
                    continue;
                }
            };
            match parse_condition(&p.condition, fields) {
                Ok(terms) => compiled.push(RowPolicy {
                    name: p.name.clone(),
                    applies,
                    terms,
                }),
                Err(message) => problems.push((format!("row_policies[{i}].condition"), message)),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            anonymous,
            read_scope,
            write_scope,
            policies: compiled,
            masks,
            write_masks,
            inherited: None,
        })
    }

    /// Decides what `principal` may see when it does `verb`. A write needs the read scope
    /// too: it answers with the row as stored.
    pub fn authorize(&self, principal: &Principal, verb: Verb) -> Result<Grant, Denial> {
        if !principal.authenticated && !self.anonymous {
            return Err(Denial::Unauthenticated);
        }
        let scopes = match verb {
            Verb::Read => [&self.read_scope, &None],
            Verb::Write => [&self.read_scope, &self.write_scope],
        };
        for scope in scopes.into_iter().flatten() {
            if !principal.has_scope(scope) {
                return Err(Denial::MissingScope(scope.clone()));
            }
        }
        let mut grant = Grant::default();
        grant.conditions = self.row_conditions(principal, &mut grant.identity)?;
        // A parent's policy reaches this resource as an `InParent` condition, if it applied.
        let through_parent = grant
            .conditions
            .iter()
            .any(|c| matches!(c, Condition::InParent { .. }));
        grant.through_parent = self
            .inherited
            .as_ref()
            .filter(|_| through_parent)
            .map(|i| i.parent.clone());
        for (index, scope) in &self.masks {
            if !principal.has_scope(scope) {
                grant.mask.hidden.push(*index);
                let _ = write!(grant.identity, "m:{index};");
            }
        }
        if verb == Verb::Write {
            grant.unwritable = self
                .write_masks
                .iter()
                .filter(|(_, scope)| !principal.has_scope(scope))
                .cloned()
                .collect();
        }
        grant.shareable = self.anonymous && !principal.authenticated && !grant.is_restricted();
        Ok(grant)
    }
}

impl ResourceAccess {
    /// The row conditions for `principal`: its own policies that apply, and the parent's
    /// (through the parent relation); `identity` records what applied, for the cache key.
    fn row_conditions(
        &self,
        principal: &Principal,
        identity: &mut String,
    ) -> Result<Vec<Condition>, Denial> {
        let mut conditions = Vec::new();
        for policy in self.policies.iter().filter(|p| p.applies.to(principal)) {
            let _ = write!(identity, "p:{};", policy.name);
            for term in &policy.terms {
                let condition = term.bind(&policy.name, principal)?;
                let _ = write!(identity, "{condition:?};");
                conditions.push(condition);
            }
        }
        if let Some(inherited) = &self.inherited {
            let mut parent_identity = String::new();
            let filter = inherited
                .access
                .row_conditions(principal, &mut parent_identity)?;
            if !filter.is_empty() {
                let _ = write!(
                    identity,
                    "parent:{}{{{parent_identity}}};",
                    inherited.parent
                );
                conditions.push(Condition::InParent {
                    column: inherited.link.clone(),
                    relation: inherited.relation.clone(),
                    key: inherited.parent_key.clone(),
                    filter,
                });
            }
        }
        Ok(conditions)
    }
}

impl Term {
    fn bind(&self, policy: &str, principal: &Principal) -> Result<Condition, Denial> {
        let (claim, value) = match &self.operand {
            Operand::Literal(text) => ("literal", Json::String(text.clone())),
            Operand::Claim(path) => match principal.claim(path) {
                // A blank claim would match blank legacy values: it is as good as absent.
                Some(value) if !is_blank(value) => (path.as_str(), value.clone()),
                _ => {
                    return Err(Denial::MissingClaim {
                        policy: policy.to_string(),
                        claim: path.clone(),
                    })
                }
            },
        };
        let bad = |message: String| Denial::BadClaim {
            policy: policy.to_string(),
            claim: claim.to_string(),
            message,
        };
        match self.op {
            TermOp::Compare(op) => Ok(Condition::Compare {
                column: self.column.clone(),
                op,
                param: self.param(&value).map_err(bad)?,
            }),
            TermOp::In => {
                let items: Vec<Json> = match &value {
                    // Blank entries would match blank legacy values: they grant nothing.
                    Json::Array(items) => items.iter().filter(|v| !is_blank(v)).cloned().collect(),
                    other => vec![other.clone()],
                };
                if items.len() > MAX_CLAIM_VALUES {
                    return Err(bad(format!("lists more than {MAX_CLAIM_VALUES} values")));
                }
                let params = items
                    .iter()
                    .map(|v| self.param(v))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(bad)?;
                // An empty list grants no row: `Or([])` is `1=0`.
                Ok(if params.is_empty() {
                    Condition::Or(Vec::new())
                } else {
                    Condition::In {
                        column: self.column.clone(),
                        params,
                    }
                })
            }
        }
    }

    /// A claim value as the legacy value of the column (through its field's transform).
    fn param(&self, value: &Json) -> Result<Param, String> {
        let text = match value {
            Json::String(s) => s.clone(),
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            _ => return Err("must be a string, a number or a boolean".into()),
        };
        match &self.field {
            Some(field) => field.to_legacy(&text),
            None => Ok(match value.as_i64() {
                Some(i) => Param {
                    value: Value::Int(i),
                    column_type: ColumnType::Integer,
                },
                None => Param {
                    value: Value::Text(text.into_bytes()),
                    column_type: ColumnType::Varchar,
                },
            }),
        }
    }
}

/// Null, or text of blanks only (CHAR padding makes `""` and `"   "` the same legacy value).
fn is_blank(value: &Json) -> bool {
    value.is_null() || value.as_str().is_some_and(|s| s.trim().is_empty())
}
