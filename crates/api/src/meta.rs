//! Name and label checks shared by validation and selectors, with apimachinery's messages
//! (`pkg/util/validation`). Each check returns the list of problems found, empty when the
//! value is valid, so callers can attach each message to a field error.

/// Maximum length of a DNS-1123 label, a DNS-1035 label, a label value and the name part
/// of a qualified name.
pub const LABEL_MAX_LENGTH: usize = 63;
/// Maximum length of a DNS-1123 subdomain and of a config map key.
pub const SUBDOMAIN_MAX_LENGTH: usize = 253;

const DNS1123_LABEL_MESSAGE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_LABEL_REGEX: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_REGEX: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_MESSAGE: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const DNS1035_LABEL_REGEX: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const QUALIFIED_NAME_REGEX: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_REGEX: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_MESSAGE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const CONFIG_KEY_REGEX: &str = "[-._a-zA-Z0-9]+";

/// Words a pattern mismatch as apimachinery's `RegexError` does.
fn regex_error(message: &str, regex: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    if examples.is_empty() {
        format!("{message} (regex used for validation is '{regex}')")
    } else {
        format!("{message} (e.g. {}regex used for validation is '{regex}')", examples.join(" or "))
    }
}

fn max_length_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// Matches `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn matches_dns1123_label(value: &str) -> bool {
    let ends_ok = value.starts_with(is_lower_alnum) && value.ends_with(is_lower_alnum);
    ends_ok && value.chars().all(|c| is_lower_alnum(c) || c == '-')
}

/// Matches `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the name part of label keys.
fn matches_qualified_name(value: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    value.starts_with(alnum)
        && value.ends_with(alnum)
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a DNS-1123 label (`my-name`), the rule for namespace and container names.
pub fn dns1123_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_MAX_LENGTH {
        problems.push(max_length_error(LABEL_MAX_LENGTH));
    }
    if !matches_dns1123_label(value) {
        problems.push(regex_error(DNS1123_LABEL_MESSAGE, DNS1123_LABEL_REGEX, &["my-name", "123-abc"]));
    }
    problems
}

/// Checks a DNS-1123 subdomain (`example.com`), the rule for most object names.
pub fn dns1123_subdomain(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > SUBDOMAIN_MAX_LENGTH {
        problems.push(max_length_error(SUBDOMAIN_MAX_LENGTH));
    }
    if !value.split('.').all(matches_dns1123_label) {
        problems.push(regex_error(DNS1123_SUBDOMAIN_MESSAGE, DNS1123_SUBDOMAIN_REGEX, &["example.com"]));
    }
    problems
}

/// Checks a DNS-1035 label (`my-name`, starting with a letter), the rule for Service names.
pub fn dns1035_label(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_MAX_LENGTH {
        problems.push(max_length_error(LABEL_MAX_LENGTH));
    }
    if !(matches_dns1123_label(value) && value.starts_with(|c: char| c.is_ascii_lowercase())) {
        problems.push(regex_error(DNS1035_LABEL_MESSAGE, DNS1035_LABEL_REGEX, &["my-name", "abc-123"]));
    }
    problems
}

