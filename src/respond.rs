//! Delivery of the response body to CloudFormation's presigned S3 URL.
//!
//! The URL's query string is a credential (the signature): it is never logged or put in an error.

use crate::config::redact;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// The longest single attempt; S3 answers a 4 KB PUT in well under a second.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// A final answer: a presigned URL that says 403 or 404 once will say it again.
    #[error("the response URL {url} refused the response with HTTP {status}")]
    Refused { url: String, status: u16 },
    #[error("the response could not be delivered to {url} before the deadline: {last}")]
    OutOfTime { url: String, last: String },
}

/// Sends responses; one HTTP client for the life of the process.
#[derive(Debug, Clone)]
pub struct Responder {
    http: reqwest::Client,
}

impl Default for Responder {
    fn default() -> Self {
        Self::new()
    }
}

impl Responder {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            // A redirect could lead anywhere; S3 presigned PUTs do not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(5))
            .build()
            .expect("the HTTP client builds with static settings");
        Self { http }
    }

    /// PUTs `body` with no Content-Type and an exact Content-Length, as the presigned URL expects.
    /// Transport errors, 5xx and 429 are retried with backoff while `deadline` allows.
    pub async fn send(&self, url: &Url, body: Vec<u8>, deadline: Instant) -> Result<(), SendError> {
        let shown = redact(url);
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1u32;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let result = self
                .http
                .put(url.clone())
                .header(reqwest::header::CONTENT_LENGTH, body.len())
                .body(body.clone())
                .timeout(left.min(ATTEMPT_TIMEOUT))
                .send()
                .await;
            let last = match result {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(url = %shown, attempt, status = r.status().as_u16(), "response delivered");
                    return Ok(());
                }
                Ok(r) if r.status().is_server_error() || r.status().as_u16() == 429 => {
                    format!("HTTP {}", r.status().as_u16())
                }
                Ok(r) => {
                    return Err(SendError::Refused {
                        url: shown,
                        status: r.status().as_u16(),
                    });
                }
                // reqwest's error text can carry the URL: keep only what went wrong.
                Err(e) => format!("transport error: {}", e.without_url()),
            };
            tracing::warn!(url = %shown, attempt, error = %last, "response not delivered; retrying");
            if Instant::now() + backoff >= deadline {
                return Err(SendError::OutOfTime { url: shown, last });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_drops_the_signature() {
        let url = Url::parse(
            "https://b.s3.amazonaws.com/arn%3Aaws/key?X-Amz-Signature=abc&Signature=def#frag",
        )
        .unwrap();
        let shown = redact(&url);
        assert_eq!(shown, "https://b.s3.amazonaws.com/arn%3Aaws/key");
        let with_user = Url::parse("https://u:p@h.example/k?Signature=s").unwrap();
        assert_eq!(redact(&with_user), "https://h.example/k");
    }
}
