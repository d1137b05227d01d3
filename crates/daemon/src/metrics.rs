//! Prometheus metrics every daemon keeps by hand (a few counters and histograms do not need a
//! registry crate), rendered in the text exposition format at `GET /metrics`: the HTTP
//! requests of each route template ([`HttpMetrics`], recorded by [`track`]), and helpers for
//! a daemon's own counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds (seconds) of the request latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A cumulative histogram over fixed bucket bounds.
#[derive(Default)]
pub struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    pub fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; bounds.len()];
        }
        for (i, bound) in bounds.iter().enumerate() {
            if value <= *bound {
                self.counts[i] += 1;
            }
        }
        self.sum += value;
        self.count += 1;
    }

    /// Adds `other`'s observations (over the same bounds).
    pub fn merge(&mut self, other: &Histogram) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (total, n) in self.counts.iter_mut().zip(&other.counts) {
            *total += n;
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in bounds.iter().enumerate() {
            let n = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Requests of one route template.
#[derive(Default)]
struct RouteStats {
    /// (method, status, count): a handful per route, scanned linearly.
    counts: Vec<(String, u16, u64)>,
    latency: Histogram,
}

/// Requests by route template, method and status, and their latencies.
///
/// Recorded in shards, one per recording thread (modulo [`SHARDS`]), each on a cache line of
/// its own, and merged when rendered: with one lock, queryd's two connection threads moved
/// its line between their cores on every request.
#[derive(Default)]
pub struct HttpMetrics {
    shards: [Shard; SHARDS],
}

/// Shards of [`HttpMetrics`] and [`Counter`]. Threads take indices in the order they first
/// record, process-wide (the storaged and compactord threads of `strata up` too), so two
/// connection threads share a shard only when 15 others recorded between them.
const SHARDS: usize = 16;

/// Route template → its counts and latencies; no allocation once a route, method and status
/// have been seen. Aligned so that no two shards share a cache line (128 bytes: adjacent
/// lines are fetched in pairs).
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<BTreeMap<String, RouteStats>>);

/// This thread's shard of every [`HttpMetrics`].
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    INDEX.with(|i| *i)
}

/// A counter every thread adds to in a shard of its own ([`SHARDS`], each on its own cache
/// line), for counts taken on every request: one shared atomic moves its line between the
/// cores that add to it.
#[derive(Default)]
pub struct Counter {
    shards: [PaddedU64; SHARDS],
}

#[derive(Default)]
#[repr(align(128))]
struct PaddedU64(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.shards[shard_index()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl HttpMetrics {
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let shard = &self.shards[shard_index()].0;
        let mut routes = shard.lock().unwrap_or_else(|p| p.into_inner());
        if !routes.contains_key(route) {
            routes.insert(route.to_owned(), RouteStats::default());
        }
        let Some(stats) = routes.get_mut(route) else {
            return;
        };
        match stats
            .counts
            .iter_mut()
            .find(|(m, s, _)| m == method && *s == status)
        {
            Some((_, _, n)) => *n += 1,
            None => stats.counts.push((method.to_owned(), status, 1)),
        }
        stats
            .latency
            .observe(&LATENCY_BUCKETS, elapsed.as_secs_f64());
    }

    /// Every shard's requests, merged.
    fn merged(&self) -> BTreeMap<String, RouteStats> {
        let mut all = BTreeMap::<String, RouteStats>::new();
        for shard in &self.shards {
            let routes = shard.0.lock().unwrap_or_else(|p| p.into_inner());
            for (route, stats) in routes.iter() {
                let merged = all.entry(route.clone()).or_default();
                for (method, status, n) in &stats.counts {
                    match merged
                        .counts
                        .iter_mut()
                        .find(|(m, s, _)| m == method && s == status)
                    {
                        Some((_, _, total)) => *total += n,
                        None => merged.counts.push((method.clone(), *status, *n)),
                    }
                }
                merged.latency.merge(&stats.latency);
            }
        }
        all
    }

    /// `strata_http_requests_total` and `strata_http_request_duration_seconds`.
    pub fn render(&self, out: &mut String) {
        out.push_str("# HELP strata_http_requests_total HTTP requests by route template, method and status.\n");
        out.push_str("# TYPE strata_http_requests_total counter\n");
        let routes = self.merged();
        for (route, stats) in routes.iter() {
            let mut counts = stats.counts.clone();
            counts.sort();
            for (method, status, n) in counts {
                let _ = writeln!(
                    out,
                    "strata_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str(
            "# HELP strata_http_request_duration_seconds HTTP request latency by route template.\n",
        );
        out.push_str("# TYPE strata_http_request_duration_seconds histogram\n");
        for (route, stats) in routes.iter() {
            let labels = format!("route=\"{}\"", escape(route));
            stats.latency.render(
                out,
                "strata_http_request_duration_seconds",
                &labels,
                &LATENCY_BUCKETS,
            );
        }
    }
}

/// One counter or gauge with its HELP and TYPE lines.
pub fn write_metric(
    out: &mut String,
    kind: &str,
    name: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

/// Counters, each with its HELP and TYPE lines.
pub fn write_counters(out: &mut String, counters: &[(&str, &str, &AtomicU64)]) {
    for (name, help, value) in counters {
        let value = value.load(Ordering::Relaxed);
        write_metric(out, "counter", name, help, value);
    }
}

/// A label value, escaped.
pub fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `router` with `GET /metrics` answering `render()` in the text format, and every request of
/// it recorded in `http` ([`track`]): what storaged and compactord add to their routes.
pub fn instrument(
    router: axum::Router,
    http: std::sync::Arc<HttpMetrics>,
    render: impl Fn() -> String + Clone + Send + Sync + 'static,
) -> axum::Router {
    router
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = render();
                async move { ([(axum::http::header::CONTENT_TYPE, TEXT_FORMAT)], body) }
            }),
        )
        .route_layer(axum::middleware::from_fn_with_state(http, track))
}

/// The content type of the text exposition format.
pub const TEXT_FORMAT: &str = "text/plain; version=0.0.4";

/// Middleware recording every request under its route template (never the raw path, so
/// the label set stays bounded).
pub async fn track(
    State(metrics): State<std::sync::Arc<HttpMetrics>>,
    request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    // Both are cheap clones (shared strings), taken before the request moves on.
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    metrics.request(
        route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Requests recorded on several threads (so in several shards) render as one count and
    /// one histogram per route.
    #[test]
    fn shards_render_merged() {
        let http = HttpMetrics::default();
        let hits = Counter::default();
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (http, hits) = (&http, &hits);
                s.spawn(move || {
                    for _ in 0..=t {
                        http.request("/q", "POST", 200, Duration::from_micros(50));
                        hits.add(1);
                    }
                    http.request("/q", "POST", 404, Duration::from_secs(2));
                });
            }
        });
        assert_eq!(hits.get(), 6);
        let mut out = String::new();
        http.render(&mut out);
        for line in [
            "strata_http_requests_total{route=\"/q\",method=\"POST\",status=\"200\"} 6",
            "strata_http_requests_total{route=\"/q\",method=\"POST\",status=\"404\"} 3",
            "strata_http_request_duration_seconds_bucket{route=\"/q\",le=\"0.0001\"} 6",
            "strata_http_request_duration_seconds_bucket{route=\"/q\",le=\"5\"} 9",
            "strata_http_request_duration_seconds_count{route=\"/q\"} 9",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} not in:\n{out}");
        }
    }
}
