//! The calls that take IAM from what it holds to what the template wants (pure).
//!
//! A plan is a list of rounds; the calls of one round do not depend on each other and run
//! concurrently, rounds run in order. The order of rounds is what keeps the role usable during a
//! change: new policies are attached before removed ones are detached, a profile is emptied before a
//! role is put in, and a role leaves its profile before either is deleted.

use crate::config::Rules;
use crate::names::{self, PolicyName, ProfileName, RoleName};
use crate::protocol::{Kind, Outcome, Request};
use crate::spec::Spec;
use std::collections::{BTreeMap, BTreeSet};

/// Tag naming the stack that owns an entity.
pub const TAG_STACK_ID: &str = "eb-instance-profile:stack-id";
/// Tag naming the logical resource that owns an entity.
pub const TAG_LOGICAL_ID: &str = "eb-instance-profile:logical-id";
/// Tag on an instance profile naming its role, so that Delete finds the role even when the profile
/// was emptied out of band.
pub const TAG_ROLE_NAME: &str = "eb-instance-profile:role-name";
/// Tag marking an entity that existed before this resource took it over (AdoptExisting): it is
/// only ever added to, and Delete leaves it in place.
pub const TAG_ADOPTED: &str = "eb-instance-profile:adopted";
/// Tag naming the CloudFormation request (its RequestId) that created or adopted an entity, and
/// which delivery of it ([`creation_tag`]). A failed replacement tells what it made or took over
/// from everything else at the same names by this tag, even when a create's answer was lost and the
/// retry met EntityAlreadyExists, and from what an earlier delivery of the same request made and
/// may have answered SUCCESS for.
pub const TAG_REQUEST_ID: &str = "eb-instance-profile:request-id";

/// The value of [`TAG_REQUEST_ID`]: the request's [`request_label`], a space, and a mark of the
/// delivery ([`crate::names::delivery_mark`], which has no space).
pub fn creation_tag(request_id: &str, delivery: &str) -> String {
    format!("{} {delivery}", request_label(request_id))
}

/// The longest RequestId a [`creation_tag`] carries as it is: IAM's 256 characters of a tag value,
/// less the space and the delivery mark.
const REQUEST_LABEL_MAX: usize = 256 - 1 - 16;

/// The RequestId as a tag value can hold it: as it is when it is ASCII that IAM accepts there
/// (CloudFormation's are UUIDs), else a digest of it. IAM allows only letters, digits, spaces and
/// `_.:/=+-@` in a tag value, at most 256 of them (IAM API reference, `Tag`), and a RequestId is
/// any string the sender chose. Only ASCII is kept as it is: which other characters IAM counts as
/// letters is its Unicode tables' to say. An id that looks like a digest is hashed too, so that no
/// RequestId can pass for another's digest.
pub fn request_label(request_id: &str) -> std::borrow::Cow<'_, str> {
    const DIGEST: &str = "sha256:";
    if !request_id.is_empty()
        && request_id.len() <= REQUEST_LABEL_MAX
        && !request_id.starts_with(DIGEST)
        && request_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " _.:/=+-@".contains(c))
    {
        return request_id.into();
    }
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(request_id.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{DIGEST}{hex}").into()
}
/// Every tag key the function manages itself.
pub const OWN_TAG_KEYS: [&str; 5] = [
    TAG_STACK_ID,
    TAG_LOGICAL_ID,
    TAG_ROLE_NAME,
    TAG_ADOPTED,
    TAG_REQUEST_ID,
];

pub type Tags = BTreeMap<String, String>;

/// The CloudFormation resource on whose behalf entities are created. An entity is this resource's
/// only when it carries both ownership tags with these values; nothing else is ever changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub stack_id: String,
    pub logical_id: String,
}

impl Owner {
    /// The resource a request is about.
    pub fn of(request: &Request) -> Self {
        Self {
            stack_id: request.stack_id().to_owned(),
            logical_id: request.logical_id().to_owned(),
        }
    }
}

impl Owner {
    pub fn tags(&self) -> Tags {
        Tags::from([
            (TAG_STACK_ID.to_owned(), self.stack_id.clone()),
            (TAG_LOGICAL_ID.to_owned(), self.logical_id.clone()),
        ])
    }

    pub fn owns(&self, tags: &Tags) -> bool {
        tags.get(TAG_STACK_ID) == Some(&self.stack_id)
            && tags.get(TAG_LOGICAL_ID) == Some(&self.logical_id)
    }
}

/// Entities that carry tags.
pub trait Tagged {
    fn tags(&self) -> &Tags;
}

/// How an owned entity came to be this resource's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Created by a request of this resource: Delete deletes it.
    Created,
    /// There before, taken over with AdoptExisting: only ever added to; Delete gives it back.
    Adopted,
}

/// An entity whose ownership tags name this resource, or that it is taking over. Plans are built
/// only from these, so no IAM call that changes or deletes something can be planned for an entity
/// whose ownership was not checked first. The only ways to one are [`Owner::claim`],
/// [`Owner::claim_or_adopt`] and the states of entities a request has just created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owned<T> {
    state: T,
    origin: Origin,
}

impl<T> std::ops::Deref for Owned<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.state
    }
}

impl<T> Owned<T> {
    pub fn into_inner(self) -> T {
        self.state
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }

    /// Whether the entity was adopted rather than made by this resource.
    pub fn adopted(&self) -> bool {
        self.origin == Origin::Adopted
    }
}

impl<T: Tagged> Owned<T> {
    /// Whether a delivery of the request `request_id` created or adopted this entity (its
    /// request-id tag says so).
    pub fn created_by(&self, request_id: &str) -> bool {
        self.creation()
            .and_then(|c| c.rsplit_once(' '))
            .is_some_and(|(label, _)| label == request_label(request_id))
    }

    /// Whether the delivery whose [`creation_tag`] is `creation` created or adopted this entity.
    pub fn created_in(&self, creation: &str) -> bool {
        self.creation() == Some(creation)
    }

    /// The request-id tag. Entities adopted before adoption recorded it have none: no request
    /// claims them.
    fn creation(&self) -> Option<&str> {
        self.state.tags().get(TAG_REQUEST_ID).map(String::as_str)
    }
}

impl Owner {
    /// The entity as this resource's, if its tags say so; else back unchanged.
    pub fn claim<T: Tagged>(&self, state: T) -> Result<Owned<T>, T> {
        if self.owns(state.tags()) {
            let origin = if state.tags().contains_key(TAG_ADOPTED) {
                Origin::Adopted
            } else {
                Origin::Created
            };
            Ok(Owned { state, origin })
        } else {
            Err(state)
        }
    }

    /// AdoptExisting: the entity as this resource's if its tags say so, else taken over, unless
    /// another resource of this function owns it (never taken, adoption or not). The plan then
    /// tags a taken-over entity as this resource's and adopted.
    pub fn claim_or_adopt<T: Tagged>(&self, state: T) -> Result<Owned<T>, T> {
        match self.claim(state) {
            Err(state) if !state.tags().contains_key(TAG_STACK_ID) => Ok(Owned {
                state,
                origin: Origin::Adopted,
            }),
            claimed => claimed,
        }
    }
}

/// What IAM holds for a role.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoleState {
    pub arn: String,
    pub tags: Tags,
    pub description: Option<String>,
    pub max_session_duration: Option<i32>,
    pub permissions_boundary: Option<String>,
    /// ARNs of the attached managed policies.
    pub attached: BTreeSet<String>,
    /// The trust policy document, as IAM returns it (possibly URL-encoded).
    pub trust_policy: String,
}

