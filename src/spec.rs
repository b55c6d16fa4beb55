//! Resource properties turned into a validated desired state.
//!
//! Everything IAM would reject is rejected here first, with the property named, so that invalid input
//! changes nothing: moto accepts much that IAM refuses, and a half-applied Create is worse than none.
//! CloudFormation sends every scalar as a string (`"3600"`, `"true"`), so typed and string forms are
//! both accepted.

use crate::config::{InlinePolicies, PolicyAllowList, Rules};
use crate::names::{IamPath, PolicyName, ProfileName, RoleName};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// The description a role gets when the template gives none.
pub const DEFAULT_DESCRIPTION: &str =
    "EC2 instance role for Elastic Beanstalk, managed by eb-instance-profile";
/// The trust policy Elastic Beanstalk documents for its instance role: EC2 may assume it.
pub const TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
/// IAM's limit on the inline policies of one role, together.
pub const INLINE_POLICIES_MAX_CHARS: usize = 10_240;
/// IAM allows 50 tags per entity; this many are left after the function's own on a profile it
/// creates: stack-id, logical-id, role-name and request-id. An adopted profile carries adopted too,
/// which the adoption check counts ([`crate::plan::AdoptionConflict::TagQuota`]).
pub const USER_TAGS_MAX: usize = 46;
/// Profiles made before the request-id tag existed carry one of the function's tags fewer, and
/// were allowed one more user tag: an Update of such a resource may keep them. The plan counts
/// the entity's own tags ([`crate::plan::TagOverflow`]); new entities get at most
/// [`USER_TAGS_MAX`] ([`Spec::check_new_entities`]).
const USER_TAGS_KEPT_MAX: usize = USER_TAGS_MAX + 1;
/// Tag keys under this prefix belong to the function (see [`crate::plan::Owner`]).
pub const RESERVED_TAG_PREFIX: &str = "eb-instance-profile:";

/// Properties CloudFormation adds itself; they are not the resource's business.
const IGNORED: [&str; 2] = ["ServiceToken", "ServiceTimeout"];
const KNOWN: [&str; 13] = [
    "InstanceProfileName",
    "RoleName",
    "Path",
    "Tiers",
    "ManagedPolicyArns",
    "InlinePolicies",
    "PermissionsBoundary",
    "Description",
    "MaxSessionDuration",
    "Tags",
    "AdoptExisting",
    "RepairTrustPolicy",
    "WaitForPropagation",
];

/// A property that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid property {property}: {reason}")]
pub struct InvalidProperty {
    pub property: String,
    pub reason: String,
}

fn invalid(property: impl Into<String>, reason: impl Into<String>) -> InvalidProperty {
    InvalidProperty {
        property: property.into(),
        reason: reason.into(),
    }
}

/// IAM's hard limit on managed policies attached to one role.
pub const MAX_MANAGED_POLICIES: usize = 20;

/// The partitions AWS has (aws-sdk-rust's endpoint rules list the same).
pub const KNOWN_PARTITIONS: [&str; 8] = [
    "aws",
    "aws-cn",
    "aws-us-gov",
    "aws-iso",
    "aws-iso-b",
    "aws-iso-e",
    "aws-iso-f",
    "aws-eusc",
];

/// The AWS partition (`aws`, `aws-cn`, `aws-us-gov` ...) that policy ARNs must be written in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition(String);

impl Partition {
    /// Takes the partition from the StackId ARN, as IAM rejects ARNs of another partition.
    pub fn from_stack_id(stack_id: &str) -> Result<Self, InvalidProperty> {
        let mut fields = stack_id.split(':');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("arn"), Some(p), Some("cloudformation")) => Self::parse(p),
            _ => None,
        }
        .ok_or_else(|| invalid("StackId", "is not a CloudFormation stack ARN"))
    }

    /// A partition AWS has: any other name in a StackId or ARN was made up, and would only send
    /// the function to IAM with ARNs that cannot exist.
    pub fn parse(name: &str) -> Option<Self> {
        KNOWN_PARTITIONS
            .contains(&name)
            .then(|| Self(name.to_owned()))
    }

    /// The partition of any ARN (`arn:aws-cn:iam::...`).
    pub fn from_arn(arn: &str) -> Option<Self> {
        match arn.split(':').collect::<Vec<_>>()[..] {
            ["arn", p, ..] => Self::parse(p),
            _ => None,
        }
    }

    /// The partition a region belongs to.
    pub fn of_region(region: &str) -> Self {
        let name = if region.starts_with("cn-") {
            "aws-cn"
        } else if region.starts_with("us-gov-") {
            "aws-us-gov"
        } else {
            "aws"
        };
        Self(name.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The ARN of an AWS managed policy in this partition.
    pub fn aws_policy(&self, name: &str) -> String {
        format!("arn:{}:iam::aws:policy/{name}", self.0)
    }
}

/// An Elastic Beanstalk tier whose managed policy the role gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tier {
    WebTier,
    WorkerTier,
    MulticontainerDocker,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::WebTier, Tier::WorkerTier, Tier::MulticontainerDocker];

    fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == value)
    }

    pub fn name(self) -> &'static str {
        match self {
            Tier::WebTier => "WebTier",
            Tier::WorkerTier => "WorkerTier",
            Tier::MulticontainerDocker => "MulticontainerDocker",
        }
    }

    /// The managed policy Elastic Beanstalk documents for this tier.
    pub fn policy_arn(self, partition: &Partition) -> String {
        partition.aws_policy(&format!("AWSElasticBeanstalk{}", self.name()))
    }
}

