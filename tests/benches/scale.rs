//! `make bench-scale`: the operator (`nasop operator`, a separate process) runs searches of
//! 1,000, 5,000 and 20,000 trials (NASNet searched 20,000 children) with parallelism 450
//! against the real kube-apiserver and etcd, with an instant fake kubelet: each trainer pod
//! finishes at once with a synthetic result whose accuracy is the NAS-Bench-201 table's
//! (`../shared/data/nb201/nb201_cifar10.csv`, CIFAR-10 validation accuracy at 200 epochs).
//!
//! Prints, per size: trials per second (overall, and over the first and the last fifth of the
//! trials, to show whether the cost per trial grows with the finished trials), the operator's
//! peak resident memory, the p50/p99 reconcile time of each controller (from its
//! `nasop_reconcile_duration_seconds` histogram), API requests per trial (from
//! `nasop_api_requests_total`) and the largest ArchitectureSearch status seen; then the p50/p99
//! of each step of the search reconcile (`nasop_search_step_seconds`), to show where its time
//! goes; then the API server's own count of requests per trial on nasop's objects, by
//! resource, verb and response code (a 409 there is a create that found its object), and the
//! p50/p99 time those requests spent in the API server (`apiserver_request_duration_seconds`:
//! what of a reconcile's time is the API server's).
//!
//! Goals (issue 10): 20,000 trials complete; peak memory under 256 MiB; reconcile p99 under
//! 100 ms; no per-trial cost growing with the finished trials; status under 64 KiB.
//!
//! Usage: `cargo bench -p nasop-tests --bench scale -- [TRIALS...] [--algorithm A]
//! [--parallelism P] [--concurrency C]` (defaults: 1000 5000 20000, PPO, 450, and the operator's
//! default of 8 reconciles at once per controller). The operator's log goes to
//! `/tmp/nasop-bench-scale-<trials>.log` (filter `$NASOP_BENCH_LOG`, default `warn`; with
//! `warn,nasop::search=debug` one line per search reconcile: results told, children created,
//! what was written, milliseconds) and its final metrics to `/tmp/nasop-bench-scale-<trials>.metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::api::{Api, PostParams};
use nasop::bench_search::Table;
use nasop_crds::api::{ArchitectureSearch, SearchPhase};
use nasop_tests::apiserver::{free_port, install_crds, namespace, ApiServer};
use nasop_tests::kubelet::InstantKubelet;
use nasop_tests::{shared_data_dir, workspace_root};

/// The steps of a search reconcile (`nasop_search_step_seconds`).
const STEPS: [&str; 6] = ["read", "tell", "launch", "save", "create", "status"];

