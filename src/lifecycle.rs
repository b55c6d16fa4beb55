//! Create, Update and Delete: the spec, the plan and IAM put together.
//!
//! The rules that make the resource safe to retry and to roll back live here:
//! * only entities carrying this resource's ownership tags are changed or deleted;
//! * a Create delivered twice converges on what the first delivery made (same generated names);
//! * a failed Create removes nothing: it answers FAILED with the name of the profile it was making,
//!   and the Delete CloudFormation sends on rollback removes what it made. A Create can be
//!   delivered again after its SUCCESS was sent, so an undo in the Create could take away what a
//!   SUCCESS reported;
//! * a replacement never reuses the names of the entities it replaces, and a failed one removes
//!   exactly what its own request created (the entities carrying its RequestId), as CloudFormation
//!   never learns their names.

use crate::config::{Config, Propagation};
use crate::iam::{Iam, IamError};
use crate::names::{self, PolicyName, ProfileName, RoleName};
use crate::plan::{
    self, Desired, Fate, Found, FoundProfile, FoundRole, Owned, Owner, ProfileState, RoleState,
    TAG_REQUEST_ID, TAG_ROLE_NAME, Tagged, Target,
};
use crate::protocol::{Kind, Outcome, Request};
use crate::spec::{InvalidProperty, Spec};
use serde_json::Value;
use std::future::Future;
use tokio::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Invalid(#[from] InvalidProperty),
    #[error(transparent)]
    Iam(#[from] IamError),
    #[error(
        "{entity} {name} already exists and does not belong to this resource \
         (its eb-instance-profile ownership tags do not name this stack and logical id); it was left \
         unchanged (AdoptExisting: true takes over an entity that no resource of this function manages)"
    )]
    NotOwned { entity: &'static str, name: String },
    #[error(
        "changing {changed} replaces the instance profile, but {property} would stay {name}, the name of \
         the entity being replaced; give {property} a new value (or remove it to get a generated name)"
    )]
    NeedsNewName {
        changed: String,
        property: &'static str,
        name: String,
    },
    #[error(
        "PhysicalResourceId {0:?} is not an instance profile name this function could have made"
    )]
    UnknownPhysicalId(String),
    #[error("{entity} {name} was reported to exist but cannot be read")]
    Vanished { entity: &'static str, name: String },
    #[error(
        "instance profile {profile} did not read back with its role {wanted} times in a row before \
         the deadline ({reads} reads, the last {streak} good); EC2 could still reject it"
    )]
    NotPropagated {
        profile: String,
        reads: u32,
        streak: u32,
        wanted: u32,
    },
    #[error(
        "role {0} does not let EC2 assume it (its trust policy has no Allow of sts:AssumeRole for \
         ec2.amazonaws.com); set RepairTrustPolicy: true to add that statement, or fix the role"
    )]
    TrustPolicy(String),
    #[error(
        "PermissionsBoundary: role {role} was adopted with {}, and the boundary of an adopted role \
         is never changed (another boundary on a role is as good as none), so it cannot get {want} \
         (from PermissionsBoundary or the function's PERMISSIONS_BOUNDARY_ARN); give the role that \
         boundary yourself, or let the function make a new role instead of adopting",
        have.as_ref().map_or("no permissions boundary".to_owned(), |b| format!("permissions boundary {b}"))
    )]
    AdoptedBoundary {
        role: String,
        have: Option<String>,
        want: String,
    },
    /// Boxed: its messages carry the values in conflict, and every `Result` of this module
    /// carries an `Error`.
    #[error(transparent)]
    Adopted(Box<plan::AdoptionConflict>),
    #[error(transparent)]
    TagOverflow(#[from] plan::TagOverflow),
    #[error(
        "{source}; role {role} is to have {wanted} managed policies, more than the account's \
         PoliciesPerRole quota allows (ask for a higher quota, up to 20, or list fewer policies)"
    )]
    Quota {
        role: String,
        wanted: usize,
        source: IamError,
    },
    #[error(
        "timed out: IAM did not finish making instance profile {profile} and role {role} in the \
         time left; the rest was kept for removing them and answering"
    )]
    Overran { profile: String, role: String },
    #[error(
        "removing them did not finish in time either: instance profile {profile} and role {role} \
         may remain, their tag {TAG_REQUEST_ID} starting with {request_id}; no stack tracks them: \
         delete them"
    )]
    UndoOverran {
        profile: String,
        role: String,
        request_id: String,
    },
    #[error(
        "instance profile {profile} holds role {held}, not {wanted}; an instance profile holds one \
         role, and an adopted one is not emptied"
    )]
    HoldsOtherRole {
        profile: String,
        held: String,
        wanted: String,
    },
}

