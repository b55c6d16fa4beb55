//! eb-instance-profile: a CloudFormation custom resource that provisions the EC2 instance profile an
//! Elastic Beanstalk environment runs with.
//!
//! The event flows one way through these modules:
//!
//! ```text
//! protocol::parse -> spec::Spec -> lifecycle (plan <-> iam) -> protocol::Response -> respond
//! ```
//!
//! * [`protocol`] reads the CloudFormation request in two stages and renders the response body.
//! * [`spec`] turns resource properties into a validated desired state (pure).
//! * [`names`] validates and generates IAM names (pure).
//! * [`plan`] compares the desired state with what IAM holds and lists the calls to make (pure).
//! * [`iam`] is the only module that talks to IAM.
//! * [`lifecycle`] runs Create, Update and Delete by combining the above.
//! * [`respond`] delivers the response to the presigned URL.
//! * [`handler`] ties one invocation together: routing (CloudFormation, SNS, direct), deadline,
//!   panic guard, response.
//! * [`verify`] answers direct Verify and Repair requests.
//! * [`heal`] undoes out-of-band changes that CloudTrail reports through EventBridge.
//!
//! The first five are pure: they build without the `runtime` feature (no AWS SDK, no Lambda
//! runtime, no HTTP client), which is how the fuzz targets in `fuzz/` compile them.

pub mod config;
pub mod names;
pub mod plan;
pub mod protocol;
pub mod spec;

#[cfg(feature = "runtime")]
pub mod handler;
#[cfg(feature = "runtime")]
pub mod heal;
#[cfg(feature = "runtime")]
pub mod iam;
#[cfg(feature = "runtime")]
pub mod lifecycle;
#[cfg(feature = "runtime")]
pub mod respond;
#[cfg(feature = "runtime")]
pub mod verify;
