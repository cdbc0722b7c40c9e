//! A real kube-apiserver and etcd for tests, built from Go modules by
//! `tests/apiserver/build.sh` (cached: only the first build on a machine pays), started on
//! free loopback ports with certificates generated here (rcgen), and torn down on drop (also
//! when a test panics).
//!
//! Without Go the tests that need it skip with one line; with `CI=true` or
//! `NASOP_REQUIRE_APISERVER=1` a missing Go is a failure.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::workspace_root;

/// The built binaries.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// kube-apiserver.
    pub kube_apiserver: PathBuf,
    /// etcd.
    pub etcd: PathBuf,
    /// kubectl of the same Kubernetes release (for the README's kubectl workflow).
    pub kubectl: PathBuf,
}

fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
        || std::env::var("NASOP_REQUIRE_APISERVER").is_ok_and(|v| v == "1")
}

/// Builds (or finds cached) kube-apiserver, etcd and kubectl. `None` (after printing why) when Go is
/// missing and the API server is not required.
///
/// # Panics
/// When the build fails, or Go is missing while required (CI).
pub fn binaries() -> Option<Binaries> {
    static BUILT: std::sync::OnceLock<Option<Binaries>> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            if Command::new("go").arg("version").output().is_err() {
                assert!(
                    !required(),
                    "Go is not installed, and CI requires the real kube-apiserver tests"
                );
                eprintln!("skipping: Go is not installed (the real kube-apiserver tests need it)");
                return None;
            }
            let script = workspace_root().join("tests/apiserver/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .stderr(Stdio::inherit())
                .output()
                .expect("bash runs");
            assert!(out.status.success(), "{} failed", script.display());
            let text = String::from_utf8_lossy(&out.stdout);
            let path = |name: &str| -> PathBuf {
                text.lines()
                    .rev()
                    .map(str::trim)
                    .find(|l| l.ends_with(&format!("/{name}")))
                    .map(PathBuf::from)
                    .unwrap_or_else(|| panic!("build.sh printed no {name} path:\n{text}"))
            };
            Some(Binaries {
                kube_apiserver: path("kube-apiserver"),
                etcd: path("etcd"),
                kubectl: path("kubectl"),
            })
        })
        .clone()
}

/// A free loopback TCP port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A running etcd + kube-apiserver pair.
pub struct ApiServer {
    dir: tempfile::TempDir,
    binaries: Binaries,
    etcd: Option<Child>,
    apiserver: Option<Child>,
    etcd_port: u16,
    port: u16,
    /// The admin kubeconfig (system:masters).
    pub kubeconfig: PathBuf,
}

impl ApiServer {
    /// The process ids of etcd and kube-apiserver (`None` while one is stopped).
    pub fn pids(&self) -> (Option<u32>, Option<u32>) {
        (
            self.etcd.as_ref().map(Child::id),
            self.apiserver.as_ref().map(Child::id),
        )
    }

    /// Starts etcd and kube-apiserver and waits until `/readyz` answers; `None` when the
    /// binaries are unavailable (see [`binaries`]).
    ///
    /// # Panics
    /// When a process cannot start or the API server is not ready within 90 s.
    pub fn start() -> Option<Self> {
        let binaries = binaries()?;
        let dir = tempfile::Builder::new()
            .prefix("nasop-apiserver-")
            .tempdir()
            .expect("a temp dir");
        let certs = dir.path().join("pki");
        fs::create_dir_all(&certs).unwrap();
        write_certificates(&certs);
        let port = free_port();
        let mut server = Self {
            kubeconfig: dir.path().join("kubeconfig"),
            dir,
            binaries,
            etcd: None,
            apiserver: None,
            etcd_port: free_port(),
            port,
        };
        fs::write(&server.kubeconfig, kubeconfig(&certs, port)).unwrap();
        server.start_etcd();
        server.start_apiserver();
        Some(server)
    }

    fn log(&self, name: &str) -> fs::File {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap()
    }