impl Error {
    /// Whether this is a refusal of the state of entities the function did not make, or of a
    /// template the account cannot hold (a policy that does not exist, the quota), rather than
    /// IAM failing: every delivery of the same request meets it alike.
    fn is_refusal(&self) -> bool {
        match self {
            Self::Invalid(_)
            | Self::NotOwned { .. }
            | Self::TrustPolicy(_)
            | Self::AdoptedBoundary { .. }
            | Self::Quota { .. }
            | Self::HoldsOtherRole { .. }
            | Self::Adopted(_) => true,
            // IAM refusing the input itself (a value too long for a tag, say) or a policy ARN.
            Self::Iam(e) => {
                e.names_missing_policy() || e.is("ValidationError") || e.is("InvalidInput")
            }
            _ => false,
        }
    }
}

/// Handles one request. Every path ends in an [`Outcome`]; nothing here returns early unanswered.
/// `deadline` bounds the propagation wait, which has to stop in time to answer.
pub async fn handle(iam: &Iam, config: &Config, request: &Request, deadline: Instant) -> Outcome {
    // IAM's propagation is waited out only while there is time left to undo the work and answer.
    let iam = &iam.settling_until(settle_deadline(deadline));
    // Boxed: the SDK's futures nest deeply, and one unboxed state machine for all three would
    // exceed the compiler's layout depth.
    match &request.kind {
        Kind::Create => Box::pin(create(iam, config, request, deadline)).await,
        Kind::Update {
            physical_id,
            old_properties,
        } => {
            Box::pin(update(
                iam,
                config,
                request,
                physical_id,
                old_properties,
                deadline,
            ))
            .await
        }
        Kind::Delete { physical_id } => Box::pin(delete(iam, request, physical_id)).await,
    }
}

async fn create(iam: &Iam, config: &Config, request: &Request, deadline: Instant) -> Outcome {
    let (spec, _) = match Spec::prepare(&config.rules, &request.properties, request.stack_id()) {
        Ok(prepared) => prepared,
        // Nothing was made: the generated name exists nowhere, so the rollback Delete is a no-op.
        Err(e) => {
            return Outcome::failed(
                plan::fallback_physical_id(&config.rules, request),
                e.to_string(),
            );
        }
    };
    if let Err(e) = spec.check_new_entities() {
        return Outcome::failed(
            plan::fallback_physical_id(&config.rules, request),
            e.to_string(),
        );
    }
    let owner = Owner::of(request);
    let target = Target::new_for(&spec, request);
    let creation = plan::creation_tag(request.request_id(), &names::delivery_mark());
    let desired = Desired {
        target: &target,
        spec: &spec,
        owner: &owner,
        creation: &creation,
    };
    match build_new(iam, config, desired, settle_deadline(deadline)).await {
        Ok(built) => success(desired, &built, "created"),
        // A refusal is met by every delivery of the request alike, so none answered SUCCESS: what
        // the request made is removed.
        Err((error, seen)) if error.is_refusal() => {
            let scope = Scope::Request(request.request_id());
            let undo = undo_request(iam, &target, &owner, seen, scope).await;
            Outcome::failed(target.profile.to_string(), with_undo(error, undo))
        }
        // Otherwise nothing is undone here: what this resource owns at these names may be what an
        // earlier delivery of this same request made and answered SUCCESS for. The
        // PhysicalResourceId names it, and the Delete that CloudFormation sends on rollback
        // removes it.
        Err((error, _)) => Outcome::failed(
            target.profile.to_string(),
            format!("{error}; {LEFT_FOR_ROLLBACK}"),
        ),
    }
}

/// Said in the Reason of a failed Create.
const LEFT_FOR_ROLLBACK: &str = "nothing was removed: the Delete that CloudFormation sends on \
     rollback removes what this Create made";

async fn update(
    iam: &Iam,
    config: &Config,
    request: &Request,
    physical_id: &str,
    old_properties: &Value,
    deadline: Instant,
) -> Outcome {
    let (spec, partition) =
        match Spec::prepare(&config.rules, &request.properties, request.stack_id()) {
            Ok(prepared) => prepared,
            Err(e) => return Outcome::failed(physical_id, e.to_string()),
        };
    // The old properties were accepted once; if they no longer parse, nothing is known to remove.
    let old = Spec::parse(old_properties, &partition).ok();
    let changed = old
        .as_ref()
        .map(|old| spec.identity().changed(&old.identity()))
        .unwrap_or_default();
    let owner = Owner::of(request);
    let creation = plan::creation_tag(request.request_id(), &names::delivery_mark());
    let change = Change {
        creation: &creation,
        iam,
        config,
        deadline,
        request,
        spec: &spec,
        old: old.as_ref(),
        owner: &owner,
        physical_id,
    };
    let result = async {
        if changed.is_empty() {
            return change.in_place(None).await;
        }
        // Read once: it decides between rollback and replacement, and the replacement needs it.
        let current = match ProfileName::parse(physical_id) {
            Ok(name) => iam.profile(&name).await?,
            Err(_) => None,
        };
        if change.already_there(current.as_ref()) {
            change.in_place(Some(current)).await
        } else {
            change.replace(&changed.join(", "), current).await
        }
    };
    result
        .await
        .unwrap_or_else(|e| Outcome::failed(physical_id, e.to_string()))
}

