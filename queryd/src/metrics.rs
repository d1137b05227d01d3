//! Prometheus metrics, kept by hand: a few counters and histograms do not need a registry
//! crate. Rendered in the text exposition format at `GET /metrics`.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// Upper bounds (seconds) of the latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
/// Upper bounds (seconds) of the reload histogram buckets.
const RELOAD_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[f64], value: f64) {
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

    fn render(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
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

#[derive(Default)]
pub struct Metrics {
    /// Route template → its counts and latencies. One lock, and no allocation once a route,
    /// method and status have been seen.
    routes: Mutex<BTreeMap<String, RouteStats>>,
    reloads: Mutex<Histogram>,
    reload_failures: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_evictions: AtomicU64,
    cache_bytes: AtomicU64,
    delta_files_read: AtomicU64,
    states_built: AtomicU64,
    compactions_carried: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        let mut routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
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

    pub fn reload(&self, elapsed: Duration, ok: bool) {
        if !ok {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut reloads = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
        reloads.observe(&RELOAD_BUCKETS, elapsed.as_secs_f64());
    }

    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    pub fn eviction(&self) {
        self.cache_evictions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn delta_files_read(&self, files: u64) {
        self.delta_files_read.fetch_add(files, Ordering::Relaxed);
    }

    /// A state was built from its base files (a load, or a rebuild).
    pub fn state_built(&self) {
        self.states_built.fetch_add(1, Ordering::Relaxed);
    }

    /// A resident state moved to a compacted version without reading its files.
    pub fn compaction_carried(&self) {
        self.compactions_carried.fetch_add(1, Ordering::Relaxed);
    }

    pub fn set_cache_bytes(&self, bytes: u64) {
        self.cache_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self, capacity_bytes: u64) -> String {
        let mut out = String::new();
        out.push_str("# HELP strata_http_requests_total HTTP requests by route template, method and status.\n");
        out.push_str("# TYPE strata_http_requests_total counter\n");
        let routes = self.routes.lock().unwrap_or_else(|p| p.into_inner());
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
                &mut out,
                "strata_http_request_duration_seconds",
                &labels,
                &LATENCY_BUCKETS,
            );
        }
        drop(routes);
        let counters = [
            (
                "strata_cache_hits_total",
                "Requests answered from memory.",
                &self.cache_hits,
            ),
            (
                "strata_cache_misses_total",
                "Requests on datasets not in memory (answered from Parquet).",
                &self.cache_misses,
            ),
            (
                "strata_cache_evictions_total",
                "Datasets evicted from memory.",
                &self.cache_evictions,
            ),
            (
                "strata_reload_failures_total",
                "Loads and reloads that failed.",
                &self.reload_failures,
            ),
            (
                "strata_delta_files_read_total",
                "Delta files read from the store (each once while the delta cache keeps it).",
                &self.delta_files_read,
            ),
            (
                "strata_state_builds_total",
                "Dataset states built from their base files (loads, and rebuilds).",
                &self.states_built,
            ),
            (
                "strata_compactions_carried_total",
                "Compacted versions a resident state moved to without reading their files.",
                &self.compactions_carried,
            ),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        let gauges = [
            (
                "strata_cache_used_bytes",
                "Accounted bytes of datasets in memory.",
                self.cache_bytes.load(Ordering::Relaxed),
            ),
            (
                "strata_cache_capacity_bytes",
                "Memcache capacity.",
                capacity_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out.push_str("# HELP strata_reload_duration_seconds Dataset load and reload durations.\n");
        out.push_str("# TYPE strata_reload_duration_seconds histogram\n");
        self.reloads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .render(
                &mut out,
                "strata_reload_duration_seconds",
                "",
                &RELOAD_BUCKETS,
            );
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Middleware recording every request under its route template (never the raw path, so
/// the label set stays bounded).
pub async fn track(
    State(metrics): State<std::sync::Arc<Metrics>>,
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

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        m.request(
            "/api/v1/datasets/{name}/query",
            "POST",
            200,
            Duration::from_micros(300),
        );
        m.request(
            "/api/v1/datasets/{name}/query",
            "POST",
            200,
            Duration::from_millis(20),
        );
        m.request(
            "/api/v1/datasets/{name}/query",
            "POST",
            400,
            Duration::from_micros(50),
        );
        m.cache_hit();
        m.reload(Duration::from_millis(70), true);
        let text = m.render(1024);
        assert!(text.contains(
            "strata_http_requests_total{route=\"/api/v1/datasets/{name}/query\",method=\"POST\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "strata_http_request_duration_seconds_bucket{route=\"/api/v1/datasets/{name}/query\",le=\"0.0005\"} 2"
        ));
        assert!(text.contains(
            "strata_http_request_duration_seconds_bucket{route=\"/api/v1/datasets/{name}/query\",le=\"+Inf\"} 3"
        ));
        assert!(text.contains("strata_cache_hits_total 1"));
        assert!(text.contains("strata_cache_capacity_bytes 1024"));
        assert!(text.contains("strata_reload_duration_seconds_bucket{le=\"0.1\"} 1"));
        assert!(text.contains("strata_reload_duration_seconds_count 1"));
    }
}