/// The desired state of one resource, as the template describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// Explicit name; `None` means a generated one.
    pub instance_profile_name: Option<ProfileName>,
    /// Explicit name; `None` means the profile's name when it fits a role, else a generated one.
    pub role_name: Option<RoleName>,
    /// Where IAM puts the entities: the template's `Path` under [`crate::names::OWN_PATH_PREFIX`].
    pub path: IamPath,
    /// Full ARNs of every managed policy to attach: the tiers' and ManagedPolicyArns, sorted.
    pub policies: BTreeSet<String>,
    /// The tiers' share of `policies` (reported by name in errors).
    pub tier_policies: BTreeSet<String>,
    /// Inline policies, documents in compact JSON.
    pub inline_policies: BTreeMap<PolicyName, String>,
    pub permissions_boundary: Option<String>,
    pub description: String,
    pub max_session_duration: i32,
    /// Whether the template set Description and MaxSessionDuration itself rather than leaving
    /// them to the defaults: an adopted role is held only to the values a template gave.
    pub description_given: bool,
    pub max_session_duration_given: bool,
    /// User tags, keys unique regardless of case.
    pub tags: BTreeMap<String, String>,
    /// Take over an existing role or profile of the wanted name instead of refusing it.
    pub adopt_existing: bool,
    /// When adopting a role that EC2 may not assume, add the statement that lets it.
    pub repair_trust_policy: bool,
    /// Confirm that the new profile reads back with its role before answering SUCCESS.
    pub wait_for_propagation: bool,
}

/// What decides which entities a resource is: a change of any of these means replacement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub instance_profile_name: Option<ProfileName>,
    pub role_name: Option<RoleName>,
    pub path: IamPath,
}

impl Spec {
    /// Validates `properties` (the ResourceProperties object) for a stack in `partition`.
    /// A request's properties, validated and allowed by the operator's `rules`, with the partition
    /// its stack lives in.
    pub fn prepare(
        rules: &Rules,
        properties: &Value,
        stack_id: &str,
    ) -> Result<(Self, Partition), InvalidProperty> {
        let partition = Partition::from_stack_id(stack_id)?;
        let mut spec = Self::parse(properties, &partition)?;
        spec.enforce(rules, &partition)?;
        Ok((spec, partition))
    }

    pub fn parse(properties: &Value, partition: &Partition) -> Result<Self, InvalidProperty> {
        let empty = Map::new();
        let props = match properties {
            Value::Object(map) => map,
            Value::Null => &empty,
            _ => return Err(invalid("ResourceProperties", "must be an object")),
        };
        if let Some(unknown) = props
            .keys()
            .find(|k| !KNOWN.contains(&k.as_str()) && !IGNORED.contains(&k.as_str()))
        {
            // Quoted unless plain, so that an empty or odd name still shows where it is.
            let plain = !unknown.is_empty() && unknown.chars().all(|c| c.is_ascii_alphanumeric());
            let name = truncate(unknown, 100);
            return Err(invalid(
                if plain { name } else { format!("{name:?}") },
                format!("unknown property; known are {}", KNOWN.join(", ")),
            ));
        }
        let get = |name: &str| props.get(name).filter(|v| !v.is_null());

        let instance_profile_name = get("InstanceProfileName")
            .map(|v| parse_name("InstanceProfileName", v, ProfileName::parse))
            .transpose()?;
        let role_name = get("RoleName")
            .map(|v| parse_name("RoleName", v, RoleName::parse))
            .transpose()?;
        let path = match get("Path") {
            Some(v) => IamPath::nested(&string("Path", v)?).map_err(|r| invalid("Path", r))?,
            None => IamPath::own_default(),
        };

        let tiers = match get("Tiers") {
            Some(v) => list("Tiers", v)?
                .iter()
                .map(|t| {
                    Tier::parse(t).ok_or_else(|| {
                        invalid(
                            "Tiers",
                            format!(
                                "unknown tier {:?}; valid are WebTier, WorkerTier, MulticontainerDocker",
                                truncate(t, 100)
                            ),
                        )
                    })
                })
                .collect::<Result<BTreeSet<_>, _>>()?,
            None => Tier::ALL.into_iter().collect(),
        };
        let tier_policies: BTreeSet<String> =
            tiers.iter().map(|t| t.policy_arn(partition)).collect();

        let mut policies = tier_policies.clone();
        if let Some(v) = get("ManagedPolicyArns") {
            for item in list("ManagedPolicyArns", v)? {
                let arn = if item.starts_with("arn:") {
                    item
                } else {
                    partition.aws_policy(&item)
                };
                check_policy_arn("ManagedPolicyArns", &arn, partition)?;
                policies.insert(arn);
            }
        }
        if policies.len() > MAX_MANAGED_POLICIES {
            return Err(invalid(
                "ManagedPolicyArns",
                format!(
                    "names {} managed policies with those of Tiers; an IAM role holds at most \
                     {MAX_MANAGED_POLICIES} (IAM's hard limit; the default quota is 10)",
                    policies.len()
                ),
            ));
        }

        let inline_policies = match get("InlinePolicies") {
            Some(v) => inline_policies(v)?,
            None => BTreeMap::new(),
        };

        let permissions_boundary = get("PermissionsBoundary")
            .map(|v| {
                let arn = string("PermissionsBoundary", v)?;
                check_policy_arn("PermissionsBoundary", &arn, partition).map(|()| arn)
            })
            .transpose()?;

        let description = match get("Description") {
            Some(v) => description(&string("Description", v)?)?,
            None => DEFAULT_DESCRIPTION.to_owned(),
        };

        let max_session_duration = match get("MaxSessionDuration") {
            Some(v) => {
                let n = integer("MaxSessionDuration", v)?;
                if !(3600..=43200).contains(&n) {
                    return Err(invalid(
                        "MaxSessionDuration",
                        format!("must be between 3600 and 43200 seconds, got {n}"),
                    ));
                }
                n as i32
            }
            None => 3600,
        };

        let description_given = get("Description").is_some();
        let max_session_duration_given = get("MaxSessionDuration").is_some();
        let tags = match get("Tags") {
            Some(v) => tags(v)?,
            None => BTreeMap::new(),
        };

        let flag = |name: &str, default: bool| match get(name) {
            Some(v) => boolean(name, v),
            None => Ok(default),
        };
        let adopt_existing = flag("AdoptExisting", false)?;
        let repair_trust_policy = flag("RepairTrustPolicy", false)?;
        let wait_for_propagation = flag("WaitForPropagation", true)?;

        Ok(Self {
            instance_profile_name,
            role_name,
            path,
            policies,
            tier_policies,
            inline_policies,
            permissions_boundary,
            description,
            max_session_duration,
            description_given,
            max_session_duration_given,
            tags,
            adopt_existing,
            repair_trust_policy,
            wait_for_propagation,
        })
    }