/// An Update: the new spec, the old one (if it still parses) and the resource being changed.
struct Change<'a> {
    iam: &'a Iam,
    config: &'a Config,
    deadline: Instant,
    request: &'a Request,
    spec: &'a Spec,
    old: Option<&'a Spec>,
    owner: &'a Owner,
    physical_id: &'a str,
    /// What this delivery tags what it creates with.
    creation: &'a str,
}

impl Change<'_> {
    /// Whether the owned entity at the PhysicalResourceId already has the identity the new
    /// properties describe. That is the rollback of a failed replacement: CloudFormation sends the
    /// original properties as new and the failed ones as old, for the entity that is still there.
    fn already_there(&self, current: Option<&ProfileState>) -> bool {
        let spec = self.spec;
        if spec
            .instance_profile_name
            .as_ref()
            .is_some_and(|n| !n.same_entity(self.physical_id))
        {
            return false;
        }
        let Some(profile) = current.filter(|p| self.owner.owns(&p.tags)) else {
            return false;
        };
        let role_matches = match (&spec.role_name, role_of(profile)) {
            (Some(want), Some(have)) => want.same_entity(have.as_str()),
            (Some(_), None) => false,
            // The default role is named after the profile when that fits, else generated.
            // Resources made before that with a profile name too long for a role have a role named
            // from the request's ids instead: any role is theirs.
            (None, Some(have)) => {
                RoleName::parse(self.physical_id).is_err()
                    || default_role(self.physical_id).is_none_or(|r| r.same_entity(have.as_str()))
            }
            (None, None) => true,
        };
        role_matches && profile.path == spec.path.as_str()
    }

    /// Same names: converge the existing entities, recreating any that vanished. `current` is the
    /// profile at the PhysicalResourceId if this request has read it already.
    async fn in_place(&self, current: Option<Option<ProfileState>>) -> Result<Outcome, Error> {
        let (iam, spec, owner, physical_id) = (self.iam, self.spec, self.owner, self.physical_id);
        let profile = ProfileName::parse(physical_id)
            .map_err(|_| Error::UnknownPhysicalId(physical_id.into()))?;
        // The role is usually the template's RoleName or named after the profile: read it together
        // with the profile, and again only if the profile names another.
        let guess = spec.role_name.clone().or_else(|| default_role(physical_id));
        let (existing, guessed) = tokio::join!(
            async {
                match current {
                    Some(known) => Ok(known),
                    None => iam.profile(&profile).await,
                }
            },
            async {
                match &guess {
                    Some(name) => iam.role(name).await,
                    None => Ok(None),
                }
            }
        );
        let entity = "Instance profile";
        let raw_profile = existing?;
        check_owned(owner, entity, profile.as_str(), raw_profile.clone(), false)?;
        if raw_profile.is_none() {
            // Vanished: it is made again, with the request-id tag, as new entities are.
            spec.check_new_entities()?;
        }
        let role = spec
            .role_name
            .clone()
            .or_else(|| raw_profile.as_ref().and_then(role_of))
            .or_else(|| guess.clone())
            .unwrap_or_else(|| Target::new_for(spec, self.request).role);
        let known = Known {
            role: match guess {
                Some(g) if g == role => Some(guessed?),
                _ => None,
            },
            profile: Some(raw_profile),
        };
        let target = Target { profile, role };
        let desired = Desired {
            target: &target,
            spec,
            owner,
            creation: self.creation,
        };
        let built = build(iam, desired, self.old, Order::ReadFirst, known)
            .await
            .map_err(|(e, _)| e)?;
        Ok(success(desired, &built, "updated"))
    }

    /// New names: make new entities; CloudFormation deletes the old ones after the Update.
    async fn replace(
        &self,
        changed: &str,
        current: Option<ProfileState>,
    ) -> Result<Outcome, Error> {
        let (iam, spec, owner, physical_id) = (self.iam, self.spec, self.owner, self.physical_id);
        let target = Target::new_for(spec, self.request);
        let needs_new_name = |property, name: &str| Error::NeedsNewName {
            changed: changed.into(),
            property,
            name: name.into(),
        };
        if target.profile.same_entity(physical_id) {
            return Err(needs_new_name(
                "InstanceProfileName",
                target.profile.as_str(),
            ));
        }
        spec.check_new_entities()?;
        let old_profile = if_owned(owner, current);
        let old_role = old_profile
            .as_deref()
            .and_then(role_of)
            .or_else(|| self.old.and_then(|o| o.role_name.clone()))
            .or_else(|| default_role(physical_id));
        if old_role.is_some_and(|r| target.role.same_entity(r.as_str())) {
            return Err(needs_new_name("RoleName", target.role.as_str()));
        }
        let desired = Desired {
            target: &target,
            spec,
            owner,
            creation: self.creation,
        };
        // The work stops early enough to remove what it made: CloudFormation never learns the
        // new names of a failed replacement, so nothing else ever would.
        let stop = settle_deadline(self.deadline);
        // The propagation wait ends by `stop` on its own; the hard stop, for IAM not answering,
        // comes a little later so that it does not cut off the wait's last read.
        let hard_stop = stop + self.deadline.saturating_duration_since(stop) / 4;
        let build = build_new(iam, self.config, desired, stop);
        let (error, seen) = match tokio::time::timeout_at(hard_stop, build).await {
            // CloudFormation sees the new PhysicalResourceId and later deletes the old one.
            Ok(Ok(built)) => return Ok(success(desired, &built, "replaced")),
            Ok(Err(failed)) => failed,
            Err(_) => {
                tracing::error!("replacement overran its time: removing what it made");
                let error = Error::Overran {
                    profile: target.profile.to_string(),
                    role: target.role.to_string(),
                };
                // Its creates may have taken effect unanswered: a read that misses one is read
                // again while the undo has time.
                let seen = Seen {
                    profile: Presence::Found,
                    role: Presence::Found,
                };
                (error, seen)
            }
        };
        // Only what this request created: an owned entity that existed already may be the
        // original that a rollback is returning to.
        let undo_until = self
            .deadline
            .checked_sub(UNDO_MARGIN)
            .unwrap_or(self.deadline);
        // The undo waits out IAM's propagation of what it removes until its own end.
        let iam = &iam.settling_until(undo_until);
        let undo = tokio::time::timeout_at(
            undo_until,
            undo_request(iam, &target, owner, seen, Scope::Delivery(self.creation)),
        )
        .await
        .unwrap_or_else(|_| {
            Err(Error::UndoOverran {
                profile: target.profile.to_string(),
                role: target.role.to_string(),
                request_id: self.request.request_id().to_owned(),
            })
        });
        Ok(Outcome::failed(physical_id, with_undo(error, undo)))
    }
}

