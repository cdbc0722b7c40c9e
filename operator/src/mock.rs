//! A scripted mock API server for the reconcile tests (tower-test): each test says which
//! requests it expects, in order (method, path, the query parts that matter), checks their
//! bodies, and answers them. A request the script does not expect fails the test.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};

use crate::metrics::Metrics;
use crate::runtime::Context;

/// The test's side of the mock API server.
pub struct ApiServer {
    handle: tower_test::mock::Handle<Request<Body>, Response<Body>>,
}

/// One request as the mock server received it.
#[derive(Debug)]
pub struct Seen {
    /// `GET`, `PATCH`, ...
    pub method: String,
    /// Path and query.
    pub uri: String,
    /// The JSON body (`Null` without one).
    pub body: Value,
}

/// A context whose client talks to the returned mock server.
pub fn context() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    (
        Arc::new(Context::new(client, Arc::new(Metrics::new()), None)),
        ApiServer { handle },
    )
}

impl ApiServer {
    /// Waits for the next request, checks its method, that its URI starts with `path`, and
    /// that it contains each of `query`; answers `status` with the JSON `respond` makes from
    /// the request (500 to one that fails the checks). Returns the request.
    pub async fn expect(
        &mut self,
        method: &str,
        path: &str,
        query: &[&str],
        respond: impl FnOnce(&Seen) -> (u16, Value),
    ) -> Seen {
        let seen = self
            .next(&format!("{method} {path}"), |seen| {
                let fine = seen.method == method
                    && seen.uri.starts_with(path)
                    && query.iter().all(|q| seen.uri.contains(q));
                if fine {
                    respond(seen)
                } else {
                    (500, json!({}))
                }
            })
            .await;
        assert_eq!(seen.method, method, "{} {}", seen.method, seen.uri);
        assert!(
            seen.uri.starts_with(path),
            "expected {method} {path}, got {} {}",
            seen.method,
            seen.uri
        );
        for q in query {
            assert!(seen.uri.contains(q), "{} lacks {q}", seen.uri);
        }
        seen
    }

    /// Waits for the next request, whatever it is (`expected` names it in a failure), and
    /// answers `status` with the JSON `respond` makes from it. For requests sent
    /// concurrently, whose order is not fixed. Returns the request.
    pub async fn next(
        &mut self,
        expected: &str,
        respond: impl FnOnce(&Seen) -> (u16, Value),
    ) -> Seen {
        let (request, send) =
            tokio::time::timeout(Duration::from_secs(5), self.handle.next_request())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {expected}"))
                .unwrap_or_else(|| panic!("the client went away before {expected}"));
        let seen = Seen {
            method: request.method().to_string(),
            uri: request.uri().to_string(),
            body: {
                let bytes = request.into_body().collect_bytes().await.unwrap();
                if bytes.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_slice(&bytes).unwrap()
                }
            },
        };
        let (status, body) = respond(&seen);
        send.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        seen
    }

    /// Expects the create (`POST` with `fieldManager=nasop-operator`) of the object at
    /// `path` (`<collection>/<name>?`): a POST to the collection with that name in the body.
    /// Echoes the object (with a uid).
    pub async fn expect_create(&mut self, path: &str) -> Seen {
        let object = path.trim_end_matches('?');
        let (collection, name) = object.rsplit_once('/').expect("<collection>/<name>");
        let seen = self
            .expect(
                "POST",
                &format!("{collection}?"),
                &["fieldManager=nasop-operator"],
                |s| {
                    let mut body = s.body.clone();
                    body["metadata"]["uid"] = json!("00000000-0000-4000-8000-000000000001");
                    (201, body)
                },
            )
            .await;
        assert_eq!(seen.body["metadata"]["name"], name, "the object created");
        seen
    }

    /// Expects a replace (`PUT` with `fieldManager=nasop-operator`) of `path`, and echoes the
    /// object with a new resourceVersion.
    pub async fn expect_replace(&mut self, path: &str, new_version: &str) -> Seen {
        let version = new_version.to_string();
        self.expect("PUT", path, &["fieldManager=nasop-operator"], move |s| {
            let mut body = s.body.clone();
            body["metadata"]["resourceVersion"] = json!(version);
            (200, body)
        })
        .await
    }

    /// Expects a server-side apply of the status of `object` at `path` (`.../status`), and
    /// answers `object` with the applied status.
    pub async fn expect_status(&mut self, path: &str, object: &Value) -> Seen {
        let object = object.clone();
        self.expect(
            "PATCH",
            path,
            &["fieldManager=nasop-operator", "force=true"],
            move |s| {
                assert_eq!(s.body["apiVersion"], object["apiVersion"]);
                assert_eq!(s.body["kind"], object["kind"]);
                let mut answer = object.clone();
                answer["status"] = s.body["status"].clone();
                // A write makes a new resourceVersion.
                let version = object["metadata"]["resourceVersion"]
                    .as_str()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0);
                answer["metadata"]["resourceVersion"] = json!((version + 1).to_string());
                (200, answer)
            },
        )
        .await
    }

    /// Expects an Event (events.k8s.io/v1) with `reason` about an object in `namespace`.
    pub async fn expect_event(&mut self, namespace: &str, reason: &str) -> Seen {
        let seen = self
            .expect(
                "POST",
                &format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events"),
                &[],
                |s| (201, s.body.clone()),
            )
            .await;
        assert_eq!(seen.body["reason"], reason, "{}", seen.body);
        seen
    }

    /// Expects a `GET` of `path` and answers `object` (or 404 with `None`).
    pub async fn expect_get(&mut self, path: &str, object: Option<Value>) -> Seen {
        self.expect("GET", path, &[], move |_| match object {
            Some(o) => (200, o),
            None => (404, not_found()),
        })
        .await
    }

    /// Expects a list (`GET` with a label selector) of `path` and answers `items`.
    pub async fn expect_list(&mut self, path: &str, selector: &str, items: Vec<Value>) -> Seen {
        self.expect("GET", path, &[&format!("labelSelector={selector}")], move |_| {
            (
                200,
                json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
            )
        })
        .await
    }

    /// Checks that no request is left (after the reconcile returned).
    pub fn done(mut self) {
        assert!(
            matches!(
                futures::FutureExt::now_or_never(self.handle.next_request()),
                None | Some(None)
            ),
            "an unexpected request is waiting"
        );
    }
}

/// A 404 Status body.
pub fn not_found() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "not found", "reason": "NotFound", "code": 404})
}

/// Runs `reconcile` against the scripted server and gives its result and the server back
/// (for another reconcile with the same context); the script runs concurrently and must
/// finish.
pub async fn run_keeping<T, F, S>(reconcile: F, script: S) -> (T, ApiServer)
where
    F: std::future::Future<Output = T>,
    S: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let script = tokio::spawn(script);
    let out = tokio::time::timeout(Duration::from_secs(10), reconcile)
        .await
        .expect("the reconcile finished");
    let server = tokio::time::timeout(Duration::from_secs(10), script)
        .await
        .expect("the script finished")
        .expect("the script did not panic");
    (out, server)
}

/// Runs `reconcile` against the scripted server: the script runs concurrently and must
/// finish, and no request may be left; the reconcile's result is returned.
pub async fn run<T, F, S>(reconcile: F, script: S) -> T
where
    F: std::future::Future<Output = T>,
    S: std::future::Future<Output = ApiServer> + Send + 'static,
{
    let (out, server) = run_keeping(reconcile, script).await;
    server.done();
    out
}
