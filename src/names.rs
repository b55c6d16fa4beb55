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

/// The path every role and instance profile this function creates lives under, the template's
/// `Path` nested inside it. IAM paths never change after creation, so no tag can forge it: the
/// execution role lets the function create, tag on creation and delete only under this prefix,
/// which keeps entities it did not make out of reach even if their tags were changed.
pub const OWN_PATH_PREFIX: &str = "/eb-instance-profile/";

impl IamPath {
    /// The path IAM gets for a template's `Path`: `/` becomes `/eb-instance-profile/`, `/a/b/`
    /// becomes `/eb-instance-profile/a/b/`.
    pub fn nested(template: &str) -> Result<Self, String> {
        let given = Self::parse(template)?;
        let max = Self::MAX - (OWN_PATH_PREFIX.len() - 1);
        if given.0.len() > max {
            return Err(format!(
                "must be at most {max} characters (IAM allows {} and the function nests every path \
                 under {OWN_PATH_PREFIX}), got {}",
                Self::MAX,
                given.0.chars().count()
            ));
        }
        Self::parse(&format!(
            "{}{}",
            OWN_PATH_PREFIX.trim_end_matches('/'),
            given.0
        ))
    }

    /// The path under [`OWN_PATH_PREFIX`] that a template's default `Path` gives.
    pub fn own_default() -> Self {
        Self(OWN_PATH_PREFIX.into())
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
        // NUL ends each part, so a NUL inside one is hashed as 0xFF, a byte UTF-8 never contains:
        // otherwise ("s\0", "") and ("s", "\0") would hash alike. Ids without NUL, which is all of
        // CloudFormation's, hash as they always have.
        let bytes: Vec<u8> = part
            .bytes()
            .map(|b| if b == 0 { 0xFF } else { b })
            .collect();
        hasher.update(bytes);
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

/// A mark no other delivery shares, for telling a delivery's creates from those of an earlier
/// delivery of the same request (Lambda retries an invocation with the same event and request id).
/// Random: the hasher's keys are seeded per process, and the clock goes in too.
pub fn delivery_mark() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    hasher.write_u128(now);
    format!("{:016x}", hasher.finish())
}

/// The name of the role of a profile whose template names none: the profile's own name when it fits
/// a role (64 characters against a profile's 128), else its first characters and a digest of the
/// whole name. It follows from the profile's name alone, so that a Delete, which knows only the
/// PhysicalResourceId, finds the role even when the profile that would name it was never made.
pub fn default_role(profile: &ProfileName) -> RoleName {
    RoleName::parse(profile.as_str()).unwrap_or_else(|_| {
        let digest = Sha256::digest(profile.as_str().as_bytes());
        let suffix: String = digest
            .iter()
            .take(SUFFIX_LEN / 2)
            .map(|b| format!("{b:02x}"))
            .collect();
        let prefix: String = profile
            .as_str()
            .chars()
            .take(RoleName::MAX - SUFFIX_LEN - 1)
            .collect();
        RoleName::parse(&format!("{prefix}-{suffix}"))
            .expect("a profile name's characters are valid in a role name")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_profile_name_gives_a_role_name_of_its_own() {
        let short = ProfileName::parse("web").unwrap();
        assert_eq!(default_role(&short).as_str(), "web");
        let long = ProfileName::parse(&"p".repeat(100)).unwrap();
        let role = default_role(&long);
        assert_eq!(role.as_str().len(), RoleName::MAX);
        assert!(role.as_str().starts_with(&"p".repeat(51)));
        assert_eq!(default_role(&long), role, "the same profile, the same role");
        let other = ProfileName::parse(&format!("{}q", "p".repeat(99))).unwrap();
        assert_ne!(default_role(&other), role);
    }

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
    fn template_paths_nest_under_the_functions_prefix() {
        assert_eq!(IamPath::nested("/").unwrap().as_str(), OWN_PATH_PREFIX);
        assert_eq!(IamPath::own_default().as_str(), OWN_PATH_PREFIX);
        assert_eq!(
            IamPath::nested("/eb/web/").unwrap().as_str(),
            "/eb-instance-profile/eb/web/"
        );
        let longest = format!("/{}/", "a".repeat(512 - OWN_PATH_PREFIX.len() - 1));
        assert_eq!(IamPath::nested(&longest).unwrap().as_str().len(), 512);
        let over = format!("/{}/", "a".repeat(512 - OWN_PATH_PREFIX.len()));
        assert!(IamPath::nested(&over).is_err());
        assert!(IamPath::nested("eb").is_err());
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

    #[test]
    fn a_nul_inside_an_id_does_not_move_the_boundary_between_ids() {
        // Without the escaping these hash the same bytes and would share a name.
        assert_ne!(generated("s\0", "", "r"), generated("s", "\0", "r"));
        assert_ne!(generated(STACK, "L\0", "r"), generated(STACK, "L", "\0r"));
        // Ids without NUL keep the names they always had.
        assert_eq!(
            generated(STACK, "Profile", "req-1"),
            "web-app-Profile-105031894650"
        );
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Characters that mean something to ARNs, IAM names or the hash: separators, NUL, and
        /// characters IAM refuses.
        const STRUCTURAL: &[char] = &['\0', '/', ':', '-', '_', '.', ' ', 'a', 'Z', '9', 'é', '😀'];

        /// Any text: short, made of structural characters, arbitrary unicode with control
        /// characters, or far longer than any IAM name.
        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                prop::collection::vec(prop::sample::select(STRUCTURAL), 0..8)
                    .prop_map(String::from_iter),
                prop::collection::vec(any::<char>(), 0..80).prop_map(String::from_iter),
                prop::collection::vec(any::<char>(), 200..1200).prop_map(String::from_iter),
            ]
        }

        /// A stack id: a CloudFormation stack ARN around any stack name, or any text at all.
        fn stack_id() -> impl Strategy<Value = String> {
            prop_oneof![
                text().prop_map(|name| format!(
                    "arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/0f1e2d3c-aaaa"
                )),
                text(),
            ]
        }

        fn suffix_of(name: &str) -> &str {
            &name[name.len() - SUFFIX_LEN..]
        }

        proptest! {
            #[test]
            fn generated_names_are_valid_iam_names(
                stack in stack_id(), logical in text(), request in text()
            ) {
                let name = generated(&stack, &logical, &request);
                prop_assert!(name.len() <= RoleName::MAX, "{} is {} long", name, name.len());
                prop_assert!(name.is_ascii());
                prop_assert!(name.chars().all(is_name_char), "{}", name);
                prop_assert!(RoleName::parse(&name).is_ok(), "{}", name);
                prop_assert!(ProfileName::parse(&name).is_ok(), "{}", name);
                prop_assert!(PolicyName::parse(&name).is_ok(), "{}", name);
            }

            #[test]
            fn generated_names_are_the_ids_the_template_gave_then_a_hash(
                stack in stack_id(), logical in text(), request in text()
            ) {
                let name = generated(&stack, &logical, &request);
                let suffix = suffix_of(&name);
                prop_assert!(
                    suffix.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                    "{}", name
                );
                let prefix = name[..name.len() - SUFFIX_LEN]
                    .strip_suffix('-')
                    .expect("a dash before the suffix");
                // The allowed characters of the stack name and logical id, cut only as far as a
                // role name needs.
                let wanted: String =
                    format!("{}-{logical}", stack_name(&stack).unwrap_or("stack"))
                        .chars()
                        .filter(|c| is_name_char(*c))
                        .collect();
                prop_assert!(wanted.starts_with(prefix), "{} from {:?}", name, wanted);
                prop_assert!(
                    prefix.len() == wanted.len() || name.len() == RoleName::MAX,
                    "{} cut more than needed from {:?}", name, wanted
                );
            }

            #[test]
            fn generated_names_are_stable(
                stack in stack_id(), logical in text(), request in text()
            ) {
                prop_assert_eq!(
                    generated(&stack, &logical, &request),
                    generated(&stack.clone(), &logical.clone(), &request.clone())
                );
            }

            #[test]
            fn other_ids_give_other_names(
                stacks in (stack_id(), stack_id()),
                logicals in (text(), text()),
                requests in (text(), text()),
            ) {
                let one = (stacks.0.as_str(), logicals.0.as_str(), requests.0.as_str());
                for other in [
                    (stacks.1.as_str(), one.1, one.2),
                    (one.0, logicals.1.as_str(), one.2),
                    (one.0, one.1, requests.1.as_str()),
                    (stacks.1.as_str(), logicals.1.as_str(), requests.1.as_str()),
                ] {
                    if other != one {
                        prop_assert_ne!(
                            generated(one.0, one.1, one.2),
                            generated(other.0, other.1, other.2),
                            "{:?} and {:?}", one, other
                        );
                    }
                }
            }

            #[test]
            fn moving_a_character_between_ids_gives_another_name(
                stack in stack_id(), logical in text(), request in text(), moved in any::<char>()
            ) {
                // The same characters, split differently between the ids, are another resource.
                let stack_longer = format!("{stack}{moved}");
                let logical_longer = format!("{moved}{logical}");
                prop_assert_ne!(
                    generated(&stack_longer, &logical, &request),
                    generated(&stack, &logical_longer, &request)
                );
                let logical_longer = format!("{logical}{moved}");
                let request_longer = format!("{moved}{request}");
                prop_assert_ne!(
                    generated(&stack, &logical_longer, &request),
                    generated(&stack, &logical, &request_longer)
                );
            }

            #[test]
            fn stack_names_come_from_any_stack_arn(name in "[^/]{1,300}", id in ".{0,40}") {
                let arn =
                    format!("arn:aws:cloudformation:us-east-1:123456789012:stack/{name}/{id}");
                prop_assert_eq!(stack_name(&arn), Some(name.as_str()));
            }
        }
    }
}
