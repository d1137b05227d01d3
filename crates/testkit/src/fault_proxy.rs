//! A TCP proxy in front of an HTTP server that loses responses on purpose: the request
//! reaches the server (and takes effect there), but the client sees its connection close
//! instead of the answer — a response lost in the network.
//!
//! A request is recognised by its request line (`PUT /bucket/…/deltas/…`), which HTTP/1.1
//! clients write at the start of a chunk; they do not pipeline, so the next bytes the server
//! sends on that connection are this request's response. Good enough for a test, not a
//! general HTTP proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug)]
pub struct FaultProxy {
    /// `http://127.0.0.1:port`: point the client here.
    pub endpoint: String,
    lost: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Forwards to `upstream` (`host:port`); loses the responses to the first `times`
    /// requests whose method is `method` and whose request line contains `needle`.
    pub async fn start(
        upstream: &str,
        method: &'static str,
        needle: &'static str,
        times: usize,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let lost = Arc::new(AtomicUsize::new(0));
        let (upstream, counter) = (upstream.to_owned(), lost.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, counter) = (upstream.clone(), counter.clone());
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        relay(client, server, method, needle, times, counter).await;
                    }
                });
            }
        });
        Ok(Self {
            endpoint,
            lost,
            task,
        })
    }

    /// How many responses were lost so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    method: &'static str,
    needle: &'static str,
    times: usize,
    lost: Arc<AtomicUsize>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Set when a matching request went up: its response is the next thing to come down.
    let doomed = Arc::new(AtomicBool::new(false));
    let up = {
        let (doomed, lost) = (doomed.clone(), lost.clone());
        async move {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                let n = match client_read.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                let chunk = &buf[..n];
                let line_end = chunk.iter().position(|&b| b == b'\n').unwrap_or(n);
                let line = String::from_utf8_lossy(&chunk[..line_end]);
                if line.starts_with(&format!("{method} "))
                    && line.contains(needle)
                    && lost.load(Ordering::SeqCst) < times
                {
                    doomed.store(true, Ordering::SeqCst);
                }
                if server_write.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    };
    let down = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if doomed.load(Ordering::SeqCst) {
                // The server answered; the client never hears it.
                lost.fetch_add(1, Ordering::SeqCst);
                return;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either direction ending ends the connection (both halves dropped).
    tokio::select! {
        _ = up => {}
        _ = down => {}
    }
}
