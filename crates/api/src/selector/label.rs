//! Label selectors: `app=web,tier in (a,b),!canary`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as K8sLabelSelector;

use super::SelectorError;
use crate::meta;

/// A label selector operator, as `pkg/selection` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    /// `=`
    Equals,
    /// `==`
    DoubleEquals,
    /// `!=`
    NotEquals,
    In,
    NotIn,
    /// A bare key.
    Exists,
    /// `!key`
    DoesNotExist,
    /// `>`, comparing integers, as node affinity uses it.
    GreaterThan,
    /// `<`
    LessThan,
}

/// One condition on one label key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and without repeats; empty for `Exists` and `DoesNotExist`.
    pub values: BTreeSet<String>,
}

impl Requirement {
    /// Builds a requirement, checking the key, the values and their count as
    /// apimachinery's `NewRequirement` does.
    pub fn new(key: &str, operator: Operator, values: BTreeSet<String>) -> Result<Requirement, SelectorError> {
        if let Some(detail) = meta::qualified_name(key).into_iter().next() {
            return Err(SelectorError::InvalidKey { key: key.to_string(), detail });
        }
        let syntax = |detail: &str| Err(SelectorError::Syntax { detail: detail.to_string() });
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return syntax("for 'in', 'notin' operators, values set can't be empty");
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals if values.len() != 1 => {
                return syntax("exact-match compatibility requires one single value");
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return syntax("values set must be empty for exists and does not exist");
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return syntax("for 'Gt', 'Lt' operators, exactly one value is required");
                }
                if values.iter().any(|v| v.parse::<i64>().is_err()) {
                    return syntax("for 'Gt', 'Lt' operators, the value must be an integer");
                }
            }
            _ => {}
        }
        for value in &values {
            if let Some(detail) = meta::label_value(value).into_iter().next() {
                return Err(SelectorError::InvalidValue { key: key.to_string(), value: value.clone(), detail });
            }
        }
        Ok(Requirement { key: key.to_string(), operator, values })
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => label.is_some_and(|v| self.values.contains(v)),
            Operator::NotEquals | Operator::NotIn => label.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(actual) = label.and_then(|v| v.parse::<i64>().ok()) else { return false };
                let Some(bound) = self.values.iter().next().and_then(|v| v.parse::<i64>().ok()) else { return false };
                if self.operator == Operator::GreaterThan { actual > bound } else { actual < bound }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let first = self.values.iter().next().map(String::as_str).unwrap_or("");
        let joined = self.values.iter().cloned().collect::<Vec<_>>().join(",");
        let key = &self.key;
        match self.operator {
            Operator::Equals => write!(f, "{key}={first}"),
            Operator::DoubleEquals => write!(f, "{key}=={first}"),
            Operator::NotEquals => write!(f, "{key}!={first}"),
            Operator::In => write!(f, "{key} in ({joined})"),
            Operator::NotIn => write!(f, "{key} notin ({joined})"),
            Operator::Exists => write!(f, "{key}"),
            Operator::DoesNotExist => write!(f, "!{key}"),
            Operator::GreaterThan => write!(f, "{key}>{first}"),
            Operator::LessThan => write!(f, "{key}<{first}"),
        }
    }
}

/// A parsed label selector: requirements that must all hold, sorted by key. The empty
/// selector matches every object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Builds a selector from requirements, ordering them by key as apimachinery does.
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> LabelSelector {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }

    /// Parses the string form (`app=web,tier in (a,b),!canary`). Empty text selects
    /// everything.
    pub fn parse(text: &str) -> Result<LabelSelector, SelectorError> {
        let tokens = lex(text)?;
        let requirements = Parser { tokens, position: 0 }.parse()?;
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// Converts a metav1 LabelSelector (`matchLabels` and `matchExpressions`).
    pub fn from_k8s(selector: &K8sLabelSelector) -> Result<LabelSelector, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key, Operator::Equals, BTreeSet::from([value.clone()]))?);
        }
        for expression in selector.match_expressions.iter().flatten() {
            let operator = match expression.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    return Err(SelectorError::Syntax { detail: format!("{other:?} is not a valid label selector operator") });
                }
            };
            let values = expression.values.iter().flatten().cloned().collect();
            requirements.push(Requirement::new(&expression.key, operator, values)?);
        }
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector has no requirements, and so matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, requirement) in self.requirements.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Identifier(String),
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    GreaterThan,
    LessThan,
    In,
    NotIn,
    Comma,
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Token::Identifier(name) => name.as_str(),
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::GreaterThan => ">",
            Token::LessThan => "<",
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Comma => ",",
            Token::Open => "(",
            Token::Close => ")",
        };
        f.write_str(text)
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '!' | '=' | ',' | '(' | ')' | '<' | '>')
}

