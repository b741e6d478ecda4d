//! Resource quantities (`250m`, `1.5Gi`, `2e3`) as Kubernetes writes them.
//!
//! CPU is counted in millicores and memory in bytes; both parse from the same grammar:
//! a decimal number followed by an optional binary suffix (Ki, Mi, Gi, Ti, Pi, Ei), decimal
//! suffix (n, u, m, k, M, G, T, P, E) or exponent (`e3`, `E-2`).

/// A quantity that does not follow the Kubernetes quantity grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
pub struct QuantityError;

/// Parses a quantity into its value scaled by `scale` (1000 for millis, 1 for units),
/// rounding up, as Kubernetes does when it converts a quantity to an integer.
fn parse_scaled(text: &str, scale: f64) -> Result<i64, QuantityError> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    if number.is_empty() || number.chars().skip(1).any(|c| c == '+' || c == '-') {
        return Err(QuantityError);
    }
    if !number.chars().any(|c| c.is_ascii_digit()) || number.matches('.').count() > 1 {
        return Err(QuantityError);
    }
    let value: f64 = number.parse().map_err(|_| QuantityError)?;
    let multiplier = suffix_multiplier(suffix)?;
    let scaled = value * multiplier * scale;
    if !scaled.is_finite() || scaled.abs() > i64::MAX as f64 {
        return Err(QuantityError);
    }
    // Round away from tiny float error before ceiling: 0.1 * 1000 is 100.00000000000001.
    let rounded = (scaled * 1e6).round() / 1e6;
    Ok(rounded.ceil() as i64)
}

fn suffix_multiplier(suffix: &str) -> Result<f64, QuantityError> {
    let binary = |power: i32| 1024f64.powi(power);
    let multiplier = match suffix {
        "" => 1.0,
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        exponent if exponent.starts_with(['e', 'E']) => {
            let power: i32 = exponent[1..].parse().map_err(|_| QuantityError)?;
            10f64.powi(power)
        }
        _ => return Err(QuantityError),
    };
    Ok(multiplier)
}

/// Parses a quantity as millicores (`250m` is 250, `2` is 2000).
pub fn parse_millis(text: &str) -> Result<i64, QuantityError> {
    parse_scaled(text, 1000.0)
}

/// Parses a quantity as whole units, rounding up (`1Gi` is 1073741824, `1500m` is 2).
pub fn parse_units(text: &str) -> Result<i64, QuantityError> {
    parse_scaled(text, 1.0)
}

/// Checks that `text` is a valid quantity.
pub fn validate(text: &str) -> Result<(), QuantityError> {
    parse_scaled(text, 1000.0).map(|_| ())
}

/// Formats millicores the way `kubectl top` shows them (`250m`, `2`).
pub fn format_millis(millis: i64) -> String {
    if millis % 1000 == 0 { format!("{}", millis / 1000) } else { format!("{millis}m") }
}

/// Formats bytes with the largest binary suffix that divides them exactly (`512Mi`).
pub fn format_bytes(bytes: i64) -> String {
    const SUFFIXES: [(&str, i64); 4] =
        [("Ti", 1 << 40), ("Gi", 1 << 30), ("Mi", 1 << 20), ("Ki", 1 << 10)];
    for (suffix, size) in SUFFIXES {
        if bytes != 0 && bytes % size == 0 {
            return format!("{}{suffix}", bytes / size);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_quantities_in_millis() {
        assert_eq!(parse_millis("250m"), Ok(250));
        assert_eq!(parse_millis("2"), Ok(2000));
        assert_eq!(parse_millis("0.1"), Ok(100));
        assert_eq!(parse_millis("1.5"), Ok(1500));
    }

    #[test]
    fn memory_quantities_in_bytes() {
        assert_eq!(parse_units("1Gi"), Ok(1 << 30));
        assert_eq!(parse_units("128Mi"), Ok(128 << 20));
        assert_eq!(parse_units("1e3"), Ok(1000));
        assert_eq!(parse_units("1M"), Ok(1_000_000));
        assert_eq!(parse_units("1500m"), Ok(2));
    }

    #[test]
    fn invalid_quantities_are_rejected() {
        for bad in ["", "abc", "1..2", "12Xi", "--1", "1e", "m"] {
            assert_eq!(validate(bad), Err(QuantityError), "{bad:?} should be invalid");
        }
    }

    #[test]
    fn formatting_uses_exact_suffixes() {
        assert_eq!(format_millis(250), "250m");
        assert_eq!(format_millis(3000), "3");
        assert_eq!(format_bytes(512 << 20), "512Mi");
        assert_eq!(format_bytes(1000), "1000");
    }
}
