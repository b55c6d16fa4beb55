//! Self-healing: undoes out-of-band changes to the roles and instance profiles this function owns,
//! as CloudTrail reports them through EventBridge ("AWS API Call via CloudTrail", source `aws.iam`).
//!
//! | Event | Undone by |
//! |---|---|
//! | `DetachRolePolicy` | attaching the policy again, if `ALLOWED_POLICY_ARNS` still allows it |
//! | `RemoveRoleFromInstanceProfile` | putting the role back, if the profile is still empty and the role is the profile's own |
//! | `UpdateAssumeRolePolicy` | adding the EC2 statement again, if the new trust policy lacks it |
//! | `DeleteRolePolicy` | nothing: the deleted document is not in the event (reported only) |
//!
//! Only entities that carry both ownership tags count, and adopted ones only with `HEAL_ADOPTED`.
//! Calls made by the function itself (a stack Update that detaches a policy the template dropped,
//! a Delete) are recognised by the caller's role session and left alone. Every other event (another
//! role, a failed call, an unknown or malformed event) is logged and answered with success: an
//! error would only make Lambda deliver the same event again, with the same result.
//!
//! Each undo reads the entity first and acts on what IAM holds now, not on what the event says: a
//! late or repeated event whose change was already undone (or already reverted by someone) changes
//! nothing.

use crate::config::Healing;
use crate::config::PolicyAllowList;
use crate::iam::{Iam, IamError, READ_RETRIES};
use crate::names::{ProfileName, RoleName};
use crate::plan::{
    Owned, Owner, ProfileState, RoleState, Step, TAG_LOGICAL_ID, TAG_ROLE_NAME, TAG_STACK_ID,
    Tagged, Target,
};
use crate::spec::{truncate, trust_allows_ec2, trust_with_ec2};
use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use aws_lambda_events::cloudwatch_events::cloudtrail::{AWSAPICall, UserIdentity};
use serde::Deserialize;
use serde_json::{Value, json};

/// EventBridge's `detail-type` of CloudTrail management events.
pub const DETAIL_TYPE: &str = "AWS API Call via CloudTrail";
/// EventBridge's `source` of IAM's events.
pub const SOURCE: &str = "aws.iam";
/// CloudTrail's `eventSource` of IAM calls.
pub const EVENT_SOURCE: &str = "iam.amazonaws.com";

/// Whether an invocation's payload is an EventBridge event (and so for this module).
pub fn is_event(payload: &Value) -> bool {
    payload.get("detail-type").is_some() && payload.get("source").is_some()
}

/// The out-of-band change an event reports, with the names it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    DetachRolePolicy {
        role: RoleName,
        policy_arn: String,
    },
    RemoveRoleFromInstanceProfile {
        profile: ProfileName,
        role: RoleName,
    },
    UpdateAssumeRolePolicy {
        role: RoleName,
    },
    DeleteRolePolicy {
        role: RoleName,
        policy_name: String,
    },
}

impl Change {
    fn role(&self) -> &RoleName {
        match self {
            Self::DetachRolePolicy { role, .. }
            | Self::RemoveRoleFromInstanceProfile { role, .. }
            | Self::UpdateAssumeRolePolicy { role }
            | Self::DeleteRolePolicy { role, .. } => role,
        }
    }
}

/// Why an event is left alone. Each is logged and answered with success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skip {
    #[error("not a CloudTrail event from IAM: {0}")]
    NotIam(String),
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("the call failed ({0}): nothing changed")]
    CallFailed(String),
    #[error("{0} is not a change this function undoes")]
    UnknownEvent(String),
    #[error("the call was this function's own")]
    OwnCall,
    #[error(
        "this function cannot tell its own calls apart (EXECUTION_ROLE_ARN unset): nothing is \
         undone"
    )]
    Unconfigured,
    #[error("{0} no longer exists")]
    Gone(String),
    #[error("{0} does not carry this function's ownership tags")]
    NotOwned(String),
    #[error("{0} is adopted, and HEAL_ADOPTED is off")]
    Adopted(String),
    #[error("{0} is not allowed by this function's ALLOWED_POLICY_ARNS any more")]
    PolicyNotAllowed(String),
    #[error("instance profile {profile} belongs to role {owner_role}, not {role}")]
    NotTheProfilesRole {
        profile: String,
        role: String,
        owner_role: String,
    },
    #[error("instance profile {0} holds another role now: {1}")]
    ProfileTaken(String, String),
    #[error("role {0} belongs to another resource than instance profile {1}")]
    OtherResource(String, String),
    #[error("already undone: {0}")]
    AlreadyUndone(String),
    #[error(
        "inline policy {policy} was deleted from role {role}; CloudTrail does not record the \
         deleted document, so it cannot be put back here: update the stack that owns the role \
         ({stack_id}) to restore it"
    )]
    InlinePolicyDeleted {
        role: String,
        policy: String,
        stack_id: String,
    },
}