    /// Refuses any policy to attach that the operator's allow-list does not name.
    pub fn check_allowed(&self, allow: &PolicyAllowList) -> Result<(), InvalidProperty> {
        match self.policies.iter().find(|arn| !allow.allows(arn)) {
            None => Ok(()),
            Some(arn) => {
                let property = if self.tier_policies.contains(arn) {
                    "Tiers"
                } else {
                    "ManagedPolicyArns"
                };
                Err(invalid(
                    property,
                    format!("{arn} is not allowed by this function's ALLOWED_POLICY_ARNS"),
                ))
            }
        }
    }

    /// Applies the operator's [`Rules`]: allowed policies, the required permissions boundary (set
    /// when the template names none) and which inline policies are accepted.
    pub fn enforce(&mut self, rules: &Rules, partition: &Partition) -> Result<(), InvalidProperty> {
        self.check_allowed(&rules.policies)?;
        if let Some(required) = &rules.permissions_boundary {
            check_policy_arn("PermissionsBoundary", required, partition).map_err(|e| {
                invalid(
                    "PermissionsBoundary",
                    format!(
                        "this function's PERMISSIONS_BOUNDARY_ARN is unusable: {}",
                        e.reason
                    ),
                )
            })?;
            match &self.permissions_boundary {
                None => self.permissions_boundary = Some(required.clone()),
                Some(given) if given == required => {}
                Some(given) => {
                    return Err(invalid(
                        "PermissionsBoundary",
                        format!(
                            "{} differs from {required}, which this function's PERMISSIONS_BOUNDARY_ARN \
                             requires on every role",
                            truncate(given, 200)
                        ),
                    ));
                }
            }
        }
        if self.inline_policies.is_empty() {
            return Ok(());
        }
        match &rules.inline_policies {
            InlinePolicies::Any => Ok(()),
            InlinePolicies::Deny => Err(invalid(
                "InlinePolicies",
                "are not accepted: this function's INLINE_POLICIES is deny",
            )),
            InlinePolicies::Misconfigured(why) => Err(invalid("InlinePolicies", why.clone())),
            InlinePolicies::Restricted => {
                for (name, document) in &self.inline_policies {
                    let document: Value = serde_json::from_str(document).unwrap_or_default();
                    if let Some(why) = escalation(&document) {
                        return Err(invalid(
                            format!("InlinePolicies.{name}"),
                            format!(
                                "{why}; refused under this function's INLINE_POLICIES=restricted"
                            ),
                        ));
                    }
                }
                Ok(())
            }
        }
    }

    /// What only entities about to be created must also satisfy: at most [`USER_TAGS_MAX`] Tags
    /// (an Update of a resource made before the request-id tag may keep one more).
    pub fn check_new_entities(&self) -> Result<(), InvalidProperty> {
        if self.tags.len() > USER_TAGS_MAX {
            return Err(too_many_tags(self.tags.len()));
        }
        Ok(())
    }

    pub fn identity(&self) -> Identity {
        Identity {
            instance_profile_name: self.instance_profile_name.clone(),
            role_name: self.role_name.clone(),
            path: self.path.clone(),
        }
    }
}

impl Identity {
    /// The properties that differ between two identities, for the replacement's messages.
    pub fn changed(&self, old: &Identity) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.instance_profile_name != old.instance_profile_name {
            changed.push("InstanceProfileName");
        }
        if self.role_name != old.role_name {
            changed.push("RoleName");
        }
        if self.path != old.path {
            changed.push("Path");
        }
        changed
    }
}

/// Cuts untrusted text that is echoed in a Reason to at most `max` characters.
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// A JSON value's type, as a Reason names it ("must be a string, not a number").
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn string(property: &str, value: &Value) -> Result<String, InvalidProperty> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(invalid(
            property,
            format!("must be a string, got {}", type_name(other)),
        )),
    }
}

fn parse_name<T>(
    property: &str,
    value: &Value,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, InvalidProperty> {
    parse(&string(property, value)?).map_err(|reason| invalid(property, reason))
}

fn integer(property: &str, value: &Value) -> Result<i64, InvalidProperty> {
    let parsed = match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| {
        invalid(
            property,
            format!("must be a whole number, got {}", type_name(value)),
        )
    })
}

/// A boolean, or the strings "true" and "false" that CloudFormation turns booleans into.
fn boolean(property: &str, value: &Value) -> Result<bool, InvalidProperty> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        other => Err(invalid(
            property,
            format!("must be true or false, got {}", type_name(other)),
        )),
    }
}

/// Whether a trust policy lets EC2 assume the role: a statement that allows `sts:AssumeRole` to the
/// EC2 service principal. The document may arrive URL-encoded, as GetRole returns it.
pub fn trust_allows_ec2(document: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(document).decode_utf8_lossy();
    let Ok(doc) = serde_json::from_str::<Value>(&decoded) else {
        return false;
    };
    let as_list = |v: Option<&Value>| -> Vec<String> {
        match v {
            Some(Value::String(s)) => vec![s.to_ascii_lowercase()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_ascii_lowercase)
                .collect(),
            _ => Vec::new(),
        }
    };
    let statements = match doc.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    statements.into_iter().any(|st| {
        let allows = st
            .get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("Allow"));
        let assume = as_list(st.get("Action"))
            .iter()
            .any(|a| matches!(a.as_str(), "sts:assumerole" | "sts:*" | "*"));
        let ec2 = as_list(st.get("Principal").and_then(|p| p.get("Service")))
            .iter()
            .any(|s| matches!(s.as_str(), "ec2.amazonaws.com" | "ec2.amazonaws.com.cn"));
        allows && assume && ec2
    })
}

/// The trust policy with the EC2 statement of [`TRUST_POLICY`] added to its statements.
pub fn trust_with_ec2(document: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(document).decode_utf8_lossy();
    let ours: Value = serde_json::from_str(TRUST_POLICY).expect("the trust policy is JSON");
    let statement = ours["Statement"][0].clone();
    match serde_json::from_str::<Value>(&decoded) {
        Ok(Value::Object(mut doc)) => {
            let statements = match doc.remove("Statement") {
                Some(Value::Array(items)) => items,
                Some(one) => vec![one],
                None => Vec::new(),
            };
            doc.insert(
                "Statement".into(),
                Value::Array(statements.into_iter().chain([statement]).collect()),
            );
            doc.entry("Version").or_insert("2012-10-17".into());
            Value::Object(doc).to_string()
        }
        _ => TRUST_POLICY.to_owned(),
    }
}

