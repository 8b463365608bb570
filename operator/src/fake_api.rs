//! An in-memory Kubernetes API for the reconcilers' tests: a `kube::Client`
//! over a tower service that keeps objects by their URL path.
//!
//! Written by hand because no kept crate fits: tower-test's mock answers one
//! scripted request at a time (a reconcile makes a dozen, in an order that
//! is the code's business), and the in-memory clients on crates.io pin other
//! kube versions. It models what the reconcilers rely on, no more:
//! server-side apply as a deep merge into the stored object (status kept),
//! status applies that merge conditions by type, JSON patches (finalizers),
//! creates (409 when the name is taken), replaces that check
//! `resourceVersion` (409 on a stale one), GET of objects and collections,
//! and injected failures.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    sync::{Arc, Mutex, MutexGuard},
};

use http::{Method, Request, Response, StatusCode, header::CONTENT_TYPE};
use kube::{Client, client::Body};
use serde_json::{Value, json};

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    /// "METHOD path?query" of every request, in order.
    requests: Vec<String>,
    /// Requests whose path starts with the key fail with the status code.
    failures: BTreeMap<String, u16>,
    next_uid: u64,
    /// The last resourceVersion handed out.
    version: u64,
}

impl State {
    /// Stamps `object` with the next resourceVersion, as every write does.
    fn stamp(&mut self, object: &mut Value) {
        self.version += 1;
        object["metadata"]["resourceVersion"] = json!(self.version.to_string());
    }
}