/// The parts of an IAM call's `requestParameters` this module reads (CloudTrail's camelCase).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Parameters {
    role_name: Option<String>,
    policy_arn: Option<String>,
    instance_profile_name: Option<String>,
    policy_name: Option<String>,
}

/// A CloudTrail-reported IAM call, read from the EventBridge event (pure).
#[derive(Debug, Clone)]
pub struct Call {
    pub event_name: String,
    pub identity: UserIdentity,
    pub change: Change,
}

fn malformed(what: impl std::fmt::Display) -> Skip {
    Skip::Malformed(truncate(&what.to_string(), 300))
}

/// Reads the event: the EventBridge envelope, CloudTrail's record, the call's parameters. Only
/// a successful call of one of the four kinds comes back as a [`Call`].
pub fn read(payload: &Value) -> Result<Call, Skip> {
    let event: CloudWatchEvent<Value> =
        serde_json::from_value(payload.clone()).map_err(malformed)?;
    let (source, detail_type) = (
        event.source.as_deref().unwrap_or_default(),
        event.detail_type.as_deref().unwrap_or_default(),
    );
    if source != SOURCE || detail_type != DETAIL_TYPE {
        return Err(Skip::NotIam(truncate(
            &format!("source {source:?}, detail-type {detail_type:?}"),
            300,
        )));
    }
    let detail = event
        .detail
        .ok_or_else(|| malformed("the event has no detail"))?;
    // A call IAM refused changed nothing. CloudTrail records it with errorCode, which the typed
    // record does not carry.
    if let Some(code) = detail.get("errorCode") {
        let code = code.as_str().unwrap_or("an error");
        return Err(Skip::CallFailed(truncate(code, 100)));
    }
    let call: AWSAPICall<Value, Value> = serde_json::from_value(detail).map_err(malformed)?;
    if call.event_source != EVENT_SOURCE {
        return Err(Skip::NotIam(truncate(
            &format!("eventSource {:?}", call.event_source),
            300,
        )));
    }
    let params: Parameters =
        serde_json::from_value(call.request_parameters.clone()).map_err(|e| {
            malformed(format!(
                "requestParameters of {}: {e}",
                truncate(&call.event_name, 64)
            ))
        })?;
    let field = |value: Option<String>, name: &str| {
        value.ok_or_else(|| malformed(format!("requestParameters has no {name}")))
    };
    let role = |value: Option<String>| {
        RoleName::parse(&field(value, "roleName")?).map_err(|r| malformed(format!("roleName {r}")))
    };
    let change = match call.event_name.as_str() {
        "DetachRolePolicy" => Change::DetachRolePolicy {
            role: role(params.role_name)?,
            policy_arn: field(params.policy_arn, "policyArn")?,
        },
        "RemoveRoleFromInstanceProfile" => Change::RemoveRoleFromInstanceProfile {
            profile: ProfileName::parse(&field(
                params.instance_profile_name,
                "instanceProfileName",
            )?)
            .map_err(|r| malformed(format!("instanceProfileName {r}")))?,
            role: role(params.role_name)?,
        },
        "UpdateAssumeRolePolicy" => Change::UpdateAssumeRolePolicy {
            role: role(params.role_name)?,
        },
        "DeleteRolePolicy" => Change::DeleteRolePolicy {
            role: role(params.role_name)?,
            policy_name: field(params.policy_name, "policyName")?,
        },
        other => return Err(Skip::UnknownEvent(truncate(other, 64))),
    };
    Ok(Call {
        event_name: call.event_name,
        identity: call.user_identity,
        change,
    })
}

