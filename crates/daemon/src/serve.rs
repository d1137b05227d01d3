//! Serving a router on an already-bound listener until a shutdown future resolves (the
//! mini-redis shape: tests bind port 0 and pass the socket in).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot, watch};
use tower::ServiceExt;

use crate::error::{json_errors, route_not_found};

/// Adds what every daemon's router has: health and version routes, JSON 404/405 answers.
pub fn finish(service: &'static str, router: Router) -> Router {
    let health = move || async move { axum::Json(json!({"status": "ok", "service": service})) };
    router
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route("/readyz", get(health))
        .route(
            "/version",
            get(move || async move {
                axum::Json(json!({"service": service, "version": env!("CARGO_PKG_VERSION")}))
            }),
        )
        .fallback(route_not_found)
        .layer(axum::middleware::from_fn(json_errors))
}

/// Serves until `shutdown` resolves, then drains in-flight requests, on the calling runtime
/// (storaged and compactord: their handlers hand long work to tasks of that runtime).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves until `shutdown` resolves, then drains in-flight requests, on `threads`
/// single-threaded runtimes (queryd's read path).
///
/// Each runtime has an OS thread of its own and accepts from the shared `listener`; a
/// connection stays on the thread that accepted it, so its requests are read, handled and
/// answered on one thread, with none of the multi-threaded scheduler's hand-offs (it woke a
/// second worker for most requests). A thread accepts only while it has fewer than
/// [`MAX_AHEAD`] connections more than the least loaded one ([`Balance`]): within that slack
/// the thread the kernel wakes first takes the connection, which keeps a client thread's
/// burst of connections together. Measured in docs/decisions.md ("Connections are served on
/// one single-threaded runtime per core"): 100-row pages 1.5x faster than the multi-threaded
/// runtime, and than strict alternation; with no bound, all connections sometimes landed on
/// one thread.
///
/// What this asks of the handlers: they must not block (long work goes to another runtime or
/// `spawn_blocking`), and work that outlives a request is spawned on a runtime of its own,
/// not with `tokio::spawn` (which would tie it to one connection thread, and end it with that
/// thread's runtime at shutdown).
pub async fn serve_per_core(
    listener: TcpListener,
    router: Router,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let threads = threads.max(1);
    let listener = listener.into_std()?;
    let balance = Arc::new(Balance::new(threads));
    let (stop, stopped) = watch::channel(false);
    let mut finished = Vec::new();
    for i in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        // Registered here, so that every thread that runs can accept: a thread that failed
        // to start would hold the others back (its count stays 0).
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(listener.try_clone()?)?
        };
        let thread = Thread {
            index: i,
            listener,
            router: router.clone(),
            balance: balance.clone(),
            stopped: stopped.clone(),
        };
        let (done, done_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("http-{i}"))
            .spawn(move || {
                runtime.block_on(thread.serve());
                drop(done);
            })?;
        finished.push(done_rx);
    }
    shutdown.await;
    let _ = stop.send(true);
    // Each thread drops its sender when its connections are closed (or if it panicked).
    for done in finished {
        let _ = done.await;
    }
    Ok(())
}

/// How many connections one thread of [`serve_per_core`] may have open beyond the least
/// loaded one before it stops accepting.
pub const MAX_AHEAD: usize = 4;

/// The connections open on each thread of [`serve_per_core`].
struct Balance {
    open: Vec<AtomicUsize>,
    /// Notified whenever a count changes.
    changed: Notify,
}

impl Balance {
    fn new(threads: usize) -> Self {
        Self {
            open: (0..threads).map(|_| AtomicUsize::new(0)).collect(),
            changed: Notify::new(),
        }
    }

    /// Resolves once thread `i` has fewer than [`MAX_AHEAD`] connections open beyond every
    /// other thread.
    async fn turn(&self, i: usize) {
        loop {
            // Created before the check, so a change right after it still wakes us.
            let changed = self.changed.notified();
            let mine = self.open[i].load(Ordering::Relaxed);
            if self
                .open
                .iter()
                .all(|o| mine < o.load(Ordering::Relaxed) + MAX_AHEAD)
            {
                return;
            }
            changed.await;
        }
    }

