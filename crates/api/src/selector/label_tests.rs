use super::*;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
use proptest::prelude::*;

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[test]
fn label_selector_matching() {
    let web = labels(&[("app", "web"), ("tier", "front"), ("weight", "5")]);
    let cases = [
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app!=web", false),
        ("app!=db", true),
        ("missing!=x", true),
        ("app in (web,db)", true),
        ("app notin (web,db)", false),
        ("tier in (back)", false),
        ("app,tier", true),
        ("!canary", true),
        ("!app", false),
        ("missing", false),
        ("weight>3", true),
        ("weight<3", false),
        ("app=web, tier = front", true),
        ("app=", false),
        ("missing=", false),
    ];
    for (text, expected) in cases {
        let selector = LabelSelector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(selector.matches(&web), expected, "selector {text:?}");
    }
}

#[test]
fn label_selector_syntax_errors() {
    let cases = [
        ("app=web,", "found 'end of string', expected: identifier after ','"),
        ("app in web", "found 'web', expected: '('"),
        ("app=a b", "found 'b', expected: ',' or 'end of string'"),
        ("=web", "found '=', expected: !, identifier, or 'end of string'"),
        ("app>x", "for 'Gt', 'Lt' operators, the value must be an integer"),
    ];
    for (text, expected) in cases {
        let error = LabelSelector::parse(text).expect_err(text).to_string();
        assert!(error.contains(expected), "{text:?} gave {error:?}");
    }
    assert!(LabelSelector::parse("-app=web").is_err(), "key must be a qualified name");
    assert!(LabelSelector::parse("app=bad!value").is_err());
    assert!(LabelSelector::parse("app=-web").is_err(), "value must start with an alphanumeric");
}

#[test]
fn label_selector_display_is_sorted() {
    let selector = LabelSelector::parse("tier in (b,a),app=web,!canary").unwrap();
    assert_eq!(selector.to_string(), "app=web,!canary,tier in (a,b)");
}

#[test]
fn from_k8s_converts_expressions() {
    let selector = K8sLabelSelector {
        match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".to_string(),
            operator: "NotIn".to_string(),
            values: Some(vec!["db".to_string()]),
        }]),
    };
    let selector = LabelSelector::from_k8s(&selector).unwrap();
    assert_eq!(selector.to_string(), "app=web,tier notin (db)");
    assert!(selector.matches(&labels(&[("app", "web")])));
    assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "db")])));
    assert!(LabelSelector::from_k8s(&K8sLabelSelector::default()).unwrap().is_empty());
    let bad = K8sLabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "tier".to_string(),
            operator: "Near".to_string(),
            values: None,
        }]),
        ..K8sLabelSelector::default()
    };
    assert!(LabelSelector::from_k8s(&bad).is_err());
}

fn key_strategy() -> impl Strategy<Value = String> {
    "([a-z]{1,5}(\\.[a-z]{1,5})?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?"
        .prop_filter("`in` and `notin` are keywords", |k| k != "in" && k != "notin")
}

fn value_strategy() -> impl Strategy<Value = String> {
    "([A-Za-z0-9]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?)?"
}

fn requirement_strategy() -> impl Strategy<Value = Requirement> {
    let operators = prop_oneof![
        Just(Operator::Equals),
        Just(Operator::DoubleEquals),
        Just(Operator::NotEquals),
        Just(Operator::In),
        Just(Operator::NotIn),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist),
        Just(Operator::GreaterThan),
        Just(Operator::LessThan),
    ];
    (key_strategy(), operators, prop::collection::btree_set(value_strategy(), 1..4), any::<u32>()).prop_map(
        |(key, operator, values, number)| {
            let values = match operator {
                Operator::Exists | Operator::DoesNotExist => BTreeSet::new(),
                Operator::GreaterThan | Operator::LessThan => BTreeSet::from([number.to_string()]),
                Operator::In | Operator::NotIn => values,
                _ => values.into_iter().take(1).collect(),
            };
            Requirement::new(&key, operator, values).expect("strategy builds valid requirements")
        },
    )
}

proptest! {
    #[test]
    fn display_then_parse_round_trips(requirements in prop::collection::vec(requirement_strategy(), 0..5)) {
        let selector = LabelSelector::from_requirements(requirements);
        let text = selector.to_string();
        let parsed = LabelSelector::parse(&text).map_err(|e| TestCaseError::fail(format!("{text:?}: {e}")))?;
        prop_assert_eq!(parsed, selector);
    }
}
