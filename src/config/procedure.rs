//! Configuration of stored procedures served as `POST /{version}/procedures/{name}`.

use indexmap::IndexMap;
use serde::Deserialize;

use super::{DateFormat, FieldConfig, FieldType};

/// One stored procedure.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcedureConfig {
    /// Name of the source in `[sources]`.
    pub source: String,
    /// The procedure's name in the database, optionally schema-qualified (`dbo.RESCHEDULE`).
    pub procedure: String,
    /// Human description.
    #[serde(default)]
    pub description: Option<String>,
    /// Scope a token needs to call it.
    pub scope: Option<String>,
    /// Whether it changes data (then it runs in a transaction that commits, and invalidates).
    #[serde(default)]
    pub writes: bool,
    /// Resources of this version whose cached answers a successful call invalidates.
    #[serde(default)]
    pub invalidates: Vec<String>,
    /// Parameters in call order: API name → type and direction.
    #[serde(default)]
    pub parameters: IndexMap<String, ParameterConfig>,
    /// Typed columns of the first result set: API name → column; untyped text without it.
    #[serde(default)]
    pub result: IndexMap<String, FieldConfig>,
}

/// Whether a parameter goes in or comes out.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Sent by the client.
    #[default]
    In,
    /// Set by the procedure and returned in `output`.
    Out,
}

/// One parameter: a field's type and transforms, without a column.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterConfig {
    /// API type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Legacy type the procedure declares (`char(6)`, `integer`, `decimal(9,2)`).
    pub column_type: Option<String>,
    /// `in` (default) or `out`.
    #[serde(default)]
    pub direction: Direction,
    /// Must be given (inputs only).
    #[serde(default)]
    pub required: bool,
    /// Human description.
    pub description: Option<String>,
    /// Date storage format.
    pub format: Option<DateFormat>,
    /// Legacy code → API value.
    #[serde(default)]
    pub codes: IndexMap<String, String>,
    /// Legacy values that mean null.
    #[serde(default)]
    pub null_values: Vec<String>,
    /// Decimal places to show.
    pub scale: Option<u32>,
    /// Legacy code page.
    pub encoding: Option<String>,
    /// Legacy true spelling.
    pub true_value: Option<String>,
    /// Legacy false spelling.
    pub false_value: Option<String>,
    /// Text may hold control characters (refused by default, as in fields).
    #[serde(default)]
    pub allow_control: bool,
}

impl ParameterConfig {
    /// The parameter as a field whose "column" is its name, so every transform applies.
    pub fn as_field(&self, name: &str) -> FieldConfig {
        FieldConfig {
            column: name.to_string(),
            field_type: self.field_type,
            column_type: self.column_type.clone(),
            description: self.description.clone(),
            trim: None,
            encoding: self.encoding.clone(),
            null_values: self.null_values.clone(),
            codes: self.codes.clone(),
            format: self.format,
            true_value: self.true_value.clone(),
            false_value: self.false_value.clone(),
            scale: self.scale,
            currency: None,
            filterable: false,
            sortable: Some(false),
            requires_scope: None,
            write_scope: None,
            read_only: self.direction == Direction::Out,
            required: self.required,
            nullable: None,
            allow_control: self.allow_control,
        }
    }
}