    fn start_etcd(&mut self) {
        let url = format!("http://127.0.0.1:{}", self.etcd_port);
        let child = Command::new(&self.binaries.etcd)
            .args([
                "--data-dir",
                self.dir.path().join("etcd").to_str().unwrap(),
                "--listen-client-urls",
                &url,
                "--advertise-client-urls",
                &url,
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", free_port()),
                // Test data: durability across power loss is not needed, speed is.
                "--unsafe-no-fsync",
            ])
            .stdout(self.log("etcd"))
            .stderr(self.log("etcd"))
            .spawn()
            .expect("etcd starts");
        self.etcd = Some(child);
    }

    fn start_apiserver(&mut self) {
        let pki = self.dir.path().join("pki");
        let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
        let child = Command::new(&self.binaries.kube_apiserver)
            .args([
                format!("--etcd-servers=http://127.0.0.1:{}", self.etcd_port),
                format!("--secure-port={}", self.port),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--cert-dir={}", p("serving")),
                format!("--tls-cert-file={}", p("serving.crt")),
                format!("--tls-private-key-file={}", p("serving.key")),
                format!("--client-ca-file={}", p("ca.crt")),
                format!("--service-account-key-file={}", p("sa.pub")),
                format!("--service-account-signing-key-file={}", p("sa.key")),
                "--service-account-issuer=https://kubernetes.default.svc".into(),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--authorization-mode=RBAC".into(),
                "--disable-admission-plugins=ServiceAccount".into(),
                "--allow-privileged=false".into(),
                "--enable-priority-and-fairness=false".into(),
                "--profiling=false".into(),
                // No endpoints to publish for a loopback test server.
                "--endpoint-reconciler-type=none".into(),
            ])
            .stdout(self.log("kube-apiserver"))
            .stderr(self.log("kube-apiserver"))
            .spawn()
            .expect("kube-apiserver starts");
        self.apiserver = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        loop {
            if let Some(c) = self.apiserver.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "kube-apiserver exited ({status}):\n{}",
                        self.tail("kube-apiserver")
                    );
                }
            }
            if readyz(self.port, &self.dir.path().join("pki")) {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "kube-apiserver not ready after 90 s:\n{}",
                self.tail("kube-apiserver")
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The last lines of a process log (`etcd` or `kube-apiserver`).
    pub fn tail(&self, name: &str) -> String {
        let text =
            fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A client with the admin identity.
    ///
    /// # Panics
    /// When the kubeconfig does not load.
    pub async fn client(&self) -> Client {
        let text = fs::read_to_string(&self.kubeconfig).unwrap();
        let kc = Kubeconfig::from_yaml(&text).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }

    /// Stops etcd for `down`, then starts it again on the same port and data: kube-apiserver
    /// stays up and answers errors meanwhile (its watches break and resume).
    pub fn pause_etcd(&mut self, down: Duration) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        std::thread::sleep(down);
        self.start_etcd();
    }

    /// Stops kube-apiserver and starts it again on the same port (etcd keeps the data).
    pub fn restart_apiserver(&mut self) {
        if let Some(mut c) = self.apiserver.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.start_apiserver();
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        for c in [self.apiserver.take(), self.etcd.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether `GET /readyz` answers `ok`, asked with the admin identity from a throwaway runtime
/// (the callers are synchronous).
fn readyz(port: u16, pki: &Path) -> bool {
    let kubeconfig = kubeconfig(pki, port);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let Ok(kc) = Kubeconfig::from_yaml(&kubeconfig) else {
            return false;
        };
        let Ok(config) =
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await
        else {
            return false;
        };
        let Ok(client) = Client::try_from(config) else {
            return false;
        };
        let req = http::Request::get("/readyz").body(Vec::new()).unwrap();
        matches!(
            tokio::time::timeout(Duration::from_secs(2), client.request_text(req)).await,
            Ok(Ok(body)) if body.trim() == "ok"
        )
    })
}

/// Writes a CA, a serving certificate for 127.0.0.1/localhost, an admin client certificate
/// (O=system:masters) and a service-account key pair into `dir`.
fn write_certificates(dir: &Path) {
    let w = |name: &str, text: &str| {
        let mut f = fs::File::create(dir.join(name)).unwrap();
        f.write_all(text.as_bytes()).unwrap();
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "nasop-test-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = CertifiedIssuer::self_signed(ca, ca_key).unwrap();
    w("ca.crt", &issuer.pem());

    let serving_key = KeyPair::generate().unwrap();
    let mut serving = CertificateParams::new(vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .unwrap();
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = serving.signed_by(&serving_key, &issuer).unwrap();
    w("serving.crt", &cert.pem());
    w("serving.key", &serving_key.serialize_pem());

    let admin_key = KeyPair::generate().unwrap();
    let mut admin = CertificateParams::new(Vec::<String>::new()).unwrap();
    admin.distinguished_name.push(DnType::CommonName, "admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = admin.signed_by(&admin_key, &issuer).unwrap();
    w("admin.crt", &cert.pem());
    w("admin.key", &admin_key.serialize_pem());

    let sa = KeyPair::generate().unwrap();
    w("sa.key", &sa.serialize_pem());
    w("sa.pub", &sa.public_key_pem());
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The admin kubeconfig for the API server on `port`, certificates from `pki`.
fn kubeconfig(pki: &Path, port: u16) -> String {
    let read = |f: &str| b64(&fs::read(pki.join(f)).unwrap());
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority-data: {}
users:
- name: admin
  user:
    client-certificate-data: {}
    client-key-data: {}
contexts:
- name: test
  context: {{cluster: test, user: admin, namespace: default}}
current-context: test
",
        read("ca.crt"),
        read("admin.crt"),
        read("admin.key")
    )
}

/// Helm v3 (for the chart tests): `helm` on `$PATH`, else built once with `go install` into
/// `${NASOP_CACHE:-~/.cache/nasop}/tools/` (about 7 minutes on 2 cores, 79 MB). `None` (after
/// printing why) without Go unless required (CI).
///
/// # Panics
/// When the build fails, or neither helm nor Go exists while required.
pub fn helm() -> Option<PathBuf> {
    static HELM: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    HELM.get_or_init(|| {
        if Command::new("helm")
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return Some(PathBuf::from("helm"));
        }
        let cache = std::env::var_os("NASOP_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/nasop"));
        let tools = cache.join("tools");
        let path = tools.join("helm");
        if path.is_file() {
            return Some(path);
        }
        if Command::new("go").arg("version").output().is_err() {
            assert!(
                !required(),
                "neither helm nor Go is installed, and CI requires the chart tests"
            );
            eprintln!("skipping: neither helm nor Go is installed (the chart tests need helm)");
            return None;
        }
        eprintln!(
            "building helm v3.22.0 with go install into {} (once per machine)",
            tools.display()
        );
        let status = Command::new("go")
            .args([
                "install",
                "-trimpath",
                "-ldflags",
                "-s -w",
                "helm.sh/helm/v3/cmd/helm@v3.22.0",
            ])
            .env("GOBIN", &tools)
            .status()
            .expect("go runs");
        assert!(status.success() && path.is_file(), "go install helm failed");
        Some(path)
    })
    .clone()
}

/// Applies `crds/*.yaml` and waits until each is Established.
///
/// # Panics
/// When a CRD cannot be applied or is not Established within 30 s.
pub async fn install_crds(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for file in ["architecturesearches", "childtrials", "latencyprobes"] {
        let text =
            std::fs::read_to_string(workspace_root().join(format!("crds/{file}.yaml"))).unwrap();
        let value: serde_json::Value = serde_yaml::from_str(&text).unwrap();
        let crd: CustomResourceDefinition = serde_json::from_value(value).unwrap();
        crds.patch(
            crd.metadata.name.as_deref().unwrap(),
            &PatchParams::apply("nasop-tests").force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap();
    }
    let start = Instant::now();
    loop {
        let list = crds.list(&ListParams::default()).await.unwrap();
        let established = list
            .items
            .iter()
            .filter(|c| {
                c.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.ends_with(".nasop.dev"))
            })
            .filter(|c| {
                c.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|cs| {
                        cs.iter()
                            .any(|c| c.type_ == "Established" && c.status == "True")
                    })
            })
            .count();
        if established == 3 {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "CRDs not Established"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Creates namespace `name`.
///
/// # Panics
/// When it cannot be created (e.g. it exists).
pub async fn namespace(client: &Client, name: &str) {
    let ns: Api<Namespace> = Api::all(client.clone());
    let obj: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    ns.create(&PostParams::default(), &obj).await.unwrap();
}
