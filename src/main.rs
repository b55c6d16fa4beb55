//! The Lambda entry point: builds the shared clients once, then serves invocations.

use eb_instance_profile::config::Config;
use eb_instance_profile::handler::{self, Env};
use eb_instance_profile::iam::Iam;
use eb_instance_profile::respond::Responder;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::value::RawValue;
use std::sync::Arc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    // JSON logs when the function's log format is JSON; the level from AWS_LAMBDA_LOG_LEVEL/RUST_LOG.
    lambda_runtime::tracing::init_default_subscriber();
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let config = Config::from_env();
    let env = Arc::new(Env {
        iam: Iam::from_sdk(&sdk, &config.retry),
        config,
        responder: Responder::new(),
    });
    // The event is taken as raw JSON text: an event the runtime failed to deserialize (a typed
    // event with one bad field, or JSON deeper than serde_json's limit) would be rejected before the
    // handler runs, and nobody would tell CloudFormation.
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Box<RawValue>>| {
        handler::handle(env.clone(), event)
    }))
    .await
}
