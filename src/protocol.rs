//! The CloudFormation custom-resource protocol: the request, read in two stages, and the response.
//!
//! Stage one reads only the protocol fields (RequestType, ResponseURL, ids) and keeps the properties
//! as raw JSON; stage two ([`crate::spec`]) reads the properties. A typed request that rejected the
//! whole event over one bad property would leave nothing to answer with, and the stack would wait an
//! hour; this way a bad property still gets a FAILED response that names it.

use crate::spec::type_name;
use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest as CfnRequest, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus,
};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

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

impl ReplyTo {
    /// The address of a response, when an event that is otherwise broken still has all of it.
    fn salvaged(
        response_url: Option<String>,
        stack_id: Option<String>,
        request_id: Option<String>,
        logical_id: Option<String>,
    ) -> Option<Box<Self>> {
        Some(Box::new(Self {
            response_url: response_url?,
            stack_id: stack_id?,
            request_id: request_id?,
            logical_id: logical_id?,
        }))
    }
}

/// A request whose protocol fields are sound; its properties are still raw.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub kind: Kind,
    pub reply_to: ReplyTo,
    pub properties: Value,
    /// CloudFormation's ServiceTimeout: it fails the resource this long after sending the request,
    /// so an answer after that is of no use, and work after it builds what no stack tracks.
    pub service_timeout: Option<Duration>,
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

/// Protocol fields that must be strings when present, in the order a Reason names them.
const STRING_FIELDS: [&str; 8] = [
    "RequestType",
    "ResponseURL",
    "StackId",
    "RequestId",
    "LogicalResourceId",
    "PhysicalResourceId",
    "ResourceType",
    "ServiceToken",
];

/// The first protocol field of the wrong JSON type or value, said the way a template author reads
/// it. serde's own message ("invalid type: integer `12`, expected a string") names no field.
fn misshapen(event: &Value) -> Option<String> {
    for name in STRING_FIELDS {
        match event.get(name) {
            Some(v) if !v.is_string() => {
                return Some(format!("{name} must be a string, not {}", type_name(v)));
            }
            _ => {}
        }
    }
    let kind = event.get("RequestType").and_then(Value::as_str);
    if let Some(kind) = kind
        && !matches!(kind, "Create" | "Update" | "Delete")
    {
        return Some(format!(
            "RequestType must be Create, Update or Delete, not {kind:?}"
        ));
    }
    // A Delete is answered whatever its properties hold: refusing it would keep the stack from
    // ever being deleted.
    let objects: &[&str] = match kind {
        Some("Update") => &["ResourceProperties", "OldResourceProperties"],
        Some("Create") => &["ResourceProperties"],
        _ => &[],
    };
    objects.iter().find_map(|name| match event.get(*name) {
        Some(v) if !v.is_object() => {
            Some(format!("{name} must be an object, not {}", type_name(v)))
        }
        _ => None,
    })
}

/// Stage one for an event as text: [`parse`], or, when the text is not JSON this function can hold
/// in memory (nesting deeper than serde_json's 128 levels, a lone UTF-16 surrogate, a number beyond
/// a double), the protocol fields read around the unreadable part, so that FAILED can still be sent,
/// naming the property that could not be read.
///
/// A Delete whose properties cannot be read is still a Delete: its properties only hint at the
/// role's name, and refusing it would keep the stack (or its rollback) from ever finishing.
pub fn parse_text(text: &str) -> Result<Request, InvalidRequest> {
    match serde_json::from_str::<Value>(text) {
        Ok(event) => parse(event),
        Err(error) => unreadable(text, &error),
    }
}