async fn delete(iam: &Iam, request: &Request, physical_id: &str) -> Outcome {
    let owner = Owner::of(request);
    let Ok(profile_name) = ProfileName::parse(physical_id) else {
        // Not a name this function makes (CloudFormation invents ids for Creates it cancelled).
        return Outcome::success(
            physical_id,
            "nothing to delete: not an instance profile name",
        );
    };
    let result = async {
        // The role is usually the template's RoleName or named after the profile: read it with
        // the profile, and again only if the profile names another.
        let guess = request
            .properties
            .get("RoleName")
            .and_then(Value::as_str)
            .and_then(|r| RoleName::parse(r).ok())
            .or_else(|| default_role(physical_id));
        let (profile, guessed) = tokio::join!(iam.profile(&profile_name), async {
            match &guess {
                Some(name) => role_with_inline(iam, name).await,
                None => Ok(None),
            }
        });
        let profile = if_owned(&owner, profile?);
        // A role that this resource's profile names exists, unless removed out of band: a read
        // that misses it is repeated. With no profile to name it, a missing role is read twice
        // more, in case the Delete follows its Create closely (a role must not be left behind).
        let expect_role = if profile.as_deref().and_then(role_of).is_some() {
            crate::iam::READ_RETRIES
        } else {
            2
        };
        let Some(role_name) = profile.as_deref().and_then(role_of).or(guess.clone()) else {
            return Ok(None);
        };
        let known = match guess {
            Some(g) if g == role_name => Some(guessed?),
            _ => None,
        };
        let target = Target {
            profile: profile_name.clone(),
            role: role_name,
        };
        let found = find_owned(
            iam,
            &target,
            &owner,
            profile,
            Scope::Resource,
            known,
            expect_role,
        )
        .await?;
        let what = describe(&target, &found);
        tear_down(iam, &target, &owner, Scope::Resource, found).await?;
        Ok::<_, Error>(Some(what))
    }
    .await;
    match result {
        Ok(Some(what)) if !what.is_empty() => Outcome::success(physical_id, what),
        Ok(_) => Outcome::success(
            physical_id,
            "nothing to delete: no instance profile or role of this resource exists",
        ),
        Err(e) => Outcome::failed(physical_id, e.to_string()),
    }
}

/// The role an owned instance profile names: its tag, else the role inside it.
fn role_of(profile: &ProfileState) -> Option<RoleName> {
    profile
        .tags
        .get(TAG_ROLE_NAME)
        .into_iter()
        .chain(profile.roles.first())
        .find_map(|r| RoleName::parse(r).ok())
}

