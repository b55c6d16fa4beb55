//! Verify and Repair: direct invocations, from an EventBridge schedule or an operator, that check an
//! instance profile against what Elastic Beanstalk needs, without CloudFormation.
//!
//! `{"Action": "Verify", "InstanceProfileName": "aws-elasticbeanstalk-ec2-role"}` reports; `Repair`
//! attaches the expected policies that are missing, and nothing else, then reports again. Neither
//! needs the profile to belong to a stack: keeping Elastic Beanstalk's default profile up to date
//! is the point. Repair still attaches only what `ALLOWED_POLICY_ARNS` allows.

use crate::config::Config;
use crate::iam::{Iam, IamError};
use crate::names::{ProfileName, RoleName};
use crate::plan::{Plan, ProfileState, RoleState, Step, Target};
use crate::spec::{InvalidProperty, Partition, Spec, trust_allows_ec2};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Action {
    Verify,
    Repair,
}

/// A direct request, as the invocation's payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "PascalCase")]
pub struct Check {
    pub action: Action,
    pub instance_profile_name: String,
    /// Expected tiers; all three when absent.
    #[serde(default)]
    pub tiers: Option<Value>,
    /// Further expected policies.
    #[serde(default)]
    pub managed_policy_arns: Option<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("invalid {0:?} request: {1}")]
    Invalid(&'static str, String),
    #[error(transparent)]
    Property(#[from] InvalidProperty),
    #[error(transparent)]
    Iam(#[from] IamError),
}

/// The state of Elastic Beanstalk's health of one instance profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Verdict {
    /// The profile holds a role EC2 may assume, with every expected policy.
    Healthy,
    /// Only expected policies are missing: Repair can fix it.
    NeedsRepair,
    /// The profile or role is missing, empty or not assumable by EC2: a person must look.
    Broken,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Report {
    pub action: Action,
    pub instance_profile_name: String,
    pub instance_profile_arn: Option<String>,
    pub role_name: Option<String>,
    pub role_arn: Option<String>,
    pub trust_policy_allows_ec2: bool,
    pub expected_policies: BTreeSet<String>,
    pub attached_policies: BTreeSet<String>,
    pub missing_policies: BTreeSet<String>,
    pub extra_policies: BTreeSet<String>,
    /// What Repair attached (empty for Verify).
    pub repaired: BTreeSet<String>,
    pub problems: Vec<String>,
    pub verdict: Verdict,
}

/// Assesses what IAM holds (pure).
pub fn assess(
    action: Action,
    name: &ProfileName,
    expected: BTreeSet<String>,
    profile: Option<&ProfileState>,
    role: Option<(&RoleName, Option<&RoleState>)>,
) -> Report {
    let mut problems = Vec::new();
    let role_state = role.and_then(|(_, state)| state);
    match (profile, role) {
        (None, _) => problems.push(format!("instance profile {name} does not exist")),
        (Some(_), None) => problems.push(format!("instance profile {name} holds no role")),
        (Some(_), Some((role_name, None))) => {
            problems.push(format!("role {role_name} does not exist"))
        }
        _ => {}
    }
    let trust = role_state.is_some_and(|r| trust_allows_ec2(&r.trust_policy));
    if role_state.is_some() && !trust {
        problems.push("the role's trust policy does not let EC2 assume it".into());
    }
    let attached = role_state.map(|r| r.attached.clone()).unwrap_or_default();
    let missing: BTreeSet<String> = expected.difference(&attached).cloned().collect();
    let verdict = if !problems.is_empty() {
        Verdict::Broken
    } else if !missing.is_empty() {
        Verdict::NeedsRepair
    } else {
        Verdict::Healthy
    };
    Report {
        action,
        instance_profile_name: name.to_string(),
        instance_profile_arn: profile.map(|p| p.arn.clone()),
        role_name: role.map(|(n, _)| n.to_string()),
        role_arn: role_state.map(|r| r.arn.clone()),
        trust_policy_allows_ec2: trust,
        extra_policies: attached.difference(&expected).cloned().collect(),
        missing_policies: missing,
        attached_policies: attached,
        expected_policies: expected,
        repaired: BTreeSet::new(),
        problems,
        verdict,
    }
}

/// The partition of an ARN (`arn:aws-cn:iam::...`), or of the region the function runs in.
fn partition_of(arn: Option<&str>) -> Partition {
    arn.and_then(Partition::from_arn)
        .unwrap_or_else(|| Partition::of_region(&std::env::var("AWS_REGION").unwrap_or_default()))
}

impl Check {
    /// Reads a direct request; `Err` says what is wrong with it.
    pub fn parse(payload: Value) -> Result<Self, VerifyError> {
        let action = payload
            .get("Action")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        serde_json::from_value(payload).map_err(|e| {
            VerifyError::Invalid(
                if action == "Repair" { "Repair" } else { "Verify" },
                format!("{e}; expected {{\"Action\": \"Verify\" | \"Repair\", \"InstanceProfileName\": ..., \"Tiers\"?, \"ManagedPolicyArns\"?}}"),
            )
        })
    }

    /// Runs the check (and, for Repair, the repair) and returns the report as JSON.
    pub async fn run(&self, iam: &Iam, config: &Config) -> Result<Value, VerifyError> {
        let name = ProfileName::parse(&self.instance_profile_name)
            .map_err(|r| VerifyError::Invalid("InstanceProfileName", r))?;
        let report = self.settled(iam, &name).await?;
        if self.action == Action::Verify || report.verdict != Verdict::NeedsRepair {
            return Ok(json!(report));
        }
        let allow = &config.rules.policies;
        if let Some(refused) = report.missing_policies.iter().find(|a| !allow.allows(a)) {
            return Err(VerifyError::Invalid(
                "Repair",
                format!("{refused} is not allowed by this function's ALLOWED_POLICY_ARNS"),
            ));
        }
        let role = RoleName::parse(report.role_name.as_deref().unwrap_or_default())
            .map_err(|r| VerifyError::Invalid("RoleName", r))?;
        let target = Target {
            profile: name.clone(),
            role,
        };
        let attach = report
            .missing_policies
            .iter()
            .cloned()
            .map(Step::AttachPolicy);
        iam.run(
            &target,
            &Plan {
                rounds: vec![attach.collect()],
            },
        )
        .await?;
        let mut after = self.settled(iam, &name).await?;
        after.repaired = report.missing_policies;
        Ok(json!(after))
    }

    /// The report, read again up to [`REREADS`] times while it finds something wrong: right after
    /// a change (a Create, a Repair) IAM can answer from a replica that has not seen it. A report
    /// of a profile that is really not healthy costs those seconds (3.5 s with the SDK's delays).
    async fn settled(&self, iam: &Iam, name: &ProfileName) -> Result<Report, VerifyError> {
        let mut report = self.verify(iam, name).await?;
        let mut attempt = 0;
        while report.verdict != Verdict::Healthy && attempt < REREADS && iam.pause(attempt).await {
            attempt += 1;
            report = self.verify(iam, name).await?;
        }
        Ok(report)
    }

    async fn verify(&self, iam: &Iam, name: &ProfileName) -> Result<Report, VerifyError> {
        let profile = iam.profile(name).await?;
        let partition = partition_of(profile.as_ref().map(|p| p.arn.as_str()));
        let mut props = serde_json::Map::new();
        if let Some(tiers) = &self.tiers {
            props.insert("Tiers".into(), tiers.clone());
        }
        if let Some(arns) = &self.managed_policy_arns {
            props.insert("ManagedPolicyArns".into(), arns.clone());
        }
        let expected = Spec::parse(&Value::Object(props), &partition)?.policies;
        let role_name = profile
            .as_ref()
            .and_then(|p| p.roles.first())
            .and_then(|r| RoleName::parse(r).ok());
        let role = match &role_name {
            Some(r) => iam.role(r).await?,
            None => None,
        };
        let report = assess(
            self.action,
            name,
            expected,
            profile.as_ref(),
            role_name.as_ref().map(|n| (n, role.as_ref())),
        );
        Ok(report)
    }
}

/// How often a report that finds something wrong is read again.
const REREADS: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> BTreeSet<String> {
        ["arn:aws:iam::aws:policy/A", "arn:aws:iam::aws:policy/B"]
            .map(String::from)
            .into()
    }

    fn healthy_role() -> RoleState {
        RoleState {
            arn: "arn:aws:iam::1:role/r".into(),
            attached: expected(),
            trust_policy: crate::spec::TRUST_POLICY.into(),
            ..RoleState::default()
        }
    }

    /// The report on profile `p` holding role `r` in the given state.
    fn verify_role(role: &RoleState) -> Report {
        let role_name = RoleName::parse("r").unwrap();
        let name = ProfileName::parse("p").unwrap();
        let profile = ProfileState::default();
        assess(
            Action::Verify,
            &name,
            expected(),
            Some(&profile),
            Some((&role_name, Some(role))),
        )
    }

    #[test]
    fn verdicts() {
        let name = ProfileName::parse("p").unwrap();
        let role_name = RoleName::parse("r").unwrap();
        let profile = ProfileState::default();
        let mut role = healthy_role();
        let report = verify_role(&role);
        assert_eq!(report.verdict, Verdict::Healthy);
        assert!(report.problems.is_empty() && report.missing_policies.is_empty());

        role.attached = ["arn:aws:iam::aws:policy/A", "arn:aws:iam::aws:policy/X"]
            .map(String::from)
            .into();
        let report = verify_role(&role);
        assert_eq!(report.verdict, Verdict::NeedsRepair);
        assert_eq!(
            report.missing_policies,
            ["arn:aws:iam::aws:policy/B".to_owned()].into()
        );
        assert_eq!(
            report.extra_policies,
            ["arn:aws:iam::aws:policy/X".to_owned()].into()
        );

        role.trust_policy = "{}".into();
        let report = verify_role(&role);
        assert_eq!(report.verdict, Verdict::Broken);
        assert!(!report.trust_policy_allows_ec2);

        assert_eq!(
            assess(Action::Verify, &name, expected(), None, None).verdict,
            Verdict::Broken
        );
        assert_eq!(
            assess(Action::Verify, &name, expected(), Some(&profile), None).verdict,
            Verdict::Broken
        );
        let missing_role = assess(
            Action::Verify,
            &name,
            expected(),
            Some(&profile),
            Some((&role_name, None)),
        );
        assert!(missing_role.problems[0].contains("does not exist"));
    }

    #[test]
    fn requests_are_checked() {
        assert!(Check::parse(json!({"Action": "Verify", "InstanceProfileName": "p"})).is_ok());
        let err =
            Check::parse(json!({"Action": "Delete", "InstanceProfileName": "p"})).unwrap_err();
        assert!(err.to_string().contains("Delete"), "{err}");
        let err = Check::parse(json!({"Action": "Repair", "InstanceProfile": "p"})).unwrap_err();
        assert!(err.to_string().contains("InstanceProfile"), "{err}");
    }

    #[test]
    fn the_partition_comes_from_the_profile_arn() {
        let p = partition_of(Some("arn:aws-cn:iam::1:instance-profile/p"));
        assert_eq!(p.as_str(), "aws-cn");
        let p = partition_of(Some("arn:aws-us-gov:iam::1:instance-profile/p"));
        assert_eq!(p.as_str(), "aws-us-gov");
    }
}