/// What IAM holds for an instance profile.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProfileState {
    pub arn: String,
    pub path: String,
    pub tags: Tags,
    /// Names of the roles in the profile (IAM allows one).
    pub roles: Vec<String>,
}

impl Tagged for RoleState {
    fn tags(&self) -> &Tags {
        &self.tags
    }
}

impl Tagged for ProfileState {
    fn tags(&self) -> &Tags {
        &self.tags
    }
}

impl ProfileState {
    pub fn holds(&self, role: &RoleName) -> bool {
        self.roles.iter().any(|r| role.same_entity(r))
    }
}

/// The entities one resource consists of, with their names resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub profile: ProfileName,
    pub role: RoleName,
}

impl Target {
    /// Names for new entities: the template's, or generated from the request; a role the template
    /// does not name is named after the profile ([`names::default_role`]).
    pub fn new_for(spec: &Spec, request: &Request) -> Self {
        let generated = || {
            names::generated(
                request.stack_id(),
                request.logical_id(),
                request.request_id(),
            )
        };
        let profile = spec.instance_profile_name.clone().unwrap_or_else(|| {
            ProfileName::parse(&generated()).expect("generated names are valid profile names")
        });
        let role = spec
            .role_name
            .clone()
            .unwrap_or_else(|| names::default_role(&profile));
        Self { profile, role }
    }
}

/// The PhysicalResourceId to answer with when the work cannot finish (a timeout or a panic): the
/// request's own for Update and Delete; for Create the name the profile gets, so that the Delete
/// CloudFormation sends on rollback finds whatever was made.
pub fn fallback_physical_id(rules: &Rules, request: &Request) -> String {
    match &request.kind {
        Kind::Update { physical_id, .. } | Kind::Delete { physical_id } => physical_id.clone(),
        Kind::Create => match Spec::prepare(rules, &request.properties, request.stack_id()) {
            Ok((spec, _)) => Target::new_for(&spec, request).profile.to_string(),
            Err(_) => names::generated(
                request.stack_id(),
                request.logical_id(),
                request.request_id(),
            ),
        },
    }
}

/// The desired state of a resource's entities.
#[derive(Debug, Clone, Copy)]
pub struct Desired<'a> {
    pub target: &'a Target,
    pub spec: &'a Spec,
    pub owner: &'a Owner,
    /// What the delivery doing the work tags what it creates with ([`creation_tag`]).
    pub creation: &'a str,
}

impl Desired<'_> {
    /// The SUCCESS answer once the entities exist, with the attributes `Fn::GetAtt` reads.
    pub fn answer(&self, role_arn: &str, profile_arn: &str, verb: &str) -> Outcome {
        let t = self.target;
        let policies: Vec<&str> = self.spec.policies.iter().map(String::as_str).collect();
        let data = BTreeMap::from([
            ("Arn".to_owned(), profile_arn.to_owned()),
            ("InstanceProfileName".to_owned(), t.profile.to_string()),
            ("InstanceProfileArn".to_owned(), profile_arn.to_owned()),
            ("RoleName".to_owned(), t.role.to_string()),
            ("RoleArn".to_owned(), role_arn.to_owned()),
            ("ManagedPolicyArns".to_owned(), policies.join(",")),
        ]);
        Outcome {
            data,
            ..Outcome::success(
                t.profile.to_string(),
                format!("{verb} instance profile {} with role {}", t.profile, t.role),
            )
        }
    }

    pub fn role_tags(&self) -> Tags {
        let mut tags = self.spec.tags.clone();
        tags.extend(self.owner.tags());
        tags
    }

    pub fn profile_tags(&self) -> Tags {
        let mut tags = self.role_tags();
        tags.insert(TAG_ROLE_NAME.into(), self.target.role.to_string());
        tags
    }

    /// What CreateRole tags the role with: [`Self::role_tags`] and the creating request's id,
    /// which no later change touches.
    pub fn role_creation_tags(&self) -> Tags {
        self.with_request_id(self.role_tags())
    }

    /// What CreateInstanceProfile tags the profile with (see [`Self::role_creation_tags`]).
    pub fn profile_creation_tags(&self) -> Tags {
        self.with_request_id(self.profile_tags())
    }

    fn with_request_id(&self, mut tags: Tags) -> Tags {
        tags.insert(TAG_REQUEST_ID.into(), self.creation.to_owned());
        tags
    }

    /// The role and the profile with the tags they have and those they are to carry: the
    /// template's and the function's own; on an adopted entity the adopted mark too, and on one
    /// this delivery is taking over its request-id tag (a failed replacement gives back what it
    /// adopted by that tag, and leaves what an earlier delivery adopted, which may have answered
    /// SUCCESS). The request-id tag is set once, like the ownership tags.
    fn entity_tags<'e>(
        &self,
        role: &'e Owned<RoleState>,
        profile: &'e Owned<ProfileState>,
    ) -> [EntityTags<'e>; 2] {
        let entity = |kind, name, adopted, have: &'e Tags, mut wanted: Tags| {
            if adopted {
                wanted.insert(TAG_ADOPTED.into(), "true".into());
                if !self.owner.owns(have) {
                    wanted = self.with_request_id(wanted);
                }
            }
            EntityTags {
                kind,
                name,
                adopted,
                have,
                wanted,
            }
        };
        [
            entity(
                Entity::Role,
                self.target.role.to_string(),
                role.adopted(),
                &role.tags,
                self.role_tags(),
            ),
            entity(
                Entity::Profile,
                self.target.profile.to_string(),
                profile.adopted(),
                &profile.tags,
                self.profile_tags(),
            ),
        ]
    }

    /// The state of a role this request has just created: everything CreateRole sets is in place,
    /// the ownership tags included.
    pub fn created_role(&self, arn: String) -> Owned<RoleState> {
        Owned {
            state: RoleState {
                arn,
                tags: self.role_creation_tags(),
                description: Some(self.spec.description.clone()),
                max_session_duration: Some(self.spec.max_session_duration),
                permissions_boundary: self.spec.permissions_boundary.clone(),
                attached: BTreeSet::new(),
                trust_policy: crate::spec::TRUST_POLICY.to_owned(),
            },
            origin: Origin::Created,
        }
    }

    /// The state of an instance profile this request has just created.
    pub fn created_profile(&self, arn: String) -> Owned<ProfileState> {
        Owned {
            state: ProfileState {
                arn,
                path: self.spec.path.as_str().to_owned(),
                tags: self.profile_creation_tags(),
                roles: Vec::new(),
            },
            origin: Origin::Created,
        }
    }
}

/// One IAM call. Role calls act on [`Target::role`], profile calls on [`Target::profile`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    RemoveRoleFromProfile(String),
    UpdateTrustPolicy(String),
    AttachPolicy(String),
    PutInlinePolicy(PolicyName, String),
    UpdateRole {
        description: String,
        max_session_duration: i32,
    },
    PutPermissionsBoundary(String),
    TagRole(Tags),
    TagProfile(Tags),
    AddRoleToProfile,
    DetachPolicy(String),
    DeleteInlinePolicy(PolicyName),
    DeletePermissionsBoundary,
    UntagRole(Vec<String>),
    UntagProfile(Vec<String>),
    DeleteProfile,
    DeleteRole,
}

/// Rounds of independent calls, to run in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub rounds: Vec<Vec<Step>>,
}

