//! Stand-ins for the forges and archives the bundled providers call. None can
//! be installed here, so one loopback server answers as their APIs document it:
//! the JSON shapes, status codes, ETag and 304, GitHub's rate-limit headers,
//! and doi.org's redirects to landing pages. It records every request.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use serde_json::json;

pub const SHA: &str = "5f0b6dc5ddba1ed1b0b4b4e6b2d1c3f2d8b2a9c1";
pub const OLD_SHA: &str = "0123456789abcdef0123456789abcdef01234567";
pub const SWH_SNP: &str = "c7c108084bc0bf3d81436bf980b46e98bd338453";
pub const SWH_REL: &str = "208f61cc7a5dbc9879ae6e5c2f95891e270f09ef";
pub const SWH_DIR: &str = "977fc4b98c0e85816348cebd3b12026407c368b6";
pub const HYDROSHARE_ID: &str = "b8f6eae9d89241cf8b5904033460af61";

/// One request the server saw.
#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    pub query: String,
    pub if_none_match: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
}

/// The running server; stopped on drop.
pub struct Forges {
    pub base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Forges {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Forges {
    pub async fn start() -> Forges {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let (log, origin) = (hits.clone(), base.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (log, origin) = (log.clone(), origin.clone());
            async move {
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                let response = answer(&origin, &path, &query, req.headers());
                let header = |n: &str| {
                    req.headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                log.lock().unwrap().push(Hit {
                    path,
                    query,
                    if_none_match: header("if-none-match"),
                    authorization: header("authorization").or_else(|| header("private-token")),
                    status: response.status().as_u16(),
                });
                response
            }
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Forges { base, hits, server }
    }

    /// Requests whose path starts with `prefix`.
    pub fn hits(&self, prefix: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// Every request so far.
    pub fn total(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

fn json_response(
    status: u16,
    body: serde_json::Value,
    headers: &[(&str, String)],
) -> Response<Body> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/json");
    for (k, v) in headers {
        r = r.header(*k, v);
    }
    r.body(Body::from(body.to_string())).unwrap()
}

fn redirect(to: String) -> Response<Body> {
    Response::builder()
        .status(StatusCode::FOUND)
        .header("location", to)
        .body(Body::empty())
        .unwrap()
}

fn html() -> Response<Body> {
    Response::builder()
        .header("content-type", "text/html")
        .body(Body::from("<html>landing page</html>"))
        .unwrap()
}

fn not_found(body: serde_json::Value) -> Response<Body> {
    json_response(404, body, &[])
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn answer(base: &str, path: &str, query: &str, headers: &HeaderMap) -> Response<Body> {
    let if_none_match = headers.get("if-none-match").and_then(|v| v.to_str().ok());
    if let Some(rest) = path.strip_prefix("/github/repos/") {
        return github_commit(rest, if_none_match);
    }
    if let Some(id) = path.strip_prefix("/github/gists/") {
        let history = json!([{ "version": SHA }, { "version": OLD_SHA }]);
        return match id {
            "6f2e7e2b" => json_response(
                200,
                json!({ "id": id, "public": true, "history": history }),
                &[],
            ),
            "5ec2e7" => json_response(
                200,
                json!({ "id": id, "public": false, "history": history }),
                &[],
            ),
            _ => not_found(json!({ "message": "Not Found" })),
        };
    }
    if let Some(rest) = path.strip_prefix("/gitlab/api/v4/projects/") {
        return match rest.split_once("/repository/commits/") {
            Some(("group%2Fsub-project", "main" | "HEAD" | "feature%2Fx")) => json_response(
                200,
                json!({ "id": SHA, "short_id": &SHA[..8], "title": "first" }),
                &[],
            ),
            _ => not_found(json!({ "message": "404 Commit Not Found" })),
        };
    }
    if let Some(doi) = path.strip_prefix("/doi/") {
        return match doi {
            "10.5281/zenodo.3242074" => redirect(format!("{base}/zenodo/records/3242074")),
            // A concept DOI: two hops, to the latest version.
            "10.5281/zenodo.3242073" => {
                redirect(format!("{base}/zenodo/doi/10.5281/zenodo.3242073"))
            }
            "10.6084/m9.figshare.9782777.v1" => redirect(format!(
                "{base}/figshare/articles/code/Binder-ready/9782777/1"
            )),
            "10.6084/m9.figshare.9782777" => redirect(format!(
                "{base}/figshare/articles/code/Binder-ready/9782777"
            )),
            "10.7910/DVN/TJCLKP" => redirect(format!(
                "{base}/dataverse/citation?persistentId=doi:10.7910/DVN/TJCLKP"
            )),
            _ => Response::builder()
                .status(404)
                .body(Body::from("DOI Not Found"))
                .unwrap(),
        };
    }
    if path == "/zenodo/doi/10.5281/zenodo.3242073" {
        return redirect(format!("{base}/zenodo/records/3242074"));
    }
    if path.starts_with("/zenodo/records/")
        || path.starts_with("/figshare/articles/")
        || path == "/dataverse/citation"
    {
        return html();
    }
    if path == "/figshare-api/articles/9782777/versions" {
        return json_response(
            200,
            json!([{ "version": 1, "url": "u1" }, { "version": 2, "url": "u2" }]),
            &[],
        );
    }
    if path == "/api/datasets/:persistentId" {
        return if query == "persistentId=doi:10.7910/DVN/TJCLKP" {
            json_response(
                200,
                json!({ "status": "OK", "data": {
                "id": 3035124, "identifier": "DVN/TJCLKP", "authority": "10.7910", "protocol": "doi",
                "persistentUrl": "https://doi.org/10.7910/DVN/TJCLKP",
                "latestVersion": { "versionNumber": 3, "versionMinorNumber": 0, "versionState": "RELEASED" } } }),
                &[],
            )
        } else {
            not_found(
                json!({ "status": "ERROR", "message": "Dataset with Persistent ID not found" }),
            )
        };
    }
    if let Some(rest) = path.strip_prefix("/hydroshare/hsapi/resource/") {
        return if rest == format!("{HYDROSHARE_ID}/scimeta/elements") {
            json_response(
                200,
                json!({ "title": "t", "dates": [
                { "type": "created", "start_date": "2019-01-01T00:00:00.000000Z" },
                { "type": "modified", "start_date": "2019-09-16T17:39:17.593906Z" } ] }),
                &[],
            )
        } else {
            not_found(json!({ "detail": "No resource was found" }))
        };
    }
    if let Some(action) = path.strip_prefix("/ckan/api/3/action/") {
        let dataset = json!({ "help": "…", "success": true, "result": { "id": "d1", "name": "sample", "metadata_modified": "2021-01-12T15:28:15.123456" } });
        return match (action, query) {
            ("package_show", "id=sample")
            | ("activity_data_show", "id=act-1&object_type=package") => {
                json_response(200, dataset, &[])
            }
            _ => not_found(
                json!({ "help": "…", "success": false, "error": { "__type": "Not Found Error", "message": "Not found" } }),
            ),
        };
    }
    if let Some(repo) = path
        .strip_prefix("/forgejo/api/v1/repos/")
        .and_then(|r| r.strip_suffix("/commits"))
    {
        // Forgejo and Gitea list commits from `sha` (a branch, tag or commit), or from the default branch.
        let from = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("sha="))
            .unwrap_or("main");
        return match (repo, from) {
            ("lab/analysis", "main" | "v1.0") => json_response(
                200,
                json!([{ "sha": SHA, "commit": { "message": "first" } }]),
                &[],
            ),
            ("lab/analysis", _) => {
                not_found(json!({ "message": "object does not exist", "url": "…" }))
            }
            _ => not_found(json!({ "message": "The target couldn't be found.", "errors": [] })),
        };
    }
    if let Some(rest) = path.strip_prefix("/swh/api/1/") {
        return software_heritage(rest);
    }
    not_found(json!({ "message": format!("the test server has no {path}") }))
}

/// `GET /repos/{user}/{repo}/commits/{ref}` as GitHub answers it.
fn github_commit(rest: &str, if_none_match: Option<&str>) -> Response<Body> {
    let mut parts = rest.splitn(4, '/');
    let (user, repo, _, git_ref) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
        parts.next().unwrap_or(""),
    );
    let limit = |remaining: u64| {
        vec![
            ("x-ratelimit-limit", "60".to_string()),
            ("x-ratelimit-remaining", remaining.to_string()),
            ("x-ratelimit-reset", (now() + 600).to_string()),
        ]
    };
    if user == "ratelimited" {
        return json_response(
            403,
            json!({ "message": "API rate limit exceeded for 127.0.0.1." }),
            &limit(0),
        );
    }
    if repo == "missing" {
        return not_found(json!({ "message": "Not Found" }));
    }
    let known = match (repo, git_ref) {
        ("moved-default", "master") => false,
        (_, "main" | "HEAD" | "v1.0" | "feature/x") => true,
        (_, r) => r == SHA,
    };
    if !known {
        return json_response(
            422,
            json!({ "message": format!("No commit found for SHA: {git_ref}") }),
            &limit(59),
        );
    }
    let etag = format!("\"etag-{git_ref}\"");
    if if_none_match == Some(etag.as_str()) {
        return Response::builder()
            .status(304)
            .header("etag", etag)
            .body(Body::empty())
            .unwrap();
    }
    let mut headers = limit(58);
    headers.push(("etag", etag));
    json_response(
        200,
        json!({ "sha": SHA, "commit": { "message": "first" } }),
        &headers,
    )
}

fn software_heritage(rest: &str) -> Response<Body> {
    let (kind, id) = rest
        .trim_end_matches('/')
        .split_once('/')
        .unwrap_or(("", ""));
    match (kind, id) {
        ("revision", SHA) => json_response(
            200,
            json!({ "id": SHA, "directory": SWH_DIR, "type": "git" }),
            &[],
        ),
        ("directory", SWH_DIR) => json_response(
            200,
            json!([{ "name": "README.md", "type": "file", "target": OLD_SHA }]),
            &[],
        ),
        ("release", SWH_REL) => json_response(
            200,
            json!({ "id": SWH_REL, "name": "v1.0", "target": SHA, "target_type": "revision" }),
            &[],
        ),
        ("snapshot", SWH_SNP) => json_response(
            200,
            json!({ "id": SWH_SNP, "next_branch": null, "branches": {
            "HEAD": { "target": "refs/heads/main", "target_type": "alias" },
            "refs/heads/main": { "target": SHA, "target_type": "revision" } } }),
            &[],
        ),
        _ => not_found(
            json!({ "exception": "NotFoundExc", "reason": format!("{kind} {id} not found") }),
        ),
    }
}
