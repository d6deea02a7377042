//! Operations: a request id and a log line per request (route template, status, time; never
//! the query string, which carries codes and tokens), and Prometheus metrics.

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tracing::Instrument as _;

/// Upper bounds of the request duration histogram, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// The process's metrics; each process is scraped on its own.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<String, Histogram>>,
    events: Mutex<BTreeMap<(&'static str, String), u64>>,
    in_flight: AtomicU64,
}

static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// Counts one event of a family (`recovery_outcomes_total{outcome}`,
    /// `sign_ins_total{method}`...).
    pub fn count(&self, family: &'static str, label: &str) {
        let mut events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *events.entry((family, label.to_owned())).or_default() += 1;
    }

    fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        {
            let mut requests = self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *requests.entry((method.to_owned(), route.to_owned(), status)).or_default() += 1;
        }
        let mut durations = self.durations.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let histogram = durations.entry(route.to_owned()).or_default();
        for (count, bound) in histogram.counts.iter_mut().zip(BUCKETS) {
            if seconds <= bound {
                *count += 1;
            }
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP regain_http_requests_total HTTP requests by method, route and status.\n");
        out.push_str("# TYPE regain_http_requests_total counter\n");
        for ((method, route, status), n) in
            self.requests.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter()
        {
            out.push_str(&format!(
                "regain_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}\n",
                label(route)
            ));
        }
        out.push_str("# HELP regain_http_request_duration_seconds Time to answer a request, by route.\n");
        out.push_str("# TYPE regain_http_request_duration_seconds histogram\n");
        for (route, h) in self.durations.lock().unwrap_or_else(std::sync::PoisonError::into_inner).iter() {
            let route = label(route);
            for (count, bound) in h.counts.iter().zip(BUCKETS) {
                out.push_str(&format!(
                    "regain_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {count}\n"
                ));
            }
            out.push_str(&format!(
                "regain_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n",
                h.count
            ));
            out.push_str(&format!("regain_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n", h.sum));
            out.push_str(&format!("regain_http_request_duration_seconds_count{{route=\"{route}\"}} {}\n", h.count));
        }
        out.push_str("# HELP regain_http_requests_in_flight Requests being answered.\n");
        out.push_str("# TYPE regain_http_requests_in_flight gauge\n");
        out.push_str(&format!("regain_http_requests_in_flight {}\n", self.in_flight.load(Ordering::Relaxed)));
        let events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut family_seen = None;
        for ((family, value), n) in events.iter() {
            let (name, label_name, help) = describe(family);
            if family_seen != Some(*family) {
                out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
                family_seen = Some(*family);
            }
            out.push_str(&format!("{name}{{{label_name}=\"{}\"}} {n}\n", label(value)));
        }
        out
    }
}

fn describe(family: &str) -> (&str, &str, &str) {
    match family {
        "recovery" => ("regain_recovery_outcomes_total", "outcome", "Recovery flows ended, by outcome."),
        "sign_in" => ("regain_sign_ins_total", "method", "Successful sign-ins, by method."),
        _ => ("regain_events_total", "event", "Other events."),
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The request id: the caller's `X-Request-Id` when it is short and plain, else a new one.
fn request_id(request: &Request) -> String {
    request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .or_else(|| crate::store::random_hex(8).ok())
        .unwrap_or_default()
}

/// Middleware: request id, span, log line and metrics for every request.
pub async fn observe(request: Request, next: Next) -> Response {
    let id = request_id(&request);
    let method = request.method().as_str().to_owned();
    // The route template, never the path or query as sent: they can carry codes and tokens.
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = %route);
    let started = Instant::now();
    let m = metrics();
    m.in_flight.fetch_add(1, Ordering::Relaxed);
    let mut response = next.run(request).instrument(span.clone()).await;
    m.in_flight.fetch_sub(1, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    m.observe(&method, &route, status, seconds);
    span.in_scope(|| tracing::info!(status, millis = seconds * 1000.0, "answered"));
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

/// Adds `/healthz`, `/metrics` and the per-request middleware to the server's routes.
pub fn instrument(router: axum::Router) -> axum::Router {
    router
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/metrics", axum::routing::get(metrics_endpoint))
        .layer(axum::middleware::from_fn(observe))
}

/// `GET /metrics`.
pub async fn metrics_endpoint() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], metrics().render()).into_response()
}
