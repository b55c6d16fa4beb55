//! Settings read once from the environment when the process starts.

use url::Url;

/// Policies that may be attached when `ALLOWED_POLICY_ARNS` is not set: the three Elastic Beanstalk
/// instance policies, in any partition.
pub const DEFAULT_ALLOWED_POLICIES: &str = "arn:*:iam::aws:policy/AWSElasticBeanstalkWebTier,\
arn:*:iam::aws:policy/AWSElasticBeanstalkWorkerTier,\
arn:*:iam::aws:policy/AWSElasticBeanstalkMulticontainerDocker";

#[derive(Debug, Clone)]
pub struct Config {
    pub response_urls: ResponseUrlPolicy,
    pub rules: Rules,
    pub propagation: Propagation,
    pub retry: Retry,
    pub healing: Healing,
}

/// What self-healing (`heal`) needs to know about the function itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Healing {
    /// `AWS_LAMBDA_FUNCTION_NAME`, set by Lambda: the session name of the function's own calls.
    pub function_name: Option<String>,
    /// `EXECUTION_ROLE_ARN`: the role of the function's own calls.
    pub execution_role_arn: Option<String>,
    /// `HEAL_ADOPTED`: whether adopted entities are healed too (`true`; default off).
    pub adopted: bool,
}

/// Attempts per IAM request (the SDK's standard mode makes 3). IAM throttles mutating calls per
/// account, and a stack that creates many resources at once meets Throttling and
/// ConcurrentModification often; long-standing infrastructure tools retry IAM far longer
/// (Terraform's AWS provider: 25 attempts). Every attempt is still bounded by the invocation's
/// deadline, so generous retrying cannot keep a stack waiting.
pub const MAX_ATTEMPTS: u32 = 10;

/// How IAM requests are retried (the SDK's standard retry, with these settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retry {
    /// `AWS_MAX_ATTEMPTS`, the SDK's own setting, else [`MAX_ATTEMPTS`].
    pub attempts: u32,
    /// `IAM_RETRY_BACKOFF_MS`: the ceiling of the first retry's random delay (doubled per attempt,
    /// up to 20 s). `None`: the SDK's own, one second.
    pub backoff: Option<std::time::Duration>,
}

/// How a new instance profile is confirmed before SUCCESS (see `lifecycle::wait_until_visible`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Propagation {
    /// `PROPAGATION_READS`: consecutive reads that must show the profile with its role.
    pub reads: u32,
    /// `PROPAGATION_INTERVAL_MS`: time between reads.
    pub interval: std::time::Duration,
}

impl Default for Propagation {
    /// Three reads a second apart: the profile must look right over two seconds, across the
    /// replicas that answer, before Elastic Beanstalk is told to use it.
    fn default() -> Self {
        Self {
            reads: 3,
            interval: std::time::Duration::from_secs(1),
        }
    }
}

/// What the operator allows a template to ask for, whoever writes the template: whoever can invoke
/// this function can create roles that EC2 assumes, so these bound what such a role may do.
#[derive(Debug, Clone)]
pub struct Rules {
    /// `ALLOWED_POLICY_ARNS`: the managed policies Tiers and ManagedPolicyArns may attach.
    pub policies: PolicyAllowList,
    /// `PERMISSIONS_BOUNDARY_ARN`: when set, every role gets this boundary and no other.
    pub permissions_boundary: Option<String>,
    /// `INLINE_POLICIES`: which inline policies are accepted.
    pub inline_policies: InlinePolicies,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            policies: PolicyAllowList::new(DEFAULT_ALLOWED_POLICIES),
            permissions_boundary: None,
            inline_policies: InlinePolicies::Restricted,
        }
    }
}

/// How InlinePolicies are governed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InlinePolicies {
    /// None at all.
    Deny,
    /// No statement that allows `*`, or IAM or STS actions that change anything (the default).
    Restricted,
    /// Anything IAM accepts.
    Any,
    /// The setting has a value this function does not know: inline policies are refused, with the
    /// reason, rather than the function failing to start (which would leave stacks unanswered).
    Misconfigured(String),
}

impl InlinePolicies {
    pub fn parse(value: Option<&str>) -> Self {
        match value.map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("restricted") => Self::Restricted,
            Some("deny") => Self::Deny,
            Some("any") => Self::Any,
            Some(other) => Self::Misconfigured(format!(
                "this function's INLINE_POLICIES is {other:?}, not deny, restricted or any"
            )),
        }
    }
}