/// The store behind a [`Client`]; clones share it.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// A store and a client that talks to it.
    pub fn new() -> (Self, Client) {
        let api = FakeApi::default();
        let handler = api.clone();
        let service = tower::service_fn(move |request: Request<Body>| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler.handle(request).await) }
        });
        (api, Client::new(service, "default"))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, path: &str, object: Value) {
        self.state().objects.insert(path.to_owned(), object);
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.state().objects.get(path).cloned()
    }

    pub fn remove(&self, path: &str) -> Option<Value> {
        self.state().objects.remove(path)
    }

    /// Changes a stored object as another controller (or a user) would.
    pub fn update(&self, path: &str, change: impl FnOnce(&mut Value)) {
        let mut state = self.state();
        let object = state
            .objects
            .get_mut(path)
            .unwrap_or_else(|| panic!("no object at {path}"));
        change(object);
    }

    /// Requests to paths starting with `prefix` fail with `code`.
    pub fn fail(&self, prefix: &str, code: u16) {
        self.state().failures.insert(prefix.to_owned(), code);
    }

    /// Drains the log of requests ("METHOD path?query").
    pub fn take_requests(&self) -> Vec<String> {
        std::mem::take(&mut self.state().requests)
    }

    /// Stored objects under `collection` (one path segment deeper).
    pub fn list(&self, collection: &str) -> Vec<Value> {
        let prefix = format!("{collection}/");
        self.state()
            .objects
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix) && !path[prefix.len()..].contains('/'))
            .map(|(_, object)| object.clone())
            .collect()
    }

    async fn handle(&self, request: Request<Body>) -> Response<Body> {
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = match request.into_body().collect_bytes().await {
            Ok(bytes) => bytes,
            Err(e) => return status(400, "BadRequest", &e.to_string()),
        };
        let failure = {
            let mut state = self.state();
            state.requests.push(format!("{method} {path}?{query}"));
            state
                .failures
                .iter()
                .find(|(prefix, _)| path.starts_with(prefix.as_str()))
                .map(|(_, code)| *code)
        };
        if let Some(code) = failure {
            return status(code, "Forbidden", "injected failure");
        }
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", &e.to_string()),
            }
        };
        match method {
            Method::GET => self.read(&path),
            Method::PATCH if content_type.contains("apply-patch") => self.apply(&path, body),
            Method::PATCH if content_type.contains("json-patch") => self.json_patch(&path, body),
            Method::POST => self.create(&path, body),
            Method::PUT => self.replace(&path, body),
            _ => status(
                405,
                "MethodNotAllowed",
                &format!("{method} is not modelled"),
            ),
        }
    }

    fn read(&self, path: &str) -> Response<Body> {
        if let Some(object) = self.get(path) {
            return respond(200, &object);
        }
        if !is_collection(path) {
            return status(404, "NotFound", &format!("{path} not found"));
        }
        let items = self.list(path);
        respond(
            200,
            &json!({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": "1"}, "items": items}),
        )
    }

    fn apply(&self, path: &str, body: Value) -> Response<Body> {
        if let Some(object_path) = path.strip_suffix("/status") {
            let mut state = self.state();
            let Some(object) = state.objects.get_mut(object_path) else {
                return status(404, "NotFound", &format!("{object_path} not found"));
            };
            merge_status(object, &body["status"]);
            return respond(200, object);
        }
        let mut state = self.state();
        state.next_uid += 1;
        let uid = format!("uid-{}", state.next_uid);
        let object = state.objects.entry(path.to_owned()).or_insert_with(
            || json!({"metadata": {"uid": uid, "creationTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        let mut body = body;
        if let Some(fields) = body.as_object_mut() {
            // What a client sends as status is ignored on the main resource.
            fields.remove("status");
        }
        merge(object, body);
        let mut object = object.clone();
        state.stamp(&mut object);
        state.objects.insert(path.to_owned(), object.clone());
        respond(200, &object)
    }

    fn create(&self, collection: &str, mut body: Value) -> Response<Body> {
        let Some(name) = body["metadata"]["name"].as_str().map(str::to_owned) else {
            return status(422, "Invalid", "metadata.name is required");
        };
        let path = format!("{collection}/{name}");
        let mut state = self.state();
        if state.objects.contains_key(&path) {
            return status(409, "AlreadyExists", &format!("{path} already exists"));
        }
        state.stamp(&mut body);
        state.objects.insert(path, body.clone());
        respond(201, &body)
    }

    fn replace(&self, path: &str, mut body: Value) -> Response<Body> {
        let mut state = self.state();
        let Some(stored) = state.objects.get(path) else {
            return status(404, "NotFound", &format!("{path} not found"));
        };
        if body["metadata"]["resourceVersion"] != stored["metadata"]["resourceVersion"] {
            return status(409, "Conflict", "the object has been modified");
        }
        state.stamp(&mut body);
        state.objects.insert(path.to_owned(), body.clone());
        respond(200, &body)
    }

    fn json_patch(&self, path: &str, body: Value) -> Response<Body> {
        let patch: json_patch::Patch = match serde_json::from_value(body) {
            Ok(p) => p,
            Err(e) => return status(400, "BadRequest", &e.to_string()),
        };
        let mut state = self.state();
        let Some(object) = state.objects.get_mut(path) else {
            return status(404, "NotFound", &format!("{path} not found"));
        };
        let mut patched = object.clone();
        if let Err(e) = json_patch::patch(&mut patched, &patch) {
            return status(422, "Invalid", &e.to_string());
        }
        *object = patched;
        respond(200, object)
    }
}

/// `/api/v1/[namespaces/NS/]PLURAL` or
/// `/apis/GROUP/VERSION/[namespaces/NS/]PLURAL`.
fn is_collection(path: &str) -> bool {
    let segments = path.trim_matches('/').split('/').count();
    match path.split('/').nth(1) {
        Some("api") => segments == 3 || segments == 5,
        Some("apis") => segments == 4 || segments == 6,
        _ => false,
    }
}

/// Objects merge key by key; anything else (arrays included) is replaced.
fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(into), Value::Object(from)) => {
            for (key, value) in from {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, from) => *into = from,
    }
}

/// A status apply: conditions merge by type (a list-map), the other fields
/// as [`merge`].
fn merge_status(object: &mut Value, status: &Value) {
    let Some(fields) = status.as_object() else {
        return;
    };
    let stored = &mut object["status"];
    if stored.is_null() {
        *stored = json!({});
    }
    for (key, value) in fields {
        if key == "conditions" {
            let mut conditions = stored["conditions"].as_array().cloned().unwrap_or_default();
            for condition in value.as_array().into_iter().flatten() {
                match conditions
                    .iter_mut()
                    .find(|c| c["type"] == condition["type"])
                {
                    Some(existing) => *existing = condition.clone(),
                    None => conditions.push(condition.clone()),
                }
            }
            stored["conditions"] = Value::Array(conditions);
        } else {
            merge(&mut stored[key.as_str()], value.clone());
        }
    }
}

fn respond(code: u16, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string().into_bytes()));
    *response.status_mut() =
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    respond(
        code,
        &json!({"apiVersion": "v1", "kind": "Status", "status": "Failure",
                "reason": reason, "message": message, "code": code}),
    )
}
