//! Errors of genotypes and search spaces. Every message names where the mistake is (cell,
//! block, edge or node), the field, the bad value and the allowed values.

use super::SpaceKind;

/// An invalid genotype (string, JSON, decision vector or value outside a search space).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenotypeError {
    /// The string form is malformed.
    #[error("invalid {space} genotype string at byte {offset}: {message} (in {input:?})")]
    Syntax {
        /// Space of the string.
        space: SpaceKind,
        /// The input, or the part of it around `offset` when it is long.
        input: String,
        /// Byte offset of the mistake in the input.
        offset: usize,
        /// What was expected.
        message: String,
    },
    /// A field holds a value that is not allowed there.
    #[error("invalid {space} genotype: {location}: {field} = {value} is not allowed; allowed values: {allowed}")]
    Value {
        /// Space of the genotype.
        space: SpaceKind,
        /// Where, e.g. `normal cell, block 2` or `node 3, edge from node 1`.
        location: String,
        /// The field, e.g. `inputA`, `op`, `filters`.
        field: &'static str,
        /// The bad value.
        value: String,
        /// The allowed values.
        allowed: String,
    },
    /// A list has the wrong number of entries.
    #[error("invalid {space} genotype: {location}: expected {expected} {what}, found {found}")]
    Count {
        /// Space of the genotype.
        space: SpaceKind,
        /// Where, e.g. `normal cell` or `genotype`.
        location: String,
        /// What is counted, e.g. `blocks`, `edges`.
        what: &'static str,
        /// The allowed count(s).
        expected: String,
        /// The count found.
        found: usize,
    },
    /// A decision-index vector does not fit the space.
    #[error("invalid decisions for the {space} space: {message}")]
    Decisions {
        /// Space of the decisions.
        space: SpaceKind,
        /// What is wrong.
        message: String,
    },
    /// The genotype belongs to another space than the one it is used with.
    #[error("genotype of the {found} space used with a {expected} search space")]
    WrongSpace {
        /// The space in use.
        expected: SpaceKind,
        /// The genotype's space.
        found: SpaceKind,
    },
    /// The string is not the form of any space.
    #[error(
        "{input:?} is not a genotype: expected a NASNet string (normal=|op~i|op~j|+...;reduction=...), \
         a MnasNet block string (r1_k3_s11_e1_i32_o16,...), a NAS-Bench-201 string \
         (|op~0|+|op~0|op~1|+|op~0|op~1|op~2|) or one of the names nasnet-a, mnasnet-a1, nb201-optimum"
    )]
    UnknownForm {
        /// The input (its first 80 characters when longer).
        input: String,
    },
}

impl GenotypeError {
    pub(crate) fn syntax(
        space: SpaceKind,
        input: &str,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        Self::Syntax {
            space,
            input: excerpt(input, offset),
            offset,
            // Messages quote the offending token: keep a huge one from flooding the terminal.
            message: shorten(&message.into(), 240),
        }
    }

    pub(crate) fn value(
        space: SpaceKind,
        location: impl Into<String>,
        field: &'static str,
        value: impl ToString,
        allowed: impl Into<String>,
    ) -> Self {
        let value = shorten(&value.to_string(), 80);
        // Quote values a reader could not see as they are: empty, white space, control or
        // other non-ASCII characters (escaped by `{:?}`).
        let plain = !value.is_empty()
            && value.trim() == value
            && value.chars().all(|c| c.is_ascii_graphic() || c == ' ');
        Self::Value {
            space,
            location: location.into(),
            field,
            value: if plain { value } else { format!("{value:?}") },
            allowed: allowed.into(),
        }
    }

    pub(crate) fn count(
        space: SpaceKind,
        location: impl Into<String>,
        what: &'static str,
        expected: impl ToString,
        found: usize,
    ) -> Self {
        Self::Count {
            space,
            location: location.into(),
            what,
            expected: expected.to_string(),
            found,
        }
    }
}

/// At most `max` characters of `text`, with `...` where it was cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        format!("{}...", text.chars().take(max).collect::<String>())
    }
}

/// The part of `input` around byte `offset` (all of it when short), for syntax errors.
fn excerpt(input: &str, offset: usize) -> String {
    const WINDOW: usize = 60;
    if input.chars().count() <= 2 * WINDOW {
        return input.to_string();
    }
    let floor = |mut i: usize| {
        i = i.min(input.len());
        while !input.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    let start = floor(offset.saturating_sub(WINDOW));
    let end = floor(offset.saturating_add(WINDOW));
    let prefix = if start > 0 { "..." } else { "" };
    let suffix = if end < input.len() { "..." } else { "" };
    format!("{prefix}{}{suffix}", &input[start..end])
}

/// Invalid search-space parameters (`spec.searchSpace` of an `ArchitectureSearch`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid search space: {field}: {message}")]
pub struct SpaceError {
    /// The field path, e.g. `searchSpace.nasnet.ops`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl SpaceError {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Joins displayable values with `", "` for error messages.
pub(crate) fn join<T: ToString>(values: impl IntoIterator<Item = T>) -> String {
    values
        .into_iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks a list of choices given in a space's parameters: not empty, no value twice.
pub(crate) fn check_choice_list<T: PartialEq + std::fmt::Display>(
    field: &str,
    list: &[T],
    allowed: impl FnOnce() -> String,
) -> Result<(), SpaceError> {
    if list.is_empty() {
        return Err(SpaceError::new(
            field,
            format!(
                "must list at least one value; allowed values: {}",
                allowed()
            ),
        ));
    }
    for (i, v) in list.iter().enumerate() {
        if list[..i].contains(v) {
            return Err(SpaceError::new(field, format!("{v} is listed twice")));
        }
    }
    Ok(())
}

/// Checks that a numeric parameter lies in `min..=max`.
pub(crate) fn check_range<T: PartialOrd + std::fmt::Display>(
    field: &str,
    value: T,
    min: T,
    max: T,
) -> Result<(), SpaceError> {
    if value < min || value > max {
        return Err(SpaceError::new(
            field,
            format!("{value} is out of range {min}..={max}"),
        ));
    }
    Ok(())
}

/// The index of `value` in a space's list of choices, or an error naming the location, the field,
/// the value, and the allowed values with the parameter that lists them (`param`, e.g.
/// `searchSpace.nasnet.ops`).
pub(crate) fn choice_index<T: PartialEq + std::fmt::Display>(
    space: SpaceKind,
    choices: &[T],
    value: T,
    location: &str,
    field: &'static str,
    param: &str,
) -> Result<usize, GenotypeError> {
    choices.iter().position(|c| *c == value).ok_or_else(|| {
        GenotypeError::value(
            space,
            location,
            field,
            &value,
            format!("{} ({param})", join(choices)),
        )
    })
}