/// The `nasop` binary of this profile (built when missing).
///
/// The inner `cargo build` runs without the variables that cargo sets for this bench
/// (`CARGO_PKG_NAME`, `CARGO_MANIFEST_DIR`, ...): build scripts such as ring's and cc's ask
/// to rerun when those change, so with them the inner and the outer cargo rebuilt ring,
/// rustls and kube in turn, minutes on every run.
fn nasop_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let path = dir.join("nasop");
    let mut build = std::process::Command::new(env!("CARGO"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo = [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CFG_",
            "CARGO_CRATE_",
        ]
        .iter()
        .any(|p| key.starts_with(p))
            || ["CARGO_BIN_NAME", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"].contains(&key.as_ref());
        if set_by_cargo {
            build.env_remove(key.as_ref());
        }
    }
    let status = build
        .args(["build", "-q", "--release", "-p", "nasop", "--bin", "nasop"])
        .current_dir(workspace_root())
        .status()
        .unwrap();
    assert!(status.success() && path.is_file(), "{}", path.display());
    path
}

/// `GET /metrics` of the operator.
fn scrape(port: u16) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(s, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    text
}

/// Sum of the samples of `metric` whose labels contain `filter`.
fn sum(text: &str, metric: &str, filter: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter(|l| l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Quantile `q` of a Prometheus histogram (linear within a bucket, as PromQL's
/// `histogram_quantile(q, sum by (le) (...))`), over the series whose labels contain
/// `filter`; seconds.
fn quantile(text: &str, metric: &str, filter: &str, q: f64) -> Option<f64> {
    let prefix = format!("{metric}_bucket{{");
    let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
    for l in text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(filter))
    {
        let (Some(le), Some(count)) = (
            bucket_bound(l),
            l.rsplit(' ').next().and_then(|c| c.parse::<f64>().ok()),
        ) else {
            continue;
        };
        buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += count;
    }
    bucket_quantile(buckets.into_values().collect(), q)
}

/// The `le` bound of a histogram bucket line.
fn bucket_bound(line: &str) -> Option<f64> {
    let le = line.split("le=\"").nth(1)?.split('"').next()?;
    if le == "+Inf" {
        Some(f64::INFINITY)
    } else {
        le.parse().ok()
    }
}

/// Quantile `q` of cumulative histogram buckets (`le`, count), in any order; `None` when empty.
fn bucket_quantile(mut buckets: Vec<(f64, f64)>, q: f64) -> Option<f64> {
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = buckets.last()?.1;
    if total == 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for (le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            return Some(lower + (le - lower) * (rank - below) / (count - below).max(1e-9));
        }
        (lower, below) = (le, count);
    }
    None
}

/// Resident memory of `pid`: (current, peak) in MiB, from /proc.
fn memory_mib(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU time a process has used (user + system), seconds; 0 when it cannot be read.
/// `/proc/<pid>/stat` fields 14 and 15 are in clock ticks (proc(5)); `getconf CLK_TCK` is 100
/// on Linux x86-64.
fn cpu_seconds(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after it follow its ')'.
    let fields: Vec<&str> = text
        .rsplit_once(')')
        .map_or(vec![], |(_, rest)| rest.split_whitespace().collect());
    let tick = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    // After ')': field 3 (state) is index 0, so utime (14) is 11 and stime (15) is 12.
    tick(11).zip(tick(12)).map_or(0.0, |(u, s)| (u + s) / 100.0)
}

/// The host's CPU counters (`/proc/stat` line `cpu`, clock ticks): (steal, total).
fn cpu_counters() -> (f64, f64) {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<f64> = text.lines().next().map_or(vec![], |l| {
        l.split_whitespace()
            .skip(1)
            .filter_map(|t| t.parse().ok())
            .collect()
    });
    // user nice system idle iowait irq softirq steal (proc(5)); guest time is in user.
    (
        ticks.get(7).copied().unwrap_or(0.0),
        ticks.iter().take(8).sum(),
    )
}

struct Row {
    /// Share of the host's CPU time the hypervisor gave to others during the run (steal), %.
    steal_pct: f64,
    /// CPU time per trial by process (operator, kube-apiserver, etcd, the bench's fake
    /// kubelet and clients), ms.
    cpu_ms: Vec<(&'static str, f64)>,
    trials: i64,
    seconds: f64,
    first_fifth: f64,
    last_fifth: f64,
    peak_mib: f64,
    p50_p99: BTreeMap<&'static str, (f64, f64)>,
    /// p50/p99 of each step of the search reconcile, ms.
    steps: Vec<(&'static str, f64, f64)>,
    requests_per_trial: f64,
    /// API server requests per trial on the nasop objects, by resource, verb and code.
    server_requests: Vec<(String, f64)>,
    /// The operator's wait for the API server by HTTP method: (method, p50 ms, p99 ms).
    api_latency: Vec<(&'static str, f64, f64)>,
    /// API server time by resource and verb: (kind, count, p50 ms, p99 ms).
    server_latency: Vec<(String, f64, f64, f64)>,
    status_bytes: usize,
    outcome: String,
}

/// The resources whose API server requests the bench reports.
const RESOURCES: [&str; 6] = [
    "architecturesearches",
    "childtrials",
    "latencyprobes",
    "pods",
    "configmaps",
    "events",
];

/// What the API server's own `/metrics` says of the requests on [`RESOURCES`].
struct ServerMetrics {
    /// `apiserver_request_total` as (`resource[/subresource] VERB code`, count), largest first.
    requests: Vec<(String, f64)>,
    /// `apiserver_request_duration_seconds` (time in the API server, WATCH excluded) as
    /// (`resource[/subresource] VERB`, count, p50 ms, p99 ms), most requests first.
    latency: Vec<(String, f64, f64, f64)>,
}

/// The value of label `name` in a Prometheus label set (`a="x",b="y"`); empty when absent.
fn label(labels: &str, name: &str) -> String {
    labels
        .split(',')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
        .map(|v| v.trim_end_matches('"').to_string())
        .unwrap_or_default()
}

/// `resource[/subresource] VERB` of a sample of the API server's request metrics, for
/// [`RESOURCES`] only.
fn request_kind(labels: &str) -> Option<String> {
    let resource = label(labels, "resource");
    if !RESOURCES.contains(&resource.as_str()) {
        return None;
    }
    let sub = label(labels, "subresource");
    let name = if sub.is_empty() {
        resource
    } else {
        format!("{resource}/{sub}")
    };
    Some(format!("{name} {}", label(labels, "verb")))
}

async fn server_metrics(client: &kube::Client) -> ServerMetrics {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.unwrap_or_default();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    // Cumulative bucket counts by kind and bound (summed over the other labels).
    let mut buckets: BTreeMap<String, BTreeMap<u64, (f64, f64)>> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("apiserver_request_total{") {
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let Some(kind) = request_kind(labels) else {
                continue;
            };
            let key = format!("{kind} {}", label(labels, "code"));
            *counts.entry(key).or_default() += value.trim().parse::<f64>().unwrap_or(0.0);
        } else if let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_bucket{") {
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            let (Some(kind), Some(le)) = (request_kind(labels), bucket_bound(line)) else {
                continue;
            };
            // A watch's time is how long it stayed open.
            if kind.ends_with(" WATCH") {
                continue;
            }
            let entry = buckets
                .entry(kind)
                .or_default()
                .entry(le.to_bits())
                .or_insert((le, 0.0));
            entry.1 += value.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    let mut requests: Vec<(String, f64)> = counts.into_iter().filter(|(_, c)| *c > 0.0).collect();
    requests.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut latency: Vec<(String, f64, f64, f64)> = buckets
        .into_iter()
        .filter_map(|(kind, b)| {
            let b: Vec<(f64, f64)> = b.into_values().collect();
            let count = b.iter().map(|x| x.1).fold(0.0, f64::max);
            let p50 = bucket_quantile(b.clone(), 0.5)? * 1000.0;
            let p99 = bucket_quantile(b, 0.99)? * 1000.0;
            Some((kind, count, p50, p99))
        })
        .collect();
    latency.sort_by(|a, b| b.1.total_cmp(&a.1));
    ServerMetrics { requests, latency }
}

async fn run(
    n: i64,
    algorithm: &str,
    parallelism: i64,
    concurrency: u16,
    table: Arc<Table>,
) -> Row {
    let server = tokio::task::spawn_blocking(ApiServer::start)
        .await
        .unwrap()
        .expect("the bench needs Go to build kube-apiserver");
    let client = server.client().await;
    install_crds(&client).await;
    namespace(&client, "scale").await;
    let port = free_port();
    let log = std::fs::File::create(format!("/tmp/nasop-bench-scale-{n}.log")).unwrap();
    let mut operator = std::process::Command::new(nasop_binary())
        .args([
            "operator",
            "--namespace",
            "scale",
            "--leader-election",
            "false",
        ])
        .args(["--concurrency", &concurrency.to_string()])
        .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
        // NASOP_BENCH_LOG: the operator's log filter (e.g. `warn,nasop::search=debug`).
        .args([
            "--log",
            &std::env::var("NASOP_BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            "--log-format",
            "json",
        ])
        .env("KUBECONFIG", &server.kubeconfig)
        // As in the operator's image (docker/operator.Dockerfile).
        .env("MALLOC_ARENA_MAX", "2")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let accuracy = {
        let table = table.clone();
        Arc::new(move |g: &nasop_crds::Genotype| {
            table.entries.get(&g.hash()).map(|e| e.signal / 100.0)
        })
    };
    let kubelet = InstantKubelet::start(client.clone(), "scale", accuracy);
    let manifest = format!(
        "apiVersion: nasop.dev/v1alpha1
kind: ArchitectureSearch
metadata: {{name: scale}}
spec:
  searchSpace: {{nb201: {{}}}}
  strategy: {{algorithm: {algorithm}, seed: 1, dedupe: false}}
  budget: {{maxTrials: {n}, parallelism: {parallelism}, maxFailedTrials: {n}}}
  trial:
    image: nasop-trainer:bench
    dataset: {{format: CIFAR10, path: /data/cifar10}}
    epochs: 1
"
    );
    let value: serde_json::Value = serde_yaml::from_str(&manifest).unwrap();
    let search: ArchitectureSearch = serde_json::from_value(value).unwrap();
    let searches: Api<ArchitectureSearch> = Api::namespaced(client.clone(), "scale");
    let (etcd, apiserver) = server.pids();
    let processes = [
        ("operator", Some(operator.id())),
        ("kube-apiserver", apiserver),
        ("etcd", etcd),
        ("bench (fake kubelet)", Some(std::process::id())),
    ];
    let cpu_at_start: Vec<f64> = processes
        .iter()
        .map(|(_, pid)| pid.map_or(f64::NAN, cpu_seconds))
        .collect();
    let counters_at_start = cpu_counters();
    let start = Instant::now();
    searches
        .create(&PostParams::default(), &search)
        .await
        .unwrap();
    let (mut first_fifth, mut last_fifth_start) = (None, None);
    let mut status_bytes = 0;
    let outcome;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = searches.get("scale").await.unwrap();
        let status = s.status.clone().unwrap_or_default();
        status_bytes = status_bytes.max(serde_json::to_vec(&status).unwrap().len());
        let finished = i64::from(status.trials.succeeded + status.trials.failed);
        let t = start.elapsed().as_secs_f64();
        if first_fifth.is_none() && finished >= n / 5 {
            first_fifth = Some(t);
        }
        if last_fifth_start.is_none() && finished >= n - n / 5 {
            last_fifth_start = Some(t);
        }
        let (rss, _) = memory_mib(operator.id());
        eprint!(
            "\r{n} trials: {t:6.0} s, {finished:6} finished, {} pods done, operator {rss:5.0} MiB",
            kubelet.finished.load(std::sync::atomic::Ordering::Relaxed)
        );
        match status.phase {
            Some(SearchPhase::Succeeded) | Some(SearchPhase::Failed) => {
                outcome = format!("{:?} {finished}/{n}", status.phase.unwrap());
                break;
            }
            _ => {}
        }
        if t > 3.0 * 3600.0 {
            outcome = format!("stopped after 3 h at {finished}/{n}");
            break;
        }
    }
    eprintln!();
    let seconds = start.elapsed().as_secs_f64();
    let text = scrape(port);
    let _ = std::fs::write(format!("/tmp/nasop-bench-scale-{n}.metrics"), &text);
    let (_, peak_mib) = memory_mib(operator.id());
    let mut p50_p99 = BTreeMap::new();
    for controller in ["architecturesearch", "childtrial", ""] {
        let filter = format!("controller=\"{controller}");
        let metric = "nasop_reconcile_duration_seconds";
        p50_p99.insert(
            controller,
            (
                quantile(&text, metric, &filter, 0.5).unwrap_or(f64::NAN) * 1000.0,
                quantile(&text, metric, &filter, 0.99).unwrap_or(f64::NAN) * 1000.0,
            ),
        );
    }
    let steps = STEPS
        .iter()
        .map(|step| {
            let filter = format!("step=\"{step}\"");
            let metric = "nasop_search_step_seconds";
            let q = |q| quantile(&text, metric, &filter, q).unwrap_or(f64::NAN) * 1000.0;
            (*step, q(0.5), q(0.99))
        })
        .collect();
    let requests = sum(&text, "nasop_api_requests_total", "");
    let api_latency = ["POST", "PATCH", "PUT", "DELETE", "GET"]
        .iter()
        .filter_map(|method| {
            let filter = format!("method=\"{method}\"");
            let metric = "nasop_api_request_duration_seconds";
            let q = |q| quantile(&text, metric, &filter, q).map(|s| s * 1000.0);
            Some((*method, q(0.5)?, q(0.99)?))
        })
        .collect();
    let cpu_ms = processes
        .iter()
        .zip(&cpu_at_start)
        .map(|(&(name, pid), start)| {
            let used = pid.map_or(f64::NAN, cpu_seconds) - start;
            (name, used * 1000.0 / n as f64)
        })
        .collect();
    let counters = cpu_counters();
    let steal_pct =
        100.0 * (counters.0 - counters_at_start.0) / (counters.1 - counters_at_start.1).max(1.0);
    let from_server = server_metrics(&client).await;
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &operator.id().to_string()])
        .status();
    let _ = operator.wait();
    let fifth = (n / 5) as f64;
    Row {
        steal_pct,
        cpu_ms,
        trials: n,
        seconds,
        first_fifth: fifth / first_fifth.unwrap_or(f64::NAN),
        last_fifth: fifth / (seconds - last_fifth_start.unwrap_or(f64::NAN)),
        peak_mib,
        p50_p99,
        steps,
        requests_per_trial: requests / n as f64,
        api_latency,
        server_latency: from_server.latency,
        server_requests: from_server
            .requests
            .into_iter()
            .map(|(k, c)| (k, c / n as f64))
            .collect(),
        status_bytes,
        outcome,
    }
}

fn main() {
    let mut sizes: Vec<i64> = Vec::new();
    let mut algorithm = "PPO".to_string();
    let mut parallelism = 450;
    // The operator's default (`nasop operator --concurrency`).
    let mut concurrency: u16 = 4;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--algorithm" => algorithm = args.next().expect("--algorithm NAME"),
            "--parallelism" => {
                parallelism = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("--parallelism N")
            }
            "--concurrency" => {
                concurrency = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .expect("--concurrency N")
            }
            "--bench" => {}
            other => sizes.push(other.parse().unwrap_or_else(|_| {
                panic!("{other:?}: expected a number of trials, --algorithm, --parallelism or --concurrency")
            })),
        }
    }
    if sizes.is_empty() {
        sizes = vec![1000, 5000, 20000];
    }
    let table = Arc::new(
        Table::read(
            &shared_data_dir().join("nb201/nb201_cifar10.csv"),
            "arch_str",
            "c10valid_valid_200",
            "c10_test_200",
            None,
        )
        .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    for n in sizes {
        let row = runtime.block_on(run(n, &algorithm, parallelism, concurrency, table.clone()));
        rows.push(row);
        // The tables so far after each size (a long run stopped early keeps what it measured).
        print_tables(&algorithm, parallelism, concurrency, &rows);
    }
}

fn print_tables(algorithm: &str, parallelism: i64, concurrency: u16, rows: &[Row]) {
    println!(
        "\n{algorithm}, parallelism {parallelism}, operator --concurrency {concurrency}, instant fake kubelet, real kube-apiserver v1.34.4 + etcd v3.6.4\n"
    );
    println!(
        "| trials | outcome | wall s | trials/s | first 1/5 | last 1/5 | peak MiB | search p50/p99 ms | trial p50/p99 ms | all p50/p99 ms | requests/trial | status bytes |"
    );
    println!(
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    );
    for r in rows {
        let (s50, s99) = r.p50_p99["architecturesearch"];
        let (t50, t99) = r.p50_p99["childtrial"];
        let (a50, a99) = r.p50_p99[""];
        println!(
            "| {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {s50:.1}/{s99:.1} | {t50:.1}/{t99:.1} | {a50:.1}/{a99:.1} | {:.1} | {} |",
            r.trials,
            r.outcome,
            r.seconds,
            r.trials as f64 / r.seconds,
            r.first_fifth,
            r.last_fifth,
            r.peak_mib,
            r.requests_per_trial,
            r.status_bytes
        );
    }
    println!(
        "\nCPU time per trial by process, ms (user + system, `/proc/<pid>/stat`), and the \
         host's CPU steal during the run (`/proc/stat`: time the hypervisor gave to others):\n"
    );
    let names: Vec<&str> = rows[0].cpu_ms.iter().map(|c| c.0).collect();
    println!("| trials | {} | steal % |", names.join(" | "));
    println!("| ---: |{} ---: |", " ---: |".repeat(names.len()));
    for r in rows {
        let cells: Vec<String> = r.cpu_ms.iter().map(|c| format!("{:.1}", c.1)).collect();
        println!(
            "| {} | {} | {:.1} |",
            r.trials,
            cells.join(" | "),
            r.steal_pct
        );
    }
    println!("\nSearch reconcile by step, p50/p99 ms (`nasop_search_step_seconds`):\n");
    println!("| trials | {} |", STEPS.join(" | "));
    println!("| ---: |{}", " ---: |".repeat(STEPS.len()));
    for r in rows {
        let cells: Vec<String> = r
            .steps
            .iter()
            .map(|(_, p50, p99)| format!("{p50:.1}/{p99:.1}"))
            .collect();
        println!("| {} | {} |", r.trials, cells.join(" | "));
    }
    println!(
        "\nAPI server requests per trial on nasop's objects (`apiserver_request_total`; the fake \
         kubelet's pod status writes included; a WATCH counts once):\n"
    );
    println!("| trials | resource | verb | code | per trial |");
    println!("| ---: | --- | --- | ---: | ---: |");
    for r in rows {
        for (key, per_trial) in r.server_requests.iter().filter(|(_, c)| *c >= 0.001) {
            let mut parts = key.split(' ');
            let (resource, verb, code) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            println!(
                "| {} | {resource} | {verb} | {code} | {per_trial:.3} |",
                r.trials
            );
        }
    }
    println!(
        "\nThe operator's wait for the API server by method (`nasop_api_request_duration_seconds`, \
         until the response headers), p50/p99 ms:\n"
    );
    println!("| trials | method | p50/p99 ms |");
    println!("| ---: | --- | ---: |");
    for r in rows {
        for (method, p50, p99) in &r.api_latency {
            println!("| {} | {method} | {p50:.1}/{p99:.1} |", r.trials);
        }
    }
    println!(
        "\nTime in the API server by resource and verb (`apiserver_request_duration_seconds`, \
         WATCH excluded), p50/p99 ms:\n"
    );
    println!("| trials | resource | verb | requests | p50/p99 ms |");
    println!("| ---: | --- | --- | ---: | ---: |");
    for r in rows {
        for (kind, count, p50, p99) in &r.server_latency {
            let (resource, verb) = kind.split_once(' ').unwrap_or((kind, ""));
            println!(
                "| {} | {resource} | {verb} | {count:.0} | {p50:.1}/{p99:.1} |",
                r.trials
            );
        }
    }
}
