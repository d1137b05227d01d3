//! The client side of the JSON error envelope: every typed client (storaged's, compactord's)
//! sends through here, so a refused call is a [`ClientError::Status`] with the server's
//! status, kind and message, whichever daemon answered.

use serde::de::DeserializeOwned;

use crate::error::ErrorBody;

/// The error of a typed client call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The call got no answer. The message carries the whole cause chain (reqwest's own
    /// says only "error sending request", whether the connection was refused, reset or
    /// closed mid-body).
    #[error("request to {url} failed: {}", causes(source))]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{status} from {url}: {message}")]
    Status {
        url: String,
        status: u16,
        kind: Option<String>,
        message: String,
    },
    #[error("invalid response from {url}: {message}")]
    InvalidResponse { url: String, message: String },
}

/// `error` and its sources, outermost first, joined by ": ".
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The envelope's `kind` (`not_found`, `bad_request`, …) of a refused call.
    pub fn kind(&self) -> Option<&str> {
        match self {
            ClientError::Status { kind, .. } => kind.as_deref(),
            _ => None,
        }
    }
}

/// Turns a non-success response into [`ClientError::Status`], reading the JSON envelope.
pub async fn check(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let url = response.url().to_string();
    let text = response.text().await.unwrap_or_default();
    let body: Option<ErrorBody> = serde_json::from_str(&text).ok();
    Err(ClientError::Status {
        url,
        status: status.as_u16(),
        kind: body.as_ref().and_then(|b| b.kind.clone()),
        message: body.map(|b| b.error).unwrap_or(text),
    })
}

/// Sends `request` (to `url`, for messages); a non-success answer is
/// [`ClientError::Status`].
pub async fn send(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<reqwest::Response, ClientError> {
    let response = request
        .send()
        .await
        .map_err(|source| ClientError::Transport {
            url: url.to_owned(),
            source,
        })?;
    check(response).await
}

/// Sends `request` (to `url`, for messages) and reads a JSON answer.
pub async fn send_json<T: DeserializeOwned>(
    request: reqwest::RequestBuilder,
    url: &str,
) -> Result<T, ClientError> {
    send(request, url)
        .await?
        .json()
        .await
        .map_err(|e| ClientError::InvalidResponse {
            url: url.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_call_that_gets_no_answer_says_why() {
        // Nothing listens on the discard port of loopback.
        let url = "http://127.0.0.1:9/health";
        let error = send(reqwest::Client::new().get(url), url)
            .await
            .expect_err("nothing answers on port 9");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("request to {url} failed: ")),
            "{message}"
        );
        // reqwest's own message ends at "error sending request for url (…)"; the cause
        // chain names the refusal.
        assert!(message.to_lowercase().contains("refused"), "{message}");
    }
}
