//! Serving a router on an already-bound listener until a shutdown future resolves (the
//! mini-redis shape: tests bind port 0 and pass the socket in).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use axum::serve::ListenerExt;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tower::ServiceExt;

use crate::drain::drain_refused_bodies;
use crate::error::{json_errors, route_not_found};

/// Adds what every daemon's router has: health, readiness (ready once serving) and version
/// routes, JSON 404/405 answers, refusals that reach a client still sending its body
/// ([`drain`](crate::drain)).
pub fn finish(service: &'static str, router: Router) -> Router {
    let ready = move || async move { axum::Json(json!({"status": "ok", "service": service})) };
    finish_with(service, json!({}), router.route("/readyz", get(ready)))
}

/// [`finish`] for a daemon whose router answers `/readyz` itself, with `version`'s fields
/// added to the `/version` answer.
pub fn finish_with(service: &'static str, version: serde_json::Value, router: Router) -> Router {
    let health = move || async move { axum::Json(json!({"status": "ok", "service": service})) };
    let mut answer =
        json!({"name": "strata", "service": service, "version": env!("CARGO_PKG_VERSION")});
    if let (Some(answer), serde_json::Value::Object(extra)) = (answer.as_object_mut(), version) {
        answer.extend(extra);
    }
    router
        .route("/health", get(health))
        .route("/healthz", get(health))
        .route(
            "/version",
            get(move || {
                let answer = answer.clone();
                async move { axum::Json(answer) }
            }),
        )
        .fallback(route_not_found)
        .layer(axum::middleware::from_fn(json_errors))
        .layer(axum::middleware::from_fn(drain_refused_bodies))
}

/// Serves until `shutdown` resolves, then drains in-flight requests, on the calling runtime
/// (storaged and compactord: their handlers hand long work to tasks of that runtime).
///
/// Connections are `TCP_NODELAY`, as [`serve_per_core`]'s: an answer goes out as its head
/// and then its body, and with Nagle's algorithm the body waited for the client's delayed
/// ACK of the head. queryd's cold key lookups of lineitem through storaged's object API took
/// ~50 ms in one of two, ~10 ms otherwise (`benches/scale`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves until `shutdown` resolves, then drains in-flight requests, on `threads`
/// single-threaded runtimes (queryd's read path), each with the router `router()` makes it
/// (so that what its requests clone is not shared with another core).
///
/// Each runtime has an OS thread of its own (`http-0`, `http-1`, …); a connection stays on
/// the thread it is placed on, so its requests are read, handled and answered on one thread,
/// with none of the multi-threaded scheduler's hand-offs (it woke a second worker for most
/// requests). One acceptor, on the calling runtime, places every connection ([`Placement`]):
/// connections whose handshake ran on the same CPU — on loopback, those a client thread opened
/// — go to the same thread, so that thread and the client's can share a core; a thread never
/// gets more than [`MAX_AHEAD`] connections beyond the least loaded one. Measured in
/// docs/decisions.md ("Connections are served on one single-threaded runtime per core").
///
/// What this asks of the handlers: they must not block (long work goes to another runtime or
/// `spawn_blocking`), and work that outlives a request is spawned on a runtime of its own,
/// not with `tokio::spawn` (which would tie it to one connection thread, and end it with that
/// thread's runtime at shutdown).
pub async fn serve_per_core(
    listener: TcpListener,
    router: impl Fn() -> Router,
    threads: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let threads = threads.max(1);
    let open: Arc<[AtomicUsize]> = (0..threads).map(|_| AtomicUsize::new(0)).collect();
    let (stop, stopped) = watch::channel(false);
    let mut inboxes = Vec::new();
    let mut finished = Vec::new();
    for index in 0..threads {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (inbox, connections) = mpsc::unbounded_channel();
        let thread = Thread {
            index,
            connections,
            router: router(),
            open: open.clone(),
            stopped: stopped.clone(),
        };
        let (done, done_rx) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(format!("http-{index}"))
            .spawn(move || {
                runtime.block_on(thread.serve());
                drop(done);
            })?;
        inboxes.push(inbox);
        finished.push(done_rx);
    }

    let mut placement = Placement::new(threads);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut ended = Ok(());
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if is_connection_error(&e) => continue,
                // Out of descriptors or memory: pause instead of spinning (as axum::serve).
                Err(e) => {
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers are written whole; waiting to coalesce them (Nagle) only adds latency.
        let _ = stream.set_nodelay(true);
        // At accept, the CPU of the handshake. (Waiting for the first request's bytes gave
        // the same CPU in every connection measured: wrk sends right after connecting.)
        let cpu = incoming_cpu(&stream);
        let Ok(stream) = stream.into_std() else {
            continue;
        };
        if !hand_over(stream, cpu, &mut placement, &open, &inboxes) {
            ended = Err(std::io::Error::other("every connection thread has ended"));
            break;
        }
    }
    drop(listener);
    let _ = stop.send(true);
    drop(inboxes);
    // Each thread drops its sender when its connections are closed (or if it panicked).
    for done in finished {
        let _ = done.await;
    }
    ended
}

