//! `nasop operator`: logging, the HTTP endpoints (/metrics, /healthz, /readyz), leader
//! election with a coordination.k8s.io Lease (kube-lease-manager), and the controllers until
//! SIGTERM or SIGINT (graceful: in-flight reconciles finish, the Lease is released).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::cli::{LogFormat, OperatorArgs};
use crate::metrics::Metrics;
use crate::runtime::{self, Context, Scope};

/// How long in-flight reconciles, the Lease release and open HTTP connections get after
/// SIGTERM (Kubernetes' default `terminationGracePeriodSeconds` is 30 s, so 10 s leaves room).
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// What the HTTP endpoints report.
pub struct Health {
    /// The metrics rendered at /metrics.
    pub metrics: Arc<Metrics>,
    /// Whether /readyz answers 200: set once the API server was reached (a standby replica
    /// waiting for the Lease is ready too: it can take over at once).
    pub ready: AtomicBool,
}

/// The HTTP routes: `/metrics` (Prometheus text format 0.0.4), `/healthz` (200 while the
/// process serves), `/readyz` (200 once ready, else 503).
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        h.metrics.render(),
    )
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serves [`router`] on a bound listener until `shutdown` completes.
///
/// # Errors
/// An I/O error of the server.
pub async fn serve_listener(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    axum::serve(listener, router(health))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

fn init_logging(args: &OperatorArgs) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("--log {:?}: not a log filter", args.log))?;
    // To stderr: the `nasop` binary's main thread holds the stdout lock while a command
    // runs, and a log line from another thread would wait for it forever.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

/// The namespaces to watch: each a DNS-1123 label, duplicates and empty list entries
/// dropped; an explicitly empty `--namespace ""` is refused (omit the flag to watch all).
///
/// # Errors
/// A message naming `--namespace` and the bad value.
pub fn check_namespaces(given: &[String]) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for n in given.iter().map(|n| n.trim()).filter(|n| !n.is_empty()) {
        let label = n.len() <= 63
            && n.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !n.starts_with('-')
            && !n.ends_with('-');
        anyhow::ensure!(
            label,
            "--namespace {n:?}: not a namespace name (lowercase letters, digits and '-', at most 63 characters)"
        );
        if !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    anyhow::ensure!(
        out.is_empty() == given.is_empty(),
        "--namespace: empty; omit the flag (and NASOP_NAMESPACES) to watch all namespaces"
    );
    Ok(out)
}

/// The Kubernetes client, counting every request it sends in `nasop_api_requests_total` and
/// timing each (until its response headers, watches excluded) in
/// `nasop_api_request_duration_seconds`.
///
/// # Errors
/// The configuration cannot give a client (TLS or proxy settings).
pub fn counting_client(config: kube::Config, metrics: Arc<Metrics>) -> Result<Client> {
    let layer = tower::layer::layer_fn(move |inner| Timed {
        inner,
        metrics: metrics.clone(),
    });
    Ok(kube::client::ClientBuilder::try_from(config)
        .context("building the Kubernetes client")?
        .with_layer(&layer)
        .build())
}

/// A [`tower::Service`] that counts and times the requests through it (see
/// [`counting_client`]).
#[derive(Clone)]
struct Timed<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B> tower::Service<http::Request<B>> for Timed<S>
where
    S: tower::Service<http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.method().as_str().to_string();
        self.metrics
            .api_requests
            .with_label_values(&[method.as_str()])
            .inc();
        // A watch's response headers come at once and its body streams for minutes: not a
        // request time.
        let watch = request
            .uri()
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let timer = (!watch).then(|| {
            self.metrics
                .api_request_duration
                .with_label_values(&[method.as_str()])
                .start_timer()
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let out = response.await;
            drop(timer);
            out
        })
    }
}

fn identity(args: &OperatorArgs) -> String {
    args.identity.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| format!("nasop-{}", std::process::id()))
    })
}