/// `arn:{partition}:sts::{account}:assumed-role/{role}/{session}` split into its parts.
fn assumed_role(arn: &str) -> Option<(&str, &str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (_partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("sts::")?;
    let (account, resource) = rest.split_once(':')?;
    let (role, session) = resource.strip_prefix("assumed-role/")?.split_once('/')?;
    Some((account, role, session))
}

/// `arn:{partition}:iam::{account}:role/{path}{name}`: the account and the name.
fn role_arn_parts(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let (_partition, rest) = rest.split_once(':')?;
    let rest = rest.strip_prefix("iam::")?;
    let (account, resource) = rest.split_once(':')?;
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    Some((account, name))
}

/// What an undo did, in words: never a whole policy document.
fn restored(step: &Step) -> String {
    match step {
        Step::AttachPolicy(arn) => format!("attached {arn} again"),
        Step::AddRoleToProfile => "put the role back into its instance profile".into(),
        Step::UpdateTrustPolicy(_) => "let ec2.amazonaws.com assume the role again".into(),
        other => format!("{other:?}"),
    }
}

/// Whether the caller is this function: a session of its execution role (the assumed-role ARN
/// names the role without its path) whose session name, when the function's name is known, is
/// that name, which is how Lambda names the sessions it opens for a function. The role must be
/// known (else [`Skip::Unconfigured`]): a session name alone is chosen by whoever assumes a role,
/// and would let anyone pass for the function.
pub fn is_own_call(identity: &UserIdentity, me: &Healing) -> Result<bool, Skip> {
    let Some(own_role) = me.execution_role_arn.as_deref().and_then(role_arn_parts) else {
        return Err(Skip::Unconfigured);
    };
    if identity.r#type != "AssumedRole" {
        return Ok(false);
    }
    let Some((account, role, session)) = identity.arn.as_deref().and_then(assumed_role) else {
        return Ok(false);
    };
    let (own_account, own_name) = own_role;
    let role_matches = account == own_account && role.eq_ignore_ascii_case(own_name);
    let session_matches = me.function_name.as_deref().is_none_or(|f| session == f);
    Ok(role_matches && session_matches)
}

/// An entity as some resource of this function's, from its own tags: both ownership tags present,
/// the stack id a CloudFormation stack ARN (the execution role changes nothing else). Adopted
/// entities only when `heal_adopted`.
pub fn owned<T: Tagged>(state: T, what: &str, heal_adopted: bool) -> Result<Owned<T>, Skip> {
    let owner = owner_of(state.tags()).ok_or_else(|| Skip::NotOwned(what.to_owned()))?;
    let owned = owner
        .claim(state)
        .map_err(|_| Skip::NotOwned(what.to_owned()))?;
    if owned.adopted() && !heal_adopted {
        return Err(Skip::Adopted(what.to_owned()));
    }
    Ok(owned)
}

fn owner_of(tags: &crate::plan::Tags) -> Option<Owner> {
    let stack_id = tags.get(TAG_STACK_ID)?;
    let logical_id = tags.get(TAG_LOGICAL_ID)?;
    let is_stack = stack_id.starts_with("arn:") && stack_id.contains(":cloudformation:");
    (is_stack && !logical_id.is_empty()).then(|| Owner {
        stack_id: stack_id.clone(),
        logical_id: logical_id.clone(),
    })
}

/// The call that puts a detached policy back on an owned role, if it is still allowed and missing.
pub fn undo_detach(
    role: &Owned<RoleState>,
    name: &RoleName,
    policy_arn: &str,
    allow: &PolicyAllowList,
) -> Result<Step, Skip> {
    if !allow.allows(policy_arn) {
        return Err(Skip::PolicyNotAllowed(policy_arn.to_owned()));
    }
    if role.attached.contains(policy_arn) {
        return Err(Skip::AlreadyUndone(format!(
            "{policy_arn} is attached to role {name}"
        )));
    }
    Ok(Step::AttachPolicy(policy_arn.to_owned()))
}

/// The call that lets EC2 assume an owned role again, keeping the trust policy's other statements.
pub fn undo_trust_change(role: &Owned<RoleState>, name: &RoleName) -> Result<Step, Skip> {
    if trust_allows_ec2(&role.trust_policy) {
        return Err(Skip::AlreadyUndone(format!(
            "role {name}'s trust policy still lets EC2 assume it"
        )));
    }
    Ok(Step::UpdateTrustPolicy(trust_with_ec2(&role.trust_policy)))
}

