//! The only module that talks to IAM.
//!
//! Every failure comes back as an [`IamError`] that names the IAM action and IAM's error code, which
//! is what a FAILED Reason must show. Deciding on codes, never on HTTP status, matters here: IAM
//! answers EntityAlreadyExists, LimitExceeded, DeleteConflict and ConcurrentModification all as 409.

use crate::config::Retry;
use crate::names::{IamPath, PolicyName, ProfileName, RoleName};
use crate::plan::{
    InlineDocuments, Plan, ProfileState, RoleState, Step, TAG_REQUEST_ID, Tags, Target,
};
use crate::spec::{Spec, TRUST_POLICY};
use aws_sdk_iam::Client;
use aws_sdk_iam::config::retry::{ClassifyRetry, RetryAction, RetryConfig};
use aws_sdk_iam::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_iam::types::Tag;
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use futures_util::future::join_all;
use std::collections::BTreeSet;
use std::time::Duration;
use tokio::time::Instant;

/// An IAM call that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("iam:{action} failed with {code}: {message}")]
pub struct IamError {
    /// The IAM action, as in an IAM policy (`CreateRole`).
    pub action: &'static str,
    /// IAM's error code (`AccessDenied`), or the kind of transport failure.
    pub code: String,
    pub message: String,
}

impl IamError {
    pub fn is(&self, code: &str) -> bool {
        self.code == code
    }

    /// Whether IAM said that a managed policy the call names does not exist ("Policy <arn> does
    /// not exist or is not attachable."): final, unlike a role not propagated yet. Only the
    /// message tells the two apart (see [`not_propagated`]).
    pub fn names_missing_policy(&self) -> bool {
        matches!(
            self.action,
            "AttachRolePolicy" | "PutRolePermissionsBoundary"
        ) && self.is("NoSuchEntity")
            && self.message.contains(":policy/")
    }
}

fn iam_error<E, R>(action: &'static str, err: SdkError<E, R>) -> IamError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let code = match &err {
        SdkError::ServiceError(_) => err.code().unwrap_or("Unknown").to_owned(),
        SdkError::TimeoutError(_) => "Timeout".into(),
        SdkError::DispatchFailure(_) => "DispatchFailure".into(),
        SdkError::ResponseError(_) => "ResponseError".into(),
        SdkError::ConstructionFailure(_) => "ConstructionFailure".into(),
        _ => "Unknown".into(),
    };
    let message = match err.message() {
        Some(m) => m.to_owned(),
        None => DisplayErrorContext(&err).to_string(),
    };
    IamError {
        action,
        code,
        message,
    }
}

/// Maps NoSuchEntity to `None`: for reads it means absent, for deletions it means done.
fn absent_ok<T>(result: Result<T, IamError>) -> Result<Option<T>, IamError> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is("NoSuchEntity") => Ok(None),
        Err(e) => Err(e),
    }
}

fn sdk_tags(tags: &Tags) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .expect("a tag with key and value set builds")
        })
        .collect()
}

fn tag_map(tags: &[Tag]) -> Tags {
    tags.iter()
        .map(|t| (t.key().to_owned(), t.value().to_owned()))
        .collect()
}

/// All items of a paginated list request.
macro_rules! every_page {
    ($action:literal, $request:expr) => {
        $request
            .into_paginator()
            .items()
            .send()
            .collect::<Result<Vec<_>, _>>()
            .await
            .map_err(|e| iam_error($action, e))
    };
}

/// Retries IAM's ConcurrentModification (HTTP 409), which the SDK's classifiers leave alone: IAM says
/// it when two writers touch one entity at once, and the same call a moment later succeeds. The
/// other 409s (EntityAlreadyExists, DeleteConflict, LimitExceeded) are answers, not faults, so the
/// error code decides: the one the SDK parsed into the operation's error (its metadata), read
/// through the type-erased error of the interceptor context.
#[derive(Debug)]
struct ConcurrentModificationIsTransient;

impl ClassifyRetry for ConcurrentModificationIsTransient {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        match error_code(ctx) {
            Some("ConcurrentModification") => RetryAction::transient_error(),
            _ => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "IAM ConcurrentModification"
    }
}