impl Plan {
    fn from_rounds(rounds: impl IntoIterator<Item = Vec<Step>>) -> Self {
        Self {
            rounds: rounds.into_iter().filter(|r| !r.is_empty()).collect(),
        }
    }

    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.rounds.iter().flatten()
    }

    pub fn is_empty(&self) -> bool {
        self.rounds.is_empty()
    }

    /// The same calls with the policy detachments first, for a role at its quota of managed
    /// policies (PoliciesPerRole), where attaching before detaching would need more than it
    /// allows. `None` when the plan detaches nothing.
    pub fn detaching_first(&self) -> Option<Plan> {
        let is_detach = |s: &Step| matches!(s, Step::DetachPolicy(_));
        let detach: Vec<Step> = self.steps().filter(|s| is_detach(s)).cloned().collect();
        if detach.is_empty() {
            return None;
        }
        let rest = self
            .rounds
            .iter()
            .map(|round| round.iter().filter(|s| !is_detach(s)).cloned().collect());
        Some(Plan::from_rounds(std::iter::once(detach).chain(rest)))
    }

    /// The same calls without the inline policies an adopted role already has with the same
    /// document (`have`, as IAM returns them): nothing to put there.
    pub fn without_unchanged_inline(&self, have: &InlineDocuments) -> Plan {
        let unchanged = |s: &Step| match s {
            Step::PutInlinePolicy(name, want) => have
                .get(name)
                .is_some_and(|have| crate::spec::same_policy(have, want)),
            _ => false,
        };
        Plan::from_rounds(
            self.rounds
                .iter()
                .map(|round| round.iter().filter(|s| !unchanged(s)).cloned().collect()),
        )
    }

    /// How many managed policies the plan attaches.
    pub fn attachments(&self) -> usize {
        self.steps()
            .filter(|s| matches!(s, Step::AttachPolicy(_)))
            .count()
    }
}

/// Tags to set (missing or with another value) and keys to remove (managed before, wanted no more).
fn tag_changes(desired: &Tags, actual: &Tags, previously: Option<&Tags>) -> (Tags, Vec<String>) {
    // IAM compares tag keys regardless of case: `Team` and `team` are one tag. A key whose case
    // alone changed is the tag that is there already; removing the old spelling would remove it.
    let find = |tags: &Tags, key: &str| {
        tags.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(k, v)| (k.clone(), v.clone()))
    };
    let set: Tags = desired
        .iter()
        .filter(|(k, v)| find(actual, k).map(|(_, have)| have) != Some((*v).clone()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let remove = previously
        .into_iter()
        .flat_map(|old| old.keys())
        .filter(|k| find(desired, k).is_none())
        .filter_map(|k| find(actual, k).map(|(spelled, _)| spelled))
        .collect();
    (set, remove)
}

/// The calls that converge an existing, owned role and profile on `desired`.
///
/// `old` is the state the template described before (an Update's OldResourceProperties). Only what
/// it listed and the new one does not is removed: a policy or tag that someone else added to the role
/// is not this resource's to take away. A policy the template lists but IAM lacks (detached out of
/// band) is attached again.
pub fn converge(
    desired: Desired<'_>,
    role: &Owned<RoleState>,
    profile: &Owned<ProfileState>,
    old: Option<&Spec>,
) -> Plan {
    let spec = desired.spec;
    // First round: take over adopted entities, empty an owned profile of a stranger role.
    let mut empty_profile = Vec::new();
    let mut grant = Vec::new();
    let mut revoke = Vec::new();

    // An adopted profile that holds another role is refused before planning; an owned one is
    // emptied of roles put there out of band.
    if !profile.adopted() {
        empty_profile.extend(
            profile
                .roles
                .iter()
                .filter(|r| !desired.target.role.same_entity(r))
                .map(|r| Step::RemoveRoleFromProfile(r.clone())),
        );
    }
    if !profile.holds(&desired.target.role) {
        grant.push(Step::AddRoleToProfile);
    }

    grant.extend(
        spec.policies
            .difference(&role.attached)
            .map(|arn| Step::AttachPolicy(arn.clone())),
    );
    grant.extend(
        spec.inline_policies
            .iter()
            .map(|(name, doc)| Step::PutInlinePolicy(name.clone(), doc.clone())),
    );
    if !crate::spec::trust_allows_ec2(&role.trust_policy) {
        // An adopted role gets here only with RepairTrustPolicy; the other principals stay.
        grant.push(Step::UpdateTrustPolicy(crate::spec::trust_with_ec2(
            &role.trust_policy,
        )));
    }
    // An adopted role keeps its own description and session duration.
    if !role.adopted()
        && (role.description.as_deref() != Some(spec.description.as_str())
            || role.max_session_duration != Some(spec.max_session_duration))
    {
        grant.push(Step::UpdateRole {
            description: spec.description.clone(),
            max_session_duration: spec.max_session_duration,
        });
    }
    // An adopted role's boundary is never changed (the lifecycle refuses a different one first).
    match (&spec.permissions_boundary, &role.permissions_boundary) {
        _ if role.adopted() => {}
        (Some(want), have) if have.as_ref() != Some(want) => {
            grant.push(Step::PutPermissionsBoundary(want.clone()))
        }
        (None, Some(_)) if old.is_some_and(|o| o.permissions_boundary.is_some()) => {
            revoke.push(Step::DeletePermissionsBoundary)
        }
        _ => {}
    }

    let old_tags = old.map(|o| &o.tags);
    // An entity being adopted is tagged as this resource's in a round of its own, before any
    // other change: the execution role allows changes only to entities that carry the tags.
    // Tags dropped from the template go after the new ones are set, unless the entity has no
    // room for both at once: IAM counts its 50 at every TagRole. Then they go first.
    for e in desired.entity_tags(role, profile) {
        let (set, remove) = tag_changes(&e.wanted, e.have, old_tags);
        if !remove.is_empty() {
            if tag_count(e.have.keys().chain(set.keys())) > TAGS_PER_ENTITY {
                empty_profile.push(e.kind.untag(remove));
            } else {
                revoke.push(e.kind.untag(remove));
            }
        }
        if !set.is_empty() {
            if desired.owner.owns(e.have) {
                grant.push(e.kind.tag(set));
            } else {
                empty_profile.push(e.kind.tag(set));
            }
        }
    }

    if let Some(old) = old {
        // Detached whether or not the read showed them: a read right after an attach can come
        // from an IAM replica that does not show it yet, and detaching what is not attached is
        // answered NoSuchEntity, which means done.
        revoke.extend(
            old.policies
                .iter()
                .filter(|arn| !spec.policies.contains(*arn))
                .map(|arn| Step::DetachPolicy(arn.clone())),
        );
        revoke.extend(
            old.inline_policies
                .keys()
                .filter(|name| !spec.inline_policies.contains_key(*name))
                .map(|name| Step::DeleteInlinePolicy(name.clone())),
        );
    }

    if role.adopted() || profile.adopted() {
        // Nothing that was there before adoption is ever removed: only additions.
        revoke.clear();
    }
    Plan::from_rounds([empty_profile, grant, revoke])
}

/// IAM's quota of tags on one role or instance profile.
pub const TAGS_PER_ENTITY: usize = 50;

/// Inline policies an adopted role has among those the template lists: name to document, as IAM
/// returns it (URL-encoded).
pub type InlineDocuments = BTreeMap<PolicyName, String>;

/// What a template asks of an adopted role or profile that would replace something it had before
/// it was adopted, which the function never does: the entity is someone else's, other environments
/// may share it, and the function cannot tell a value it put from one that was there, so a value
/// once there stays. Each message names the property first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdoptionConflict {
    #[error(
        "InlinePolicies.{name}: role {role} was adopted with an inline policy {name} whose document \
         differs from the template's, and what an adopted role has is never changed; give the \
         template's policy a new name (the role keeps {name} as it is), or the document the role has"
    )]
    InlinePolicy { role: String, name: PolicyName },
    #[error(
        "Tags.{key}: {entity} {name} was adopted with the tag {have_key}={have:?}, and a tag of an \
         adopted entity never changes its value, so it cannot become {want:?}; use another key, or \
         the value the {entity} has"
    )]
    TagValue {
        entity: &'static str,
        name: String,
        key: String,
        have_key: String,
        have: String,
        want: String,
    },
    #[error(
        "Description: role {role} was adopted with {}, and the description of an adopted role is \
         never changed; remove Description from the template (the role keeps its own), or give the \
         one it has",
        have.as_ref().map_or("no description".to_owned(), |d| format!("the description {d:?}"))
    )]
    Description { role: String, have: Option<String> },
    #[error(
        "MaxSessionDuration: role {role} was adopted with a maximum session duration of {have} \
         seconds, and that of an adopted role is never changed, so it cannot become {want}; remove \
         MaxSessionDuration from the template (the role keeps its own), or give the one it has"
    )]
    MaxSessionDuration { role: String, have: i32, want: i32 },
    #[error(
        "Tags: {entity} {name} has {have} tags and would have {total} with the template's Tags and \
         the function's own eb-instance-profile tags, over IAM's quota of {TAGS_PER_ENTITY} tags per \
         {entity}; list fewer Tags, or remove some from the {entity}"
    )]
    TagQuota {
        entity: &'static str,
        name: String,
        have: usize,
        total: usize,
    },
}