/// Checks a qualified name: an optional DNS subdomain prefix and `/`, then a name of at
/// most 63 characters. Label keys, annotation keys and finalizers follow this rule.
pub fn qualified_name(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let examples = ["MyName", "my.name", "123-abc"];
    let name = match value.split('/').collect::<Vec<_>>().as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                problems.extend(dns1123_subdomain(prefix).into_iter().map(|p| format!("prefix part {p}")));
            }
            *name
        }
        _ => {
            let pattern = regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_REGEX, &examples);
            problems.push(format!(
                "a qualified name {pattern} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            ));
            return problems;
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > LABEL_MAX_LENGTH {
        problems.push(format!("name part {}", max_length_error(LABEL_MAX_LENGTH)));
    }
    if !matches_qualified_name(name) {
        let pattern = regex_error(QUALIFIED_NAME_MESSAGE, QUALIFIED_NAME_REGEX, &examples);
        problems.push(format!("name part {pattern}"));
    }
    problems
}

/// Checks a label value: empty, or at most 63 alphanumerics, `-`, `_` and `.` that start
/// and end with an alphanumeric.
pub fn label_value(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > LABEL_MAX_LENGTH {
        problems.push(max_length_error(LABEL_MAX_LENGTH));
    }
    if !value.is_empty() && !matches_qualified_name(value) {
        problems.push(regex_error(LABEL_VALUE_MESSAGE, LABEL_VALUE_REGEX, &["MyValue", "my_value", "12345"]));
    }
    problems
}

/// Checks a ConfigMap or Secret data key.
pub fn config_map_key(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > SUBDOMAIN_MAX_LENGTH {
        problems.push(max_length_error(SUBDOMAIN_MAX_LENGTH));
    }
    let charset_ok = value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if value.is_empty() || !charset_ok {
        problems.push(regex_error(CONFIG_KEY_MESSAGE, CONFIG_KEY_REGEX, &["key.name", "KEY_NAME", "key-name"]));
    }
    if value == "." {
        problems.push("must not be '.'".to_string());
    } else if value == ".." {
        problems.push("must not be '..'".to_string());
    } else if value.starts_with("..") {
        problems.push("must not start with '..'".to_string());
    }
    problems
}

/// Checks a port name (IANA_SVC_NAME): at most 15 lowercase alphanumerics and hyphens,
/// with at least one letter.
pub fn port_name(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.len() > 15 {
        problems.push(max_length_error(15));
    }
    if !value.chars().all(|c| is_lower_alnum(c) || c == '-') {
        problems.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    }
    if !value.chars().any(|c| c.is_ascii_lowercase()) {
        problems.push("must contain at least one letter (a-z)".to_string());
    }
    if value.contains("--") {
        problems.push("must not contain consecutive hyphens".to_string());
    }
    if value.starts_with('-') || value.ends_with('-') {
        problems.push("must not begin or end with a hyphen".to_string());
    }
    problems
}

/// Checks an environment variable name by the relaxed rule that Kubernetes 1.33 enables
/// by default: printable ASCII other than `=`.
pub fn env_var_name(value: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if value.is_empty() {
        problems.push("environment variable name must be non-empty".to_string());
    }
    if value.chars().any(|c| !(' '..='~').contains(&c) || c == '=') {
        problems.push(
            "a valid environment variable name must consist only of printable ASCII characters other than '='"
                .to_string(),
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rules_accept_and_reject() {
        type Check = fn(&str) -> Vec<String>;
        let cases: &[(&str, Check, &str, bool)] = &[
            ("label", dns1123_label, "web-1", true),
            ("label", dns1123_label, "Web", false),
            ("label", dns1123_label, "-web", false),
            ("label", dns1123_label, "web.1", false),
            ("label", dns1123_label, "", false),
            ("subdomain", dns1123_subdomain, "web.example.com", true),
            ("subdomain", dns1123_subdomain, "web..com", false),
            ("subdomain", dns1123_subdomain, "web_1", false),
            ("1035", dns1035_label, "web-1", true),
            ("1035", dns1035_label, "1web", false),
            ("qualified", qualified_name, "app", true),
            ("qualified", qualified_name, "example.com/App_1", true),
            ("qualified", qualified_name, "/app", false),
            ("qualified", qualified_name, "a/b/c", false),
            ("qualified", qualified_name, "app-", false),
            ("value", label_value, "", true),
            ("value", label_value, "My_value.1", true),
            ("value", label_value, "bad value", false),
            ("config key", config_map_key, "app.properties", true),
            ("config key", config_map_key, "..data", false),
            ("config key", config_map_key, "a/b", false),
            ("port", port_name, "http-2", true),
            ("port", port_name, "8080", false),
            ("port", port_name, "a--b", false),
            ("port", port_name, "very-long-port-name", false),
            ("env", env_var_name, "my.var-1", true),
            ("env", env_var_name, "A=B", false),
        ];
        for (rule, check, value, valid) in cases {
            assert_eq!(check(value).is_empty(), *valid, "{rule} rule on {value:?}: {:?}", check(value));
        }
    }

    #[test]
    fn long_names_report_length() {
        let long = "a".repeat(64);
        assert_eq!(dns1123_label(&long), vec!["must be no more than 63 characters".to_string()]);
        assert_eq!(qualified_name(&long), vec!["name part must be no more than 63 characters".to_string()]);
    }

    #[test]
    fn label_message_matches_apimachinery() {
        assert_eq!(
            dns1123_label("Web")[0],
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        );
    }
}