impl Config {
    /// Reads `ALLOWED_RESPONSE_URL_PREFIXES`, `ALLOWED_POLICY_ARNS`, `PERMISSIONS_BOUNDARY_ARN` and
    /// `INLINE_POLICIES`.
    pub fn from_env() -> Self {
        let var = |name| {
            std::env::var(name)
                .ok()
                .filter(|v: &String| !v.trim().is_empty())
        };
        let number = |name| var(name).and_then(|v| v.trim().parse::<u32>().ok());
        Self {
            response_urls: ResponseUrlPolicy::new(var("ALLOWED_RESPONSE_URL_PREFIXES").as_deref()),
            rules: Rules {
                policies: PolicyAllowList::new(
                    var("ALLOWED_POLICY_ARNS")
                        .as_deref()
                        .unwrap_or(DEFAULT_ALLOWED_POLICIES),
                ),
                permissions_boundary: var("PERMISSIONS_BOUNDARY_ARN").map(|v| v.trim().to_owned()),
                inline_policies: InlinePolicies::parse(var("INLINE_POLICIES").as_deref()),
            },
            retry: Retry {
                attempts: number("AWS_MAX_ATTEMPTS")
                    .filter(|n| *n > 0)
                    .unwrap_or(MAX_ATTEMPTS),
                backoff: number("IAM_RETRY_BACKOFF_MS")
                    .map(|ms| std::time::Duration::from_millis(ms.into())),
            },
            healing: Healing {
                function_name: var("AWS_LAMBDA_FUNCTION_NAME").map(|v| v.trim().to_owned()),
                execution_role_arn: var("EXECUTION_ROLE_ARN").map(|v| v.trim().to_owned()),
                adopted: var("HEAL_ADOPTED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")),
            },
            propagation: {
                let default = Propagation::default();
                Propagation {
                    reads: number("PROPAGATION_READS").unwrap_or(default.reads).max(1),
                    interval: number("PROPAGATION_INTERVAL_MS")
                        .map(|ms| std::time::Duration::from_millis(ms.into()))
                        .unwrap_or(default.interval),
                }
            },
        }
    }
}

fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Which response URLs the function may contact.
///
/// CloudFormation's presigned URLs are https on `*.amazonaws.com` (`*.amazonaws.com.cn` in China).
/// Anything else could point the function at an internal address, so it is refused unless an
/// operator lists it as an extra prefix (the local emulator, for instance).
#[derive(Debug, Clone, Default)]
pub struct ResponseUrlPolicy {
    /// Parsed so that they are compared by scheme, host, port and path, never as text: as text,
    /// `http://127.0.0.1:4566` would also admit `http://127.0.0.1:4566@elsewhere/`.
    extra_prefixes: Vec<Url>,
}

impl ResponseUrlPolicy {
    /// Prefixes that are not URLs are ignored (and logged).
    pub fn new(extra_prefixes: Option<&str>) -> Self {
        let extra_prefixes = extra_prefixes
            .map(split_list)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|p| match Url::parse(&p) {
                Ok(url) if url.has_host() => Some(url),
                _ => {
                    tracing::error!(prefix = %p, "ALLOWED_RESPONSE_URL_PREFIXES entry is not a URL; ignored");
                    None
                }
            })
            .collect();
        Self { extra_prefixes }
    }

    fn under(prefix: &Url, url: &Url) -> bool {
        prefix.scheme() == url.scheme()
            && prefix.host_str() == url.host_str()
            && prefix.port_or_known_default() == url.port_or_known_default()
            && url.path().starts_with(prefix.path())
    }

    /// Returns the parsed URL, or why it may not be contacted.
    pub fn check(&self, raw: &str) -> Result<Url, String> {
        let url = Url::parse(raw).map_err(|e| format!("ResponseURL is not a valid URL: {e}"))?;
        let refuse = |why: &str| {
            Err(format!(
                "ResponseURL {} {why}; it was not contacted",
                redact(&url)
            ))
        };
        // Presigned URLs never carry credentials before the host.
        if !url.username().is_empty() || url.password().is_some() {
            return refuse("carries a user name or password");
        }
        if self.extra_prefixes.iter().any(|p| Self::under(p, &url)) {
            return Ok(url);
        }
        let host = url.host_str().unwrap_or_default();
        let aws_host = [".amazonaws.com", ".amazonaws.com.cn"]
            .iter()
            .any(|suffix| host.ends_with(suffix));
        if url.scheme() == "https" && aws_host && url.port().is_none() {
            Ok(url)
        } else {
            refuse(
                "is not an https URL on *.amazonaws.com or *.amazonaws.com.cn nor under \
                 ALLOWED_RESPONSE_URL_PREFIXES",
            )
        }
    }
}