/// What `desired` would replace on an adopted role or profile (see [`AdoptionConflict`]), if
/// anything; `None` lets the plan run. `inline` holds the adopted role's own documents of the inline
/// policies the template lists. Description and MaxSessionDuration count only when the template
/// gives them; tag keys compare regardless of case, as IAM compares them. Entities this resource
/// made are not checked: they hold only what it put there.
pub fn adoption_conflict(
    desired: Desired<'_>,
    role: &Owned<RoleState>,
    profile: &Owned<ProfileState>,
    inline: &InlineDocuments,
    old: Option<&Spec>,
) -> Option<AdoptionConflict> {
    let (spec, target) = (desired.spec, desired.target);
    let shown = |text: &str| crate::spec::truncate(text, 200);
    // The function never writes an adopted role's description or session duration: a value the
    // previous template gave too is no change asked for (a stack adopted before these were
    // refused, and the rollback Update of any stack, keep working).
    let unchanged_description =
        old.is_some_and(|o| o.description_given && o.description == spec.description);
    let unchanged_session = old.is_some_and(|o| {
        o.max_session_duration_given && o.max_session_duration == spec.max_session_duration
    });
    if role.adopted() {
        let name = target.role.to_string();
        if spec.description_given
            && !unchanged_description
            && role.description.as_deref().unwrap_or("") != spec.description
        {
            return Some(AdoptionConflict::Description {
                role: name,
                have: role.description.as_deref().map(shown),
            });
        }
        if let Some(have) = role.max_session_duration
            && spec.max_session_duration_given
            && !unchanged_session
            && have != spec.max_session_duration
        {
            return Some(AdoptionConflict::MaxSessionDuration {
                role: name,
                have,
                want: spec.max_session_duration,
            });
        }
        if let Some(policy) = spec.inline_policies.iter().find_map(|(policy, want)| {
            let have = inline.get(policy)?;
            (!crate::spec::same_policy(have, want)).then_some(policy)
        }) {
            return Some(AdoptionConflict::InlinePolicy {
                role: name,
                name: policy.clone(),
            });
        }
    }
    for e in desired.entity_tags(role, profile) {
        if !e.adopted {
            continue;
        }
        let (entity, name) = (e.kind.noun(), e.name);
        for (key, want) in &spec.tags {
            if let Some((have_key, value)) =
                e.have.iter().find(|(k, _)| k.eq_ignore_ascii_case(key))
                && value != want
            {
                return Some(AdoptionConflict::TagValue {
                    entity,
                    name,
                    key: key.clone(),
                    have_key: have_key.clone(),
                    have: shown(value),
                    want: shown(want),
                });
            }
        }
        // The entity's tags with all it is to carry.
        let total = tag_count(e.have.keys().chain(e.wanted.keys()));
        if total > TAGS_PER_ENTITY {
            return Some(AdoptionConflict::TagQuota {
                entity,
                name,
                have: e.have.len(),
                total,
            });
        }
    }
    None
}

/// An Update would take an entity this resource made past IAM's 50 tags: the template's Tags with
/// the function's own that the entity carries (a profile made before the request-id tag carries one
/// fewer, and has room for one more user tag).
#[derive(Debug, thiserror::Error)]
#[error(
    "Tags: {entity} {name} would have {total} tags with the template's Tags and the function's own \
     eb-instance-profile tags, over IAM's quota of {TAGS_PER_ENTITY} tags per {entity}; list fewer \
     Tags"
)]
pub struct TagOverflow {
    pub entity: &'static str,
    pub name: String,
    pub total: usize,
}

/// What [`converge`] would leave an entity this resource made with, if over IAM's 50 tags; `None`
/// lets the plan run. Adopted entities are counted by [`adoption_conflict`].
pub fn tag_overflow(
    desired: Desired<'_>,
    role: &Owned<RoleState>,
    profile: &Owned<ProfileState>,
    old: Option<&Spec>,
) -> Option<TagOverflow> {
    let old_tags = old.map(|o| &o.tags);
    desired
        .entity_tags(role, profile)
        .into_iter()
        .filter(|e| !e.adopted)
        .find_map(|e| {
            // What is left once the plan ran; dropped tags go first where both would not fit.
            let (set, remove) = tag_changes(&e.wanted, e.have, old_tags);
            let total = tag_count(
                e.have
                    .keys()
                    .filter(|k| !remove.contains(k))
                    .chain(set.keys()),
            );
            (total > TAGS_PER_ENTITY).then(|| TagOverflow {
                entity: e.kind.noun(),
                name: e.name,
                total,
            })
        })
}

/// The two entities of a resource, where the plan treats them alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entity {
    Role,
    Profile,
}

impl Entity {
    /// As IAM's messages and the Reasons name it.
    fn noun(self) -> &'static str {
        match self {
            Self::Role => "role",
            Self::Profile => "instance profile",
        }
    }

    fn tag(self, tags: Tags) -> Step {
        match self {
            Self::Role => Step::TagRole(tags),
            Self::Profile => Step::TagProfile(tags),
        }
    }

    fn untag(self, keys: Vec<String>) -> Step {
        match self {
            Self::Role => Step::UntagRole(keys),
            Self::Profile => Step::UntagProfile(keys),
        }
    }
}

/// A role or profile with the tags it has and those a build is to leave on it
/// ([`Desired::entity_tags`]).
struct EntityTags<'a> {
    kind: Entity,
    name: String,
    adopted: bool,
    have: &'a Tags,
    wanted: Tags,
}

/// How many tags `keys` are to IAM, which compares keys regardless of case.
fn tag_count<'k>(keys: impl Iterator<Item = &'k String>) -> usize {
    keys.map(|k| k.to_ascii_lowercase())
        .collect::<BTreeSet<_>>()
        .len()
}