/// Whether two policy documents say the same, compared as JSON: `have` as IAM returns it
/// (GetRolePolicy, like GetRole for trust policies, answers URL-encoded), `want` as the template
/// gives it. A document that does not parse is the same as none.
pub fn same_policy(have: &str, want: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(have).decode_utf8_lossy();
    // A document that IAM did not encode (a '%' in it is then the policy's own) parses as it is.
    let have = serde_json::from_str::<Value>(have)
        .or_else(|_| serde_json::from_str::<Value>(&decoded))
        .ok();
    have.is_some() && have == serde_json::from_str::<Value>(want).ok()
}

/// A list of strings, or one comma-separated string.
fn list(property: &str, value: &Value) -> Result<Vec<String>, InvalidProperty> {
    match value {
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| string(&format!("{property}[{i}]"), item))
            .collect(),
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        other => Err(invalid(
            property,
            format!("must be a list of strings, got {}", type_name(other)),
        )),
    }
}

/// `arn:{partition}:iam::{account or aws}:policy/{optional path/}{name}`.
fn check_policy_arn(
    property: &str,
    arn: &str,
    partition: &Partition,
) -> Result<(), InvalidProperty> {
    let shown = truncate(arn, 200);
    let bad = |reason: &str| invalid(property, format!("{shown} {reason}"));
    if arn.len() > 2048 {
        return Err(bad("is longer than 2048 characters"));
    }
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [
        arn_prefix,
        arn_partition,
        service,
        region,
        account,
        resource,
    ] = fields[..]
    else {
        return Err(bad(
            "is not a policy ARN (arn:PARTITION:iam::ACCOUNT:policy/NAME)",
        ));
    };
    if arn_prefix != "arn" || service != "iam" || !region.is_empty() {
        return Err(bad(
            "is not a policy ARN (arn:PARTITION:iam::ACCOUNT:policy/NAME)",
        ));
    }
    if arn_partition != partition.as_str() {
        return Err(bad(&format!(
            "is in partition {:?}, but the stack is in {:?}",
            truncate(arn_partition, 30),
            partition.as_str()
        )));
    }
    if account != "aws" && !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit())) {
        return Err(bad("does not name an account (12 digits) or aws"));
    }
    let Some(path_and_name) = resource.strip_prefix("policy/") else {
        return Err(bad(
            "is not a policy ARN (arn:PARTITION:iam::ACCOUNT:policy/NAME)",
        ));
    };
    let (path, name) = match path_and_name.rsplit_once('/') {
        Some((path, name)) => (Some(path), name),
        None => (None, path_and_name),
    };
    if let Err(reason) = PolicyName::parse(name) {
        return Err(bad(&format!("has a policy name that {reason}")));
    }
    if let Some(path) = path
        && IamPath::parse(&format!("/{path}/")).is_err()
    {
        return Err(bad("has an invalid path"));
    }
    Ok(())
}

fn inline_policies(value: &Value) -> Result<BTreeMap<PolicyName, String>, InvalidProperty> {
    let Value::Object(map) = value else {
        return Err(invalid(
            "InlinePolicies",
            format!(
                "must be a map of policy name to policy document, got {}",
                type_name(value)
            ),
        ));
    };
    let mut policies = BTreeMap::new();
    let mut total = 0;
    for (name, document) in map {
        let property = format!("InlinePolicies.{}", truncate(name, 128));
        let name = PolicyName::parse(name).map_err(|r| invalid(&property, r))?;
        let document = match document {
            Value::String(text) => serde_json::from_str(text)
                .map_err(|e| invalid(&property, format!("is not a JSON policy document: {e}")))?,
            other => other.clone(),
        };
        match &document {
            Value::Object(doc)
                if doc
                    .get("Statement")
                    .is_some_and(|s| s.is_array() || s.is_object()) => {}
            _ => {
                return Err(invalid(
                    &property,
                    "must be a policy document: an object with a Statement",
                ));
            }
        }
        let compact = document.to_string();
        total += compact.chars().count();
        policies.insert(name, compact);
    }
    if total > INLINE_POLICIES_MAX_CHARS {
        return Err(invalid(
            "InlinePolicies",
            format!(
                "documents total {total} characters; IAM allows {INLINE_POLICIES_MAX_CHARS} per role"
            ),
        ));
    }
    Ok(policies)
}