/// What a teardown of `found` does, in words: deleted, or (adopted entities) released.
/// Entities are named as in every other Reason: by name, not ARN.
fn describe(target: &Target, found: &Found) -> String {
    let mut parts = Vec::new();
    let mut say = |adopted: bool, what: String| {
        parts.push(if adopted {
            format!("released adopted {what}, which stays")
        } else {
            format!("deleted {what}")
        })
    };
    if let Some(FoundProfile {
        state,
        fate: Fate::Delete,
    }) = &found.profile
    {
        say(
            state.adopted(),
            format!("instance profile {}", target.profile),
        );
    }
    if let Some(FoundRole { state, .. }) = &found.role {
        say(state.adopted(), format!("role {}", target.role));
    }
    parts.join("; ")
}

/// The role of the profile a PhysicalResourceId names, when the template names none.
fn default_role(physical_id: &str) -> Option<RoleName> {
    ProfileName::parse(physical_id)
        .ok()
        .map(|p| names::default_role(&p))
}

/// What a build learned of whether an entity exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Presence {
    /// Nothing: its create failed, or never ran.
    #[default]
    Unknown,
    /// IAM showed it: a create answered with it, a read, or a create that met
    /// EntityAlreadyExists (made by an earlier delivery, or by this one when an answer was lost).
    /// Who made it is the request-id tag's to say, not this.
    Found,
}

impl Presence {
    /// An undo that reads an entity IAM has shown as absent has met a stale replica: it reads
    /// again.
    fn retries(self) -> u32 {
        match self {
            Self::Unknown => 0,
            Self::Found => crate::iam::READ_RETRIES,
        }
    }
}

/// What a build learned of the profile and the role, for an undo.
#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    profile: Presence,
    role: Presence,
}

/// What a step of a build says of an entity's existence.
fn presence<S>(ensured: &Result<(S, Presence), Error>) -> Presence {
    match ensured {
        Ok((_, presence)) => *presence,
        Err(_) => Presence::Unknown,
    }
}

/// Which owned entities at a resource's names a teardown removes (deletes what was created,
/// gives back what was adopted). Whatever it does not cover stays; an owned profile that stays
/// only loses the role being deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope<'a> {
    /// Everything this resource owns there (Delete).
    Resource,
    /// What the delivery with this [`plan::creation_tag`] created or adopted, answered or not: the
    /// undo of a failed replacement, whose new names CloudFormation never learns. What an earlier
    /// delivery of the same request made or adopted stays: it may have answered SUCCESS.
    Delivery(&'a str),
    /// What any delivery of the request with this RequestId created or adopted (answered or not:
    /// a lost answer's retry meets EntityAlreadyExists): the undo of a Create refused for the
    /// state of things it did not make, which every delivery of the request meets alike, so that
    /// none of them can have answered SUCCESS.
    Request(&'a str),
}

impl Scope<'_> {
    fn covers<T: Tagged>(self, entity: &Owned<T>) -> bool {
        match self {
            Self::Resource => true,
            Self::Delivery(creation) => entity.created_in(creation),
            Self::Request(request_id) => entity.created_by(request_id),
        }
    }

    fn fate(self, profile: &Owned<ProfileState>) -> Fate {
        if self.covers(profile) {
            Fate::Delete
        } else {
            Fate::Keep
        }
    }
}

/// Kept between the end of an undo and the end of the work, for the answer to be made in time.
const UNDO_MARGIN: std::time::Duration = std::time::Duration::from_millis(100);

/// Whether to try creating entities first (Create: they usually do not exist) or to read first
/// (Update: they usually do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    CreateFirst,
    ReadFirst,
}

/// What a request has read already, so that [`build`] need not read it again: `Some(None)` means
/// read and absent.
#[derive(Debug, Default)]
struct Known {
    role: Option<Option<RoleState>>,
    profile: Option<Option<ProfileState>>,
}

/// The entities of a resource after [`build`].
struct Built {
    role_arn: String,
    profile_arn: String,
}

/// Until when a request waits for IAM to propagate: early enough to remove what was made and answer.
fn settle_deadline(deadline: Instant) -> Instant {
    let left = deadline.saturating_duration_since(Instant::now());
    deadline - (left / 3).min(std::time::Duration::from_secs(5))
}

/// Builds new entities (a Create or a replacement) and, unless the template says not to, waits
/// until IAM shows the profile with its role, at most until `wait_until`.
async fn build_new(
    iam: &Iam,
    config: &Config,
    desired: Desired<'_>,
    wait_until: Instant,
) -> Result<Built, (Error, Seen)> {
    let built = build(iam, desired, None, Order::CreateFirst, Known::default()).await?;
    if desired.spec.wait_for_propagation
        && let Err(e) =
            wait_until_visible(iam, desired.target, &config.propagation, wait_until).await
    {
        let seen = Seen {
            profile: Presence::Found,
            role: Presence::Found,
        };
        return Err((e, seen));
    }
    Ok(built)
}