/// ARN patterns (`*` matches any run of characters) that Tiers and ManagedPolicyArns may attach.
#[derive(Debug, Clone)]
pub struct PolicyAllowList {
    patterns: Vec<String>,
}

impl PolicyAllowList {
    pub fn new(list: &str) -> Self {
        Self {
            patterns: split_list(list),
        }
    }

    pub fn allows(&self, arn: &str) -> bool {
        self.patterns.iter().any(|p| glob_match(p, arn))
    }
}

/// Matches `text` against `pattern`, where `*` stands for any run of characters.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// The URL without its query string, fragment and any user name or password, fit for logs.
pub fn redact(url: &Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    shown.set_fragment(None);
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_stars_only_where_they_are() {
        assert!(glob_match(
            "arn:*:iam::aws:policy/A*",
            "arn:aws:iam::aws:policy/Abc"
        ));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("a*b*c", "a-b-c"));
        assert!(!glob_match("a*b*c", "a-c-b"));
        assert!(!glob_match("abc", "abcd"));
        assert!(glob_match("abc", "abc"));
        assert!(!glob_match("a*bc", "abc-"));
        assert!(!glob_match("ab*ba", "aba"));
    }

    #[test]
    fn default_policies_are_the_elastic_beanstalk_ones_in_every_partition() {
        let allow = PolicyAllowList::new(DEFAULT_ALLOWED_POLICIES);
        for p in ["aws", "aws-cn", "aws-us-gov"] {
            assert!(allow.allows(&format!(
                "arn:{p}:iam::aws:policy/AWSElasticBeanstalkWebTier"
            )));
        }
        assert!(!allow.allows("arn:aws:iam::aws:policy/AdministratorAccess"));
        assert!(!allow.allows("arn:aws:iam::123456789012:policy/AWSElasticBeanstalkWebTier"));
    }

    #[test]
    fn response_urls_must_be_cloudformation_s3_or_listed() {
        let policy = ResponseUrlPolicy::new(Some("http://127.0.0.1:5000/"));
        assert!(
            policy
                .check("https://cfn-resp.s3.amazonaws.com/key?X-Amz-Signature=x")
                .is_ok()
        );
        assert!(
            policy
                .check("https://bucket.s3.cn-north-1.amazonaws.com.cn/k")
                .is_ok()
        );
        assert!(policy.check("http://127.0.0.1:5000/bucket/key").is_ok());
        for bad in [
            "http://cfn-resp.s3.amazonaws.com/key",
            "https://169.254.169.254/latest",
            "https://amazonaws.com.evil.example/x",
            "https://s3.amazonaws.com:8443/x",
            "http://127.0.0.1:5001/x",
            "not a url",
            "http://127.0.0.1:5000@10.0.0.1/x",
            "https://user:pw@cfn-resp.s3.amazonaws.com/key",
        ] {
            assert!(policy.check(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn prefixes_compare_as_urls_not_as_text() {
        let policy =
            ResponseUrlPolicy::new(Some("http://127.0.0.1:4566, https://x.example/cfn/, junk"));
        assert!(policy.check("http://127.0.0.1:4566/bucket/key").is_ok());
        assert!(
            policy
                .check("http://127.0.0.1:4566@127.0.0.1:9/bucket")
                .is_err()
        );
        assert!(policy.check("http://127.0.0.1:45667/bucket").is_err());
        assert!(policy.check("https://x.example/cfn/r?s=1").is_ok());
        assert!(policy.check("https://x.example/other").is_err());
        assert!(policy.check("https://x.example.evil/cfn/").is_err());
    }

    #[test]
    fn a_refused_url_is_reported_without_its_signature() {
        let err = ResponseUrlPolicy::default()
            .check("http://10.0.0.1/k?X-Amz-Signature=secret")
            .unwrap_err();
        assert!(!err.contains("secret"), "{err}");
    }
}
