//! The CloudFormation custom-resource protocol: the request, read in two stages, and the response.
//!
//! Stage one reads only the protocol fields (RequestType, ResponseURL, ids) and keeps the properties
//! as raw JSON; stage two ([`crate::spec`]) reads the properties. A typed request that rejected the
//! whole event over one bad property would leave nothing to answer with, and the stack would wait an
//! hour; this way a bad property still gets a FAILED response that names it.

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest as CfnRequest, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus,
};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// CloudFormation refuses a response body larger than this ("Response object is too long").
pub const MAX_BODY_BYTES: usize = 4096;

/// What the request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Create,
    Update {
        physical_id: String,
        old_properties: Value,
    },
    Delete {
        physical_id: String,
    },
}

/// The fields every response echoes, and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_id: String,
}

/// A request whose protocol fields are sound; its properties are still raw.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub kind: Kind,
    pub reply_to: ReplyTo,
    pub properties: Value,
}

impl Request {
    pub fn stack_id(&self) -> &str {
        &self.reply_to.stack_id
    }

    pub fn logical_id(&self) -> &str {
        &self.reply_to.logical_id
    }

    pub fn request_id(&self) -> &str {
        &self.reply_to.request_id
    }

    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            Kind::Create => "Create",
            Kind::Update { .. } => "Update",
            Kind::Delete { .. } => "Delete",
        }
    }
}

/// An event that is not a usable custom-resource request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid custom resource request: {reason}")]
pub struct InvalidRequest {
    pub reason: String,
    /// Where to send FAILED, when the event has enough to address a response at all.
    pub reply_to: Option<Box<ReplyTo>>,
    /// The PhysicalResourceId the event carries, if any.
    pub physical_id: Option<String>,
}

/// Stage one: the protocol fields. The properties stay raw JSON.
pub fn parse(event: Value) -> Result<Request, InvalidRequest> {
    let salvage = |reason: String, event: &Value| {
        let field = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
        let reply_to = match (
            field("ResponseURL"),
            field("StackId"),
            field("RequestId"),
            field("LogicalResourceId"),
        ) {
            (Some(response_url), Some(stack_id), Some(request_id), Some(logical_id)) => {
                Some(Box::new(ReplyTo {
                    response_url,
                    stack_id,
                    request_id,
                    logical_id,
                }))
            }
            _ => None,
        };
        InvalidRequest {
            reason,
            reply_to,
            physical_id: field("PhysicalResourceId"),
        }
    };
    if !event.is_object() {
        return Err(salvage("the event is not a JSON object".into(), &event));
    }
    let parsed = serde_json::from_value::<CfnRequest<Value, Value>>(event.clone())
        .map_err(|e| salvage(e.to_string(), &event))?;
    // The three request structs share their protocol fields but no trait.
    macro_rules! reply_to {
        ($r:expr) => {
            ReplyTo {
                response_url: $r.response_url,
                stack_id: $r.stack_id,
                request_id: $r.request_id,
                logical_id: $r.logical_resource_id,
            }
        };
    }
    let (kind, reply_to, properties) = match parsed {
        CfnRequest::Create(r) => (Kind::Create, reply_to!(r), r.resource_properties),
        CfnRequest::Update(r) => (
            Kind::Update {
                physical_id: r.physical_resource_id,
                old_properties: r.old_resource_properties,
            },
            reply_to!(r),
            r.resource_properties,
        ),
        CfnRequest::Delete(r) => (
            Kind::Delete {
                physical_id: r.physical_resource_id,
            },
            reply_to!(r),
            r.resource_properties,
        ),
        _ => return Err(salvage("unknown RequestType".into(), &event)),
    };
    Ok(Request {
        kind,
        reply_to,
        properties,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
}

/// The result of handling one request, before it is rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    pub reason: String,
    pub physical_id: String,
    pub data: BTreeMap<String, String>,
}

impl Outcome {
    pub fn success(physical_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            status: Status::Success,
            reason: reason.into(),
            physical_id: physical_id.into(),
            data: BTreeMap::new(),
        }
    }

    pub fn failed(physical_id: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            status: Status::Failed,
            reason: reason.into(),
            physical_id: physical_id.into(),
            data: BTreeMap::new(),
        }
    }
}

/// The response cannot be made to fit [`MAX_BODY_BYTES`] (the echoed ids alone are too long).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the response would be {0} bytes, more than CloudFormation's {MAX_BODY_BYTES}")]
pub struct TooLong(pub usize);

fn serialize(reply_to: &ReplyTo, outcome: &Outcome, reason: &str) -> Vec<u8> {
    let mut response = CloudFormationCustomResourceResponse::default();
    response.status = match outcome.status {
        Status::Success => CloudFormationCustomResourceResponseStatus::Success,
        Status::Failed => CloudFormationCustomResourceResponseStatus::Failed,
    };
    // Never null: CloudFormation shows the Reason to the user, and requires one on FAILED.
    response.reason = Some(reason.to_owned());
    response.physical_resource_id = outcome.physical_id.clone();
    response.stack_id = reply_to.stack_id.clone();
    response.request_id = reply_to.request_id.clone();
    response.logical_resource_id = reply_to.logical_id.clone();
    response.data = outcome.data.clone().into_iter().collect::<HashMap<_, _>>();
    serde_json::to_vec(&response).expect("a response of strings serializes")
}