/// Reads the instance profile until it shows its role `reads` times in a row, `interval` apart.
///
/// IAM is eventually consistent: right after creation EC2 and Elastic Beanstalk can still reject
/// the profile. One successful read can come from a replica that is already up to date while
/// others are not; several in a row, spaced out, make a stale answer unlikely (the approach of
/// long-standing infrastructure tools). aws-sdk-iam's own instance-profile waiter cannot be used: it
/// matches an error code IAM does not send.
async fn wait_until_visible(
    iam: &Iam,
    target: &Target,
    settings: &Propagation,
    deadline: Instant,
) -> Result<(), Error> {
    let (mut reads, mut streak) = (0u32, 0u32);
    loop {
        let visible =
            matches!(iam.profile(&target.profile).await, Ok(Some(p)) if p.holds(&target.role));
        reads += 1;
        streak = if visible { streak + 1 } else { 0 };
        if streak >= settings.reads {
            tracing::info!(reads, profile = %target.profile, "instance profile visible");
            return Ok(());
        }
        if Instant::now() + settings.interval >= deadline {
            return Err(Error::NotPropagated {
                profile: target.profile.to_string(),
                reads,
                streak,
                wanted: settings.reads,
            });
        }
        tokio::time::sleep(settings.interval).await;
    }
}

/// Makes the role and profile exist, owned, and converges them on `desired`.
/// On failure, also says which entities IAM showed to exist, for an undo.
async fn build(
    iam: &Iam,
    desired: Desired<'_>,
    old: Option<&Spec>,
    order: Order,
    known: Known,
) -> Result<Built, (Error, Seen)> {
    let (role, profile) = tokio::join!(
        ensure_role(iam, desired, order, known.role),
        ensure_profile(iam, desired, order, known.profile)
    );
    let seen = Seen {
        profile: presence(&profile),
        role: presence(&role),
    };
    let ((role, _), (profile, _)) = match (role, profile) {
        (Ok(role), Ok(profile)) => (role, profile),
        (Err(e), _) | (_, Err(e)) => return Err((e, seen)),
    };
    if role.adopted()
        && !desired.spec.repair_trust_policy
        && !crate::spec::trust_allows_ec2(&role.trust_policy)
    {
        return Err((Error::TrustPolicy(desired.target.role.to_string()), seen));
    }
    if profile.adopted()
        && let Some(held) = profile
            .roles
            .iter()
            .find(|r| !desired.target.role.same_entity(r))
    {
        let error = Error::HoldsOtherRole {
            profile: desired.target.profile.to_string(),
            held: held.clone(),
            wanted: desired.target.role.to_string(),
        };
        return Err((error, seen));
    }
    if role.adopted()
        && let Some(want) = &desired.spec.permissions_boundary
        && role.permissions_boundary.as_ref() != Some(want)
    {
        let error = Error::AdoptedBoundary {
            role: desired.target.role.to_string(),
            have: role.permissions_boundary.clone(),
            want: want.clone(),
        };
        return Err((error, seen));
    }
    // Nothing else an adopted entity had is changed either (its inline policies, tag values,
    // description, session duration): a template asking for another value is refused before any
    // change. Only an adopted role's inline policies are read, only those the template lists, in
    // one round; the roles the function made cost no read.
    let inline = if role.adopted() {
        let names = desired.spec.inline_policies.keys();
        match iam.inline_documents(&desired.target.role, names).await {
            Ok(documents) => documents,
            Err(error) => return Err((error.into(), seen)),
        }
    } else {
        plan::InlineDocuments::new()
    };
    if let Some(conflict) = plan::adoption_conflict(desired, &role, &profile, &inline, old) {
        return Err((Error::Adopted(Box::new(conflict)), seen));
    }
    if let Some(overflow) = plan::tag_overflow(desired, &role, &profile, old) {
        return Err((overflow.into(), seen));
    }
    let plan = plan::converge(desired, &role, &profile, old).without_unchanged_inline(&inline);
    // An adopted role is only ever added to, and the execution role lets the function take nothing
    // away from it: what a failed plan attached stays, as after any adoption.
    if let Err(error) = run_within_quota(iam, desired, &plan).await {
        return Err((error, seen));
    }
    Ok(Built {
        role_arn: role.into_inner().arn,
        profile_arn: profile.into_inner().arn,
    })
}