/// Hands `stream` (its handshake on `cpu`) to the thread [`Placement`] picks, counting it
/// there; false if every thread has ended (the connection is dropped).
fn hand_over(
    mut stream: std::net::TcpStream,
    cpu: Option<usize>,
    placement: &mut Placement,
    open: &[AtomicUsize],
    inboxes: &[mpsc::UnboundedSender<std::net::TcpStream>],
) -> bool {
    loop {
        let counts: Vec<usize> = open.iter().map(|o| o.load(Ordering::Relaxed)).collect();
        if counts.iter().all(|&c| c >= ENDED) {
            return false;
        }
        let to = placement.place(cpu, &counts);
        tracing::debug!(?cpu, thread = to, "connection placed");
        // Counted here, before the next placement reads the counts; the thread uncounts it
        // when it closes (or drops it unserved).
        open[to].fetch_add(1, Ordering::Relaxed);
        match inboxes[to].send(stream) {
            Ok(()) => return true,
            Err(returned) => {
                // That thread has ended (it panicked): from now on never the least loaded,
                // so no group of CPUs stays on it.
                open[to].store(ENDED, Ordering::Relaxed);
                stream = returned.0;
            }
        }
    }
}

/// How many connections one thread of [`serve_per_core`] may have open beyond the least
/// loaded one.
pub const MAX_AHEAD: usize = 4;

/// The open-connection count of a thread of [`serve_per_core`] that has ended.
const ENDED: usize = usize::MAX / 2;

/// Which thread of [`serve_per_core`] serves a new connection.
///
/// On loopback a connection's handshake runs on the CPU of the client thread that connected
/// (`SO_INCOMING_CPU`). CPUs are grouped by `cpu % threads`, and each group is served by one
/// thread, so a client thread's connections share a server thread, and the two can share a
/// core, waking each other without an interrupt to the other CPU; client threads on other
/// CPUs get the other server threads. When a group's thread is [`MAX_AHEAD`] connections
/// ahead of the least loaded thread, the two threads trade groups: two client threads that
/// connected from one CPU, one after the other, still end up on two server threads, each
/// with its own client's connections.
///
/// Invariant: `thread_of` is a permutation of the threads, so different groups are never
/// served by one thread. (An earlier version moved only the overflowing CPU's home, and two
/// CPUs could then share a thread for good: a client thread's connections were split in
/// 2 of 14 runs.)
#[derive(Debug)]
struct Placement {
    /// The thread serving each group of CPUs.
    thread_of: Vec<usize>,
}

impl Placement {
    fn new(threads: usize) -> Self {
        Self {
            thread_of: (0..threads).collect(),
        }
    }

    /// The thread for a connection whose handshake ran on `cpu` (`None`: not known), given
    /// each thread's open connections (`open`: one count per thread).
    fn place(&mut self, cpu: Option<usize>, open: &[usize]) -> usize {
        let group = cpu.unwrap_or(0) % self.thread_of.len();
        let home = self.thread_of[group];
        let least = (0..open.len()).min_by_key(|&t| open[t]).unwrap_or(home);
        if open[home] >= open[least] + MAX_AHEAD {
            for t in &mut self.thread_of {
                if *t == home {
                    *t = least;
                } else if *t == least {
                    *t = home;
                }
            }
        }
        self.thread_of[group]
    }
}

/// One connection thread of [`serve_per_core`].
struct Thread {
    index: usize,
    /// Connections placed on this thread, registered with its runtime when they arrive.
    connections: mpsc::UnboundedReceiver<std::net::TcpStream>,
    router: Router,
    /// Open connections by thread (this one's at `index`).
    open: Arc<[AtomicUsize]>,
    stopped: watch::Receiver<bool>,
}