/// Removes this resource's own tags from an adopted entity, which Delete otherwise leaves alone.
fn release(tags: &Tags) -> Vec<String> {
    OWN_TAG_KEYS
        .iter()
        .filter(|k| tags.contains_key(**k))
        .map(|k| (*k).to_owned())
        .collect()
}

/// The owned entities found at a resource's names, to be deleted.
#[derive(Debug, Clone, Default)]
pub struct Found {
    pub profile: Option<FoundProfile>,
    pub role: Option<FoundRole>,
}

/// An owned instance profile found by a teardown, and what becomes of it.
#[derive(Debug, Clone)]
pub struct FoundProfile {
    pub state: Owned<ProfileState>,
    pub fate: Fate,
}

/// What a teardown does with an owned instance profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Deleted (given back, if adopted).
    Delete,
    /// Kept, as it was there before the request being undone: only the role being deleted
    /// leaves it.
    Keep,
}

/// An owned role found by a teardown, with the names of its inline policies.
#[derive(Debug, Clone)]
pub struct FoundRole {
    pub state: Owned<RoleState>,
    pub inline: Vec<PolicyName>,
}

/// The calls that delete owned entities, in the order IAM requires: a role leaves its profile and
/// loses its policies before either is deleted. Adopted entities stay, with their policies, and
/// lose only this resource's tags.
///
/// A role still in a profile that is not this resource's stays there; DeleteRole then fails with
/// DeleteConflict, which is reported, rather than changing someone else's profile.
pub fn teardown(target: &Target, found: &Found) -> Plan {
    let mut detach = Vec::new();
    let mut delete = Vec::new();
    let role_goes = found.role.as_ref().is_some_and(|r| !r.state.adopted());
    match &found.profile {
        Some(FoundProfile {
            state: profile,
            fate: Fate::Delete,
        }) if !profile.adopted() => {
            detach.extend(
                profile
                    .roles
                    .iter()
                    .map(|r| Step::RemoveRoleFromProfile(r.clone())),
            );
            delete.push(Step::DeleteProfile);
        }
        Some(FoundProfile {
            state: profile,
            fate,
        }) => {
            if role_goes && profile.holds(&target.role) {
                detach.push(Step::RemoveRoleFromProfile(target.role.to_string()));
            }
            // A kept adopted profile stays this resource's: another delivery took it over.
            if profile.adopted() && *fate == Fate::Delete {
                delete.push(Step::UntagProfile(release(&profile.tags)));
            }
        }
        None => {}
    }
    match &found.role {
        Some(FoundRole { state: role, .. }) if role.adopted() => {
            delete.push(Step::UntagRole(release(&role.tags)))
        }
        Some(FoundRole {
            state: role,
            inline,
        }) => {
            detach.extend(role.attached.iter().map(|a| Step::DetachPolicy(a.clone())));
            detach.extend(inline.iter().map(|n| Step::DeleteInlinePolicy(n.clone())));
            delete.push(Step::DeleteRole);
        }
        None => {}
    }
    Plan::from_rounds([detach, delete])
}

