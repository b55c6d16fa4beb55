//! One invocation, from event to delivered response.
//!
//! The one promise this module keeps: every request that can be answered is answered, before the
//! Lambda deadline. A stack whose custom resource stays silent waits up to an hour, and its rollback
//! another hour, so the work runs under a time budget that leaves room for the response, and in its
//! own task so that a panic becomes a FAILED response instead of a silent crash.

use crate::config::Config;
use crate::config::redact;
use crate::heal;
use crate::iam::Iam;
use crate::lifecycle;
use crate::names;
use crate::plan;
use crate::protocol::{self, Outcome, ReplyTo, Status};
use crate::respond::Responder;
use crate::spec::truncate;
use crate::verify;
use lambda_runtime::LambdaEvent;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// What every invocation shares: built once in `main`.
#[derive(Debug)]
pub struct Env {
    pub iam: Iam,
    pub config: Config,
    pub responder: Responder,
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    #[error(transparent)]
    InvalidRequest(#[from] protocol::InvalidRequest),
    #[error("{0}")]
    ResponseUrlRefused(String),
    #[error(transparent)]
    TooLong(#[from] protocol::TooLong),
    #[error(transparent)]
    Send(#[from] crate::respond::SendError),
    #[error("invalid SNS notification: {0}")]
    Sns(String),
    #[error(transparent)]
    Verify(#[from] verify::VerifyError),
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(error: HandlerError) -> Self {
        let error_type = match &error {
            HandlerError::InvalidRequest(_) => "InvalidRequest",
            HandlerError::ResponseUrlRefused(_) => "ResponseUrlRefused",
            HandlerError::TooLong(_) => "ResponseTooLong",
            HandlerError::Send(_) => "ResponseNotDelivered",
            HandlerError::Sns(_) => "InvalidRequest",
            HandlerError::Verify(verify::VerifyError::Iam(_)) => "IamError",
            HandlerError::Verify(_) => "InvalidRequest",
        };
        Self {
            error_type: error_type.into(),
            error_message: error.to_string(),
        }
    }
}

/// The time kept back from the work for delivering the response: a fifth of what is left, at
/// least half a second, at most ten seconds.
pub fn response_reserve(left: Duration) -> Duration {
    (left / 5).clamp(Duration::from_millis(500), Duration::from_secs(10))
}

/// Kept after the last response attempt, to tell the Lambda runtime that the response could not be
/// delivered: an invocation that is still sending when Lambda's deadline passes ends as a timeout,
/// with no word on why.
const REPORT_MARGIN: Duration = Duration::from_millis(300);

/// Converts Lambda's deadline (milliseconds since the epoch) into an [`Instant`].
fn deadline_of(epoch_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    Instant::now() + Duration::from_millis(epoch_ms.saturating_sub(now_ms))
}

/// What ends the time for a request's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The Lambda invocation's deadline.
    Deadline,
    /// The request's ServiceTimeout, which comes first.
    ServiceTimeout(Duration),
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Deadline => f.write_str("the time left before the function's deadline"),
            Self::ServiceTimeout(t) => {
                write!(f, "the request's ServiceTimeout of {} s", t.as_secs())
            }
        }
    }
}

/// Runs `work` in its own task within `budget`, the time `limit` leaves less what the response
/// needs. A panic or an overrun becomes a FAILED outcome with `physical_id`; an overrun also stops
/// the work.
pub async fn guarded<F>(work: F, budget: Duration, limit: Limit, physical_id: &str) -> Outcome
where
    F: Future<Output = Outcome> + Send + 'static,
{
    let mut task = tokio::spawn(work);
    match tokio::time::timeout(budget, &mut task).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(joined)) => {
            let detail = joined
                .try_into_panic()
                .ok()
                .and_then(|p| {
                    p.downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                })
                .unwrap_or_else(|| "the task was cancelled".into());
            tracing::error!(panic = %detail, "handler panicked");
            Outcome::failed(physical_id, format!("internal error: {detail}"))
        }
        Err(_) => {
            task.abort();
            tracing::error!(budget_ms = budget.as_millis() as u64, "work timed out");
            Outcome::failed(
                physical_id,
                format!(
                    "timed out: IAM did not finish within {:.1} s, {limit} less what the response \
                     needs; the work was stopped",
                    budget.as_secs_f64()
                ),
            )
        }
    }
}