/// IAM's error code of a failed attempt, from the SDK's error metadata. The classifier is shared by
/// every operation and the context holds each operation's own error type, erased: it is recovered
/// by trying the error types of the operations this function calls.
fn error_code(ctx: &InterceptorContext) -> Option<&str> {
    let error = ctx.output_or_error()?.err()?.as_operation_error()?;
    macro_rules! code_of {
        ($($op:ident :: $ty:ident),* $(,)?) => {
            $(
                if let Some(e) = error.downcast_ref::<aws_sdk_iam::operation::$op::$ty>() {
                    return e.code();
                }
            )*
        };
    }
    code_of!(
        create_role::CreateRoleError,
        create_instance_profile::CreateInstanceProfileError,
        get_role::GetRoleError,
        get_instance_profile::GetInstanceProfileError,
        list_attached_role_policies::ListAttachedRolePoliciesError,
        list_role_policies::ListRolePoliciesError,
        get_role_policy::GetRolePolicyError,
        attach_role_policy::AttachRolePolicyError,
        detach_role_policy::DetachRolePolicyError,
        put_role_policy::PutRolePolicyError,
        delete_role_policy::DeleteRolePolicyError,
        update_assume_role_policy::UpdateAssumeRolePolicyError,
        update_role::UpdateRoleError,
        put_role_permissions_boundary::PutRolePermissionsBoundaryError,
        delete_role_permissions_boundary::DeleteRolePermissionsBoundaryError,
        tag_role::TagRoleError,
        untag_role::UntagRoleError,
        tag_instance_profile::TagInstanceProfileError,
        untag_instance_profile::UntagInstanceProfileError,
        add_role_to_instance_profile::AddRoleToInstanceProfileError,
        remove_role_from_instance_profile::RemoveRoleFromInstanceProfileError,
        delete_instance_profile::DeleteInstanceProfileError,
        delete_role::DeleteRoleError,
    );
    None
}

/// How long IAM's propagation is waited out: an entity this request made, or read as existing,
/// that another call reports missing (IAM is eventually consistent; terraform-provider-aws waits
/// out the same answers for two minutes) is retried with doubling delays from `base`, up to
/// [`SETTLE_MAX_DELAY`], until `until`, after which the call's error stands.
#[derive(Debug, Clone, Copy)]
struct Settle {
    until: Option<Instant>,
    base: Duration,
}

const SETTLE_MAX_DELAY: Duration = Duration::from_secs(4);
/// The first delay when the configuration sets none (`IAM_RETRY_BACKOFF_MS` sets it).
const SETTLE_BASE: Duration = Duration::from_millis(500);

/// IAM, seen through the calls this function makes.
#[derive(Debug, Clone)]
pub struct Iam {
    client: Client,
    settle: Settle,
}