fn unreadable(text: &str, error: &serde_json::Error) -> Result<Request, InvalidRequest> {
    /// The fields a response needs. Everything else is skipped unread (serde_json skips a value
    /// without building it: no depth limit, no check of escapes or number ranges).
    #[derive(Default, serde::Deserialize)]
    #[serde(default, rename_all = "PascalCase")]
    struct Envelope {
        request_type: Option<String>,
        #[serde(rename = "ResponseURL")]
        response_url: Option<String>,
        stack_id: Option<String>,
        request_id: Option<String>,
        logical_resource_id: Option<String>,
        physical_resource_id: Option<String>,
        resource_properties: Option<Box<RawValue>>,
        old_resource_properties: Option<Box<RawValue>>,
    }
    let envelope: Envelope = serde_json::from_str(text).unwrap_or_default();
    let culprit = [
        ("ResourceProperties", &envelope.resource_properties),
        ("OldResourceProperties", &envelope.old_resource_properties),
    ]
    .into_iter()
    .find_map(|(name, raw)| {
        let raw = raw.as_ref()?;
        let error = serde_json::from_str::<Value>(raw.get()).err()?;
        Some(match unreadable_member(raw, 0) {
            Some((path, error)) => format!("property {path} in {name} cannot be read: {error}"),
            None => format!("{name} cannot be read: {error}"),
        })
    });
    let reply_to = ReplyTo::salvaged(
        envelope.response_url,
        envelope.stack_id,
        envelope.request_id,
        envelope.logical_resource_id,
    );
    if let (Some("Delete"), Some(reply_to), Some(physical_id)) = (
        envelope.request_type.as_deref(),
        &reply_to,
        &envelope.physical_resource_id,
    ) {
        return Ok(Request {
            kind: Kind::Delete {
                physical_id: physical_id.clone(),
            },
            reply_to: (**reply_to).clone(),
            properties: Value::Object(serde_json::Map::new()),
            service_timeout: None,
        });
    }
    Err(InvalidRequest {
        reason: culprit
            .unwrap_or_else(|| format!("the event is not JSON this function can read: {error}")),
        reply_to,
        physical_id: envelope.physical_resource_id,
    })
}

/// The dotted path to the unreadable member of the object `raw` (`InlinePolicies.p`) and why, going
/// down through objects whose keys can be read, at most [`MEMBER_DEPTH`] levels.
fn unreadable_member(raw: &RawValue, depth: usize) -> Option<(String, serde_json::Error)> {
    let members = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(raw.get()).ok()?;
    members.into_iter().find_map(|(key, value)| {
        let error = serde_json::from_str::<Value>(value.get()).err()?;
        let deeper = (depth + 1 < MEMBER_DEPTH)
            .then(|| unreadable_member(&value, depth + 1))
            .flatten();
        Some(match deeper {
            Some((path, error)) => (format!("{key}.{path}"), error),
            None => (key, error),
        })
    })
}

/// How deep [`unreadable_member`] looks: property names are at the top, policy names one below.
const MEMBER_DEPTH: usize = 2;