/// Runs a converging plan. New policies are attached before removed ones are detached, so that the
/// role never lacks one that both templates list; but a role at its quota of managed policies
/// (PoliciesPerRole, 10 by default) has no room for that: IAM answers the attachment LimitExceeded,
/// and the plan runs again with the removed policies detached first (every call of a plan can be
/// repeated). A plan with nothing to detach fails, naming the quota.
async fn run_within_quota(iam: &Iam, desired: Desired<'_>, plan: &plan::Plan) -> Result<(), Error> {
    match iam.run(desired.target, plan).await {
        Err(e) if at_quota(&e) => match plan.detaching_first() {
            Some(reordered) => {
                tracing::info!(
                    "role at its managed-policy quota: detaching removed policies first"
                );
                iam.run(desired.target, &reordered)
                    .await
                    .map_err(|e| quota_error(desired, e))
            }
            None => Err(quota_error(desired, e)),
        },
        other => other.map_err(Error::from),
    }
}

/// Whether IAM refused an attachment for the role's quota: AttachRolePolicy answers LimitExceeded
/// for nothing else.
fn at_quota(error: &IamError) -> bool {
    error.action == "AttachRolePolicy" && error.is("LimitExceeded")
}

fn quota_error(desired: Desired<'_>, error: IamError) -> Error {
    if at_quota(&error) {
        Error::Quota {
            role: desired.target.role.to_string(),
            wanted: desired.spec.policies.len(),
            source: error,
        }
    } else {
        error.into()
    }
}

/// The entity as owned, `None` if absent, or [`Error::NotOwned`]. With `adopt`, an entity that
/// belongs to no resource of this function's is taken over instead.
fn check_owned<T: Tagged>(
    owner: &Owner,
    entity: &'static str,
    name: &str,
    state: Option<T>,
    adopt: bool,
) -> Result<Option<Owned<T>>, Error> {
    let Some(state) = state else {
        return Ok(None);
    };
    let claimed = if adopt {
        owner.claim_or_adopt(state)
    } else {
        owner.claim(state)
    };
    claimed.map(Some).map_err(|_| Error::NotOwned {
        entity,
        name: name.into(),
    })
}

/// The entity if it exists and is owned; `None` otherwise.
fn if_owned<T: Tagged>(owner: &Owner, state: Option<T>) -> Option<Owned<T>> {
    state.and_then(|s| owner.claim(s).ok())
}

/// Makes an entity exist, reading first (or using what this request `known`s already) or creating
/// first. When creation finds the name taken
/// (a duplicate delivery got there first, or someone else), the entity is read and ownership
/// decides. Says that IAM has shown it ([`Presence::Found`]).
async fn ensure<S, Read, Create>(
    iam: &Iam,
    order: Order,
    known: Option<Result<Option<S>, Error>>,
    read: impl Fn() -> Read,
    create: impl FnOnce() -> Create,
    vanished: impl FnOnce() -> Error,
) -> Result<(S, Presence), Error>
where
    Read: Future<Output = Result<Option<S>, Error>>,
    Create: Future<Output = Result<Option<S>, Error>>,
{
    if order == Order::ReadFirst {
        let first = match known {
            Some(known) => known?,
            None => read().await?,
        };
        if let Some(state) = first {
            return Ok((state, Presence::Found));
        }
    }
    match create().await? {
        Some(state) => Ok((state, Presence::Found)),
        // EntityAlreadyExists: an earlier delivery made it, or this request did and its answer
        // was lost. IAM has just said it exists, so a read that misses it is read again.
        None => iam
            .read_expecting(crate::iam::READ_RETRIES, read)
            .await?
            .map(|s| (s, Presence::Found))
            .ok_or_else(vanished),
    }
}

async fn ensure_role(
    iam: &Iam,
    d: Desired<'_>,
    order: Order,
    known: Option<Option<RoleState>>,
) -> Result<(Owned<RoleState>, Presence), Error> {
    let name = &d.target.role;
    let adopt = d.spec.adopt_existing;
    let known = known.map(|raw| check_owned(d.owner, "Role", name.as_str(), raw, adopt));
    ensure(
        iam,
        order,
        known,
        || async { check_owned(d.owner, "Role", name.as_str(), iam.role(name).await?, adopt) },
        || async {
            let created = iam
                .create_role(name, d.spec, &d.role_creation_tags())
                .await?;
            Ok(created.map(|arn| d.created_role(arn)))
        },
        || Error::Vanished {
            entity: "Role",
            name: name.to_string(),
        },
    )
    .await
}

async fn ensure_profile(
    iam: &Iam,
    d: Desired<'_>,
    order: Order,
    known: Option<Option<ProfileState>>,
) -> Result<(Owned<ProfileState>, Presence), Error> {
    let name = &d.target.profile;
    let entity = "Instance profile";
    let adopt = d.spec.adopt_existing;
    let known = known.map(|raw| check_owned(d.owner, entity, name.as_str(), raw, adopt));
    ensure(
        iam,
        order,
        known,
        || async {
            check_owned(
                d.owner,
                entity,
                name.as_str(),
                iam.profile(name).await?,
                adopt,
            )
        },
        || async {
            let created = iam
                .create_profile(name, &d.spec.path, &d.profile_creation_tags())
                .await?;
            Ok(created.map(|arn| d.created_profile(arn)))
        },
        || Error::Vanished {
            entity,
            name: name.to_string(),
        },
    )
    .await
}

