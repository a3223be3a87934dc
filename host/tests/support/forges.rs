//! Stand-ins for the forges and archives the bundled providers call. None can
//! be installed here, so one loopback server answers as their APIs document it:
//! the JSON shapes, status codes, ETag and 304, GitHub's rate-limit headers,
//! doi.org's redirects to landing pages, and the data services' file lists
//! and downloads (zips and tarballs as the services serve them). It records
//! every request.

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
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
        let vault_polls: Arc<AtomicU32> = Arc::default();
        let (log, origin) = (hits.clone(), base.clone());
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let (log, origin, vault_polls) = (log.clone(), origin.clone(), vault_polls.clone());
            async move {
                let path = req.uri().path().to_string();
                let query = req.uri().query().unwrap_or("").to_string();
                let response =
                    match data(&origin, req.method().as_str(), &path, &query, &vault_polls) {
                        Some(r) => r,
                        None => answer(&origin, &path, &query, req.headers()),
                    };
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
                    authorization: header("authorization")
                        .or_else(|| header("private-token"))
                        .or_else(|| header("x-dataverse-key")),
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

    /// Points every API provider of `config` at this server, and lets it
    /// reach loopback.
    pub fn grant_providers(&self, config: &mut bindery::config::Config) {
        let base = &self.base;
        for name in super::API_PROVIDERS {
            let p = config
                .plugins
                .get_mut(name)
                .unwrap_or_else(|| panic!("{name} is bundled by default"));
            // `localhost` is another origin on the same server: where
            // downloads are redirected, as to a data service's object store.
            p.hosts = vec!["127.0.0.1".into(), "localhost".into()];
            p.private_networks = vec!["127.0.0.0/8".parse().unwrap()];
            let settings: &[(&str, String)] = match name {
                "gh" | "gist" => &[("api_base_url", format!("{base}/github"))],
                "gl" => &[("api_base_url", format!("{base}/gitlab"))],
                "zenodo" | "dataverse" => &[("doi_resolver", format!("{base}/doi"))],
                "figshare" => &[
                    ("doi_resolver", format!("{base}/doi")),
                    ("api_base_url", format!("{base}/figshare-api")),
                ],
                "hydroshare" => &[("base_url", format!("{base}/hydroshare"))],
                "swh" => &[("api_base_url", format!("{base}/swh/api/1"))],
                _ => &[],
            };
            for (k, v) in settings {
                p.config
                    .insert(k.to_string(), toml::Value::String(v.clone()));
            }
        }
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
            "10.5281/zenodo.3242075" => redirect(format!("{base}/zenodo/records/3242075")),
            // Hostile records: a zip bomb, a path out of the build, a size that lies.
            "10.5281/zenodo.666" | "10.5281/zenodo.667" | "10.5281/zenodo.668" => {
                redirect(format!("{base}/zenodo/records/{}", &doi[15..]))
            }
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

/// The environment of every test record: a Dockerfile repo2docker builds
/// fast on the test engine's Jupyter image, copying the content home.
pub const RECORD_DOCKERFILE: &[u8] =
    b"FROM bindery-test/jupyter:1\nCOPY --chown=1000:1000 . /home/jovyan/\n";

/// A zip of `(path, bytes)` entries, as the services serve them.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default();
    for (path, bytes) in entries {
        if let Some(dir) = path.strip_suffix('/') {
            zip.add_directory(dir, options).unwrap();
        } else {
            zip.start_file(*path, options).unwrap();
            zip.write_all(bytes).unwrap();
        }
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// A gzipped tarball of `(path, bytes)` files, as Software Heritage's vault
/// serves a directory: everything under one folder named after its id.
pub fn tarball_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for (path, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(if path.ends_with(".sh") { 0o755 } else { 0o644 });
        header.set_cksum();
        tar.append_data(&mut header, path, *bytes).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn bytes(body: Vec<u8>, content_type: &str) -> Response<Body> {
    Response::builder()
        .header("content-type", content_type)
        .body(Body::from(body))
        .unwrap()
}

/// A zip of 4 GiB of zeros declared as 4 KiB: what a hostile record serves.
fn zip_bomb() -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut zip = zip::ZipWriter::new(&mut out);
    let options = zip::write::SimpleFileOptions::default().large_file(true);
    zip.start_file("bomb/zeros", options).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..64 {
        zip.write_all(&chunk).unwrap();
    }
    zip.finish().unwrap();
    out.into_inner()
}

/// The data services' file lists and downloads, and Software Heritage's
/// vault (`new`, then `pending`, then `done`).
fn data(
    base: &str,
    method: &str,
    path: &str,
    query: &str,
    vault_polls: &AtomicU32,
) -> Option<Response<Body>> {
    Some(match (method, path) {
        // Zenodo: a record of one zip, its single folder flattened; the next
        // version changes only data.
        ("GET", "/zenodo/api/records/3242074" | "/zenodo/api/records/3242075") => {
            let id = path.rsplit('/').next().unwrap();
            json_response(
                200,
                json!({ "id": id.parse::<u64>().unwrap(), "conceptrecid": "3242073",
                    "links": { "files": format!("{base}/zenodo/api/records/{id}/files") } }),
                &[],
            )
        }
        ("GET", "/zenodo/api/records/3242074/files" | "/zenodo/api/records/3242075/files") => {
            let id = path.split('/').nth(4).unwrap();
            json_response(
                200,
                json!({ "entries": [{ "key": "binder.zip", "size": null,
                    "links": { "content": format!("{base}/zenodo/api/records/{id}/files/binder.zip/content") } }] }),
                &[],
            )
        }
        ("GET", "/zenodo/api/records/3242074/files/binder.zip/content") => bytes(
            zip_of(&[
                ("binder-1/", b""),
                ("binder-1/Dockerfile", RECORD_DOCKERFILE),
                ("binder-1/data/a.csv", b"x,y\n1,2\n"),
            ]),
            "application/zip",
        ),
        ("GET", "/zenodo/api/records/3242075/files/binder.zip/content") => bytes(
            zip_of(&[
                ("binder-2/Dockerfile", RECORD_DOCKERFILE),
                ("binder-2/data/b.csv", b"x,y\n3,4\n"),
            ]),
            "application/zip",
        ),
        // Figshare: every file not link-only, flat.
        ("GET", "/figshare-api/articles/9782777/versions/1") => json_response(
            200,
            json!({ "id": 9782777, "version": 1, "files": [
                { "name": "Dockerfile", "size": RECORD_DOCKERFILE.len(), "is_link_only": false,
                  "download_url": format!("{base}/figshare-files/1") },
                { "name": "analysis.ipynb", "size": 2, "is_link_only": false,
                  "download_url": format!("{base}/figshare-files/2") },
                { "name": "elsewhere", "size": 0, "is_link_only": true,
                  "download_url": "https://example.org/elsewhere" } ] }),
            &[],
        ),
        ("GET", "/figshare-files/1") => {
            bytes(RECORD_DOCKERFILE.to_vec(), "application/octet-stream")
        }
        ("GET", "/figshare-files/2") => bytes(b"{}".to_vec(), "application/octet-stream"),
        // Dataverse: folders from directoryLabel, tabular originals, zips kept.
        ("GET", "/api/datasets/3035124/versions/3.0") => json_response(
            200,
            json!({ "status": "OK", "data": { "versionNumber": 3, "versionMinorNumber": 0, "files": [
                { "label": "Dockerfile", "restricted": false,
                  "dataFile": { "id": 11, "filename": "Dockerfile", "filesize": RECORD_DOCKERFILE.len() } },
                { "label": "table.tab", "directoryLabel": "data/raw", "restricted": false,
                  "dataFile": { "id": 12, "filename": "table.tab", "originalFileName": "table.tsv",
                                "filesize": 4, "originalFileSize": 8 } },
                { "label": "results.zip", "directoryLabel": "data", "restricted": false,
                  "dataFile": { "id": 13, "filename": "results.zip" } } ] } }),
            &[],
        ),
        ("GET", "/api/access/datafile/11") if query == "format=original" => {
            bytes(RECORD_DOCKERFILE.to_vec(), "application/octet-stream")
        }
        ("GET", "/api/access/datafile/12") if query == "format=original" => {
            bytes(b"a\tb\n1\t2\n".to_vec(), "text/tab-separated-values")
        }
        // Redirected to the object store, as installations on S3 do.
        ("GET", "/api/access/datafile/13") if query == "format=original" => {
            let port = base.rsplit(':').next().unwrap();
            Response::builder()
                .status(StatusCode::SEE_OTHER)
                .header(
                    "location",
                    format!("http://localhost:{port}/s3/results.zip?sig=1"),
                )
                .body(Body::empty())
                .unwrap()
        }
        ("GET", "/s3/results.zip") => bytes(zip_of(&[("r/out.txt", b"42")]), "application/zip"),
        // HydroShare: the bag redirects to S3 once prepared; only data/contents counts.
        ("GET", p) if p == format!("/hydroshare/django_s3/download/bags/{HYDROSHARE_ID}.zip") => {
            redirect(format!(
                "{base}/hydroshare-s3/bags/{HYDROSHARE_ID}.zip?sig=x"
            ))
        }
        ("GET", p) if p == format!("/hydroshare-s3/bags/{HYDROSHARE_ID}.zip") => bytes(
            zip_of(&[
                (
                    &format!("{HYDROSHARE_ID}/bagit.txt"),
                    b"BagIt-Version: 0.97\n",
                ),
                (&format!("{HYDROSHARE_ID}/manifest-md5.txt"), b"..."),
                (&format!("{HYDROSHARE_ID}/data/resourcemap.xml"), b"<rdf/>"),
                (
                    &format!("{HYDROSHARE_ID}/data/contents/Dockerfile"),
                    RECORD_DOCKERFILE,
                ),
                (
                    &format!("{HYDROSHARE_ID}/data/contents/model/run.txt"),
                    b"run",
                ),
            ]),
            "application/zip",
        ),
        // CKAN: each resource's URL, flat in the root.
        ("GET", "/ckan/api/3/action/package_show") if query == "id=sample" => json_response(
            200,
            json!({ "help": "…", "success": true, "result": { "id": "d1", "name": "sample",
                "metadata_modified": "2021-01-12T15:28:15.123456", "resources": [
                { "id": "r1", "url": format!("{base}/ckan/files/Dockerfile") },
                { "id": "r2", "url": format!("{base}/ckan/files/measurements.csv?download=1") },
                { "id": "r3", "url": "" } ] } }),
            &[],
        ),
        ("GET", "/ckan/files/Dockerfile") => bytes(RECORD_DOCKERFILE.to_vec(), "text/plain"),
        ("GET", "/ckan/files/measurements.csv") => bytes(b"t,v\n0,1\n".to_vec(), "text/csv"),
        // Software Heritage's vault: cooked on request, ready on the second poll.
        ("POST", p) if p == format!("/swh/api/1/vault/directory/{SWH_DIR}/") => {
            vault_polls.store(0, Ordering::SeqCst);
            json_response(
                200,
                json!({ "status": "new", "id": 1, "swhid": format!("swh:1:dir:{SWH_DIR}") }),
                &[],
            )
        }
        ("GET", p) if p == format!("/swh/api/1/vault/directory/{SWH_DIR}/") => {
            let status = if vault_polls.fetch_add(1, Ordering::SeqCst) == 0 {
                "pending"
            } else {
                "done"
            };
            json_response(
                200,
                json!({ "status": status,
                "fetch_url": format!("{base}/swh/api/1/vault/directory/{SWH_DIR}/raw") }),
                &[],
            )
        }
        ("GET", p) if p == format!("/swh/api/1/vault/directory/{SWH_DIR}/raw/") => bytes(
            tarball_of(&[
                (&format!("{SWH_DIR}/Dockerfile"), RECORD_DOCKERFILE),
                (&format!("{SWH_DIR}/src/main.py"), b"print(1)\n"),
                (&format!("{SWH_DIR}/run.sh"), b"#!/bin/sh\n"),
            ]),
            "application/gzip",
        ),
        // Hostile records, for the limits.
        (
            "GET",
            "/zenodo/api/records/666" | "/zenodo/api/records/667" | "/zenodo/api/records/668",
        ) => {
            let id = path.rsplit('/').next().unwrap();
            json_response(
                200,
                json!({ "id": 1, "links": { "files": format!("{base}/zenodo/api/records/{id}/files") } }),
                &[],
            )
        }
        ("GET", "/zenodo/api/records/666/files") => json_response(
            200,
            json!({ "entries": [{ "key": "bomb.zip", "links": { "content": format!("{base}/hostile/bomb.zip") } }] }),
            &[],
        ),
        ("GET", "/zenodo/api/records/667/files") => json_response(
            200,
            json!({ "entries": [
                { "key": "Dockerfile", "links": { "content": format!("{base}/figshare-files/1") } },
                { "key": "../../escaped", "links": { "content": format!("{base}/figshare-files/2") } }] }),
            &[],
        ),
        ("GET", "/zenodo/api/records/668/files") => json_response(
            200,
            json!({ "entries": [
                { "key": "Dockerfile", "size": 3, "links": { "content": format!("{base}/figshare-files/1") } },
                { "key": "more", "links": { "content": format!("{base}/figshare-files/2") } }] }),
            &[],
        ),
        ("GET", "/hostile/bomb.zip") => bytes(zip_bomb(), "application/zip"),
        _ => return None,
    })
}