fn lex(text: &str) -> Result<Vec<Token>, SelectorError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if is_special(c) {
            chars.next();
            let followed_by_equals = chars.peek() == Some(&'=');
            let token = match c {
                '!' if followed_by_equals => Token::NotEquals,
                '=' if followed_by_equals => Token::DoubleEquals,
                '!' => Token::Bang,
                '=' => Token::Equals,
                ',' => Token::Comma,
                '(' => Token::Open,
                ')' => Token::Close,
                '<' => Token::LessThan,
                _ => Token::GreaterThan,
            };
            if matches!(token, Token::NotEquals | Token::DoubleEquals) {
                chars.next();
            }
            tokens.push(token);
            continue;
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek().filter(|&&c| !c.is_whitespace() && !is_special(c)) {
            word.push(c);
            chars.next();
        }
        tokens.push(match word.as_str() {
            "in" => Token::In,
            "notin" => Token::NotIn,
            _ => Token::Identifier(word),
        });
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.position).cloned();
        self.position += 1;
        token
    }

    fn error(found: Option<&Token>, expected: &str) -> SelectorError {
        let found = found.map_or("end of string".to_string(), Token::to_string);
        SelectorError::Syntax { detail: format!("found '{found}', expected: {expected}") }
    }

    fn parse(mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        if self.peek().is_none() {
            return Ok(requirements);
        }
        loop {
            match self.peek() {
                Some(Token::Identifier(_) | Token::Bang) => requirements.push(self.parse_requirement()?),
                other => return Err(Parser::error(other, "!, identifier, or 'end of string'")),
            }
            match self.next() {
                None => return Ok(requirements),
                Some(Token::Comma) => {
                    if !matches!(self.peek(), Some(Token::Identifier(_) | Token::Bang)) {
                        return Err(Parser::error(self.peek(), "identifier after ','"));
                    }
                }
                other => return Err(Parser::error(other.as_ref(), "',' or 'end of string'")),
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek() == Some(&Token::Bang);
        if negated {
            self.next();
        }
        let key = match self.next() {
            Some(Token::Identifier(key)) => key,
            other => return Err(Parser::error(other.as_ref(), "identifier")),
        };
        if negated {
            return Requirement::new(&key, Operator::DoesNotExist, BTreeSet::new());
        }
        if matches!(self.peek(), None | Some(Token::Comma)) {
            return Requirement::new(&key, Operator::Exists, BTreeSet::new());
        }
        let operator = match self.next() {
            Some(Token::Equals) => Operator::Equals,
            Some(Token::DoubleEquals) => Operator::DoubleEquals,
            Some(Token::NotEquals) => Operator::NotEquals,
            Some(Token::GreaterThan) => Operator::GreaterThan,
            Some(Token::LessThan) => Operator::LessThan,
            Some(Token::In) => Operator::In,
            Some(Token::NotIn) => Operator::NotIn,
            other => return Err(Parser::error(other.as_ref(), "[!= < = == > in notin]")),
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_value_list()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(&key, operator, values)
    }

    /// A single value after `=`, `!=`, `>` or `<`; nothing before `,` or the end means "".
    fn parse_exact_value(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        match self.peek() {
            None | Some(Token::Comma) => Ok(BTreeSet::from([String::new()])),
            Some(Token::Identifier(value)) => {
                let value = value.clone();
                self.position += 1;
                Ok(BTreeSet::from([value]))
            }
            other => Err(Parser::error(other, "identifier")),
        }
    }

    /// A parenthesized, comma-separated list; empty entries stand for the empty value.
    fn parse_value_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        match self.next() {
            Some(Token::Open) => {}
            other => return Err(Parser::error(other.as_ref(), "'('")),
        }
        let mut values = BTreeSet::new();
        let mut current = String::new();
        loop {
            match self.next() {
                Some(Token::Identifier(value)) if current.is_empty() => current = value,
                Some(Token::Comma) => {
                    values.insert(std::mem::take(&mut current));
                }
                Some(Token::Close) => {
                    values.insert(current);
                    return Ok(values);
                }
                other => return Err(Parser::error(other.as_ref(), "',', ')' or identifier")),
            }
        }
    }
}

#[cfg(test)]
#[path = "label_tests.rs"]
mod tests;
