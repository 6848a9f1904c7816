//! The row policy condition language: `COLUMN op operand [AND …]`, parsed into terms that
//! `policy.rs` binds to a principal's claims.

use crate::catalog::field::Field;
use crate::source::select::CmpOp;

/// One `COLUMN op operand` term of a row policy.
#[derive(Debug, Clone)]
pub(super) struct Term {
    pub(super) column: String,
    /// The field over the column, whose transform turns a claim into the legacy value.
    pub(super) field: Option<Box<Field>>,
    pub(super) op: TermOp,
    pub(super) operand: Operand,
}

/// A term's operator.
#[derive(Debug, Clone, Copy)]
pub(super) enum TermOp {
    Compare(CmpOp),
    In,
}

/// What a term compares its column with.
#[derive(Debug, Clone)]
pub(super) enum Operand {
    Claim(String),
    Literal(String),
}

/// Parses `COLUMN op operand [AND …]`: operators `= <> != < <= > >=` and `IN`; operands
/// `{claims.path}`, `{sub}`, `'text'` or a number. A column is a field's column or API name;
/// other columns are compared as text or integers.
pub(super) fn parse_condition(text: &str, fields: &[Field]) -> Result<Vec<Term>, String> {
    let tokens = tokenize(text)?;
    let mut terms = Vec::new();
    let mut rest = tokens.as_slice();
    loop {
        let [Token::Word(column), Token::Op(op), operand, tail @ ..] = rest else {
            return Err(format!(
                "expected `COLUMN op {{claims.name}}` terms joined by AND, in `{text}`"
            ));
        };
        let op = match op.as_str() {
            "=" => TermOp::Compare(CmpOp::Eq),
            "<>" | "!=" => TermOp::Compare(CmpOp::Ne),
            "<" => TermOp::Compare(CmpOp::Lt),
            "<=" => TermOp::Compare(CmpOp::Lte),
            ">" => TermOp::Compare(CmpOp::Gt),
            ">=" => TermOp::Compare(CmpOp::Gte),
            "IN" => TermOp::In,
            other => return Err(format!("unknown operator `{other}`")),
        };
        let operand = match operand {
            Token::Claim(path) => Operand::Claim(path.clone()),
            Token::Literal(text) => Operand::Literal(text.clone()),
            Token::Word(w) if w.parse::<f64>().is_ok_and(f64::is_finite) => {
                Operand::Literal(w.clone())
            }
            _ => {
                return Err(format!(
                    "`{column}` must be compared with a {{claim}} or a literal"
                ))
            }
        };
        let field = fields
            .iter()
            .find(|f| f.column.eq_ignore_ascii_case(column))
            .or_else(|| fields.iter().find(|f| f.name == *column));
        if field.is_none()
            && !column
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(format!("`{column}` is not a column name"));
        }
        if let (Some(f), Operand::Literal(l)) = (field, &operand) {
            f.to_legacy(l)
                .map_err(|m| format!("literal `{l}` for `{column}` {m}"))?;
        }
        terms.push(Term {
            column: field.map_or_else(|| column.clone(), |f| f.column.clone()),
            field: field.map(|f| Box::new(f.clone())),
            op,
            operand,
        });
        match tail {
            [] => return Ok(terms),
            [Token::Word(and), more @ ..] if and.eq_ignore_ascii_case("and") => rest = more,
            _ => return Err(format!("terms must be joined by AND, in `{text}`")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Op(String),
    Claim(String),
    Literal(String),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' => {
                chars.next();
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inner.push(c),
                        None => return Err("unterminated `{`".into()),
                    }
                }
                let path = match inner.trim() {
                    "sub" | "subject" => "sub".to_string(),
                    other => other
                        .strip_prefix("claims.")
                        .filter(|p| !p.is_empty())
                        .ok_or_else(|| {
                            format!("`{{{other}}}` must be `{{claims.NAME}}` or `{{sub}}`")
                        })?
                        .to_string(),
                };
                tokens.push(Token::Claim(path));
            }
            '\'' => {
                chars.next();
                let mut literal = String::new();
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            literal.push('\'');
                        }
                        Some('\'') => break,
                        Some(c) => literal.push(c),
                        None => return Err("unterminated '…' literal".into()),
                    }
                }
                tokens.push(Token::Literal(literal));
            }
            '=' | '<' | '>' | '!' => {
                let mut op = String::new();
                while let Some(&c) = chars.peek().filter(|c| "=<>!".contains(**c)) {
                    op.push(c);
                    chars.next();
                }
                tokens.push(Token::Op(op));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars
                    .peek()
                    .filter(|c| !c.is_whitespace() && !"{}'=<>!".contains(**c))
                {
                    word.push(c);
                    chars.next();
                }
                if word.is_empty() {
                    return Err(format!("unexpected `{c}`"));
                }
                if word.eq_ignore_ascii_case("in") {
                    tokens.push(Token::Op("IN".into()));
                } else {
                    tokens.push(Token::Word(word));
                }
            }
        }
    }
    Ok(tokens)
}