impl Iam {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            settle: Settle {
                until: None,
                base: SETTLE_BASE,
            },
        }
    }

    /// The same client, waiting out IAM's propagation (see [`Iam::pause`]) until `until`.
    pub fn settling_until(&self, until: Instant) -> Self {
        let mut iam = self.clone();
        iam.settle.until = Some(until);
        iam
    }

    /// Waits before the next attempt (`attempt` counts from 0) at something IAM has not propagated
    /// yet. `false`, without waiting: the time for it is over.
    pub async fn pause(&self, attempt: u32) -> bool {
        let delay = self
            .settle
            .base
            .saturating_mul(1 << attempt.min(16))
            .min(SETTLE_MAX_DELAY);
        match self.settle.until {
            Some(until) if Instant::now() + delay < until => {
                tokio::time::sleep(delay).await;
                true
            }
            _ => false,
        }
    }

    /// Reads an entity known to exist (this request made or saw it, or CloudTrail recorded a change
    /// to it): a read that misses it may come from an IAM replica that has not seen it yet, and is
    /// repeated up to `retries` times while there is time ([`Self::pause`]).
    pub async fn read_expecting<S, E, Read>(
        &self,
        retries: u32,
        read: impl Fn() -> Read,
    ) -> Result<Option<S>, E>
    where
        Read: std::future::Future<Output = Result<Option<S>, E>>,
    {
        let mut attempt = 0;
        loop {
            let found = read().await?;
            if found.is_some() || attempt >= retries || !self.pause(attempt).await {
                return Ok(found);
            }
            tracing::info!(
                attempt,
                "an entity known to exist reads as absent: reading again"
            );
            attempt += 1;
        }
    }

    /// The client this function runs with: the SDK's retry with the configured attempts and first
    /// delay, and IAM's ConcurrentModification retried as the transient fault it is.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, settings: &Retry) -> Self {
        let mut config = aws_sdk_iam::config::Builder::from(sdk);
        // The SDK's mode (AWS_RETRY_MODE) with this function's attempts and first delay.
        let mut retry = sdk
            .retry_config()
            .cloned()
            .unwrap_or_else(RetryConfig::standard)
            .with_max_attempts(settings.attempts);
        if let Some(backoff) = settings.backoff {
            retry = retry.with_initial_backoff(backoff);
        }
        config.set_retry_config(Some(retry));
        let config = config
            .retry_classifier(ConcurrentModificationIsTransient)
            .build();
        let mut iam = Self::new(Client::from_conf(config));
        iam.settle.base = settings.backoff.unwrap_or(SETTLE_BASE);
        iam
    }

    /// Creates the role with everything CreateRole can set at once. `Ok(None)`: it exists already.
    pub async fn create_role(
        &self,
        name: &RoleName,
        spec: &Spec,
        tags: &Tags,
    ) -> Result<Option<String>, IamError> {
        let result = self
            .client
            .create_role()
            .role_name(name.as_str())
            .path(spec.path.as_str())
            .assume_role_policy_document(TRUST_POLICY)
            .description(&spec.description)
            .max_session_duration(spec.max_session_duration)
            .set_permissions_boundary(spec.permissions_boundary.clone())
            .set_tags(Some(sdk_tags(tags)))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(
                out.role().map(|r| r.arn().to_owned()).unwrap_or_default(),
            )),
            Err(e) => match iam_error("CreateRole", e) {
                e if e.is("EntityAlreadyExists") => Ok(None),
                e => Err(e),
            },
        }
    }

    /// Creates the instance profile with its tags. `Ok(None)`: it exists already.
    pub async fn create_profile(
        &self,
        name: &ProfileName,
        path: &IamPath,
        tags: &Tags,
    ) -> Result<Option<String>, IamError> {
        let result = self
            .client
            .create_instance_profile()
            .instance_profile_name(name.as_str())
            .path(path.as_str())
            .set_tags(Some(sdk_tags(tags)))
            .send()
            .await;
        match result {
            Ok(out) => Ok(Some(
                out.instance_profile()
                    .map(|p| p.arn().to_owned())
                    .unwrap_or_default(),
            )),
            Err(e) => match iam_error("CreateInstanceProfile", e) {
                e if e.is("EntityAlreadyExists") => Ok(None),
                e => Err(e),
            },
        }
    }

    /// The role and its attached managed policies, or `None` if there is no such role.
    pub async fn role(&self, name: &RoleName) -> Result<Option<RoleState>, IamError> {
        let (role, attached) = tokio::join!(
            self.client.get_role().role_name(name.as_str()).send(),
            self.attached_policies(name)
        );
        let Some(out) = absent_ok(role.map_err(|e| iam_error("GetRole", e)))? else {
            return Ok(None);
        };
        let Some(role) = out.role() else {
            return Ok(None);
        };
        Ok(Some(RoleState {
            arn: role.arn().to_owned(),
            tags: tag_map(role.tags()),
            description: role.description().map(str::to_owned),
            max_session_duration: role.max_session_duration(),
            permissions_boundary: role
                .permissions_boundary()
                .and_then(|b| b.permissions_boundary_arn())
                .map(str::to_owned),
            attached: absent_ok(attached)?.unwrap_or_default(),
            trust_policy: role
                .assume_role_policy_document()
                .unwrap_or_default()
                .to_owned(),
        }))
    }

    async fn attached_policies(&self, role: &RoleName) -> Result<BTreeSet<String>, IamError> {
        let request = self
            .client
            .list_attached_role_policies()
            .role_name(role.as_str());
        let items = every_page!("ListAttachedRolePolicies", request)?;
        Ok(items
            .iter()
            .filter_map(|p| p.policy_arn().map(str::to_owned))
            .collect())
    }

    /// Names of the role's inline policies.
    pub async fn inline_policy_names(&self, role: &RoleName) -> Result<Vec<PolicyName>, IamError> {
        let request = self.client.list_role_policies().role_name(role.as_str());
        let names = every_page!("ListRolePolicies", request)?;
        Ok(names
            .iter()
            .filter_map(|n| PolicyName::parse(n).ok())
            .collect())
    }

    /// The document of the role's inline policy `name` as IAM returns it (URL-encoded), or `None`
    /// if the role has no inline policy of that name.
    pub async fn inline_policy(
        &self,
        role: &RoleName,
        name: &PolicyName,
    ) -> Result<Option<String>, IamError> {
        let out = self
            .client
            .get_role_policy()
            .role_name(role.as_str())
            .policy_name(name.as_str())
            .send()
            .await
            .map_err(|e| iam_error("GetRolePolicy", e));
        Ok(absent_ok(out)?.map(|out| out.policy_document().to_owned()))
    }

    /// The documents of the role's inline policies among `names`, read at once; a name the role
    /// has no inline policy of is left out.
    pub async fn inline_documents<'a>(
        &self,
        role: &RoleName,
        names: impl IntoIterator<Item = &'a PolicyName>,
    ) -> Result<InlineDocuments, IamError> {
        let names: Vec<&PolicyName> = names.into_iter().collect();
        let read = join_all(names.iter().map(|name| self.inline_policy(role, name))).await;
        let mut documents = InlineDocuments::new();
        for (name, document) in names.into_iter().zip(read) {
            if let Some(document) = document? {
                documents.insert(name.clone(), document);
            }
        }
        Ok(documents)
    }

    /// The instance profile, or `None` if there is none of that name. Tags come from
    /// GetInstanceProfile, which carries them, in one call.
    pub async fn profile(&self, name: &ProfileName) -> Result<Option<ProfileState>, IamError> {
        let out = self
            .client
            .get_instance_profile()
            .instance_profile_name(name.as_str())
            .send()
            .await
            .map_err(|e| iam_error("GetInstanceProfile", e));
        Ok(absent_ok(out)?
            .and_then(|out| out.instance_profile().cloned())
            .map(|p| ProfileState {
                arn: p.arn().to_owned(),
                path: p.path().to_owned(),
                tags: tag_map(p.tags()),
                roles: p.roles().iter().map(|r| r.role_name().to_owned()).collect(),
            }))
    }

    /// Runs the plan round by round. All calls of a round finish before the next round starts or an
    /// error is returned, so a failure never leaves a call running unseen.
    pub async fn run(&self, target: &Target, plan: &Plan) -> Result<(), IamError> {
        for round in &plan.rounds {
            let results = join_all(round.iter().map(|step| self.apply(target, step))).await;
            if let Some(err) = results.into_iter().find_map(Result::err) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Makes one call. Removals that find nothing to remove have nothing left to do and succeed.
    /// A call that adds to the role or profile and is told it does not exist is about an entity
    /// this request has made or read: IAM has not propagated it to every replica yet, and the call
    /// is repeated while the time for that lasts.
    pub async fn apply(&self, target: &Target, step: &Step) -> Result<(), IamError> {
        let mut attempt = 0;
        loop {
            match self.apply_once(target, step).await {
                Err(e) if not_propagated(step, &e) && self.pause(attempt).await => {
                    tracing::info!(?step, error = %e, attempt, "not propagated yet: retrying");
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    async fn apply_once(&self, target: &Target, step: &Step) -> Result<(), IamError> {
        let c = &self.client;
        let role = target.role.as_str();
        let profile = target.profile.as_str();
        tracing::info!(?step, role, profile, "iam call");
        /// Sends a request and names its IAM action on failure.
        macro_rules! send {
            ($action:literal, $request:expr) => {
                $request
                    .send()
                    .await
                    .map(drop)
                    .map_err(|e| iam_error($action, e))
            };
        }
        /// The same for a removal, where NoSuchEntity means done.
        macro_rules! remove {
            ($action:literal, $request:expr) => {
                absent_ok(send!($action, $request)).map(drop)
            };
        }
        let result = match step {
            Step::AttachPolicy(arn) => send!(
                "AttachRolePolicy",
                c.attach_role_policy().role_name(role).policy_arn(arn)
            ),
            Step::DetachPolicy(arn) => remove!(
                "DetachRolePolicy",
                c.detach_role_policy().role_name(role).policy_arn(arn)
            ),
            Step::PutInlinePolicy(name, document) => send!(
                "PutRolePolicy",
                c.put_role_policy()
                    .role_name(role)
                    .policy_name(name.as_str())
                    .policy_document(document)
            ),
            Step::DeleteInlinePolicy(name) => remove!(
                "DeleteRolePolicy",
                c.delete_role_policy()
                    .role_name(role)
                    .policy_name(name.as_str())
            ),
            Step::UpdateTrustPolicy(document) => send!(
                "UpdateAssumeRolePolicy",
                c.update_assume_role_policy()
                    .role_name(role)
                    .policy_document(document)
            ),
            Step::UpdateRole {
                description,
                max_session_duration,
            } => send!(
                "UpdateRole",
                c.update_role()
                    .role_name(role)
                    .description(description)
                    .max_session_duration(*max_session_duration)
            ),
            Step::PutPermissionsBoundary(arn) => send!(
                "PutRolePermissionsBoundary",
                c.put_role_permissions_boundary()
                    .role_name(role)
                    .permissions_boundary(arn)
            ),
            Step::DeletePermissionsBoundary => remove!(
                "DeleteRolePermissionsBoundary",
                c.delete_role_permissions_boundary().role_name(role)
            ),
            Step::TagRole(tags) => send!(
                "TagRole",
                c.tag_role().role_name(role).set_tags(Some(sdk_tags(tags)))
            ),
            Step::UntagRole(keys) => send!(
                "UntagRole",
                c.untag_role()
                    .role_name(role)
                    .set_tag_keys(Some(keys.clone()))
            ),
            Step::TagProfile(tags) => send!(
                "TagInstanceProfile",
                c.tag_instance_profile()
                    .instance_profile_name(profile)
                    .set_tags(Some(sdk_tags(tags)))
            ),
            Step::UntagProfile(keys) => send!(
                "UntagInstanceProfile",
                c.untag_instance_profile()
                    .instance_profile_name(profile)
                    .set_tag_keys(Some(keys.clone()))
            ),
            Step::AddRoleToProfile => {
                let added = send!(
                    "AddRoleToInstanceProfile",
                    c.add_role_to_instance_profile()
                        .instance_profile_name(profile)
                        .role_name(role)
                );
                // IAM answers LimitExceeded when the profile already holds a role, this very role
                // included (a duplicate delivery got there first, or the answer to this request's
                // own first attempt was lost): that case is success. A read right after the add
                // may not show the role yet, so it is read again for a while.
                match added {
                    Err(e) if e.is("LimitExceeded") => {
                        let mut attempt = 0;
                        loop {
                            match self.profile(&target.profile).await? {
                                Some(p) if p.holds(&target.role) => break Ok(()),
                                Some(p) if !p.roles.is_empty() => break Err(e),
                                _ if attempt < READ_RETRIES && self.pause(attempt).await => {
                                    attempt += 1
                                }
                                _ => break Err(e),
                            }
                        }
                    }
                    other => other,
                }
            }
            Step::RemoveRoleFromProfile(other) => remove!(
                "RemoveRoleFromInstanceProfile",
                c.remove_role_from_instance_profile()
                    .instance_profile_name(profile)
                    .role_name(other)
            ),
            Step::DeleteProfile => remove!(
                "DeleteInstanceProfile",
                c.delete_instance_profile().instance_profile_name(profile)
            ),
            Step::DeleteRole => remove!("DeleteRole", c.delete_role().role_name(role)),
        };
        match result {
            Err(e) if e.is("AccessDenied") && removes_from(step).is_some() => {
                self.denied_removal(target, step, e).await
            }
            Err(e)
                if e.is("AccessDenied")
                    && matches!(step, Step::TagRole(_) | Step::TagProfile(_)) =>
            {
                self.denied_tagging(target, step, e).await
            }
            other => other,
        }
    }

    /// A tagging that IAM denied. The execution role lets the function tag an entity as adopted
    /// only while it is not yet marked so: when the answer to the first attempt was lost and the
    /// SDK repeats it, the repetition is denied. It is done when a read shows the tags in place.
    /// The request-id tag need only be there: a second delivery that read the entity before the
    /// first one's adoption reached its replica finds the first delivery's mark, which stays (that
    /// delivery may have answered SUCCESS, and a failed replacement then gives back only its own).
    async fn denied_tagging(
        &self,
        target: &Target,
        step: &Step,
        denied: IamError,
    ) -> Result<(), IamError> {
        // A read that fails leaves the denial standing: it names the action that was denied.
        let (wanted, have) = match step {
            Step::TagRole(tags) => (
                tags,
                self.role(&target.role).await.ok().flatten().map(|r| r.tags),
            ),
            Step::TagProfile(tags) => (
                tags,
                self.profile(&target.profile)
                    .await
                    .ok()
                    .flatten()
                    .map(|p| p.tags),
            ),
            _ => return Err(denied),
        };
        match have {
            Some(have)
                if wanted.iter().all(|(k, v)| match have.get(k) {
                    Some(_) if k == TAG_REQUEST_ID => true,
                    found => found == Some(v),
                }) =>
            {
                tracing::info!(?step, "denied tagging of tags already in place: done");
                Ok(())
            }
            _ => Err(denied),
        }
    }

    /// A removal that IAM denied. IAM may authorize a call before it looks the entity up, and the
    /// execution role allows removals only on entities carrying the ownership tags, which go with
    /// the entity (or with the untag itself): a removal repeated after it took effect (the SDK's
    /// retry after a lost answer, a second delivery) can meet AccessDenied instead of
    /// NoSuchEntity. It is done when a read shows the entity gone, or an untag's keys gone; it
    /// fails with the denial otherwise, and when the read fails too.
    async fn denied_removal(
        &self,
        target: &Target,
        step: &Step,
        denied: IamError,
    ) -> Result<(), IamError> {
        let untagged = |tags: &Tags, keys: &[String]| {
            !tags
                .keys()
                .any(|k| keys.iter().any(|g| g.eq_ignore_ascii_case(k)))
        };
        let done = match (removes_from(step), step) {
            (Some(Subject::Role), Step::UntagRole(keys)) => match self.role(&target.role).await {
                Ok(role) => role.is_none_or(|r| untagged(&r.tags, keys)),
                Err(_) => false,
            },
            (Some(Subject::Profile), Step::UntagProfile(keys)) => {
                match self.profile(&target.profile).await {
                    Ok(profile) => profile.is_none_or(|p| untagged(&p.tags, keys)),
                    Err(_) => false,
                }
            }
            (Some(Subject::Role), _) => matches!(self.role(&target.role).await, Ok(None)),
            (Some(Subject::Profile), _) => matches!(self.profile(&target.profile).await, Ok(None)),
            (None, _) => false,
        };
        if done {
            tracing::info!(?step, "denied removal whose work is already done");
            Ok(())
        } else {
            Err(denied)
        }
    }
}

/// How often a read that should show an entity (made or seen by this request) is repeated.
pub const READ_RETRIES: u32 = 5;

/// Whether `error` from `step` says that the role or profile the step adds to does not exist yet,
/// as IAM says of an entity it has not propagated. The code decides (NoSuchEntity, or
/// InvalidParameterValue from AddRoleToInstanceProfile, "Invalid IAM Instance Profile name"); for
/// a call naming a policy ARN, NoSuchEntity can also mean that policy does not exist, which is
/// final, and only IAM's message tells the two apart ("Policy <arn> does not exist or is not
/// attachable." against "The role with name <name> cannot be found."): no field of the error
/// carries the missing entity.
fn not_propagated(step: &Step, error: &IamError) -> bool {
    if removes_from(step).is_some() {
        return false;
    }
    match step {
        Step::AttachPolicy(arn) | Step::PutPermissionsBoundary(arn) => {
            error.is("NoSuchEntity") && !error.message.contains(arn.as_str())
        }
        Step::AddRoleToProfile => error.is("NoSuchEntity") || error.is("InvalidParameterValue"),
        _ => error.is("NoSuchEntity"),
    }
}

/// The entity a removal acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subject {
    Role,
    Profile,
}

/// The entity `step` removes something from, or `None` when the step adds.
fn removes_from(step: &Step) -> Option<Subject> {
    match step {
        Step::DetachPolicy(_)
        | Step::DeleteInlinePolicy(_)
        | Step::DeletePermissionsBoundary
        | Step::DeleteRole => Some(Subject::Role),
        Step::UntagRole(_) => Some(Subject::Role),
        Step::RemoveRoleFromProfile(_) | Step::DeleteProfile | Step::UntagProfile(_) => {
            Some(Subject::Profile)
        }
        _ => None,
    }
}