/// Handles one Lambda event: a CloudFormation request, the same delivered through SNS, a direct
/// Verify or Repair, or an EventBridge event for self-healing. Returns an error (so that Lambda
/// retries) only when a response could not be delivered, or the event is not one of these; an
/// EventBridge event is always answered with success.
///
/// The event arrives as raw JSON text: anything the Lambda runtime would have to refuse before this
/// function runs (a property nested too deep, a lone UTF-16 surrogate) could not be answered.
pub async fn handle(
    env: Arc<Env>,
    event: LambdaEvent<Box<RawValue>>,
) -> Result<Value, HandlerError> {
    let deadline = deadline_of(event.context.deadline);
    let text = event.payload.get();
    let payload = match serde_json::from_str::<Value>(text) {
        Ok(payload) => payload,
        Err(_) => return answer_text(&env, text, deadline).await,
    };
    // A CloudFormation request is one whatever else it carries.
    if payload.get("RequestType").is_none() {
        if let Some(records) = payload.get("Records") {
            return sns(&env, records, deadline).await;
        }
        // Direct requests wait out IAM's propagation until a second before the deadline.
        let settle = deadline
            .checked_sub(std::time::Duration::from_secs(1))
            .unwrap_or(deadline);
        if heal::is_event(&payload) {
            let config = &env.config;
            let policies = &config.rules.policies;
            let iam = env.iam.settling_until(settle);
            return Ok(heal::handle(&iam, policies, &config.healing, &payload).await);
        }
        if payload.get("Action").is_some() {
            let check = verify::Check::parse(payload)?;
            tracing::info!(action = ?check.action, profile = %shown(&check.instance_profile_name), "direct request");
            let report = check
                .run(&env.iam.settling_until(settle), &env.config)
                .await?;
            tracing::info!(verdict = %report["Verdict"], report = %report, "direct request answered");
            return Ok(report);
        }
    }
    answer(&env, payload, deadline).await
}

/// At most this many characters of a value from the event go into a log line: ids are short,
/// and one that is not must not make a megabyte log line (CloudWatch cuts events at 256 KB).
const LOGGED_CHARS: usize = 256;

/// `value` as logged: cut at [`LOGGED_CHARS`] characters.
fn shown(value: &str) -> String {
    truncate(value, LOGGED_CHARS)
}

/// CloudFormation's SNS-backed custom resources: each record's Message is a request, answered on its
/// own ResponseURL. All records are handled; the invocation fails if any could not be answered.
async fn sns(env: &Arc<Env>, records: &Value, deadline: Instant) -> Result<Value, HandlerError> {
    let records = match records.as_array() {
        Some(records) if !records.is_empty() => records,
        _ => {
            return Err(HandlerError::Sns(
                "Records is not a list of SNS records".into(),
            ));
        }
    };
    let answers = futures_util::future::join_all(records.iter().map(|record| async move {
        let message = record
            .pointer("/Sns/Message")
            .and_then(Value::as_str)
            .ok_or_else(|| HandlerError::Sns("a record has no Sns.Message".into()))?;
        answer_text(env, message, deadline).await
    }))
    .await;
    let mut results = Vec::new();
    for answer in answers {
        results.push(answer?);
    }
    Ok(Value::Array(results))
}

/// A request given as JSON text (the event itself when it is not plain JSON, an SNS message).
async fn answer_text(env: &Arc<Env>, text: &str, deadline: Instant) -> Result<Value, HandlerError> {
    match protocol::parse_text(text) {
        Ok(request) => answer_request(env, request, deadline).await,
        Err(invalid) => answer_invalid(env, invalid, deadline).await,
    }
}

/// A request given as parsed JSON.
async fn answer(env: &Arc<Env>, payload: Value, deadline: Instant) -> Result<Value, HandlerError> {
    match protocol::parse(payload) {
        Ok(request) => answer_request(env, request, deadline).await,
        Err(invalid) => answer_invalid(env, invalid, deadline).await,
    }
}