/// Whether the role taken out of an owned profile may go back in: the profile names it as its role
/// (its role-name tag), holds no role now, and the role belongs to the same resource.
pub fn undo_removal(
    profile: &Owned<ProfileState>,
    profile_name: &ProfileName,
    role: &Owned<RoleState>,
    role_name: &RoleName,
) -> Result<Step, Skip> {
    let owner_role = profile.tags.get(TAG_ROLE_NAME).cloned().unwrap_or_default();
    if !role_name.same_entity(&owner_role) {
        return Err(Skip::NotTheProfilesRole {
            profile: profile_name.to_string(),
            role: role_name.to_string(),
            owner_role,
        });
    }
    if profile.holds(role_name) {
        return Err(Skip::AlreadyUndone(format!(
            "instance profile {profile_name} holds role {role_name}"
        )));
    }
    if !profile.roles.is_empty() {
        return Err(Skip::ProfileTaken(
            profile_name.to_string(),
            profile.roles.join(", "),
        ));
    }
    let same_resource = owner_of(&profile.tags).is_some_and(|o| o.owns(&role.tags));
    if !same_resource {
        return Err(Skip::OtherResource(
            role_name.to_string(),
            profile_name.to_string(),
        ));
    }
    Ok(Step::AddRoleToProfile)
}

/// What became of one event.
#[derive(Debug)]
pub enum Outcome {
    /// The change was undone with this IAM call.
    Restored(Step),
    /// Nothing was done, for this reason.
    Skipped(Skip),
    /// The undo was due but IAM refused it.
    Failed(IamError),
}

/// Handles one EventBridge event. Never fails: what could not be done is in the answer and the log.
pub async fn handle(iam: &Iam, allow: &PolicyAllowList, me: &Healing, payload: &Value) -> Value {
    let call = read(payload);
    let (event_name, outcome) = match call {
        Err(skip) => (None, Outcome::Skipped(skip)),
        Ok(call) => {
            let outcome = match is_own_call(&call.identity, me) {
                Err(skip) => Outcome::Skipped(skip),
                Ok(true) => Outcome::Skipped(Skip::OwnCall),
                Ok(false) => undo(iam, allow, me, &call.change).await,
            };
            (Some(call.event_name), outcome)
        }
    };
    let event_id = payload
        .pointer("/detail/eventID")
        .and_then(Value::as_str)
        .map(|id| truncate(id, 64));
    let (result, detail) = match &outcome {
        Outcome::Restored(step) => ("Restored", restored(step)),
        Outcome::Skipped(skip) => ("Ignored", skip.to_string()),
        Outcome::Failed(error) => ("Failed", error.to_string()),
    };
    match &outcome {
        Outcome::Restored(_) => {
            tracing::warn!(event = ?event_name, event_id = ?event_id, undone = %detail, "out-of-band change undone")
        }
        Outcome::Skipped(Skip::InlinePolicyDeleted { .. }) => {
            tracing::warn!(event = ?event_name, event_id = ?event_id, reason = %detail, "out-of-band change not undone")
        }
        Outcome::Skipped(_) => {
            tracing::info!(event = ?event_name, event_id = ?event_id, reason = %detail, "event ignored")
        }
        Outcome::Failed(_) => {
            tracing::error!(event = ?event_name, event_id = ?event_id, error = %detail, "undo failed")
        }
    }
    json!({
        "Result": result,
        "EventName": event_name,
        "EventId": event_id,
        "Detail": truncate(&detail, 1000),
    })
}

/// Reads the entities the change concerns and makes the call that undoes it, if any is due.
async fn undo(iam: &Iam, allow: &PolicyAllowList, me: &Healing, change: &Change) -> Outcome {
    // Boxed: the nested reads would otherwise take the layout of the state machine past
    // rustc's query depth limit.
    match Box::pin(undo_inner(iam, allow, me, change)).await {
        Ok(Ok(step)) => Outcome::Restored(step),
        Ok(Err(skip)) => Outcome::Skipped(skip),
        Err(error) => Outcome::Failed(error),
    }
}