impl Thread {
    /// Serves the connections placed on it until `stopped` turns true, then shuts the open
    /// ones down gracefully (requests in flight are answered) and returns when all are closed.
    async fn serve(self) {
        let Self {
            index,
            mut connections,
            router,
            open,
            mut stopped,
        } = self;
        // Every connection task holds a receiver of `live`; `closed()` resolves when the
        // last one is dropped.
        let (live, _) = watch::channel(());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.keep_alive(true);
        loop {
            let stream = tokio::select! {
                stream = connections.recv() => match stream {
                    Some(stream) => stream,
                    None => break,
                },
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            let Ok(stream) = TcpStream::from_std(stream) else {
                open[index].fetch_sub(1, Ordering::Relaxed);
                continue;
            };
            let service = TowerToHyperService::new(
                router
                    .clone()
                    .map_request(|req: Request<Incoming>| req.map(Body::new)),
            );
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let (mut stopped, guard, open) = (stopped.clone(), live.subscribe(), open.clone());
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
                open[index].fetch_sub(1, Ordering::Relaxed);
                drop(guard);
            });
        }
        // Connections placed but not yet taken are closed unserved.
        connections.close();
        while let Ok(stream) = connections.try_recv() {
            drop(stream);
            open[index].fetch_sub(1, Ordering::Relaxed);
        }
        live.closed().await;
    }
}

/// The CPU that processed the connection's last incoming packet (`SO_INCOMING_CPU`): at
/// accept, the handshake's.
#[cfg(target_os = "linux")]
fn incoming_cpu(stream: &TcpStream) -> Option<usize> {
    socket2::SockRef::from(stream).cpu_affinity().ok()
}

#[cfg(not(target_os = "linux"))]
fn incoming_cpu(_: &TcpStream) -> Option<usize> {
    None
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

    /// Places a connection from `cpu` and counts it open, as the acceptor does.
    fn place(placement: &mut Placement, open: &mut [usize], cpu: Option<usize>) -> usize {
        let to = placement.place(cpu, open);
        open[to] += 1;
        to
    }

    /// The threads of connections from `cpus`, placed one after the other.
    fn place_all<const N: usize>(
        placement: &mut Placement,
        open: &mut [usize],
        cpus: [usize; N],
    ) -> Vec<usize> {
        cpus.into_iter()
            .map(|cpu| place(placement, open, Some(cpu)))
            .collect()
    }

    #[test]
    fn a_client_threads_connections_share_a_server_thread() {
        // Two client threads on CPUs 0 and 1, connecting in turns.
        let (mut placement, mut open) = (Placement::new(2), vec![0; 2]);
        let on = place_all(&mut placement, &mut open, [0, 1, 1, 0, 0, 1, 0, 1]);
        assert_eq!(on, [0, 1, 1, 0, 0, 1, 0, 1]);

        // Both connected from CPU 0, one after the other: the first one's connections fill
        // one thread up to MAX_AHEAD, the second one's go to the other.
        let (mut placement, mut open) = (Placement::new(2), vec![0; 2]);
        let on = place_all(&mut placement, &mut open, [0; 2 * MAX_AHEAD]);
        assert_eq!(on, [[0; MAX_AHEAD], [1; MAX_AHEAD]].concat());
        // Once those closed, two client threads on CPUs 0 and 1 still get a thread each
        // (the groups traded threads; they did not come to share one).
        open.fill(0);
        let on = place_all(&mut placement, &mut open, [0, 1, 0, 1, 1, 0, 1, 0]);
        assert_eq!(on, [1, 0, 1, 0, 0, 1, 0, 1]);

        // More CPUs than threads, and a CPU not known.
        let (mut placement, mut open) = (Placement::new(2), vec![0; 2]);
        assert_eq!(place(&mut placement, &mut open, Some(3)), 1);
        assert_eq!(place(&mut placement, &mut open, Some(2)), 0);
        assert_eq!(place(&mut placement, &mut open, None), 0);

        // A thread that ended gets no connections.
        let (mut placement, mut open) = (Placement::new(2), vec![ENDED, 0]);
        for cpu in [0, 1, 0, 2] {
            assert_eq!(place(&mut placement, &mut open, Some(cpu)), 1);
        }
    }

    #[test]
    fn no_thread_is_placed_more_than_max_ahead_beyond_the_least_loaded() {
        // Connections from random CPUs, some closing in between (a fixed-seed generator).
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        let (mut placement, mut open) = (Placement::new(3), vec![0_usize; 3]);
        for _ in 0..10_000 {
            if next(3) == 0 {
                let t = next(3);
                open[t] = open[t].saturating_sub(1);
                continue;
            }
            let cpu = (next(5) != 0).then(|| next(8));
            let to = place(&mut placement, &mut open, cpu);
            let least = open.iter().copied().min().unwrap();
            assert!(
                open[to] <= least + MAX_AHEAD,
                "{open:?} after placing on {to}"
            );
            let mut threads = placement.thread_of.clone();
            threads.sort_unstable();
            assert_eq!(threads, [0, 1, 2], "groups share a thread");
        }
    }

    #[tokio::test]
    async fn per_core_connections_are_balanced_kept_on_their_thread_and_drained_at_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_per_core(
            listener,
            || router(Duration::from_millis(300)),
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