/// Stage one: the protocol fields. The properties stay raw JSON.
pub fn parse(event: Value) -> Result<Request, InvalidRequest> {
    let salvage = |reason: String, event: &Value| {
        let field = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
        InvalidRequest {
            reason,
            reply_to: ReplyTo::salvaged(
                field("ResponseURL"),
                field("StackId"),
                field("RequestId"),
                field("LogicalResourceId"),
            ),
            physical_id: field("PhysicalResourceId"),
        }
    };
    if !event.is_object() {
        return Err(salvage("the event is not a JSON object".into(), &event));
    }
    if let Some(reason) = misshapen(&event) {
        return Err(salvage(reason, &event));
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
    let service_timeout = service_timeout(&event, &properties);
    Ok(Request {
        kind,
        reply_to,
        properties,
        service_timeout,
    })
}

/// ServiceTimeout, at the top level of the event or among the properties (CloudFormation puts it
/// in both, as it does ServiceToken): whole seconds from 1 to 3600, as a number or its string.
/// CloudFormation refuses any other value before it sends a request; one that is not valid here
/// is left aside, and the Lambda deadline bounds the work alone.
fn service_timeout(event: &Value, properties: &Value) -> Option<Duration> {
    let seconds = |value: &Value| {
        let n = match value {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse::<u64>().ok(),
            _ => None,
        }?;
        (1..=3600).contains(&n).then(|| Duration::from_secs(n))
    };
    [
        event.get("ServiceTimeout"),
        properties.get("ServiceTimeout"),
    ]
    .into_iter()
    .flatten()
    .find_map(seconds)
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
/// JSON, and left empty when the ids leave no room even for "...". Should Data alone overflow, it
/// is dropped and the Reason says so.
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
    // Not even "..." fits; an empty Reason may still.
    let bare = serialize(reply_to, outcome, "");
    if bare.len() <= MAX_BODY_BYTES {
        return Ok(bare);
    }
    Err(TooLong(bare.len()))
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
    fn service_timeout_comes_from_the_top_level_or_the_properties() {
        let with = |top: Option<Value>, property: Option<Value>| {
            let mut e = event("Create");
            if let Some(v) = top {
                e["ServiceTimeout"] = v;
            }
            if let Some(v) = property {
                e["ResourceProperties"]["ServiceTimeout"] = v;
            }
            parse(e).unwrap().service_timeout
        };
        let secs = |n| Some(Duration::from_secs(n));
        assert_eq!(with(None, None), None);
        assert_eq!(with(Some(json!(300)), None), secs(300));
        assert_eq!(with(None, Some(json!("45"))), secs(45));
        assert_eq!(with(Some(json!("1")), Some(json!("3600"))), secs(1));
        // CloudFormation allows 1 to 3600; anything else is left aside.
        for bad in [
            json!(0),
            json!(3601),
            json!("soon"),
            json!(-5),
            json!(2.5),
            json!(null),
        ] {
            assert_eq!(with(Some(bad.clone()), None), None, "{bad}");
        }
        assert_eq!(with(Some(json!("x")), Some(json!(60))), secs(60));
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

    #[test]
    fn ids_that_leave_no_room_for_a_reason_get_an_empty_one() {
        for room in 0..3 {
            let mut to = reply_to();
            let bare = serialize(&to, &Outcome::failed("p", ""), "").len();
            to.request_id += &"r".repeat(MAX_BODY_BYTES - room - bare);
            let body = render(&to, &Outcome::failed("p", "why")).unwrap();
            assert_eq!(body.len(), MAX_BODY_BYTES - room);
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(v["Reason"], "");
            assert_eq!(v["RequestId"], to.request_id.as_str());
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;
        use std::collections::BTreeSet;

        /// Characters that JSON escapes, or that take several bytes in UTF-8.
        const AWKWARD: &[char] = &[
            '"', '\\', '\0', '\u{1}', '\u{1f}', '\n', '\t', '\u{7f}', '/', 'é', '\u{2028}', '😀',
            'a',
        ];

        /// Any text, from empty to far more than a response can carry: awkward characters, any
        /// characters (most take four bytes in UTF-8), or one character many times.
        fn text(max: usize) -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(prop::sample::select(AWKWARD), 0..max.min(40)),
                prop::collection::vec(prop::sample::select(AWKWARD), 0..max),
                prop::collection::vec(any::<char>(), 0..max / 4),
                (any::<char>(), 0..max).prop_map(|(c, n)| vec![c; n]),
            ]
            .prop_map(String::from_iter)
        }

        fn reply_to(id_max: usize) -> impl Strategy<Value = ReplyTo> {
            (text(200), text(id_max), text(id_max), text(200)).prop_map(
                |(response_url, stack_id, request_id, logical_id)| ReplyTo {
                    response_url,
                    stack_id,
                    request_id,
                    logical_id,
                },
            )
        }

        fn outcome() -> impl Strategy<Value = Outcome> {
            (
                any::<bool>(),
                text(3_000),
                text(300),
                prop::collection::btree_map(text(40), text(1_500), 0..4),
            )
                .prop_map(|(success, reason, physical_id, data)| Outcome {
                    status: if success {
                        Status::Success
                    } else {
                        Status::Failed
                    },
                    reason,
                    physical_id,
                    data,
                })
        }

        /// Ids that leave between -8 and 8 bytes for the Reason: the edge of what fits.
        fn at_the_limit() -> impl Strategy<Value = (ReplyTo, Outcome)> {
            (reply_to(100), outcome(), -8i64..=8).prop_map(|(mut to, mut outcome, room)| {
                outcome.data.clear();
                let bare = serialize(&to, &outcome, "").len() as i64;
                let pad = MAX_BODY_BYTES as i64 - room - bare;
                if pad > 0 {
                    to.request_id.push_str(&"r".repeat(pad as usize));
                }
                (to, outcome)
            })
        }

        const OMITTED: &str =
            "attributes omitted: they would make the response longer than 4096 bytes";

        /// Whether `shown` is `original` cut to fit: a shorter prefix and "...", or nothing at all
        /// when not even "..." fits. Returns the prefix kept.
        fn cut_from<'a>(shown: &'a str, original: &str) -> Option<&'a str> {
            if shown.is_empty() {
                return Some("");
            }
            let kept = shown.strip_suffix("...")?;
            (kept.len() < original.len() && original.starts_with(kept)).then_some(kept)
        }

        /// Checks that `reason` is `original` cut as little as the response allows.
        fn check_cut(
            to: &ReplyTo,
            outcome: &Outcome,
            reason: &str,
            original: &str,
        ) -> Result<(), TestCaseError> {
            let fits = |r: &str| serialize(to, outcome, r).len() <= MAX_BODY_BYTES;
            prop_assert!(!fits(original), "a Reason that fits was cut");
            let Some(kept) = cut_from(reason, original) else {
                return Err(TestCaseError::fail(format!(
                    "{reason:?} is not a cut of {original:?}"
                )));
            };
            if reason.is_empty() {
                prop_assert!(!fits("..."), "the Reason was dropped though \"...\" fits");
                prop_assert!(
                    outcome.data.is_empty(),
                    "the Reason was dropped, not the Data"
                );
            } else {
                // One more character would not have fitted.
                let next = original[kept.len()..]
                    .chars()
                    .next()
                    .expect("a shorter prefix");
                prop_assert!(!fits(&format!("{kept}{next}...")), "cut more than needed");
            }
            Ok(())
        }

        /// Everything `render` promises, for one input.
        fn check(to: &ReplyTo, outcome: &Outcome) -> Result<(), TestCaseError> {
            let without_data = Outcome {
                data: BTreeMap::new(),
                ..outcome.clone()
            };
            // The smallest response there is: no Data, an empty Reason.
            let least = serialize(to, &without_data, "").len();
            let body = match render(to, outcome) {
                Err(TooLong(size)) => {
                    // Only when the echoed ids and the PhysicalResourceId alone are too long.
                    prop_assert_eq!(size, least);
                    prop_assert!(least > MAX_BODY_BYTES, "{} bytes would have fitted", least);
                    return Ok(());
                }
                Ok(body) => body,
            };
            prop_assert!(body.len() <= MAX_BODY_BYTES, "{} bytes", body.len());
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| TestCaseError::fail(format!("not JSON: {e}")))?;
            let keys: BTreeSet<&str> = v
                .as_object()
                .expect("an object")
                .keys()
                .map(String::as_str)
                .collect();
            prop_assert_eq!(
                keys,
                BTreeSet::from([
                    "Status",
                    "Reason",
                    "PhysicalResourceId",
                    "StackId",
                    "RequestId",
                    "LogicalResourceId",
                    "NoEcho",
                    "Data",
                ])
            );
            let status = match outcome.status {
                Status::Success => "SUCCESS",
                Status::Failed => "FAILED",
            };
            prop_assert_eq!(&v["Status"], status);
            // The ids are echoed whole, never cut.
            prop_assert_eq!(&v["PhysicalResourceId"], outcome.physical_id.as_str());
            prop_assert_eq!(&v["StackId"], to.stack_id.as_str());
            prop_assert_eq!(&v["RequestId"], to.request_id.as_str());
            prop_assert_eq!(&v["LogicalResourceId"], to.logical_id.as_str());
            prop_assert_eq!(&v["NoEcho"], false);
            let reason = v["Reason"].as_str().expect("Reason is a string");
            let data: BTreeMap<String, String> =
                serde_json::from_value(v["Data"].clone()).expect("Data is a map of strings");

            if serialize(to, outcome, &outcome.reason).len() <= MAX_BODY_BYTES {
                // What fits is sent as it is.
                prop_assert_eq!(reason, outcome.reason.as_str());
                prop_assert_eq!(&data, &outcome.data);
            } else if data == outcome.data {
                // Data kept: only the Reason is cut.
                check_cut(to, outcome, reason, &outcome.reason)?;
            } else {
                // Data dropped whole, only when not even "..." fitted beside it, and the Reason
                // says so instead.
                prop_assert!(data.is_empty(), "Data was cut, not dropped: {:?}", data);
                prop_assert!(serialize(to, outcome, "...").len() > MAX_BODY_BYTES);
                if reason != OMITTED {
                    check_cut(to, &without_data, reason, OMITTED)?;
                }
            }
            Ok(())
        }

        proptest! {
            #[test]
            fn responses_fit_and_keep_their_ids(to in reply_to(300), outcome in outcome()) {
                check(&to, &outcome)?;
            }

            #[test]
            fn responses_at_the_limit(case in at_the_limit()) {
                check(&case.0, &case.1)?;
            }

            #[test]
            fn ids_too_long_to_echo(to in reply_to(5_000), outcome in outcome()) {
                check(&to, &outcome)?;
            }
        }
    }
}