async fn owned_role(
    iam: &Iam,
    name: &RoleName,
    me: &Healing,
) -> Result<Result<Owned<RoleState>, Skip>, IamError> {
    let what = format!("role {name}");
    // CloudTrail recorded a change to it: a read that misses it may be a replica behind.
    Ok(
        match iam.read_expecting(READ_RETRIES, || iam.role(name)).await? {
            None => Err(Skip::Gone(what)),
            Some(state) => owned(state, &what, me.adopted),
        },
    )
}

async fn undo_inner(
    iam: &Iam,
    allow: &PolicyAllowList,
    me: &Healing,
    change: &Change,
) -> Result<Result<Step, Skip>, IamError> {
    let role_name = change.role();
    let (profile_name, step) = match change {
        Change::DetachRolePolicy { policy_arn, .. } => {
            // Refused before reading anything: a policy no longer allowed is never put back.
            if !allow.allows(policy_arn) {
                return Ok(Err(Skip::PolicyNotAllowed(policy_arn.clone())));
            }
            let step = match owned_role(iam, role_name, me).await? {
                Ok(role) => undo_detach(&role, role_name, policy_arn, allow),
                Err(skip) => Err(skip),
            };
            (None, step)
        }
        Change::UpdateAssumeRolePolicy { .. } => {
            let step = match owned_role(iam, role_name, me).await? {
                Ok(role) => undo_trust_change(&role, role_name),
                Err(skip) => Err(skip),
            };
            (None, step)
        }
        Change::DeleteRolePolicy { policy_name, .. } => {
            let step = match owned_role(iam, role_name, me).await? {
                Ok(role) => Err(Skip::InlinePolicyDeleted {
                    role: role_name.to_string(),
                    policy: truncate(policy_name, 128),
                    stack_id: role.tags.get(TAG_STACK_ID).cloned().unwrap_or_default(),
                }),
                Err(skip) => Err(skip),
            };
            (None, step)
        }
        Change::RemoveRoleFromInstanceProfile { profile, .. } => {
            let what = format!("instance profile {profile}");
            let state = match iam
                .read_expecting(READ_RETRIES, || iam.profile(profile))
                .await?
            {
                None => return Ok(Err(Skip::Gone(what))),
                Some(state) => state,
            };
            let profile_state = match owned(state, &what, me.adopted) {
                Ok(p) => p,
                Err(skip) => return Ok(Err(skip)),
            };
            let step = match owned_role(iam, role_name, me).await? {
                Ok(role) => undo_removal(&profile_state, profile, &role, role_name),
                Err(skip) => Err(skip),
            };
            (Some(profile.clone()), step)
        }
    };
    let Ok(step) = step else {
        return Ok(step);
    };
    // Role calls name no profile; the role's name stands in for it in the call's log line.
    let target = Target {
        profile: profile_name.unwrap_or_else(|| {
            ProfileName::parse(role_name.as_str()).expect("a role name is a valid profile name")
        }),
        role: role_name.clone(),
    };
    match iam.apply(&target, &step).await {
        // IAM answers LimitExceeded when the profile holds a role by now: another undo of the same
        // removal (a repeated event, or one handled at the same time) got there first, or someone
        // put a role in. Either way the profile is no longer empty, which is all this undo does.
        Err(e) if step == Step::AddRoleToProfile && e.is("LimitExceeded") => {
            Ok(Err(Skip::AlreadyUndone(format!(
                "instance profile {} holds a role again",
                target.profile
            ))))
        }
        Err(e) => Err(e),
        Ok(()) => Ok(Ok(step)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{TAG_ADOPTED, Tags};

    const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/app/1";
    const WEB: &str = "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier";
    const ROLE_ARN: &str = "arn:aws:iam::123456789012:role/eb-fn-ExecutionRole-ABC";

    fn event(name: &str, params: Value, identity: Value) -> Value {
        json!({
            "version": "0",
            "id": "6f0e6f7e-1111-2222-3333-444455556666",
            "detail-type": DETAIL_TYPE,
            "source": SOURCE,
            "account": "123456789012",
            "time": "2026-12-01T10:00:00Z",
            "region": "us-east-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.08",
                "userIdentity": identity,
                "eventTime": "2026-12-01T10:00:00Z",
                "eventSource": EVENT_SOURCE,
                "eventName": name,
                "awsRegion": "us-east-1",
                "sourceIPAddress": "203.0.113.7",
                "userAgent": "aws-cli/2.15.0",
                "requestParameters": params,
                "responseElements": null,
                "requestID": "req-1",
                "eventID": "evt-1",
                "readOnly": false,
                "eventType": "AwsApiCall",
                "managementEvent": true,
                "recipientAccountId": "123456789012",
                "eventCategory": "Management"
            }
        })
    }

    fn user() -> Value {
        json!({"type": "IAMUser", "principalId": "AIDAEXAMPLE", "userName": "alice",
               "arn": "arn:aws:iam::123456789012:user/alice", "accountId": "123456789012"})
    }

    fn session(role: &str, session: &str) -> UserIdentity {
        serde_json::from_value(json!({
            "type": "AssumedRole",
            "principalId": "AROAEXAMPLE:x",
            "arn": format!("arn:aws:sts::123456789012:assumed-role/{role}/{session}"),
            "accountId": "123456789012",
        }))
        .unwrap()
    }

    fn me(function: Option<&str>, role: Option<&str>) -> Healing {
        Healing {
            function_name: function.map(String::from),
            execution_role_arn: role.map(String::from),
            adopted: false,
        }
    }

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn own_tags() -> Tags {
        tags(&[(TAG_STACK_ID, STACK), (TAG_LOGICAL_ID, "Profile")])
    }

    fn role_state(tags: Tags) -> RoleState {
        RoleState {
            arn: "arn:aws:iam::123456789012:role/r".into(),
            tags,
            trust_policy: crate::spec::TRUST_POLICY.into(),
            ..RoleState::default()
        }
    }

    fn name(s: &str) -> RoleName {
        RoleName::parse(s).unwrap()
    }

    #[test]
    fn the_four_changes_are_read_from_cloudtrail_events() {
        let detach = read(&event(
            "DetachRolePolicy",
            json!({"roleName": "r", "policyArn": WEB}),
            user(),
        ))
        .unwrap();
        assert_eq!(
            detach.change,
            Change::DetachRolePolicy {
                role: name("r"),
                policy_arn: WEB.into()
            }
        );
        assert_eq!(detach.event_name, "DetachRolePolicy");
        assert_eq!(detach.identity.user_name.as_deref(), Some("alice"));
        let removed = read(&event(
            "RemoveRoleFromInstanceProfile",
            json!({"instanceProfileName": "p", "roleName": "r"}),
            user(),
        ))
        .unwrap();
        assert_eq!(
            removed.change,
            Change::RemoveRoleFromInstanceProfile {
                profile: ProfileName::parse("p").unwrap(),
                role: name("r")
            }
        );
        let trust = read(&event(
            "UpdateAssumeRolePolicy",
            json!({"roleName": "r", "policyDocument": "{}"}),
            user(),
        ))
        .unwrap();
        assert_eq!(
            trust.change,
            Change::UpdateAssumeRolePolicy { role: name("r") }
        );
        let inline = read(&event(
            "DeleteRolePolicy",
            json!({"roleName": "r", "policyName": "extra"}),
            user(),
        ))
        .unwrap();
        assert_eq!(
            inline.change,
            Change::DeleteRolePolicy {
                role: name("r"),
                policy_name: "extra".into()
            }
        );
    }

    #[test]
    fn other_events_are_skipped_with_the_reason() {
        let unknown = event("CreateUser", json!({"userName": "u"}), user());
        assert_eq!(
            read(&unknown).unwrap_err(),
            Skip::UnknownEvent("CreateUser".into())
        );

        let mut failed = event(
            "DetachRolePolicy",
            json!({"roleName": "r", "policyArn": WEB}),
            user(),
        );
        failed["detail"]["errorCode"] = json!("AccessDenied");
        assert_eq!(
            read(&failed).unwrap_err(),
            Skip::CallFailed("AccessDenied".into())
        );

        let mut s3 = event("DeleteBucket", json!({}), user());
        s3["source"] = json!("aws.s3");
        assert!(matches!(read(&s3).unwrap_err(), Skip::NotIam(_)));

        let mut scheduled = s3.clone();
        scheduled["source"] = json!(SOURCE);
        scheduled["detail-type"] = json!("Scheduled Event");
        assert!(matches!(read(&scheduled).unwrap_err(), Skip::NotIam(_)));

        let mut wrong_service = event("DeleteBucket", json!({}), user());
        wrong_service["detail"]["eventSource"] = json!("s3.amazonaws.com");
        assert!(matches!(read(&wrong_service).unwrap_err(), Skip::NotIam(_)));
    }

    #[test]
    fn malformed_events_are_skipped_not_failed() {
        let good = event(
            "DetachRolePolicy",
            json!({"roleName": "r", "policyArn": WEB}),
            user(),
        );
        let mut cases = Vec::new();
        for pointer in ["/detail/userIdentity", "/time", "/detail/eventName"] {
            let mut e = good.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let parent = if parent.is_empty() {
                &mut e
            } else {
                e.pointer_mut(parent).unwrap()
            };
            parent.as_object_mut().unwrap().remove(key);
            cases.push(e);
        }
        let mut no_role = good.clone();
        no_role["detail"]["requestParameters"] = json!({"policyArn": WEB});
        cases.push(no_role);
        let mut bad_role = good.clone();
        bad_role["detail"]["requestParameters"]["roleName"] = json!("not a role!");
        cases.push(bad_role);
        let mut params_not_object = good.clone();
        params_not_object["detail"]["requestParameters"] = json!("x");
        cases.push(params_not_object);
        let mut no_detail = good.clone();
        no_detail["detail"] = Value::Null;
        cases.push(no_detail);
        cases.push(json!({"detail-type": 7, "source": []}));
        for case in cases {
            assert!(
                matches!(read(&case), Err(Skip::Malformed(_))),
                "{case}: {:?}",
                read(&case)
            );
        }
    }

    #[test]
    fn the_function_knows_its_own_role_session() {
        let both = me(Some("eb-fn"), Some(ROLE_ARN));
        let ours = session("eb-fn-ExecutionRole-ABC", "eb-fn");
        assert_eq!(is_own_call(&ours, &both), Ok(true));
        // Another session of the role, the function's name on another role, another account.
        for other in [
            session("eb-fn-ExecutionRole-ABC", "someone"),
            session("Admin", "eb-fn"),
        ] {
            assert_eq!(is_own_call(&other, &both), Ok(false));
        }
        let mut elsewhere = ours.clone();
        elsewhere.arn =
            Some("arn:aws:sts::999999999999:assumed-role/eb-fn-ExecutionRole-ABC/eb-fn".into());
        assert_eq!(is_own_call(&elsewhere, &both), Ok(false));
        // A user, or an identity without an ARN, is never the function.
        let alice: UserIdentity = serde_json::from_value(user()).unwrap();
        assert_eq!(is_own_call(&alice, &both), Ok(false));
        let mut no_arn = ours.clone();
        no_arn.arn = None;
        assert_eq!(is_own_call(&no_arn, &both), Ok(false));
        // A role with a path: the assumed-role ARN names the role without it.
        let pathed = me(
            Some("eb-fn"),
            Some("arn:aws:iam::123456789012:role/ops/eb-fn-ExecutionRole-ABC"),
        );
        assert_eq!(is_own_call(&ours, &pathed), Ok(true));
        // The session name alone proves nothing: whoever assumes a role chooses it.
        assert_eq!(
            is_own_call(&session("Admin", "eb-fn"), &me(Some("eb-fn"), None)),
            Err(Skip::Unconfigured)
        );
        assert_eq!(
            is_own_call(
                &session("eb-fn-ExecutionRole-ABC", "x"),
                &me(None, Some(ROLE_ARN))
            ),
            Ok(true)
        );
        assert_eq!(is_own_call(&ours, &me(None, None)), Err(Skip::Unconfigured));
    }

    #[test]
    fn only_entities_with_both_tags_of_a_stack_are_owned() {
        assert!(owned(role_state(own_tags()), "r", false).is_ok());
        for bad in [
            tags(&[(TAG_STACK_ID, STACK)]),
            tags(&[(TAG_LOGICAL_ID, "Profile")]),
            tags(&[(TAG_STACK_ID, "me"), (TAG_LOGICAL_ID, "Profile")]),
            tags(&[(TAG_STACK_ID, STACK), (TAG_LOGICAL_ID, "")]),
            Tags::new(),
        ] {
            assert_eq!(
                owned(role_state(bad), "r", false).unwrap_err(),
                Skip::NotOwned("r".into())
            );
        }
        let mut adopted = own_tags();
        adopted.insert(TAG_ADOPTED.into(), "true".into());
        assert_eq!(
            owned(role_state(adopted.clone()), "r", false).unwrap_err(),
            Skip::Adopted("r".into())
        );
        assert!(owned(role_state(adopted), "r", true).unwrap().adopted());
    }

    #[test]
    fn a_detached_policy_goes_back_only_if_allowed_and_missing() {
        let allow = PolicyAllowList::new(crate::config::DEFAULT_ALLOWED_POLICIES);
        let role = owned(role_state(own_tags()), "r", false).unwrap();
        assert_eq!(
            undo_detach(&role, &name("r"), WEB, &allow),
            Ok(Step::AttachPolicy(WEB.into()))
        );
        let admin = "arn:aws:iam::aws:policy/AdministratorAccess";
        assert_eq!(
            undo_detach(&role, &name("r"), admin, &allow),
            Err(Skip::PolicyNotAllowed(admin.into()))
        );
        let mut state = role_state(own_tags());
        state.attached.insert(WEB.into());
        let role = owned(state, "r", false).unwrap();
        assert!(matches!(
            undo_detach(&role, &name("r"), WEB, &allow),
            Err(Skip::AlreadyUndone(_))
        ));
    }

    #[test]
    fn a_trust_policy_gets_its_ec2_statement_back_and_keeps_the_rest() {
        let lambda = crate::spec::TRUST_POLICY.replace("ec2.amazonaws.com", "lambda.amazonaws.com");
        let mut state = role_state(own_tags());
        state.trust_policy = lambda.clone();
        let role = owned(state, "r", false).unwrap();
        let Ok(Step::UpdateTrustPolicy(document)) = undo_trust_change(&role, &name("r")) else {
            panic!("no trust update");
        };
        assert!(trust_allows_ec2(&document));
        assert!(document.contains("lambda.amazonaws.com"), "{document}");
        let healthy = owned(role_state(own_tags()), "r", false).unwrap();
        assert!(matches!(
            undo_trust_change(&healthy, &name("r")),
            Err(Skip::AlreadyUndone(_))
        ));
    }

    #[test]
    fn a_role_goes_back_only_into_its_own_empty_profile() {
        let profile_name = ProfileName::parse("p").unwrap();
        let mut profile_tags = own_tags();
        profile_tags.insert(TAG_ROLE_NAME.into(), "R".into());
        let profile = |roles: &[&str]| {
            owned(
                ProfileState {
                    tags: profile_tags.clone(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    ..ProfileState::default()
                },
                "p",
                false,
            )
            .unwrap()
        };
        let role = owned(role_state(own_tags()), "r", false).unwrap();
        // Names compare as IAM does, without regard to case.
        assert_eq!(
            undo_removal(&profile(&[]), &profile_name, &role, &name("r")),
            Ok(Step::AddRoleToProfile)
        );
        assert!(matches!(
            undo_removal(&profile(&[]), &profile_name, &role, &name("other")),
            Err(Skip::NotTheProfilesRole { .. })
        ));
        assert!(matches!(
            undo_removal(&profile(&["r"]), &profile_name, &role, &name("r")),
            Err(Skip::AlreadyUndone(_))
        ));
        assert!(matches!(
            undo_removal(&profile(&["intruder"]), &profile_name, &role, &name("r")),
            Err(Skip::ProfileTaken(..))
        ));
        let other_resource = owned(
            role_state(tags(&[(TAG_STACK_ID, STACK), (TAG_LOGICAL_ID, "Other")])),
            "r",
            false,
        )
        .unwrap();
        assert!(matches!(
            undo_removal(&profile(&[]), &profile_name, &other_resource, &name("r")),
            Err(Skip::OtherResource(..))
        ));
    }

    #[test]
    fn arns_split_into_their_parts() {
        assert_eq!(
            assumed_role("arn:aws-cn:sts::1:assumed-role/r/s"),
            Some(("1", "r", "s"))
        );
        assert_eq!(assumed_role("arn:aws:iam::1:role/r"), None);
        assert_eq!(assumed_role("arn:aws:sts::1:assumed-role/r"), None);
        assert_eq!(
            role_arn_parts("arn:aws:iam::1:role/a/b/r"),
            Some(("1", "r"))
        );
        assert_eq!(role_arn_parts("arn:aws:iam::1:user/r"), None);
    }
}