/// Handles one CloudFormation request, from its protocol fields to the delivered response.
async fn answer_request(
    env: &Arc<Env>,
    request: protocol::Request,
    deadline: Instant,
) -> Result<Value, HandlerError> {
    let url = env
        .config
        .response_urls
        .check(&request.reply_to.response_url)
        .map_err(HandlerError::ResponseUrlRefused)?;
    tracing::info!(
        request_type = request.kind_name(),
        stack_id = shown(request.stack_id()),
        logical_id = shown(request.logical_id()),
        request_id = shown(request.request_id()),
        response_url = %redact(&url),
        "request received"
    );

    // CloudFormation gives up on the request ServiceTimeout seconds after sending it: the answer
    // must arrive before then, whatever time Lambda still allows.
    let limit = match request.service_timeout {
        Some(timeout) if Instant::now() + timeout < deadline => Limit::ServiceTimeout(timeout),
        _ => Limit::Deadline,
    };
    let deadline = match limit {
        Limit::ServiceTimeout(timeout) => Instant::now() + timeout,
        Limit::Deadline => deadline,
    };
    let left = deadline.saturating_duration_since(Instant::now());
    let budget = left.saturating_sub(response_reserve(left));
    let fallback = plan::fallback_physical_id(&env.config.rules, &request);
    // Ids too long to echo in a response CloudFormation accepts: no answer could ever be
    // delivered, so no Delete would ever follow. Nothing is done.
    protocol::render(
        &request.reply_to,
        &Outcome::failed(fallback.clone(), String::new()),
    )?;
    let work = {
        let (env, request) = (env.clone(), request.clone());
        let work_deadline = Instant::now() + budget;
        async move { lifecycle::handle(&env.iam, &env.config, &request, work_deadline).await }
    };
    let outcome = guarded(work, budget, limit, &fallback).await;
    tracing::info!(
        status = ?outcome.status,
        physical_id = %shown(&outcome.physical_id),
        reason = %shown(&outcome.reason),
        "request handled"
    );
    deliver(env, &request.reply_to, &url, &outcome, deadline).await
}

async fn deliver(
    env: &Env,
    reply_to: &ReplyTo,
    url: &url::Url,
    outcome: &Outcome,
    deadline: Instant,
) -> Result<Value, HandlerError> {
    let body = protocol::render(reply_to, outcome)?;
    let last_attempt = deadline.checked_sub(REPORT_MARGIN).unwrap_or(deadline);
    env.responder.send(url, body, last_attempt).await?;
    Ok(json!({
        "Status": match outcome.status { Status::Success => "SUCCESS", Status::Failed => "FAILED" },
        "PhysicalResourceId": outcome.physical_id,
    }))
}

/// An event whose protocol fields are broken: FAILED if it says where to answer, else an error.
async fn answer_invalid(
    env: &Env,
    invalid: protocol::InvalidRequest,
    deadline: Instant,
) -> Result<Value, HandlerError> {
    tracing::error!(reason = %shown(&invalid.reason), "invalid request");
    let Some(reply_to) = invalid.reply_to.clone() else {
        return Err(invalid.into());
    };
    let url = env
        .config
        .response_urls
        .check(&reply_to.response_url)
        .map_err(HandlerError::ResponseUrlRefused)?;
    let physical_id = invalid.physical_id.clone().unwrap_or_else(|| {
        names::generated(
            &reply_to.stack_id,
            &reply_to.logical_id,
            &reply_to.request_id,
        )
    });
    let outcome = Outcome::failed(physical_id, invalid.to_string());
    deliver(env, &reply_to, &url, &outcome, deadline).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panic_becomes_failed_with_its_message() {
        let outcome = guarded(
            async { panic!("boom at step 3") },
            Duration::from_secs(5),
            Limit::Deadline,
            "p",
        )
        .await;
        assert_eq!(outcome.status, Status::Failed);
        assert_eq!(outcome.physical_id, "p");
        assert!(
            outcome.reason.contains("boom at step 3"),
            "{}",
            outcome.reason
        );
    }

    #[tokio::test]
    async fn an_overrun_becomes_failed_and_stops_the_work() {
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let work = async move {
            let _keep = tx;
            std::future::pending::<Outcome>().await
        };
        let limit = Limit::ServiceTimeout(Duration::from_secs(30));
        let outcome = guarded(work, Duration::from_millis(50), limit, "p").await;
        assert_eq!(outcome.status, Status::Failed);
        assert!(outcome.reason.contains("timed out"), "{}", outcome.reason);
        assert!(
            outcome.reason.contains("ServiceTimeout of 30 s"),
            "{}",
            outcome.reason
        );
        // The aborted task drops its sender: the work really stopped.
        assert!(rx.await.is_err());
    }

    #[tokio::test]
    async fn finished_work_passes_through() {
        let outcome = guarded(
            async { Outcome::success("p", "ok") },
            Duration::from_secs(5),
            Limit::Deadline,
            "x",
        )
        .await;
        assert_eq!(outcome, Outcome::success("p", "ok"));
    }

    #[test]
    fn the_reserve_scales_with_the_time_left() {
        assert_eq!(
            response_reserve(Duration::from_secs(1)),
            Duration::from_millis(500)
        );
        assert_eq!(
            response_reserve(Duration::from_secs(20)),
            Duration::from_secs(4)
        );
        assert_eq!(
            response_reserve(Duration::from_secs(900)),
            Duration::from_secs(10)
        );
    }
}