/// Why a policy document could let the role escalate its own privileges, if it could: a statement
/// that allows every action, a NotAction, or an IAM or STS action that changes anything or issues
/// credentials.
fn escalation(document: &Value) -> Option<String> {
    let statements: Vec<&Value> = match document.get("Statement") {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    for (i, statement) in statements.into_iter().enumerate() {
        let allows = statement
            .get("Effect")
            .and_then(Value::as_str)
            .is_some_and(|e| e.eq_ignore_ascii_case("Allow"));
        if !allows {
            continue;
        }
        if statement.get("NotAction").is_some() {
            return Some(format!(
                "Statement[{i}] allows NotAction, which grants IAM and STS actions"
            ));
        }
        let actions: Vec<&str> = match statement.get("Action") {
            Some(Value::String(a)) => vec![a.as_str()],
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        for action in actions {
            if let Some(why) = dangerous_action(action) {
                return Some(format!(
                    "Statement[{i}] allows {:?}, {why}",
                    truncate(action, 100)
                ));
            }
        }
    }
    None
}

fn dangerous_action(action: &str) -> Option<&'static str> {
    let action = action.trim().to_ascii_lowercase();
    let Some((service, name)) = action.split_once(':') else {
        return (action.contains('*')).then_some("every action");
    };
    if service.contains(['*', '?']) {
        return Some("a service wildcard that matches IAM and STS");
    }
    match service {
        // Get* and List* are IAM's reads; anything else, or a wildcard before the verb, can write.
        "iam" if !(name.starts_with("get") || name.starts_with("list")) => {
            Some("an IAM action that can change permissions")
        }
        "sts" if !matches!(name, "getcalleridentity" | "getaccesskeyinfo") => {
            Some("an STS action that issues credentials")
        }
        _ => None,
    }
}

fn description(text: &str) -> Result<String, InvalidProperty> {
    let len = text.chars().count();
    if len > 1000 {
        return Err(invalid(
            "Description",
            format!("must be at most 1000 characters, got {len}"),
        ));
    }
    let allowed = |c: char| matches!(c, '\t' | '\n' | '\r' | ' '..='~' | '\u{A1}'..='\u{FF}');
    if let Some(c) = text.chars().find(|c| !allowed(*c)) {
        return Err(invalid(
            "Description",
            format!("contains {c:?}, which IAM does not accept in a description"),
        ));
    }
    Ok(text.to_owned())
}

/// Whether IAM accepts `text` as a tag key or value: letters, digits, spaces (not tabs or line
/// breaks, which are control characters) and `_.:/=+-@`.
pub fn tag_chars_ok(text: &str) -> bool {
    text.chars().all(|c| {
        c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
    })
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn too_many_tags(count: usize) -> InvalidProperty {
    invalid(
        "Tags",
        format!(
            "at most {USER_TAGS_MAX} tags are allowed (IAM's 50 less the function's own), got {count}"
        ),
    )
}

fn tags(value: &Value) -> Result<BTreeMap<String, String>, InvalidProperty> {
    let Value::Array(items) = value else {
        return Err(invalid(
            "Tags",
            format!("must be a list of {{Key, Value}}, got {}", type_name(value)),
        ));
    };
    if items.len() > USER_TAGS_KEPT_MAX {
        return Err(too_many_tags(items.len()));
    }
    let mut tags = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let property = format!("Tags[{i}]");
        let Value::Object(tag) = item else {
            return Err(invalid(property, "must be an object with Key and Value"));
        };
        if let Some(extra) = tag.keys().find(|k| *k != "Key" && *k != "Value") {
            return Err(invalid(
                property,
                format!(
                    "unknown field {:?}; a tag has Key and Value",
                    truncate(extra, 50)
                ),
            ));
        }
        let key = tag
            .get("Key")
            .and_then(scalar)
            .ok_or_else(|| invalid(&property, "Key is missing or not a string"))?;
        let value = tag
            .get("Value")
            .and_then(scalar)
            .ok_or_else(|| invalid(&property, "Value is missing or not a string"))?;
        let key_len = key.chars().count();
        if !(1..=128).contains(&key_len) || !tag_chars_ok(&key) {
            return Err(invalid(
                property,
                "Key must be 1-128 letters, digits, spaces or _.:/=+-@",
            ));
        }
        if value.chars().count() > 256 || !tag_chars_ok(&value) {
            return Err(invalid(
                property,
                "Value must be at most 256 letters, digits, spaces or _.:/=+-@",
            ));
        }
        let lower = key.to_lowercase();
        if lower.starts_with("aws:") || lower.starts_with(RESERVED_TAG_PREFIX) {
            return Err(invalid(
                property,
                format!("Key {key:?} uses a reserved prefix (aws: or {RESERVED_TAG_PREFIX})"),
            ));
        }
        if !seen.insert(lower) {
            return Err(invalid(
                property,
                format!("Key {key:?} appears twice (IAM tag keys ignore case)"),
            ));
        }
        tags.insert(key, value);
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn aws() -> Partition {
        Partition::from_stack_id("arn:aws:cloudformation:us-east-1:123456789012:stack/s/id")
            .unwrap()
    }

    fn parse(props: Value) -> Result<Spec, InvalidProperty> {
        Spec::parse(&props, &aws())
    }

    #[test]
    fn only_partitions_aws_has_are_accepted() {
        for known in KNOWN_PARTITIONS {
            let stack = format!("arn:{known}:cloudformation:r:1:stack/s/id");
            assert!(Partition::from_stack_id(&stack).is_ok(), "{known}");
        }
        for made_up in ["nowhere", "aws-", "AWS", "", "aws-cn-x"] {
            let stack = format!("arn:{made_up}:cloudformation:r:1:stack/s/id");
            let err = Partition::from_stack_id(&stack).unwrap_err();
            assert_eq!(err.property, "StackId", "{made_up}");
        }
    }

    #[test]
    fn more_managed_policies_than_a_role_can_hold_are_refused() {
        let arns = |n: usize| -> Vec<String> {
            (0..n)
                .map(|i| format!("arn:aws:iam::123456789012:policy/p{i}"))
                .collect()
        };
        // The three tiers' policies count too.
        let fits = parse(json!({"ManagedPolicyArns": arns(MAX_MANAGED_POLICIES - 3)})).unwrap();
        assert_eq!(fits.policies.len(), MAX_MANAGED_POLICIES);
        let err = rejected(json!({"ManagedPolicyArns": arns(MAX_MANAGED_POLICIES - 2)}));
        assert_eq!(err.property, "ManagedPolicyArns");
        assert!(err.to_string().contains("at most 20"), "{err}");
        let err = rejected(json!({"ManagedPolicyArns": arns(10_000)}));
        assert_eq!(err.property, "ManagedPolicyArns");
    }

    fn rejected(props: Value) -> InvalidProperty {
        parse(props).expect_err("accepted")
    }

    #[test]
    fn defaults_give_all_three_tiers_and_no_names() {
        let spec =
            parse(json!({"ServiceToken": "arn:aws:lambda:x", "ServiceTimeout": "300"})).unwrap();
        assert_eq!(spec.instance_profile_name, None);
        assert_eq!(spec.role_name, None);
        assert_eq!(spec.path.as_str(), "/eb-instance-profile/");
        assert_eq!(
            spec.policies.iter().cloned().collect::<Vec<_>>(),
            vec![
                "arn:aws:iam::aws:policy/AWSElasticBeanstalkMulticontainerDocker",
                "arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier",
                "arn:aws:iam::aws:policy/AWSElasticBeanstalkWorkerTier",
            ]
        );
        assert_eq!(spec.max_session_duration, 3600);
        assert_eq!(spec.description, DEFAULT_DESCRIPTION);
        assert!(spec.tags.is_empty() && spec.inline_policies.is_empty());
    }

    #[test]
    fn partition_comes_from_the_stack_id() {
        let cn =
            Partition::from_stack_id("arn:aws-cn:cloudformation:cn-north-1:1:stack/s/i").unwrap();
        let spec = Spec::parse(
            &json!({"Tiers": ["WebTier"], "ManagedPolicyArns": ["ReadOnlyAccess"]}),
            &cn,
        )
        .unwrap();
        assert!(
            spec.policies
                .contains("arn:aws-cn:iam::aws:policy/AWSElasticBeanstalkWebTier")
        );
        assert!(
            spec.policies
                .contains("arn:aws-cn:iam::aws:policy/ReadOnlyAccess")
        );
        assert_eq!(
            Partition::from_stack_id("stack").unwrap_err().property,
            "StackId"
        );
        assert!(Partition::from_stack_id("arn:aws:s3:::bucket").is_err());
    }

    #[test]
    fn string_forms_are_accepted() {
        let spec = parse(json!({
            "MaxSessionDuration": "7200",
            "Tiers": "WebTier, WorkerTier",
            "Tags": [{"Key": "n", "Value": 3}],
        }))
        .unwrap();
        assert_eq!(spec.max_session_duration, 7200);
        assert_eq!(spec.policies.len(), 2);
        assert_eq!(spec.tags["n"], "3");
        assert_eq!(
            parse(json!({"MaxSessionDuration": 43200}))
                .unwrap()
                .max_session_duration,
            43200
        );
    }

    #[test]
    fn unknown_properties_are_named() {
        let err = rejected(json!({"Tier": ["WebTier"]}));
        assert_eq!(err.property, "Tier");
        assert!(err.to_string().contains("unknown property"));
        // An empty or odd name is quoted, so the Reason still shows it.
        assert_eq!(rejected(json!({"": 1})).property, "\"\"");
        assert_eq!(rejected(json!({"Tiers ": 1})).property, "\"Tiers \"");
    }

    #[test]
    fn properties_must_be_an_object() {
        assert_eq!(rejected(json!(["x"])).property, "ResourceProperties");
        assert!(parse(Value::Null).is_ok());
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(
            rejected(json!({"InstanceProfileName": "a b"})).property,
            "InstanceProfileName"
        );
        assert_eq!(
            rejected(json!({"InstanceProfileName": "p".repeat(129)})).property,
            "InstanceProfileName"
        );
        assert_eq!(
            rejected(json!({"InstanceProfileName": ""})).property,
            "InstanceProfileName"
        );
        assert_eq!(
            rejected(json!({"InstanceProfileName": 5})).property,
            "InstanceProfileName"
        );
        assert_eq!(
            rejected(json!({"RoleName": "r".repeat(65)})).property,
            "RoleName"
        );
        assert_eq!(rejected(json!({"RoleName": "r/x"})).property, "RoleName");
        assert_eq!(rejected(json!({"Path": "eb"})).property, "Path");
        assert_eq!(
            rejected(json!({"Path": format!("/{}/", "a".repeat(600))})).property,
            "Path"
        );
    }

    #[test]
    fn tiers_are_validated() {
        let err = rejected(json!({"Tiers": ["WebTier", "Database"]}));
        assert_eq!(err.property, "Tiers");
        assert!(err.reason.contains("Database"));
        assert_eq!(rejected(json!({"Tiers": [1]})).property, "Tiers[0]");
        assert_eq!(rejected(json!({"Tiers": {"a": 1}})).property, "Tiers");
        assert!(parse(json!({"Tiers": []})).unwrap().policies.is_empty());
    }

    #[test]
    fn managed_policies_take_arns_or_bare_names() {
        let spec = parse(json!({"Tiers": [], "ManagedPolicyArns": [
            "AmazonS3ReadOnlyAccess",
            "service-role/AWSLambdaRole",
            "arn:aws:iam::123456789012:policy/team/Custom",
        ]}))
        .unwrap();
        assert_eq!(
            spec.policies.into_iter().collect::<Vec<_>>(),
            vec![
                "arn:aws:iam::123456789012:policy/team/Custom",
                "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
                "arn:aws:iam::aws:policy/service-role/AWSLambdaRole",
            ]
        );
    }

    #[test]
    fn managed_policy_arns_are_validated() {
        for bad in [
            "arn:aws-cn:iam::aws:policy/ReadOnlyAccess",
            "arn:aws:s3:::bucket",
            "arn:aws:iam::12345:policy/X",
            "arn:aws:iam::aws:role/X",
            "arn:aws:iam::aws:policy/bad name",
            "arn:aws:iam:us-east-1:aws:policy/X",
        ] {
            let err = rejected(json!({"ManagedPolicyArns": [bad]}));
            assert_eq!(err.property, "ManagedPolicyArns", "{bad}");
        }
        assert!(
            rejected(json!({"ManagedPolicyArns": ["arn:aws-cn:iam::aws:policy/X"]}))
                .reason
                .contains("partition")
        );
    }

    #[test]
    fn the_allow_list_names_the_property() {
        let allow = PolicyAllowList::new(crate::config::DEFAULT_ALLOWED_POLICIES);
        let spec = parse(json!({"ManagedPolicyArns": ["AdministratorAccess"]})).unwrap();
        let err = spec.check_allowed(&allow).unwrap_err();
        assert_eq!(err.property, "ManagedPolicyArns");
        assert!(
            err.reason
                .contains("arn:aws:iam::aws:policy/AdministratorAccess")
        );
        assert!(parse(json!({})).unwrap().check_allowed(&allow).is_ok());
        let only_web = PolicyAllowList::new("arn:aws:iam::aws:policy/AWSElasticBeanstalkWebTier");
        assert_eq!(
            parse(json!({}))
                .unwrap()
                .check_allowed(&only_web)
                .unwrap_err()
                .property,
            "Tiers"
        );
    }

    fn enforced(props: Value, rules: &Rules) -> Result<Spec, InvalidProperty> {
        let mut spec = parse(props)?;
        spec.enforce(rules, &aws()).map(|()| spec)
    }

    fn with_action(action: Value) -> Value {
        json!({"InlinePolicies": {"p": {"Statement": [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"},
            {"Effect": "Allow", "Action": action, "Resource": "*"},
        ]}}})
    }

    #[test]
    fn restricted_inline_policies_refuse_escalation() {
        let rules = Rules::default();
        for action in [
            json!("*"),
            json!("iam:*"),
            json!("IAM:PassRole"),
            json!(["s3:*", "iam:AttachRolePolicy"]),
            json!("iam:*Role"),
            json!("iam:G*"),
            json!("sts:AssumeRole"),
            json!("sts:Get*"),
            json!("*:*"),
            json!("i*:CreateUser"),
        ] {
            let err = enforced(with_action(action.clone()), &rules).unwrap_err();
            assert_eq!(err.property, "InlinePolicies.p", "{action}");
            assert!(
                err.reason.contains("Statement[1]"),
                "{action}: {}",
                err.reason
            );
        }
        let not_action = json!({"InlinePolicies": {"p": {"Statement": {"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}}}});
        assert!(
            enforced(not_action, &rules)
                .unwrap_err()
                .reason
                .contains("NotAction")
        );
        for action in [
            json!("iam:GetRole"),
            json!("iam:List*"),
            json!("sts:GetCallerIdentity"),
            json!("s3:*"),
        ] {
            assert!(
                enforced(with_action(action.clone()), &rules).is_ok(),
                "{action}"
            );
        }
        let deny_iam = json!({"InlinePolicies": {"p": {"Statement": {"Effect": "Deny", "Action": "iam:*", "Resource": "*"}}}});
        assert!(enforced(deny_iam, &rules).is_ok());
    }

    #[test]
    fn inline_policy_modes() {
        let mut rules = Rules {
            inline_policies: InlinePolicies::Any,
            ..Rules::default()
        };
        assert!(enforced(with_action(json!("iam:*")), &rules).is_ok());
        rules.inline_policies = InlinePolicies::Deny;
        let err = enforced(with_action(json!("s3:GetObject")), &rules).unwrap_err();
        assert!(
            err.reason.contains("INLINE_POLICIES is deny"),
            "{}",
            err.reason
        );
        assert!(enforced(json!({}), &rules).is_ok());
        rules.inline_policies = InlinePolicies::parse(Some("maybe"));
        let err = enforced(with_action(json!("s3:GetObject")), &rules).unwrap_err();
        assert!(err.reason.contains("\"maybe\""), "{}", err.reason);
        assert_eq!(InlinePolicies::parse(Some(" Any ")), InlinePolicies::Any);
        assert_eq!(InlinePolicies::parse(None), InlinePolicies::Restricted);
    }

    #[test]
    fn a_required_boundary_is_applied_and_no_other_accepted() {
        let boundary = "arn:aws:iam::123456789012:policy/Boundary";
        let rules = Rules {
            permissions_boundary: Some(boundary.into()),
            ..Rules::default()
        };
        assert_eq!(
            enforced(json!({}), &rules)
                .unwrap()
                .permissions_boundary
                .as_deref(),
            Some(boundary)
        );
        assert!(enforced(json!({"PermissionsBoundary": boundary}), &rules).is_ok());
        let err = enforced(
            json!({"PermissionsBoundary": "arn:aws:iam::123456789012:policy/Other"}),
            &rules,
        )
        .unwrap_err();
        assert_eq!(err.property, "PermissionsBoundary");
        assert!(err.reason.contains("PERMISSIONS_BOUNDARY_ARN"));
        let broken = Rules {
            permissions_boundary: Some("Boundary".into()),
            ..Rules::default()
        };
        assert!(
            enforced(json!({}), &broken)
                .unwrap_err()
                .reason
                .contains("unusable")
        );
    }

    #[test]
    fn inline_policies_take_objects_or_json_strings() {
        let doc = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]});
        let spec = parse(json!({"InlinePolicies": {"a": doc, "b": doc.to_string()}})).unwrap();
        assert_eq!(spec.inline_policies.len(), 2);
        let a = &spec.inline_policies[&PolicyName::parse("a").unwrap()];
        assert_eq!(serde_json::from_str::<Value>(a).unwrap(), doc);
    }

    #[test]
    fn inline_policies_are_validated() {
        let doc = json!({"Statement": []});
        assert_eq!(
            rejected(json!({"InlinePolicies": ["x"]})).property,
            "InlinePolicies"
        );
        assert_eq!(
            rejected(json!({"InlinePolicies": {"bad name": doc}})).property,
            "InlinePolicies.bad name"
        );
        assert_eq!(
            rejected(json!({"InlinePolicies": {"p": "{not json"}})).property,
            "InlinePolicies.p"
        );
        assert_eq!(
            rejected(json!({"InlinePolicies": {"p": {"Version": "2012-10-17"}}})).property,
            "InlinePolicies.p"
        );
        let big = json!({"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "x".repeat(10_300)}]});
        assert_eq!(
            rejected(json!({"InlinePolicies": {"p": big}})).property,
            "InlinePolicies"
        );
    }

    #[test]
    fn permissions_boundary_is_a_policy_arn() {
        let spec =
            parse(json!({"PermissionsBoundary": "arn:aws:iam::123456789012:policy/Boundary"}))
                .unwrap();
        assert_eq!(
            spec.permissions_boundary.as_deref(),
            Some("arn:aws:iam::123456789012:policy/Boundary")
        );
        assert_eq!(
            rejected(json!({"PermissionsBoundary": "Boundary"})).property,
            "PermissionsBoundary"
        );
    }

    #[test]
    fn description_follows_iam_rules() {
        assert_eq!(
            rejected(json!({"Description": "d".repeat(1001)})).property,
            "Description"
        );
        assert_eq!(
            rejected(json!({"Description": "emoji \u{1F600}"})).property,
            "Description"
        );
        assert!(parse(json!({"Description": "Plain text, caf\u{e9}"})).is_ok());
    }

    #[test]
    fn session_duration_is_bounded() {
        for bad in [json!("3599"), json!(43201), json!("an hour"), json!(3600.5)] {
            assert_eq!(
                rejected(json!({"MaxSessionDuration": bad})).property,
                "MaxSessionDuration"
            );
        }
    }

    #[test]
    fn tags_are_validated() {
        let tag = |k: &str, v: &str| json!({"Key": k, "Value": v});
        // 47 parse (a resource made before the request-id tag keeps them); new entities get 46.
        let many = |n: usize| {
            (0..n)
                .map(|i| tag(&format!("k{i}"), "v"))
                .collect::<Vec<_>>()
        };
        let kept = parse(json!({"Tags": many(47)})).unwrap();
        assert_eq!(kept.check_new_entities().unwrap_err().property, "Tags");
        assert!(
            parse(json!({"Tags": many(46)}))
                .unwrap()
                .check_new_entities()
                .is_ok()
        );
        assert_eq!(rejected(json!({"Tags": many(48)})).property, "Tags");
        assert_eq!(rejected(json!({"Tags": {"a": "b"}})).property, "Tags");
        assert_eq!(rejected(json!({"Tags": ["a"]})).property, "Tags[0]");
        assert_eq!(
            rejected(json!({"Tags": [{"Key": "a"}]})).property,
            "Tags[0]"
        );
        assert_eq!(
            rejected(json!({"Tags": [tag("", "v")]})).property,
            "Tags[0]"
        );
        assert_eq!(
            rejected(json!({"Tags": [tag(&"k".repeat(129), "v")]})).property,
            "Tags[0]"
        );
        assert_eq!(
            rejected(json!({"Tags": [tag("k", &"v".repeat(257))]})).property,
            "Tags[0]"
        );
        assert_eq!(
            rejected(json!({"Tags": [tag("k", "semi;colon")]})).property,
            "Tags[0]"
        );
        // Whitespace IAM does not count as a space: a tab, a line break.
        for value in ["tab\there", "line\nbreak"] {
            assert_eq!(
                rejected(json!({"Tags": [tag("k", value)]})).property,
                "Tags[0]"
            );
        }
        assert!(tag_chars_ok("ünïcode 7\u{a0}_.:/=+-@"));
        assert_eq!(
            rejected(json!({"Tags": [tag("aws:x", "v")]})).property,
            "Tags[0]"
        );
        assert_eq!(
            rejected(json!({"Tags": [tag("eb-instance-profile:stack-id", "v")]})).property,
            "Tags[0]"
        );
        assert_eq!(
            rejected(json!({"Tags": [tag("Team", "a"), tag("team", "b")]})).property,
            "Tags[1]"
        );
        assert!(parse(json!({"Tags": [tag("team", ""), tag("a b:c/d", "x=y+z@w")]})).is_ok());
    }

    #[test]
    fn identity_changes_are_named() {
        let old = parse(json!({"InstanceProfileName": "a"}))
            .unwrap()
            .identity();
        let new = parse(json!({"InstanceProfileName": "a", "Path": "/x/"}))
            .unwrap()
            .identity();
        assert_eq!(new.changed(&old), vec!["Path"]);
        assert!(old.changed(&old).is_empty());
        let same_path = parse(json!({"InstanceProfileName": "a", "Path": "/"}))
            .unwrap()
            .identity();
        assert!(same_path.changed(&old).is_empty());
    }

    #[test]
    fn description_and_session_duration_say_whether_they_were_given() {
        let defaults = parse(json!({})).unwrap();
        assert!(!defaults.description_given && !defaults.max_session_duration_given);
        assert_eq!(defaults.description, DEFAULT_DESCRIPTION);
        let given =
            parse(json!({"Description": DEFAULT_DESCRIPTION, "MaxSessionDuration": "3600"}))
                .unwrap();
        assert!(given.description_given && given.max_session_duration_given);
        assert_eq!(given.max_session_duration, defaults.max_session_duration);
        let null = parse(json!({"Description": null})).unwrap();
        assert!(!null.description_given);
    }

    #[test]
    fn policies_compare_as_json_however_iam_encodes_them() {
        let want = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
        let spaced = r#"{ "Statement": [ {"Resource": "*", "Action": "s3:GetObject", "Effect": "Allow"} ], "Version": "2012-10-17" }"#;
        let encoded: String = url::form_urlencoded::byte_serialize(spaced.as_bytes()).collect();
        assert!(same_policy(spaced, want));
        assert!(same_policy(&encoded.replace('+', "%20"), want));
        assert!(!same_policy(&want.replace("GetObject", "PutObject"), want));
        assert!(!same_policy("not json", want));
        // A '%' of the policy's own survives a document IAM did not encode.
        let percent = r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::b/100%41"}]}"#;
        assert!(same_policy(percent, percent));
        assert!(!same_policy(&percent.replace("%41", "A"), percent));
    }

    #[test]
    fn flags_take_booleans_and_their_strings() {
        let spec = parse(json!({"AdoptExisting": "true", "WaitForPropagation": false})).unwrap();
        assert!(spec.adopt_existing && !spec.wait_for_propagation && !spec.repair_trust_policy);
        let defaults = parse(json!({})).unwrap();
        assert!(!defaults.adopt_existing && defaults.wait_for_propagation);
        assert_eq!(
            rejected(json!({"AdoptExisting": "yes"})).property,
            "AdoptExisting"
        );
        assert_eq!(
            rejected(json!({"WaitForPropagation": 1})).property,
            "WaitForPropagation"
        );
    }

    #[test]
    fn trust_policies_are_read_as_ec2_sees_them() {
        assert!(trust_allows_ec2(TRUST_POLICY));
        let encoded: String =
            url::form_urlencoded::byte_serialize(TRUST_POLICY.as_bytes()).collect();
        assert!(trust_allows_ec2(&encoded.replace('+', "%20")));
        let lambda = TRUST_POLICY.replace("ec2.amazonaws.com", "lambda.amazonaws.com");
        assert!(!trust_allows_ec2(&lambda));
        assert!(!trust_allows_ec2(&TRUST_POLICY.replace("Allow", "Deny")));
        assert!(!trust_allows_ec2(
            &TRUST_POLICY.replace("sts:AssumeRole", "sts:TagSession")
        ));
        assert!(trust_allows_ec2(
            r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["lambda.amazonaws.com","ec2.amazonaws.com"]},"Action":["sts:AssumeRole"]}}"#
        ));
        assert!(!trust_allows_ec2("not json"));
        let repaired = trust_with_ec2(&lambda);
        assert!(trust_allows_ec2(&repaired));
        assert!(repaired.contains("lambda.amazonaws.com"), "{repaired}");
    }

    #[test]
    fn echoed_text_is_truncated() {
        assert_eq!(truncate("abcdef", 3), "abc...");
        assert_eq!(truncate("ab", 3), "ab");
        let err = rejected(json!({"x".repeat(10_000): 1}));
        assert!(err.property.len() < 200);
    }
}