/// Renders the response body, at most [`MAX_BODY_BYTES`] long: the Reason is cut to fit, never the
/// JSON. Should Data alone overflow, it is dropped and the Reason says so.
pub fn render(reply_to: &ReplyTo, outcome: &Outcome) -> Result<Vec<u8>, TooLong> {
    let full = serialize(reply_to, outcome, &outcome.reason);
    if full.len() <= MAX_BODY_BYTES {
        return Ok(full);
    }
    // The longest prefix of the Reason that fits; escapes make its JSON size differ from its length,
    // so search rather than compute.
    let cut = |keep: usize| {
        let mut end = keep;
        while !outcome.reason.is_char_boundary(end) {
            end -= 1;
        }
        serialize(reply_to, outcome, &format!("{}...", &outcome.reason[..end]))
    };
    let (mut fits, mut too_long) = (None, outcome.reason.len());
    let mut low = 0;
    while low < too_long {
        let mid = (low + too_long) / 2;
        let body = cut(mid);
        if body.len() <= MAX_BODY_BYTES {
            fits = Some(body);
            low = mid + 1;
        } else {
            too_long = mid;
        }
    }
    if let Some(body) = fits {
        return Ok(body);
    }
    if !outcome.data.is_empty() {
        let mut without_data = outcome.clone();
        without_data.data.clear();
        without_data.reason = format!(
            "attributes omitted: they would make the response longer than {MAX_BODY_BYTES} bytes"
        );
        return render(reply_to, &without_data);
    }
    Err(TooLong(serialize(reply_to, outcome, "").len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(request_type: &str) -> Value {
        json!({
            "RequestType": request_type,
            "ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:f",
            "ResponseURL": "https://cfn.s3.amazonaws.com/k?X-Amz-Signature=s",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/id",
            "RequestId": "req",
            "ResourceType": "Custom::EbInstanceProfile",
            "LogicalResourceId": "Profile",
            "PhysicalResourceId": "p",
            "ResourceProperties": {"ServiceToken": "x", "Tiers": 5},
            "OldResourceProperties": {"ServiceToken": "x"},
        })
    }

    #[test]
    fn stage_one_keeps_properties_raw_even_when_they_are_wrong() {
        let request = parse(event("Create")).unwrap();
        assert_eq!(request.kind, Kind::Create);
        assert_eq!(request.properties["Tiers"], json!(5));
        assert_eq!(request.logical_id(), "Profile");
    }

    #[test]
    fn update_and_delete_carry_the_physical_id() {
        match parse(event("Update")).unwrap().kind {
            Kind::Update {
                physical_id,
                old_properties,
            } => {
                assert_eq!(physical_id, "p");
                assert_eq!(old_properties, json!({"ServiceToken": "x"}));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            parse(event("Delete")).unwrap().kind,
            Kind::Delete {
                physical_id: "p".into()
            }
        );
    }

    #[test]
    fn a_broken_request_still_says_where_to_answer() {
        let mut e = event("Update");
        e.as_object_mut().unwrap().remove("OldResourceProperties");
        e["RequestType"] = json!("Upsert");
        let err = parse(e).unwrap_err();
        let reply_to = err.reply_to.expect("reply_to");
        assert_eq!(reply_to.request_id, "req");
        assert_eq!(err.physical_id.as_deref(), Some("p"));
        assert!(err.reason.contains("Upsert"), "{}", err.reason);

        let mut e = event("Delete");
        e["StackId"] = json!(7);
        assert_eq!(parse(e).unwrap_err().reply_to, None);
        assert_eq!(parse(json!("text")).unwrap_err().reply_to, None);
    }

    fn reply_to() -> ReplyTo {
        ReplyTo {
            response_url: "u".into(),
            stack_id: "arn:aws:cloudformation:us-east-1:1:stack/s/i".into(),
            request_id: "r".into(),
            logical_id: "L".into(),
        }
    }

    #[test]
    fn the_response_has_a_reason_and_the_echoed_ids() {
        let body = render(&reply_to(), &Outcome::success("p", "")).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["Status"], "SUCCESS");
        assert_eq!(v["Reason"], "");
        assert_eq!(v["PhysicalResourceId"], "p");
        assert_eq!(v["RequestId"], "r");
        assert_eq!(v["LogicalResourceId"], "L");
        assert_eq!(v["StackId"], reply_to().stack_id);
        let failed = render(&reply_to(), &Outcome::failed("p", "why")).unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&failed).unwrap()["Status"],
            "FAILED"
        );
    }

    #[test]
    fn a_long_reason_is_cut_to_fit() {
        for reason in ["x".repeat(10_000), "\u{1}".repeat(5_000), "é".repeat(3_000)] {
            let body = render(&reply_to(), &Outcome::failed("p", reason.clone())).unwrap();
            assert!(body.len() <= MAX_BODY_BYTES, "{}", body.len());
            let v: Value = serde_json::from_slice(&body).unwrap();
            let cut = v["Reason"].as_str().unwrap();
            assert!(cut.ends_with("..."));
            assert!(reason.starts_with(cut.trim_end_matches("...")));
            // Cut no more than needed: one more character would not fit.
            assert!(body.len() > MAX_BODY_BYTES - 8, "{}", body.len());
        }
    }

    #[test]
    fn oversized_data_is_dropped_not_cut() {
        let mut outcome = Outcome::success("p", "ok");
        outcome
            .data
            .insert("ManagedPolicyArns".into(), "a".repeat(5_000));
        let body = render(&reply_to(), &outcome).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["Data"], json!({}));
        assert!(v["Reason"].as_str().unwrap().contains("omitted"));
    }

    #[test]
    fn ids_too_long_to_echo_are_an_error() {
        let mut to = reply_to();
        to.request_id = "r".repeat(5_000);
        assert!(render(&to, &Outcome::failed("p", "x")).is_err());
    }
}