/// Sends `true` on `stop` at the first SIGTERM or SIGINT (a signal-hook thread: the same
/// mechanism `nasop run` uses).
///
/// # Errors
/// The handlers cannot be installed.
fn on_signal(stop: tokio::sync::watch::Sender<bool>) -> Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .context("installing the SIGTERM/SIGINT handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if let Some(signal) = signals.forever().next() {
                tracing::info!(signal, "shutdown requested; finishing in-flight reconciles");
                let _ = stop.send(true);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Runs the controllers until `stop`; in-flight reconciles get [`SHUTDOWN_GRACE`] after
/// `grace` (the same signal) completes, then they are dropped.
async fn controllers_with_grace(
    ctx: Arc<Context>,
    scope: Scope,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    grace: impl std::future::Future<Output = ()>,
) {
    let controllers = runtime::run(ctx, scope, stop);
    tokio::pin!(controllers);
    tokio::select! {
        _ = &mut controllers => {}
        _ = async { grace.await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::info!(grace_s = SHUTDOWN_GRACE.as_secs(), "the controllers did not end within the grace period; stopping them");
        }
    }
}

/// Runs the operator with `args` until SIGTERM/SIGINT.
///
/// # Errors
/// No Kubernetes configuration, the API server unreachable at start, the metrics address
/// taken, or leadership lost (the process exits so that a fresh replica campaigns again).
pub async fn run(args: OperatorArgs) -> Result<()> {
    init_logging(&args)?;
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health {
        metrics: metrics.clone(),
        ready: AtomicBool::new(false),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    on_signal(stop_tx)?;
    let namespaces = check_namespaces(&args.namespaces)?;
    // Bind first: a taken address is an error now, not a silent operator without probes.
    let listener = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .with_context(|| format!("--metrics-addr {}: cannot listen", args.metrics_addr))?;
    let http = tokio::spawn(serve_listener(listener, health.clone(), stop()));
    let config = kube::Config::infer().await.context(
        "reading the Kubernetes configuration (in-cluster service account, $KUBECONFIG or ~/.kube/config)",
    )?;
    let url = config.cluster_url.to_string();
    tracing::info!(api_server = %url, "connecting");
    let client = counting_client(config, metrics.clone())?;
    let version = tokio::select! {
        v = client.apiserver_version() => {
            v.with_context(|| format!("the API server at {url} cannot be reached"))?
        }
        _ = stop() => {
            tracing::info!("stopped before the API server answered");
            return Ok(());
        }
    };
    tracing::info!(version = %version.git_version, api_server = %url, "connected to the API server");
    match namespaces.is_empty() {
        true => tracing::info!("watching all namespaces"),
        false => tracing::info!(namespaces = ?namespaces, "watching namespaces"),
    }
    health.ready.store(true, Ordering::Relaxed);
    let me = identity(&args);
    let scope = Scope {
        namespaces,
        concurrency: args.concurrency,
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics.clone(),
        Some(me.clone()),
    ));
    if !args.leader_election {
        metrics.leader.set(1);
        controllers_with_grace(ctx, scope, stop(), stop()).await;
    } else {
        let namespace = args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let manager = LeaseManagerBuilder::new(client.clone(), &args.lease_name)
            .with_namespace(&namespace)
            .with_identity(&me)
            .with_duration(args.lease_seconds)
            .with_grace((args.lease_seconds / 3).max(1))
            .build()
            .await
            .with_context(|| format!("Lease {namespace}/{}", args.lease_name))?;
        let (mut leading, lease_task) = manager.watch().await;
        tracing::info!(lease = %args.lease_name, identity = %me, "waiting for the leader lease");
        let mut stopped = Box::pin(stop());
        loop {
            if *leading.borrow_and_update() {
                break;
            }
            tokio::select! {
                changed = leading.changed() => changed.context("the lease manager stopped")?,
                _ = &mut stopped => {
                    drop(leading);
                    let _ = lease_task.await;
                    let _ = http.await;
                    return Ok(());
                }
            }
        }
        tracing::info!(identity = %me, "leading: starting the controllers");
        metrics.leader.set(1);
        let controllers = controllers_with_grace(ctx, scope, stop(), stop());
        tokio::pin!(controllers);
        let lost = async {
            loop {
                if leading.changed().await.is_err() || !*leading.borrow_and_update() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = &mut controllers => {}
            _ = lost => {
                metrics.leader.set(0);
                anyhow::bail!("lost the leader lease; exiting so that a fresh replica campaigns");
            }
        }
        metrics.leader.set(0);
        drop(leading);
        match tokio::time::timeout(SHUTDOWN_GRACE, lease_task).await {
            Ok(Ok(Ok(_))) => tracing::info!("released the leader lease"),
            _ => tracing::warn!("could not release the leader lease; it expires on its own"),
        }
    }
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, http).await;
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http::Request;
    use tower::{Service, ServiceExt};

    async fn get(router: Router, path: &str) -> (StatusCode, String, Option<String>) {
        let response = router
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            String::from_utf8(bytes.to_vec()).unwrap(),
            content_type,
        )
    }

    #[test]
    fn namespaces_are_checked_and_deduplicated() {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(check_namespaces(&[]).unwrap(), Vec::<String>::new());
        assert_eq!(
            check_namespaces(&v(&["a", "", "b", "a"])).unwrap(),
            v(&["a", "b"])
        );
        let e = check_namespaces(&v(&[""])).unwrap_err().to_string();
        assert!(e.contains("omit the flag"), "{e}");
        let e = check_namespaces(&v(&["Bad_NS!"])).unwrap_err().to_string();
        assert!(
            e.starts_with("--namespace \"Bad_NS!\": not a namespace name"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn requests_are_counted_and_timed_but_watches_are_not_timed() {
        let metrics = Arc::new(Metrics::new());
        let inner = tower::service_fn(|_: Request<()>| async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok::<_, std::convert::Infallible>(())
        });
        let mut timed = Timed {
            inner,
            metrics: metrics.clone(),
        };
        for uri in [
            "/api/v1/namespaces/a/pods/p",
            "/api/v1/namespaces/a/pods?labelSelector=x&watch=true&resourceVersion=5",
            "/api/v1/namespaces/a/pods?watch=1",
        ] {
            timed
                .ready()
                .await
                .unwrap()
                .call(Request::get(uri).body(()).unwrap())
                .await
                .unwrap();
        }
        timed
            .ready()
            .await
            .unwrap()
            .call(
                Request::delete("/api/v1/namespaces/a/pods/p")
                    .body(())
                    .unwrap(),
            )
            .await
            .unwrap();
        let count = |m: &str| metrics.api_requests.with_label_values(&[m]).get();
        assert_eq!((count("GET"), count("DELETE")), (3, 1));
        let timed = |m: &str| {
            let h = metrics.api_request_duration.with_label_values(&[m]);
            (h.get_sample_count(), h.get_sample_sum())
        };
        let (gets, get_seconds) = timed("GET");
        assert_eq!(gets, 1, "the two watches are not timed");
        assert!((0.02..1.0).contains(&get_seconds), "{get_seconds}");
        assert_eq!(timed("DELETE").0, 1);
    }

    #[tokio::test]
    async fn metrics_are_scraped_with_their_names_and_labels() {
        let metrics = Arc::new(Metrics::new());
        // What the controllers record.
        drop(metrics.reconcile("architecturesearch"));
        let mut steps = metrics.search_steps();
        steps.done("read");
        steps.done("tell");
        metrics
            .reconcile_errors
            .with_label_values(&["childtrial", "conflict"])
            .inc();
        metrics
            .trials
            .with_label_values(&["nas", "cifar", "Running"])
            .set(3);
        for g in [
            &metrics.best_reward,
            &metrics.best_accuracy,
            &metrics.best_latency_ms,
            &metrics.gpu_seconds,
        ] {
            g.with_label_values(&["nas", "cifar"]).set(0.5);
        }
        metrics.trial_duration.observe(321.5);
        metrics
            .probe_latency
            .with_label_values(&["pixel"])
            .observe(4.0);
        metrics
            .policy_updates
            .with_label_values(&["nas", "cifar"])
            .inc_by(2);
        metrics
            .policy_behind
            .with_label_values(&["nas", "cifar"])
            .set(7);
        metrics.probe_pending("pixel", "LatencyProbe/nas/a", true);
        metrics.probe_pending("pixel", "LatencyProbe/nas/b", true);
        metrics.probe_pending("pixel", "LatencyProbe/nas/a", false);
        metrics.leader.set(1);
        // The counting client counts a request as it leaves (here to a port nobody serves).
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = counting_client(config, metrics.clone()).unwrap();
        assert!(client.apiserver_version().await.is_err());
        let health = Arc::new(Health {
            metrics,
            ready: AtomicBool::new(false),
        });
        let (status, text, content_type) = get(router(health.clone()), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        for name in crate::metrics::NAMES {
            assert!(
                text.contains(&format!("# TYPE {name} ")),
                "{name} missing:\n{text}"
            );
        }
        for line in [
            "nasop_reconciles_total{controller=\"architecturesearch\"} 1",
            "nasop_reconcile_errors_total{controller=\"childtrial\",error=\"conflict\"} 1",
            "nasop_reconcile_duration_seconds_count{controller=\"architecturesearch\"} 1",
            "nasop_search_step_seconds_count{step=\"read\"} 1",
            "nasop_search_step_seconds_count{step=\"tell\"} 1",
            "nasop_trials{namespace=\"nas\",phase=\"Running\",search=\"cifar\"} 3",
            "nasop_best_reward{namespace=\"nas\",search=\"cifar\"} 0.5",
            "nasop_trial_duration_seconds_sum 321.5",
            "nasop_probe_latency_ms_bucket{device_class=\"pixel\",le=\"6.4\"} 1",
            "nasop_policy_updates_total{namespace=\"nas\",search=\"cifar\"} 2",
            "nasop_policy_updates_behind{namespace=\"nas\",search=\"cifar\"} 7",
            "nasop_probes_pending{device_class=\"pixel\"} 1",
            "nasop_leader 1",
            "nasop_api_requests_total{method=\"GET\"} 1",
            "nasop_api_request_duration_seconds_count{method=\"GET\"} 1",
        ] {
            assert!(text.contains(line), "{line} missing:\n{text}");
        }
        assert_eq!(
            get(router(health.clone()), "/healthz").await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(router(health.clone()), "/readyz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        health.ready.store(true, Ordering::Relaxed);
        assert_eq!(get(router(health), "/readyz").await.0, StatusCode::OK);
    }
}
