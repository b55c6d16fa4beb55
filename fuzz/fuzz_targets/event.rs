//! Arbitrary bytes as the Lambda event: the steps the function takes from event to response body,
//! short of IAM and the network.
//!
//! The event as text, routed as `handler::handle` routes it (an SNS notification carries requests
//! as text; text that is not JSON the function can hold is read around the unreadable part), then
//! the request's protocol fields, the properties into a desired state under the default rules, the
//! names new entities get, and the response: FAILED for what is refused, SUCCESS with the
//! attributes for what is accepted. Every step must return rather than panic, and every response
//! must fit CloudFormation's limit or be refused for ids that cannot fit.

#![no_main]

use eb_instance_profile::config::Rules;
use eb_instance_profile::names::{self, RoleName};
use eb_instance_profile::plan::{self, Desired, Owner, Target};
use eb_instance_profile::protocol::{
    self, InvalidRequest, Kind, MAX_BODY_BYTES, Outcome, ReplyTo, Request, Status,
};
use eb_instance_profile::spec::Spec;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use std::collections::BTreeMap;

fuzz_target!(|data: &[u8]| {
    // Lambda hands the function JSON text, so UTF-8.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let event = match serde_json::from_str::<Value>(text) {
        Ok(event) => event,
        Err(_) => return answer(protocol::parse_text(text)),
    };
    if event.get("RequestType").is_none() {
        // The handler answers each SNS record's Message as a request of its own.
        if let Some(records) = event.get("Records") {
            for record in records.as_array().into_iter().flatten() {
                if let Some(message) = record.pointer("/Sns/Message").and_then(Value::as_str) {
                    answer(protocol::parse_text(message));
                }
            }
            return;
        }
        // A direct Verify or Repair reads IAM: nothing to check without it.
        if event.get("Action").is_some() {
            return;
        }
    }
    answer(protocol::parse(event));
});

/// One CloudFormation request, as `handler::answer_request` and `lifecycle` treat it, or as
/// `handler::answer_invalid` refuses it.
fn answer(parsed: Result<Request, InvalidRequest>) {
    let request = match parsed {
        Ok(request) => request,
        Err(invalid) => {
            // Answered FAILED when the event says where to.
            if let Some(reply_to) = &invalid.reply_to {
                let physical_id = invalid.physical_id.clone().unwrap_or_else(|| {
                    generated(
                        &reply_to.stack_id,
                        &reply_to.logical_id,
                        &reply_to.request_id,
                    )
                });
                check_render(reply_to, &Outcome::failed(physical_id, invalid.to_string()));
            }
            return;
        }
    };
    let rules = Rules::default();
    let outcome = match Spec::prepare(&rules, &request.properties, request.stack_id()) {
        Err(refused) => {
            let physical_id = plan::fallback_physical_id(&rules, &request);
            checked_name(&physical_id, &request);
            Outcome::failed(physical_id, refused.to_string())
        }
        Ok((spec, partition)) => {
            if let Kind::Update { old_properties, .. } = &request.kind {
                // Update reads the old properties too, to tell a replacement from a change.
                if let Ok(old) = Spec::parse(old_properties, &partition) {
                    let _ = spec.identity().changed(&old.identity());
                }
            }
            let target = Target::new_for(&spec, &request);
            let physical_id = plan::fallback_physical_id(&rules, &request);
            if let Kind::Create = request.kind {
                assert_eq!(physical_id, target.profile.as_str());
            }
            // ARNs as IAM forms them.
            let arn = |kind: &str, name: &str| {
                let (partition, path) = (partition.as_str(), spec.path.as_str());
                format!("arn:{partition}:iam::123456789012:{kind}{path}{name}")
            };
            let creation = plan::creation_tag(request.request_id(), &names::delivery_mark());
            // Whatever the RequestId, IAM accepts the tag that carries it.
            assert!(creation.chars().count() <= 256);
            assert!(eb_instance_profile::spec::tag_chars_ok(&creation), "{creation:?}");
            let desired = Desired {
                target: &target,
                spec: &spec,
                owner: &Owner::of(&request),
                creation: &creation,
            };
            // The tags Create puts on what it makes, the creation tag among them.
            for tags in [
                desired.role_creation_tags(),
                desired.profile_creation_tags(),
            ] {
                assert_eq!(tags.get(plan::TAG_REQUEST_ID), Some(&creation));
            }
            desired.answer(
                &arn("role", target.role.as_str()),
                &arn("instance-profile", target.profile.as_str()),
                "created",
            )
        }
    };
    check_render(&request.reply_to, &outcome);
    // The same request refused, as a failure in IAM or a timeout would answer it.
    let failed = Outcome::failed(outcome.physical_id.clone(), outcome.reason.clone());
    check_render(&request.reply_to, &failed);
}

fn generated(stack_id: &str, logical_id: &str, request_id: &str) -> String {
    let name = names::generated(stack_id, logical_id, request_id);
    assert!(name.len() <= RoleName::MAX, "{name:?} is too long");
    assert_eq!(name, names::generated(stack_id, logical_id, request_id));
    name
}

/// A refused Create answers with the name its profile would have had: a valid, stable one.
fn checked_name(physical_id: &str, request: &Request) {
    if let Kind::Create = request.kind {
        let name = generated(
            request.stack_id(),
            request.logical_id(),
            request.request_id(),
        );
        assert_eq!(physical_id, name);
    }
}

/// The response body fits and is JSON that echoes the ids; it is refused only when the ids alone
/// cannot fit, which the smallest outcome with the same ids shows.
fn check_render(reply_to: &ReplyTo, outcome: &Outcome) {
    let least = Outcome {
        reason: String::new(),
        data: BTreeMap::new(),
        ..outcome.clone()
    };
    match protocol::render(reply_to, outcome) {
        Ok(body) => {
            assert!(body.len() <= MAX_BODY_BYTES, "{} bytes", body.len());
            let v: Value = serde_json::from_slice(&body).expect("the body is JSON");
            let status = match outcome.status {
                Status::Success => "SUCCESS",
                Status::Failed => "FAILED",
            };
            assert_eq!(v["Status"], status);
            assert_eq!(v["StackId"], reply_to.stack_id.as_str());
            assert_eq!(v["RequestId"], reply_to.request_id.as_str());
            assert_eq!(v["LogicalResourceId"], reply_to.logical_id.as_str());
            assert_eq!(v["PhysicalResourceId"], outcome.physical_id.as_str());
            assert!(v["Reason"].is_string());
            assert!(v["Data"].is_object());
        }
        Err(protocol::TooLong(size)) => {
            assert!(size > MAX_BODY_BYTES, "refused at {size} bytes");
            assert!(
                protocol::render(reply_to, &least).is_err(),
                "refused, yet fits with an empty Reason and no Data"
            );
        }
    }
}
