//! IAM names and paths as types.
//!
//! A value of these types has passed IAM's own rules (length and character set), so the rest of the
//! program never sends IAM a name it would reject, and moto, which checks none of these rules, cannot
//! hide a mistake in tests.

use sha2::{Digest, Sha256};
use std::fmt;

/// Characters IAM allows in role, instance profile and policy names: `[\w+=,.@-]`.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_+=,.@-".contains(c)
}

fn check_name(value: &str, max: usize) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    let len = value.chars().count();
    if len > max {
        return Err(format!("must be at most {max} characters, got {len}"));
    }
    if let Some(c) = value.chars().find(|c| !is_name_char(*c)) {
        return Err(format!(
            "contains {c:?}; only letters, digits and _+=,.@- are allowed"
        ));
    }
    Ok(())
}

macro_rules! iam_name {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// The longest name IAM accepts for this kind of entity.
            pub const MAX: usize = $max;

            /// Checks `value` against IAM's rules for this kind of name.
            pub fn parse(value: &str) -> Result<Self, String> {
                check_name(value, Self::MAX).map(|()| Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// IAM treats names as unique regardless of case.
            pub fn same_entity(&self, other: &str) -> bool {
                self.0.eq_ignore_ascii_case(other)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

iam_name!(
    /// An instance profile name: 1-128 characters of `[\w+=,.@-]`.
    ProfileName,
    128
);
iam_name!(
    /// A role name: 1-64 characters of `[\w+=,.@-]`.
    RoleName,
    64
);
iam_name!(
    /// An inline policy name: 1-128 characters of `[\w+=,.@-]`.
    PolicyName,
    128
);

/// An IAM path: `/` or `/a/b/`, at most 512 characters of printable ASCII.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IamPath(String);

impl IamPath {
    pub const MAX: usize = 512;

    pub fn parse(value: &str) -> Result<Self, String> {
        if value.len() > Self::MAX {
            return Err(format!(
                "must be at most {} characters, got {}",
                Self::MAX,
                value.chars().count()
            ));
        }
        let valid = value == "/"
            || (value.len() >= 3
                && value.starts_with('/')
                && value.ends_with('/')
                && !value.contains("//")
                && value.chars().all(|c| ('!'..='~').contains(&c)));
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err("must be \"/\" or start and end with \"/\" (like /eb/web/), printable ASCII without spaces".into())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for IamPath {
    fn default() -> Self {
        Self("/".into())
    }
}

/// The stack name inside a stack ARN `arn:aws:cloudformation:region:account:stack/NAME/uuid`.
pub fn stack_name(stack_id: &str) -> Option<&str> {
    let resource = stack_id.splitn(6, ':').nth(5)?;
    let mut parts = resource.split('/');
    match (parts.next(), parts.next()) {
        (Some("stack"), Some(name)) if !name.is_empty() => Some(name),
        _ => None,
    }
}

/// Length of the hash suffix of a generated name.
const SUFFIX_LEN: usize = 12;

/// The name given to a role and instance profile whose name the template leaves open:
/// `{StackName}-{LogicalResourceId}-{suffix}`, at most 64 characters so that it fits a role too.
///
/// The suffix hashes StackId, LogicalResourceId and RequestId: a second delivery of the same request
/// yields the same name (so a retried Create converges instead of leaking a second profile), while a
/// replacement, which comes with a new RequestId, yields a new one.
pub fn generated(stack_id: &str, logical_id: &str, request_id: &str) -> String {
    let mut hasher = Sha256::new();
    for part in [stack_id, logical_id, request_id] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    let digest = hasher.finalize();
    let suffix: String = digest
        .iter()
        .take(SUFFIX_LEN / 2)
        .map(|b| format!("{b:02x}"))
        .collect();
    let stack = stack_name(stack_id).unwrap_or("stack");
    let prefix: String = format!("{stack}-{logical_id}")
        .chars()
        .filter(|c| is_name_char(*c))
        .take(RoleName::MAX - SUFFIX_LEN - 1)
        .collect();
    format!("{prefix}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STACK: &str = "arn:aws:cloudformation:us-east-1:123456789012:stack/web-app/0f1e2d3c-aaaa";

    #[test]
    fn names_follow_iam_rules() {
        assert!(RoleName::parse("my-role_1+=,.@").is_ok());
        assert!(RoleName::parse("").is_err());
        assert!(RoleName::parse(&"r".repeat(64)).is_ok());
        assert!(RoleName::parse(&"r".repeat(65)).is_err());
        assert!(ProfileName::parse(&"p".repeat(128)).is_ok());
        assert!(ProfileName::parse(&"p".repeat(129)).is_err());
        assert!(ProfileName::parse("has space").is_err());
        assert!(ProfileName::parse("slash/no").is_err());
        assert!(PolicyName::parse("ünïcode").is_err());
    }

    #[test]
    fn role_names_compare_without_case() {
        let name = RoleName::parse("WebRole").unwrap();
        assert!(name.same_entity("webrole"));
        assert!(!name.same_entity("webrole2"));
    }

    #[test]
    fn paths_follow_iam_rules() {
        assert!(IamPath::parse("/").is_ok());
        assert!(IamPath::parse("/eb/web/").is_ok());
        for bad in ["", "eb/", "/eb", "//", "/a//b/", "/a b/", "/ü/"] {
            assert!(IamPath::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(IamPath::parse(&format!("/{}/", "a".repeat(510))).is_ok());
        assert!(IamPath::parse(&format!("/{}/", "a".repeat(511))).is_err());
    }

    #[test]
    fn stack_name_comes_from_the_arn() {
        assert_eq!(stack_name(STACK), Some("web-app"));
        assert_eq!(stack_name("not-an-arn"), None);
    }

    #[test]
    fn generated_names_are_stable_per_request_and_new_per_replacement() {
        let first = generated(STACK, "Profile", "req-1");
        assert_eq!(first, generated(STACK, "Profile", "req-1"));
        assert_ne!(first, generated(STACK, "Profile", "req-2"));
        assert_ne!(first, generated(STACK, "Other", "req-1"));
        assert!(first.starts_with("web-app-Profile-"));
        assert!(RoleName::parse(&first).is_ok());
    }

    #[test]
    fn generated_names_fit_a_role_however_long_the_stack_name() {
        let long_stack = format!(
            "arn:aws:cloudformation:us-east-1:123456789012:stack/{}/id",
            "s".repeat(128)
        );
        let name = generated(&long_stack, &"L".repeat(255), "req");
        assert_eq!(name.len(), 64);
        assert!(RoleName::parse(&name).is_ok());
    }
}