/// The owned entities at `target` that `scope` covers, with what a teardown needs: `profile` as
/// read, the role read here unless `known_role` has it. A role that reads as absent is read again
/// up to `expect_role` times (see [`Iam::read_expecting`]).
async fn find_owned(
    iam: &Iam,
    target: &Target,
    owner: &Owner,
    profile: Option<Owned<ProfileState>>,
    scope: Scope<'_>,
    known_role: Option<Option<(RoleState, Vec<PolicyName>)>>,
    expect_role: u32,
) -> Result<Found, Error> {
    let raw = match known_role {
        Some(Some(known)) => Some(known),
        Some(None) if expect_role == 0 => None,
        _ => {
            iam.read_expecting(expect_role, || role_with_inline(iam, &target.role))
                .await?
        }
    };
    let role = raw.and_then(|(role, inline)| {
        let state = owner.claim(role).ok().filter(|r| scope.covers(r))?;
        Some(FoundRole { state, inline })
    });
    let profile = profile.map(|state| FoundProfile {
        fate: scope.fate(&state),
        state,
    });
    Ok(Found { profile, role })
}

/// The role with the names of its inline policies, read at once; `None` if there is no such role.
async fn role_with_inline(
    iam: &Iam,
    name: &RoleName,
) -> Result<Option<(RoleState, Vec<PolicyName>)>, Error> {
    let (role, inline) = tokio::join!(iam.role(name), iam.inline_policy_names(name));
    let Some(role) = role? else {
        return Ok(None);
    };
    let inline = match inline {
        Err(e) if e.is("NoSuchEntity") => Vec::new(),
        other => other?,
    };
    Ok(Some((role, inline)))
}

/// Removes what was created at `target`, and gives back what was adopted there, by the delivery or
/// request `scope` names (as the entities' [`TAG_REQUEST_ID`] says). An entity `seen` to exist that
/// reads as absent is read again.
async fn undo_request(
    iam: &Iam,
    target: &Target,
    owner: &Owner,
    seen: Seen,
    scope: Scope<'_>,
) -> Result<(), Error> {
    let read_profile = || async { Ok::<_, Error>(iam.profile(&target.profile).await?) };
    let (profile, role) = tokio::join!(
        iam.read_expecting(seen.profile.retries(), read_profile),
        iam.read_expecting(seen.role.retries(), || role_with_inline(iam, &target.role)),
    );
    let profile = if_owned(owner, profile?);
    let found = find_owned(iam, target, owner, profile, scope, Some(role?), 0).await?;
    tracing::info!(
        profile = found.profile.as_ref().map(|p| p.fate == Fate::Delete),
        role = found.role.is_some(),
        "removing what this request created"
    );
    tear_down(iam, target, owner, scope, found).await
}

/// How often a teardown that meets DeleteConflict reads IAM again and repeats itself.
const CONFLICT_RETRIES: u32 = 5;

/// Deletes `found` (see [`plan::teardown`]). Right after the teardown's own removals, IAM can
/// still answer DeleteRole or DeleteInstanceProfile with DeleteConflict (the replica answering has
/// not seen them; terraform-provider-aws retries DeleteRole on it too), and a read right after an
/// attach may have missed a policy that must go first: the entities are read again and the
/// teardown repeated, a few times. A conflict that stays is caused by something this resource
/// does not own (another instance profile holding the role, say) and is reported, IAM's message
/// naming it, a few seconds later.
async fn tear_down(
    iam: &Iam,
    target: &Target,
    owner: &Owner,
    scope: Scope<'_>,
    mut found: Found,
) -> Result<(), Error> {
    let mut attempt = 0;
    loop {
        match iam.run(target, &plan::teardown(target, &found)).await {
            Err(e) if e.is("DeleteConflict") && attempt < CONFLICT_RETRIES => {
                if !iam.pause(attempt).await {
                    return Err(e.into());
                }
                tracing::info!(error = %e, attempt, "delete conflict: reading again");
                attempt += 1;
                let profile = if_owned(owner, iam.profile(&target.profile).await?);
                let known = found.role.is_none().then_some(None);
                found = find_owned(iam, target, owner, profile, scope, known, 0).await?;
            }
            other => return other.map_err(Error::from),
        }
    }
}

fn with_undo(error: Error, undo: Result<(), Error>) -> String {
    match undo {
        Ok(()) => error.to_string(),
        Err(e) => format!("{error}; removing what was made also failed: {e}"),
    }
}

fn success(desired: Desired<'_>, built: &Built, verb: &str) -> Outcome {
    desired.answer(&built.role_arn, &built.profile_arn, verb)
}
