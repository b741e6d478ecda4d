use super::*;
use crate::model::build_services;
use crate::model::tests::{web_service, web_slice};

fn options() -> RuleOptions {
    RuleOptions {
        table: "cst_test".to_string(),
        node_name: "n1".to_string(),
        masquerade_pod_cidr: None,
    }
}

#[test]
fn golden_print() {
    let services = build_services(&[web_service()], &[web_slice()]);
    println!("{}", render(&services, &options()));
}
