//! A refusal is read by its client: the rest of a refused request's body is read (and
//! discarded) before the refusal is answered.
//!
//! Why: a handler that refuses before it reads the body (a 409 for a dataset that exists, a
//! 401, a 400 for a bad query string) answers while the client is still sending. hyper then
//! closes the connection with body bytes unread, the client's next write fails with a broken
//! pipe, and clients such as hyper's report that write error instead of the answer. queryd,
//! forwarding an upload to storaged, turned storaged's 409 into a 503 this way whenever the
//! body was still in flight (`create_api::health_and_demo_commands`, one CI run in three
//! under load).
//!
//! Bounded: at most [`DRAIN_BYTES`] are read, within [`DRAIN_TIME`]; past either, the
//! connection is closed as before (a client still sending more sees the connection end).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::Response;
use futures::StreamExt;

/// How much of a refused body is read before the refusal is answered.
pub const DRAIN_BYTES: u64 = 64 << 20;

/// How long a refusal waits for the rest of its body.
pub const DRAIN_TIME: Duration = Duration::from_secs(10);

/// Middleware: requests that may carry a body get it through a shared handle, and an error
/// answer (4xx, 5xx) first reads what the handler left of it.
pub async fn drain_refused_bodies(request: Request, next: axum::middleware::Next) -> Response {
    if !may_have_body(&request) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let shared = Arc::new(Mutex::new(body.into_data_stream()));
    let reader = shared.clone();
    // The handler reads through the handle; the lock is held only within one poll.
    let body = Body::from_stream(futures::stream::poll_fn(move |cx| {
        lock(&reader).poll_next_unpin(cx)
    }));
    let response = next.run(Request::from_parts(parts, body)).await;
    let status = response.status();
    if status.is_client_error() || status.is_server_error() {
        let _ = tokio::time::timeout(DRAIN_TIME, drain(&shared, DRAIN_BYTES)).await;
    }
    response
}

/// Bodies declared at most this long are left to hyper: they arrive with the request's head,
/// and hyper discards what it already holds of an unread body, keeping the connection.
/// (The hot path, queryd's small JSON queries, skips the handle.)
pub const SMALL_BODY_BYTES: u64 = 64 << 10;

/// Whether `request` may carry a body still in flight when it is refused: not a GET, HEAD,
/// OPTIONS or DELETE, and a declared length over [`SMALL_BODY_BYTES`] or none (streamed).
fn may_have_body(request: &Request) -> bool {
    let method = request.method();
    if [Method::GET, Method::HEAD, Method::OPTIONS, Method::DELETE].contains(method) {
        return false;
    }
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    declared.is_none_or(|length| length > SMALL_BODY_BYTES)
}

/// Reads and discards the rest of `body`, at most `limit` bytes; stops at its end or at an
/// error (the client went away).
async fn drain(body: &Mutex<BodyDataStream>, limit: u64) {
    let mut read = 0u64;
    while read < limit {
        let next = futures::future::poll_fn(|cx| lock(body).poll_next_unpin(cx)).await;
        match next {
            Some(Ok(chunk)) => read += chunk.len() as u64,
            Some(Err(_)) | None => return,
        }
    }
}

fn lock(body: &Mutex<BodyDataStream>) -> std::sync::MutexGuard<'_, BodyDataStream> {
    body.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::post;
    use tokio::net::TcpListener;

    use super::*;

    /// A handler that refuses without reading the body, and one that reads it.
    fn router() -> Router {
        Router::new()
            .route(
                "/refuse",
                post(|| async { (axum::http::StatusCode::CONFLICT, "exists") }),
            )
            .route(
                "/read",
                post(|body: axum::body::Bytes| async move { body.len().to_string() })
                    .layer(axum::extract::DefaultBodyLimit::disable()),
            )
            .layer(axum::middleware::from_fn(drain_refused_bodies))
    }

    #[tokio::test]
    async fn a_refusal_before_the_body_is_read_reaches_a_client_still_sending() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router()).await });

        // A client sending a body far bigger than the socket buffers, and reading the answer
        // beside it. Without the drain, the server answers and closes with the body unread,
        // and the client's writes fail (a broken pipe, or a reset that can also discard the
        // answer it had not read yet): what made queryd report storaged's 409 as a 503.
        let length = 32usize << 20;
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let sending = tokio::spawn(async move {
            let head =
                format!("POST /refuse HTTP/1.1\r\nhost: test\r\ncontent-length: {length}\r\n\r\n");
            write.write_all(head.as_bytes()).await?;
            let chunk = vec![7u8; 64 << 10];
            for _ in 0..length / chunk.len() {
                write.write_all(&chunk).await?;
            }
            write.flush().await?;
            Ok::<_, std::io::Error>(write)
        });
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        while !String::from_utf8_lossy(&answer).ends_with("exists") {
            let n = read
                .read(&mut buffer)
                .await
                .expect("the answer is readable");
            assert!(
                n > 0,
                "closed before the answer: {:?}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buffer[..n]);
        }
        assert!(
            answer.starts_with(b"HTTP/1.1 409"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
        let write = sending.await.unwrap().expect("the whole body was taken");
        drop(write);

        // A handler that reads the body gets all of it through the handle.
        let read = reqwest::Client::new()
            .post(format!("http://{addr}/read"))
            .body(vec![7u8; length])
            .send()
            .await
            .unwrap();
        assert_eq!(read.text().await.unwrap(), length.to_string());
    }
}