#[cfg(test)]
mod text_tests {
    use super::*;
    use serde_json::json;

    fn event(request_type: Value, properties: &str) -> String {
        let head = json!({
            "RequestType": request_type,
            "ResponseURL": "https://bucket.s3.amazonaws.com/key?X-Amz-Signature=s",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/id",
            "RequestId": "req",
            "LogicalResourceId": "Profile",
            "ResourceType": "Custom::EbInstanceProfile",
        })
        .to_string();
        format!(
            "{},\"ResourceProperties\":{properties}}}",
            head.trim_end_matches('}')
        )
    }

    fn invalid(text: &str) -> InvalidRequest {
        parse_text(text).expect_err("the event is refused")
    }

    #[test]
    fn a_readable_event_parses_as_json_would() {
        let text = event(json!("Create"), r#"{"Tiers":["WebTier"]}"#);
        let request = parse_text(&text).unwrap();
        assert_eq!(request.kind, Kind::Create);
        assert_eq!(request.properties, json!({"Tiers": ["WebTier"]}));
    }

    #[test]
    fn nesting_beyond_the_limit_names_the_property_and_keeps_the_reply_address() {
        let deep = format!("{}\"WebTier\"{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = event(
            json!("Create"),
            &format!(r#"{{"InstanceProfileName":"p","Tiers":{deep}}}"#),
        );
        let err = invalid(&text);
        assert!(
            err.reason
                .starts_with("property Tiers in ResourceProperties cannot be read"),
            "{}",
            err.reason
        );
        let reply_to = err
            .reply_to
            .expect("the protocol fields are read around the property");
        assert_eq!(reply_to.logical_id, "Profile");
        assert_eq!(reply_to.request_id, "req");
    }

    #[test]
    fn an_unreadable_member_is_named_one_level_down() {
        let deep = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
        let text = event(
            json!("Create"),
            &format!(r#"{{"InlinePolicies":{{"p":{deep}}}}}"#),
        );
        assert!(
            invalid(&text)
                .reason
                .starts_with("property InlinePolicies.p in ResourceProperties")
        );
    }

    #[test]
    fn lone_surrogates_and_huge_numbers_are_named() {
        let text = event(json!("Create"), r#"{"Description":"x\ud800"}"#);
        assert!(
            invalid(&text)
                .reason
                .contains("property Description in ResourceProperties")
        );
        let text = event(json!("Create"), r#"{"MaxSessionDuration":1e400}"#);
        assert!(
            invalid(&text)
                .reason
                .contains("property MaxSessionDuration")
        );
        // An unreadable property name: the property cannot be named, its object can.
        let text = event(json!("Create"), r#"{"x\udc00":"y"}"#);
        let reason = invalid(&text).reason;
        assert!(
            reason.starts_with("ResourceProperties cannot be read"),
            "{reason}"
        );
    }

    #[test]
    fn a_delete_with_unreadable_properties_is_still_a_delete() {
        let deep = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        let text = event(json!("Delete"), &format!(r#"{{"Tiers":{deep}}}"#));
        let text = text.replacen('{', r#"{"PhysicalResourceId":"p","#, 1);
        let request = parse_text(&text).expect("a Delete is answered");
        assert_eq!(
            request.kind,
            Kind::Delete {
                physical_id: "p".into()
            }
        );
        assert_eq!(request.properties, json!({}));
        // Without a PhysicalResourceId there is nothing to delete by: refused.
        let text = event(json!("Delete"), &format!(r#"{{"Tiers":{deep}}}"#));
        assert!(parse_text(&text).is_err());
    }

    #[test]
    fn text_that_is_no_json_at_all_has_no_reply_address() {
        for text in ["", "{", "nul", "[1,2", "{\"ResponseURL\": 5"] {
            let err = invalid(text);
            assert!(err.reply_to.is_none(), "{text}");
            assert!(err.reason.contains("not JSON"), "{text}: {}", err.reason);
        }
    }

    #[test]
    fn protocol_fields_of_the_wrong_type_or_value_are_named() {
        let cases = [
            (
                json!({"RequestType": 1}),
                "RequestType must be a string, not a number",
            ),
            (
                json!({"RequestType": "Upsert"}),
                "RequestType must be Create, Update or Delete, not \"Upsert\"",
            ),
            (
                json!({"RequestType": "Create", "StackId": null}),
                "StackId must be a string, not null",
            ),
            (
                json!({"RequestType": "Delete", "PhysicalResourceId": 12}),
                "PhysicalResourceId must be a string",
            ),
            (
                json!({"RequestType": "Create", "ResourceProperties": null}),
                "ResourceProperties must be an object, not null",
            ),
            (
                json!({"RequestType": "Update", "ResourceProperties": {}, "OldResourceProperties": "x"}),
                "OldResourceProperties must be an object, not a string",
            ),
        ];
        for (event, expected) in cases {
            let err = parse(event.clone()).expect_err("refused");
            assert!(err.reason.starts_with(expected), "{event}: {}", err.reason);
        }
    }

    #[test]
    fn a_delete_is_answered_whatever_its_properties_hold() {
        let event = json!({
            "RequestType": "Delete",
            "ResponseURL": "https://bucket.s3.amazonaws.com/key",
            "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/id",
            "RequestId": "req",
            "LogicalResourceId": "Profile",
            "ResourceType": "Custom::EbInstanceProfile",
            "PhysicalResourceId": "p",
            "ResourceProperties": "not an object",
        });
        assert!(parse(event).is_ok());
    }
}
