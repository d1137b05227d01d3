//! queryd's Prometheus metrics (`strata_daemon::metrics` keeps the HTTP ones and the
//! format), rendered at `GET /metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_daemon::metrics::{Counter, Histogram, HttpMetrics, write_counters, write_metric};

use crate::route::ROUTE_NAMES;

/// Upper bounds (seconds) of the reload histogram buckets.
const RELOAD_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0];

#[derive(Default)]
pub struct Metrics {
    /// Requests by route (the daemon-wide [`track`] layer records them).
    pub http: Arc<HttpMetrics>,
    reloads: Mutex<Histogram>,
    reload_failures: AtomicU64,
    /// Sharded: counted on every request.
    cache_hits: Counter,
    cache_misses: AtomicU64,
    cache_evictions: AtomicU64,
    cache_bytes: AtomicU64,
    delta_files_read: AtomicU64,
    states_built: AtomicU64,
    compactions_carried: AtomicU64,
    /// Queries by the route decided for them ([`ROUTE_NAMES`]). Sharded: counted on every
    /// request.
    routes: [Counter; ROUTE_NAMES.len()],
}

impl Metrics {
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.http.request(route, method, status, elapsed);
    }

    pub fn reload(&self, elapsed: Duration, ok: bool) {
        if !ok {
            self.reload_failures.fetch_add(1, Ordering::Relaxed);
        }
        let mut reloads = self.reloads.lock().unwrap_or_else(|p| p.into_inner());
        reloads.observe(&RELOAD_BUCKETS, elapsed.as_secs_f64());
    }

    pub fn cache_hit(&self) {
        self.cache_hits.add(1);
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

    /// A query took route `index` ([`crate::route::Route::index`]).
    pub fn routed(&self, index: usize) {
        if let Some(counter) = self.routes.get(index) {
            counter.add(1);
        }
    }

    pub fn set_cache_bytes(&self, bytes: u64) {
        self.cache_bytes.store(bytes, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self, capacity_bytes: u64) -> String {
        let mut out = String::new();
        self.http.render(&mut out);
        write_metric(
            &mut out,
            "counter",
            "strata_cache_hits_total",
            "Requests answered from memory.",
            self.cache_hits.get(),
        );
        let counters = [
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
        write_counters(&mut out, &counters);
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
            write_metric(&mut out, "gauge", name, help, value);
        }
        out.push_str(
            "# HELP strata_query_routes_total Queries (pages, counts, streams) by the route \
             decided for them (the engine answers a cold_top_k route's counts and streams and \
             a cold_count route's pages and streams).\n# TYPE strata_query_routes_total \
             counter\n",
        );
        for (name, counter) in ROUTE_NAMES.iter().zip(&self.routes) {
            let _ = writeln!(
                out,
                "strata_query_routes_total{{route=\"{name}\"}} {}",
                counter.get()
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
        m.routed(5);
        m.routed(5);
        m.reload(Duration::from_millis(70), true);
        let text = m.render(1024);
        assert!(text.contains("strata_query_routes_total{route=\"cold_count\"} 2"));
        assert!(text.contains("strata_query_routes_total{route=\"engine\"} 0"));
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