    fn add(&self, i: usize) {
        self.open[i].fetch_add(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }

    fn remove(&self, i: usize) {
        self.open[i].fetch_sub(1, Ordering::Relaxed);
        self.changed.notify_waiters();
    }
}

/// One connection thread of [`serve_per_core`].
struct Thread {
    index: usize,
    listener: TcpListener,
    router: Router,
    balance: Arc<Balance>,
    stopped: watch::Receiver<bool>,
}

impl Thread {
    /// Accepts and serves connections until `stopped` turns true, then shuts the open ones
    /// down gracefully (requests in flight are answered) and returns when all are closed.
    async fn serve(self) {
        let Self {
            index,
            listener,
            router,
            balance,
            mut stopped,
        } = self;
        // Every connection task holds a receiver of `live`; `closed()` resolves when the
        // last one is dropped.
        let (live, _) = watch::channel(());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.keep_alive(true);
        loop {
            let accepted = async {
                balance.turn(index).await;
                listener.accept().await
            };
            let stream = tokio::select! {
                accepted = accepted => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) if is_connection_error(&e) => continue,
                    // Out of descriptors or memory: pause instead of spinning (as axum::serve).
                    Err(e) => {
                        tracing::error!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                        continue;
                    }
                },
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            balance.add(index);
            // Answers are written whole; waiting to coalesce them (Nagle) only adds latency.
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(
                router
                    .clone()
                    .map_request(|req: Request<Incoming>| req.map(Body::new)),
            );
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let (mut stopped, guard, balance) =
                (stopped.clone(), live.subscribe(), balance.clone());
            tokio::spawn(async move {
                let mut conn = std::pin::pin!(conn);
                let stopping = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                tokio::select! {
                    _ = conn.as_mut() => {}
                    () = stopping => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
                balance.remove(index);
                drop(guard);
            });
        }
        drop(listener);
        live.closed().await;
    }
}

/// Errors of one connection that was reset before it was accepted.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    )
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A router whose `/slow` answers after `delay`, and which names the thread that served.
    fn router(delay: Duration) -> Router {
        let thread = || async { std::thread::current().name().unwrap_or("?").to_owned() };
        let slow = move || async move {
            tokio::time::sleep(delay).await;
            "done"
        };
        finish(
            "test",
            Router::new()
                .route("/thread", get(thread))
                .route("/slow", get(slow)),
        )
    }

    #[tokio::test]
    async fn per_core_connections_are_balanced_kept_on_their_thread_and_drained_at_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_per_core(
            listener,
            router(Duration::from_millis(300)),
            2,
            async {
                let _ = stopped.await;
            },
        ));

        // Twelve clients, each keeping its own connection open: both threads get some, the
        // counts within MAX_AHEAD of each other.
        let clients: Vec<reqwest::Client> = (0..12).map(|_| reqwest::Client::new()).collect();
        let mut first = Vec::new();
        for client in &clients {
            let name = client.get(format!("{url}/thread")).send().await.unwrap();
            first.push(name.text().await.unwrap());
        }
        let on = |thread: &str| first.iter().filter(|t| *t == thread).count();
        let (zero, one) = (on("http-0"), on("http-1"));
        assert_eq!(zero + one, 12, "{first:?}");
        assert!(zero.abs_diff(one) <= MAX_AHEAD, "{first:?}");
        // A connection stays on its thread.
        for (client, thread) in clients.iter().zip(&first) {
            let name = client.get(format!("{url}/thread")).send().await.unwrap();
            assert_eq!(&name.text().await.unwrap(), thread);
        }
        let health: serde_json::Value = reqwest::get(format!("{url}/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health["status"], "ok");

        // A request in flight when shutdown starts is answered; then the server ends and
        // stops accepting.
        let slow = tokio::spawn(reqwest::get(format!("{url}/slow")));
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(()).unwrap();
        let answer = slow.await.unwrap().unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "done");
        tokio::time::timeout(Duration::from_secs(10), server)
            .await
            .expect("server did not finish after its requests drained")
            .unwrap()
            .unwrap();
        assert!(reqwest::get(format!("{url}/health")).await.is_err());
    }
}