#[cfg(test)]
mod tests {
    #[test]
    fn tag_keys_compare_regardless_of_case() {
        let tags = |pairs: &[(&str, &str)]| -> Tags {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let actual = tags(&[("team", "web"), ("owner", "ops")]);
        // Only the case of a key changed: nothing to set, nothing to remove.
        let (set, remove) = tag_changes(
            &tags(&[("Team", "web")]),
            &actual,
            Some(&tags(&[("team", "web")])),
        );
        assert!(set.is_empty() && remove.is_empty(), "{set:?} {remove:?}");
        // Its value changed too: set once, under the new spelling, never removed.
        let (set, remove) = tag_changes(
            &tags(&[("TEAM", "api")]),
            &actual,
            Some(&tags(&[("team", "web")])),
        );
        assert_eq!(set, tags(&[("TEAM", "api")]));
        assert!(remove.is_empty(), "{remove:?}");
        // Dropped from the template: removed as IAM spells it.
        let (set, remove) = tag_changes(&Tags::new(), &actual, Some(&tags(&[("Owner", "ops")])));
        assert!(set.is_empty());
        assert_eq!(remove, vec!["owner".to_string()]);
    }

    use super::*;
    use crate::spec::Partition;
    use serde_json::{Value, json};

    fn spec(props: Value) -> Spec {
        let partition =
            Partition::from_stack_id("arn:aws:cloudformation:us-east-1:1:stack/s/i").unwrap();
        Spec::parse(&props, &partition).unwrap()
    }

    fn owner() -> Owner {
        Owner {
            stack_id: "arn:aws:cloudformation:us-east-1:1:stack/s/i".into(),
            logical_id: "Profile".into(),
        }
    }

    fn target() -> Target {
        Target {
            profile: ProfileName::parse("p").unwrap(),
            role: RoleName::parse("r").unwrap(),
        }
    }

    fn web() -> String {
        "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier".into()
    }

    /// Runs `f` with the desired state of `s` for the test target and owner.
    fn with_desired<T>(s: &Spec, f: impl FnOnce(Desired<'_>) -> T) -> T {
        let (t, o) = (target(), owner());
        f(Desired {
            target: &t,
            spec: s,
            owner: &o,
            creation: "req d1",
        })
    }

    /// IAM's state once `s` was fully applied: policies attached, the role in the profile.
    fn applied(s: &Spec) -> (Owned<RoleState>, Owned<ProfileState>) {
        with_desired(s, |d| {
            let mut role = d.created_role("arn".into());
            role.state.attached = s.policies.clone();
            let mut profile = d.created_profile("arn".into());
            profile.state.roles.push("r".into());
            (role, profile)
        })
    }

    fn converge_on(
        s: &Spec,
        role: &Owned<RoleState>,
        profile: &Owned<ProfileState>,
        old: Option<&Spec>,
    ) -> Plan {
        with_desired(s, |d| converge(d, role, profile, old))
    }

    #[test]
    fn ownership_needs_both_tags() {
        let o = owner();
        assert!(o.owns(&o.tags()));
        let mut other_logical = o.tags();
        other_logical.insert(TAG_LOGICAL_ID.into(), "Other".into());
        assert!(!o.owns(&other_logical));
        let mut only_stack = o.tags();
        only_stack.remove(TAG_LOGICAL_ID);
        assert!(!o.owns(&only_stack));
        assert!(!o.owns(&Tags::new()));
        let foreign = ProfileState::default();
        assert_eq!(o.claim(foreign.clone()), Err(foreign));
        let mine = ProfileState {
            tags: o.tags(),
            ..ProfileState::default()
        };
        assert_eq!(o.claim(mine.clone()).map(Owned::into_inner), Ok(mine));
    }

    #[test]
    fn only_an_entity_of_no_resource_is_adopted() {
        let o = owner();
        let adopted = o.claim_or_adopt(RoleState::default()).unwrap();
        assert_eq!(adopted.origin(), Origin::Adopted);
        let mut other = o.tags();
        other.insert(TAG_LOGICAL_ID.into(), "Other".into());
        let theirs = RoleState {
            tags: other,
            ..RoleState::default()
        };
        assert_eq!(o.claim_or_adopt(theirs.clone()), Err(theirs));
        let mine = RoleState {
            tags: o.tags(),
            ..RoleState::default()
        };
        assert_eq!(o.claim_or_adopt(mine).unwrap().origin(), Origin::Created);
    }

    #[test]
    fn what_a_request_created_carries_its_id() {
        let s = spec(json!({}));
        let role = with_desired(&s, |d| d.created_role("arn".into()));
        assert!(role.created_by("req") && role.created_in("req d1"));
        assert!(!role.created_by("re") && !role.created_by("another request"));
        assert!(
            !role.created_in("req d2"),
            "another delivery of the same request"
        );
        // Claimed back from IAM, the tag still tells.
        let claimed = owner().claim(role.into_inner()).unwrap();
        assert!(claimed.created_by("req") && claimed.created_in("req d1"));
        // An entity adopted before adoption recorded the request is no request's.
        let mut tags = owner().tags();
        tags.insert(TAG_ADOPTED.into(), "true".into());
        let adopted = owner()
            .claim(RoleState {
                tags: tags.clone(),
                ..RoleState::default()
            })
            .unwrap();
        assert!(adopted.adopted() && !adopted.created_by("req"));
        // One adopted now carries the delivery that took it over.
        tags.insert(TAG_REQUEST_ID.into(), "req d1".into());
        let adopted = owner()
            .claim(RoleState {
                tags,
                ..RoleState::default()
            })
            .unwrap();
        assert!(adopted.created_by("req") && adopted.created_in("req d1"));
        assert!(!adopted.created_in("req d2"));
    }

    #[test]
    fn a_request_id_is_labelled_as_a_tag_value_can_hold_it() {
        let uuid = "4c7e7f1a-0b8e-4b7e-9a49-1d3f0c9f6d2e";
        assert_eq!(request_label(uuid), uuid);
        assert_eq!(creation_tag(uuid, "d1"), format!("{uuid} d1"));
        let odd = [
            "",
            "req \"quoted\" \\ x",
            "line\nbreak",
            "tab\there",
            &"r".repeat(REQUEST_LABEL_MAX + 1),
            "ünïcode",
            "sha256:0000",
        ];
        for id in odd {
            let label = request_label(id);
            assert!(
                label.starts_with("sha256:") && label.len() == 71,
                "{id:?}: {label}"
            );
            assert_ne!(label, request_label(&format!("{id}x")));
        }
        assert_eq!(
            request_label(&"r".repeat(REQUEST_LABEL_MAX)).len(),
            REQUEST_LABEL_MAX
        );
        // Whatever the id, its creation tag is a tag value IAM accepts, and names that request.
        for id in [uuid, "a b", "a"].into_iter().chain(odd) {
            let tag = creation_tag(id, &names::delivery_mark());
            assert!(
                tag.chars().count() <= 256 && crate::spec::tag_chars_ok(&tag),
                "{tag}"
            );
            let role = owner()
                .claim(RoleState {
                    tags: owner()
                        .tags()
                        .into_iter()
                        .chain([(TAG_REQUEST_ID.to_owned(), tag)])
                        .collect(),
                    ..RoleState::default()
                })
                .unwrap();
            assert!(role.created_by(id), "{id:?}");
        }
        // A RequestId that is a prefix of another's, up to a space, is another request.
        let role = owner()
            .claim(RoleState {
                tags: owner()
                    .tags()
                    .into_iter()
                    .chain([(TAG_REQUEST_ID.to_owned(), creation_tag("a b", "d1"))])
                    .collect(),
                ..RoleState::default()
            })
            .unwrap();
        assert!(role.created_by("a b") && !role.created_by("a"));
    }

    #[test]
    fn fresh_entities_get_policies_and_the_role_in_one_round() {
        let s = spec(json!({"InlinePolicies": {"i": {"Statement": []}}}));
        let (role, profile) = with_desired(&s, |d| {
            (
                d.created_role("arn".into()),
                d.created_profile("arn".into()),
            )
        });
        let plan = converge_on(&s, &role, &profile, None);
        assert_eq!(plan.rounds.len(), 1);
        let steps = &plan.rounds[0];
        assert_eq!(steps.len(), 5, "{steps:?}");
        assert!(steps.contains(&Step::AddRoleToProfile));
        assert!(steps.contains(&Step::AttachPolicy(web())));
        assert!(steps.iter().any(|s| matches!(s, Step::PutInlinePolicy(..))));
    }

    #[test]
    fn converged_state_needs_no_calls() {
        let s = spec(json!({"Tags": [{"Key": "a", "Value": "b"}]}));
        let (role, mut profile) = applied(&s);
        profile.state.roles = vec!["R".into()];
        assert!(converge_on(&s, &role, &profile, Some(&s)).is_empty());
    }

    #[test]
    fn new_policies_are_attached_before_removed_ones_are_detached() {
        let old = spec(json!({"Tiers": ["WorkerTier"]}));
        let new = spec(json!({"Tiers": ["WebTier"]}));
        let (role, profile) = applied(&old);
        assert_eq!(
            converge_on(&new, &role, &profile, Some(&old)).rounds,
            vec![
                vec![Step::AttachPolicy(web())],
                vec![Step::DetachPolicy(
                    "arn:aws:iam::aws:policy/AWSElasticBeanstalkWorkerTier".into()
                )],
            ]
        );
    }

    #[test]
    fn at_the_quota_removed_policies_are_detached_first() {
        let old = spec(json!({"Tiers": ["WorkerTier"], "ManagedPolicyArns": ["ReadOnlyAccess"]}));
        let new = spec(json!({"Tiers": ["WebTier"], "ManagedPolicyArns": ["ReadOnlyAccess"]}));
        let (role, profile) = applied(&old);
        let plan = converge_on(&new, &role, &profile, Some(&old));
        let worker = "arn:aws:iam::aws:policy/AWSElasticBeanstalkWorkerTier".to_owned();
        assert_eq!(
            plan.detaching_first().unwrap().rounds,
            vec![
                vec![Step::DetachPolicy(worker)],
                vec![Step::AttachPolicy(web())],
            ]
        );
        assert_eq!(plan.attachments(), 1);
        let (role, profile) = applied(&new);
        assert_eq!(
            converge_on(&new, &role, &profile, Some(&new)).detaching_first(),
            None
        );
    }

    #[test]
    fn a_policy_detached_out_of_band_is_attached_again_and_strangers_stay() {
        let s = spec(json!({"Tiers": ["WebTier"]}));
        let (mut role, profile) = applied(&s);
        role.state.attached = BTreeSet::from(["arn:aws:iam::aws:policy/SomeoneElses".into()]);
        assert_eq!(
            converge_on(&s, &role, &profile, Some(&s)).rounds,
            vec![vec![Step::AttachPolicy(web())]]
        );
    }

    #[test]
    fn role_settings_tags_and_inline_policies_follow_the_template() {
        let old = spec(json!({
            "Tags": [{"Key": "keep", "Value": "1"}, {"Key": "drop", "Value": "x"}],
            "InlinePolicies": {"gone": {"Statement": []}},
            "PermissionsBoundary": "arn:aws:iam::123456789012:policy/B",
        }));
        let new = spec(json!({
            "Tags": [{"Key": "keep", "Value": "2"}],
            "Description": "new",
            "MaxSessionDuration": "7200",
        }));
        let (mut role, profile) = applied(&old);
        role.state.tags.insert("foreign".into(), "f".into());
        let keep = Tags::from([("keep".into(), "2".into())]);
        assert_eq!(
            converge_on(&new, &role, &profile, Some(&old)).rounds,
            vec![
                vec![
                    Step::UpdateRole {
                        description: "new".into(),
                        max_session_duration: 7200
                    },
                    Step::TagRole(keep.clone()),
                    Step::TagProfile(keep),
                ],
                vec![
                    Step::DeletePermissionsBoundary,
                    Step::UntagRole(vec!["drop".into()]),
                    Step::UntagProfile(vec!["drop".into()]),
                    Step::DeleteInlinePolicy(PolicyName::parse("gone").unwrap()),
                ],
            ]
        );
    }

    #[test]
    fn a_profile_holding_another_role_is_emptied_first() {
        let s = spec(json!({}));
        let (role, mut profile) = applied(&s);
        profile.state.roles = vec!["intruder".into()];
        assert_eq!(
            converge_on(&s, &role, &profile, None).rounds,
            vec![
                vec![Step::RemoveRoleFromProfile("intruder".into())],
                vec![Step::AddRoleToProfile],
            ]
        );
    }

    #[test]
    fn an_adopted_role_is_tagged_first_and_never_loses_anything() {
        let old = spec(json!({"Tiers": ["WebTier", "WorkerTier"]}));
        let new = spec(json!({"Tiers": ["WebTier"], "Description": "mine"}));
        let (role, profile) = applied(&old);
        let foreign = |mut tags: Tags| {
            tags.retain(|k, _| !k.starts_with("eb-instance-profile:"));
            tags
        };
        let (mut role, mut profile) = (role.into_inner(), profile.into_inner());
        role.tags = foreign(role.tags);
        role.attached.remove(&web());
        profile.tags = foreign(profile.tags);
        let o = owner();
        let (role, profile) = (
            o.claim_or_adopt(role).unwrap(),
            o.claim_or_adopt(profile).unwrap(),
        );
        let plan = converge_on(&new, &role, &profile, Some(&old));
        assert_eq!(plan.rounds.len(), 2, "{plan:?}");
        assert!(
            plan.rounds[0]
                .iter()
                .all(|s| matches!(s, Step::TagRole(_) | Step::TagProfile(_)))
        );
        let Step::TagRole(tags) = &plan.rounds[0][0] else {
            panic!("{plan:?}")
        };
        assert_eq!(tags.get(TAG_ADOPTED).map(String::as_str), Some("true"));
        // The delivery taking it over says so, for the undo of a failed replacement.
        assert_eq!(tags.get(TAG_REQUEST_ID).map(String::as_str), Some("req d1"));
        assert_eq!(plan.rounds[1], vec![Step::AttachPolicy(web())]);
        // Once taken over, a later request tags nothing again: the mark and the request-id tag
        // of the adopting delivery stay as they are.
        let (mut role, mut profile) = (role.into_inner(), profile.into_inner());
        for (step, tags) in [&plan.rounds[0][0], &plan.rounds[0][1]]
            .into_iter()
            .zip([&mut role.tags, &mut profile.tags])
        {
            let (Step::TagRole(set) | Step::TagProfile(set)) = step else {
                panic!("{step:?}")
            };
            tags.extend(set.clone());
        }
        role.attached.insert(web());
        let (role, profile) = (o.claim(role).unwrap(), o.claim(profile).unwrap());
        let next = Desired {
            target: &target(),
            spec: &new,
            owner: &o,
            creation: "another-req d2",
        };
        assert!(converge(next, &role, &profile, Some(&new)).is_empty());
    }

    /// A role and profile as someone else left them, adopted: the role with a description, a
    /// longer session, an inline policy `app` and the tag `Team=web`; the profile with `Team=web`.
    fn adopted_entities() -> (Owned<RoleState>, Owned<ProfileState>, InlineDocuments) {
        let team = Tags::from([("Team".to_owned(), "web".to_owned())]);
        let role = RoleState {
            tags: team.clone(),
            description: Some("the console's".into()),
            max_session_duration: Some(7200),
            trust_policy: crate::spec::TRUST_POLICY.into(),
            ..RoleState::default()
        };
        let profile = ProfileState {
            tags: team,
            roles: vec!["r".into()],
            ..ProfileState::default()
        };
        // As IAM returns it: URL-encoded, spaced as its author wrote it.
        let app = url::form_urlencoded::byte_serialize(
            br#"{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}"#,
        )
        .collect::<String>()
        .replace('+', "%20");
        let inline = InlineDocuments::from([(PolicyName::parse("app").unwrap(), app)]);
        let o = owner();
        (
            o.claim_or_adopt(role).unwrap(),
            o.claim_or_adopt(profile).unwrap(),
            inline,
        )
    }

    fn conflict_of(props: Value) -> Option<AdoptionConflict> {
        let s = spec(props);
        let (role, profile, inline) = adopted_entities();
        with_desired(&s, |d| adoption_conflict(d, &role, &profile, &inline, None))
    }

    #[test]
    fn a_value_the_previous_template_gave_too_is_no_conflict() {
        let props = json!({"Description": "theirs?", "MaxSessionDuration": "7200"});
        let (new, old) = (spec(props.clone()), spec(props));
        let (role, profile, inline) = adopted_entities();
        let conflict = |old| {
            with_desired(&new, |d| {
                adoption_conflict(d, &role, &profile, &inline, old)
            })
        };
        assert!(conflict(None).is_some());
        assert!(conflict(Some(&old)).is_none());
    }

    #[test]
    fn an_adopted_entity_keeps_every_value_it_had() {
        let app = json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}], "Version": "2012-10-17"});
        let put =
            json!({"Statement": [{"Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}]});
        let tag = |k: &str, v: &str| json!([{"Key": k, "Value": v}]);
        // What the role has, or nothing said: no conflict, whatever the case of a tag key.
        for same in [
            json!({}),
            json!({"InlinePolicies": {"app": app, "other": put}, "Tags": tag("team", "web")}),
            json!({"Description": "the console's", "MaxSessionDuration": "7200"}),
            json!({"Tags": tag("owner", "ops")}),
        ] {
            assert_eq!(conflict_of(same.clone()), None, "{same}");
        }
        let property = |props: Value| {
            conflict_of(props)
                .map(|c| c.to_string().split(':').next().unwrap().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(
            property(json!({"InlinePolicies": {"app": put}})),
            "InlinePolicies.app"
        );
        assert_eq!(property(json!({"Tags": tag("TEAM", "api")})), "Tags.TEAM");
        assert_eq!(property(json!({"Description": "mine"})), "Description");
        // The default text, given explicitly, is a value too.
        assert_eq!(
            property(json!({"Description": crate::spec::DEFAULT_DESCRIPTION})),
            "Description"
        );
        assert_eq!(
            property(json!({"MaxSessionDuration": 3600})),
            "MaxSessionDuration"
        );
        let err = conflict_of(json!({"Tags": tag("team", "api")}))
            .unwrap()
            .to_string();
        assert!(err.contains("role r") && err.contains("\"web\""), "{err}");
    }

    #[test]
    fn an_adopted_entity_gets_no_more_than_fifty_tags() {
        let (role, profile, inline) = adopted_entities();
        let (mut role, profile) = (role.into_inner(), profile.into_inner());
        // 45 of its own, the user's `Team` among them, and 4 of the function's to come (stack-id,
        // logical-id, adopted, request-id): 49. One new user tag makes 50; a second is one too
        // many.
        role.tags
            .extend((0..44).map(|i| (format!("k{i}"), "v".to_owned())));
        let o = owner();
        let (role, profile) = (
            o.claim_or_adopt(role).unwrap(),
            o.claim_or_adopt(profile).unwrap(),
        );
        let tags = |n: usize| {
            let mut tags = vec![
                json!({"Key": "team", "Value": "web"}),
                json!({"Key": "K0", "Value": "v"}),
            ];
            tags.extend((0..n).map(|i| json!({"Key": format!("new{i}"), "Value": "v"})));
            Value::Array(tags)
        };
        let check = |n: usize| {
            let s = spec(json!({"Tags": tags(n)}));
            with_desired(&s, |d| adoption_conflict(d, &role, &profile, &inline, None))
        };
        assert_eq!(check(1), None);
        let Some(AdoptionConflict::TagQuota {
            entity,
            have,
            total,
            ..
        }) = check(2)
        else {
            panic!("{:?}", check(2))
        };
        assert_eq!((entity, have, total), ("role", 45, 51));
        assert!(
            check(3)
                .unwrap()
                .to_string()
                .starts_with("Tags: role r has 45 tags")
        );
    }

    #[test]
    fn an_entity_the_resource_made_gets_no_more_than_fifty_tags() {
        let tags = |n: usize| {
            Value::Array(
                (0..n)
                    .map(|i| json!({"Key": format!("k{i}"), "Value": "v"}))
                    .collect(),
            )
        };
        let (s46, s47) = (
            spec(json!({"Tags": tags(46)})),
            spec(json!({"Tags": tags(47)})),
        );
        let (role, profile) = applied(&s46);
        assert!(with_desired(&s46, |d| tag_overflow(d, &role, &profile, Some(&s46))).is_none());
        // Made now, the profile carries four of the function's tags: a 47th user tag is one over.
        let over = with_desired(&s47, |d| tag_overflow(d, &role, &profile, Some(&s46))).unwrap();
        assert_eq!((over.entity, over.total), ("instance profile", 51));
        assert!(
            over.to_string()
                .starts_with("Tags: instance profile p would have 51")
        );
        // Made before the request-id tag, it has room for it.
        let (mut role, mut profile) = (role.into_inner(), profile.into_inner());
        role.tags.remove(TAG_REQUEST_ID);
        profile.tags.remove(TAG_REQUEST_ID);
        let (role, profile) = (
            owner().claim(role).unwrap(),
            owner().claim(profile).unwrap(),
        );
        assert!(with_desired(&s47, |d| tag_overflow(d, &role, &profile, Some(&s46))).is_none());
        // Tags the old template listed and the new one drops make room: at 50, they are removed
        // before the new one is set, which IAM would refuse first.
        let fewer = spec(json!({"Tags": tags(47).as_array().unwrap()[1..].to_vec()}));
        let (role, profile) = applied(&s46);
        assert!(with_desired(&fewer, |d| tag_overflow(d, &role, &profile, Some(&s46))).is_none());
        let plan = converge_on(&fewer, &role, &profile, Some(&s46));
        let first = plan.rounds[0].clone();
        assert!(
            matches!(&first[..], [Step::UntagProfile(keys)] if keys == &["k0".to_owned()]),
            "{plan:?}"
        );
        assert!(
            plan.rounds[1..]
                .iter()
                .flatten()
                .any(|s| matches!(s, Step::TagProfile(_)))
        );
        // The role has room for both: its tag goes first and the removal after.
        let role_rounds: Vec<usize> = plan
            .rounds
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                r.iter()
                    .any(|s| matches!(s, Step::TagRole(_) | Step::UntagRole(_)))
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(role_rounds.len(), 2, "{plan:?}");
        assert!(matches!(
            plan.rounds[role_rounds[0]]
                .iter()
                .find(|s| matches!(s, Step::TagRole(_) | Step::UntagRole(_))),
            Some(Step::TagRole(_))
        ));
    }

    #[test]
    fn entities_the_resource_made_are_not_held_to_their_values() {
        let s = spec(json!({"Description": "new", "Tags": [{"Key": "Team", "Value": "api"}]}));
        let (role, profile) = applied(&spec(json!({"Tags": [{"Key": "Team", "Value": "web"}]})));
        let none = InlineDocuments::new();
        assert_eq!(
            with_desired(&s, |d| adoption_conflict(d, &role, &profile, &none, None)),
            None
        );
    }

    #[test]
    fn an_inline_policy_an_adopted_role_has_is_not_put_again() {
        let app = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
        let s = spec(json!({"InlinePolicies": {"app": app, "more": app}}));
        let (role, profile, inline) = adopted_entities();
        let plan = converge_on(&s, &role, &profile, None);
        let puts = |plan: &Plan| {
            plan.steps()
                .filter_map(|s| match s {
                    Step::PutInlinePolicy(name, _) => Some(name.to_string()),
                    _ => None,
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(puts(&plan), vec!["app", "more"]);
        let kept = plan.without_unchanged_inline(&inline);
        assert_eq!(puts(&kept), vec!["more"]);
        assert_eq!(kept.steps().count(), plan.steps().count() - 1);
        // Nothing read (a role the function made): every policy is put.
        assert_eq!(plan.without_unchanged_inline(&InlineDocuments::new()), plan);
    }

    #[test]
    fn teardown_releases_adopted_entities() {
        let s = spec(json!({}));
        let (role, profile) = applied(&s);
        let adopted = |mut tags: Tags| {
            tags.insert(TAG_ADOPTED.into(), "true".into());
            tags
        };
        let o = owner();
        let mut role = role.into_inner();
        role.tags = adopted(role.tags);
        let mut profile = profile.into_inner();
        profile.tags = adopted(profile.tags);
        let found = Found {
            profile: Some(FoundProfile {
                state: o.claim(profile).unwrap(),
                fate: Fate::Delete,
            }),
            role: Some(FoundRole {
                state: o.claim(role).unwrap(),
                inline: vec![],
            }),
        };
        let plan = teardown(&target(), &found);
        assert_eq!(plan.rounds.len(), 1, "{plan:?}");
        assert!(
            plan.rounds[0]
                .iter()
                .all(|s| matches!(s, Step::UntagRole(_) | Step::UntagProfile(_)))
        );
        let Step::UntagRole(keys) = &plan.rounds[0][1] else {
            panic!("{plan:?}")
        };
        assert!(keys.contains(&TAG_STACK_ID.to_owned()) && keys.contains(&TAG_ADOPTED.to_owned()));
        // A kept adopted profile (another delivery took it over) stays this resource's.
        let kept = Found {
            profile: found.profile.clone().map(|p| FoundProfile {
                fate: Fate::Keep,
                ..p
            }),
            role: None,
        };
        assert!(teardown(&target(), &kept).is_empty(), "{kept:?}");
    }

    #[test]
    fn teardown_empties_before_deleting() {
        let s = spec(json!({"Tiers": ["WebTier"]}));
        let (role, profile) = applied(&s);
        let inline = vec![PolicyName::parse("i").unwrap()];
        let t = target();
        let found = Found {
            profile: Some(FoundProfile {
                state: profile.clone(),
                fate: Fate::Delete,
            }),
            role: Some(FoundRole {
                state: role.clone(),
                inline: inline.clone(),
            }),
        };
        assert_eq!(
            teardown(&t, &found).rounds,
            vec![
                vec![
                    Step::RemoveRoleFromProfile("r".into()),
                    Step::DetachPolicy(web()),
                    Step::DeleteInlinePolicy(inline[0].clone()),
                ],
                vec![Step::DeleteProfile, Step::DeleteRole],
            ]
        );
        assert!(teardown(&t, &Found::default()).is_empty());
        let kept = Found {
            profile: Some(FoundProfile {
                state: profile,
                fate: Fate::Keep,
            }),
            role: Some(FoundRole {
                state: role,
                inline: vec![],
            }),
        };
        assert_eq!(
            teardown(&t, &kept).rounds,
            vec![
                vec![
                    Step::RemoveRoleFromProfile("r".into()),
                    Step::DetachPolicy(web())
                ],
                vec![Step::DeleteRole],
            ]
        );
    }
}
