//! `qoqmed serve`: the web app (web/dist) and one model folder (at /model/) on 127.0.0.1, so a
//! newcomer sees QoQ-Med answer in a browser tab with nothing leaving the machine.
//!
//! Every response carries the page's Content-Security-Policy as a header (read from the meta tag
//! of dist/index.html, so the header and the static-host meta never disagree), range requests
//! are honoured (the app resumes interrupted model downloads with them), and each request is
//! logged on stderr (the browser tests read the log to prove no patient bytes were sent).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use tiny_http::{Header, Method, Request, Response, Server, StatusCode};

#[derive(clap::Args)]
pub struct Args {
    /// Port on 127.0.0.1 (0 picks a free one; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Model folder served at /model/ (config.json, tokenizer.json, safetensors, manifest.json).
    #[arg(long)]
    model: Option<PathBuf>,
    /// The built web app (`bash web/build.sh` writes web/dist).
    #[arg(long, default_value = "web/dist")]
    dist: PathBuf,
    /// Extra host the page may fetch models and cases from (added to the CSP's connect-src).
    #[arg(long = "allow-host")]
    allow_host: Vec<String>,
}

/// The policy used when index.html carries none (never the case for a dist built by web/build.sh).
const FALLBACK_CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; \
    worker-src 'self' blob:; connect-src 'self'; img-src 'self' blob: data:; style-src 'self'; \
    manifest-src 'self'; base-uri 'none'; form-action 'none'";

/// A model folder's files as (name, size, mtime): when it changes, the manifest is recomputed.
type FolderState = Vec<(String, u64, u128)>;

struct Site {
    dist: PathBuf,
    model: Option<PathBuf>,
    csp: String,
    /// manifest.json computed for a model folder that has none: (files' sizes and mtimes, body).
    manifest: Mutex<Option<(FolderState, String)>>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    if let Some(model) = &args.model
        && !model.join("config.json").is_file()
    {
        bail!(
            "--model {}: no config.json there; give a Hugging Face / qoqmed model folder (e.g. tests/fixtures/models/tiny-qwen-vocab)",
            model.display()
        );
    }
    let index = args.dist.join("index.html");
    let html = std::fs::read_to_string(&index).with_context(|| {
        format!(
            "reading {}: build the web app first with `bash web/build.sh` (or pass --dist DIR)",
            index.display()
        )
    })?;
    let csp = policy(&html, &args.allow_host);
    let server = Server::http(("127.0.0.1", args.port))
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{}: {e}", args.port))?;
    let port = server
        .server_addr()
        .to_ip()
        .map(|a| a.port())
        .unwrap_or(args.port);
    let site = Arc::new(Site {
        dist: args.dist.clone(),
        model: args.model.clone(),
        csp,
        manifest: Mutex::new(None),
    });
    let mut banner = format!("qoqmed serve: http://127.0.0.1:{port}/\n");
    if let Some(m) = &args.model {
        banner += &format!("  model folder {} at /model/\n", m.display());
    }
    banner += &format!("  web app from {}; Ctrl-C stops\n", args.dist.display());
    // A closed stdout (a caller that read the address and went) must not stop the server.
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(banner.as_bytes()).and_then(|()| out.flush());
    drop(out);

    let server = Arc::new(server);
    // A few threads: a model download and the page's other requests must not queue behind each other.
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (server, site) = (server.clone(), site.clone());
            std::thread::spawn(move || {
                while let Ok(req) = server.recv() {
                    handle(&site, req);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    Ok(())
}

/// The CSP of the meta tag in index.html plus the extra hosts, and `frame-ancestors` (which only
/// a header can carry).
fn policy(html: &str, extra_hosts: &[String]) -> String {
    let meta = html
        .split("<meta")
        .skip(1)
        .find(|m| m.contains("Content-Security-Policy"))
        .and_then(|m| m.split("content=\"").nth(1))
        .and_then(|c| c.split('"').next())
        .map(|c| c.replace("&#39;", "'").replace("&apos;", "'"));
    let mut csp = meta.unwrap_or_else(|| FALLBACK_CSP.to_string());
    if !extra_hosts.is_empty() {
        let hosts = extra_hosts.join(" ");
        csp = csp
            .split(';')
            .map(|d| {
                let d = d.trim();
                if d.starts_with("connect-src") {
                    format!("{d} {hosts}")
                } else {
                    d.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("; ");
    }
    format!(
        "{}; frame-ancestors 'none'",
        csp.trim().trim_end_matches(';')
    )
}

fn mime(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "txt" | "md" | "jinja" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Maps a URL path to a file: `/model/NAME` to the model folder (flat, as HF folders are), the rest
/// to dist. Percent-escapes are decoded; `..`, hidden names and empty components are refused.
fn resolve(site: &Site, url: &str) -> Option<PathBuf> {
    let path = url.split(['?', '#']).next().unwrap_or("/");
    let decoded = percent_decode(path)?;
    let (root, rest) = match decoded.strip_prefix("/model/") {
        Some(rest) => (site.model.as_deref()?, rest.to_string()),
        None => {
            let rest = decoded.trim_start_matches('/');
            let rest = if rest.is_empty() || rest.ends_with('/') {
                format!("{rest}index.html")
            } else {
                rest.to_string()
            };
            (site.dist.as_path(), rest)
        }
    };
    let mut out = root.to_path_buf();
    for part in rest.split('/') {
        if part.is_empty() || part.starts_with('.') || part.contains('\\') {
            return None;
        }
        out.push(part);
    }
    Some(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().filter(|s| !s.contains('\0'))
}

/// `Range: bytes=a-b | a- | -n` against a file of `len` bytes: Ok(None) for no (or a multi-part)
/// range, which is answered with the whole file; Err for an unsatisfiable one (416).
fn parse_range(value: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len.saturating_sub(1))
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(len.saturating_sub(1))
        };
        (start, end)
    };
    if len == 0 || start >= len || end < start {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("ASCII header")
}

/// The headers every response carries, whatever its body type.
trait AddHeader {
    fn common(&mut self, csp: &str);
}

impl<R: Read> AddHeader for Response<R> {
    fn common(&mut self, csp: &str) {
        self.add_header(header("Content-Security-Policy", csp));
        self.add_header(header("X-Content-Type-Options", "nosniff"));
        self.add_header(header("Referrer-Policy", "no-referrer"));
        self.add_header(header("Cross-Origin-Resource-Policy", "same-origin"));
        self.add_header(header("Cache-Control", "no-cache"));
    }
}

fn handle(site: &Site, req: Request) {
    let method = req.method().clone();
    let url = req.url().to_string();
    let range_header = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Range"))
        .map(|h| h.value.as_str().to_string());
    let if_none_match = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("If-None-Match"))
        .map(|h| h.value.as_str().to_string());
    let (status, sent, result) = respond(
        site,
        req,
        &method,
        &url,
        range_header.as_deref(),
        if_none_match.as_deref(),
    );
    let range = range_header
        .map(|r| format!(" range={r}"))
        .unwrap_or_default();
    let err = result.err().map(|e| format!(" ({e})")).unwrap_or_default();
    eprintln!("{method} {url}{range} -> {status} {sent} bytes{err}");
}

/// Answers one request; returns the status, the body bytes promised and any I/O error (a client
/// that hung up mid-download is normal and only logged).
fn respond(
    site: &Site,
    req: Request,
    method: &Method,
    url: &str,
    range: Option<&str>,
    if_none_match: Option<&str>,
) -> (u16, u64, std::io::Result<()>) {
    let common = |r: &mut dyn AddHeader| r.common(&site.csp);
    let text = |code: u16, msg: &str| {
        let mut r = Response::from_string(msg).with_status_code(StatusCode(code));
        r.add_header(header("Content-Type", "text/plain; charset=utf-8"));
        common(&mut r);
        r
    };
    if *method != Method::Get && *method != Method::Head {
        let mut r = text(405, "only GET and HEAD\n");
        r.add_header(header("Allow", "GET, HEAD"));
        return (405, 0, req.respond(r));
    }
    let Some(path) = resolve(site, url) else {
        return (404, 0, req.respond(text(404, "not found\n")));
    };
    // The app verifies downloads against manifest.json; a plain HF folder has none, so compute it.
    if url.split('?').next() == Some("/model/manifest.json")
        && !path.is_file()
        && let Some(dir) = &site.model
    {
        return match model_manifest(site, dir) {
            Ok(body) => {
                let n = body.len() as u64;
                let mut r = Response::from_string(body);
                r.add_header(header("Content-Type", "application/json"));
                common(&mut r);
                let body = if *method == Method::Head { 0 } else { n };
                (200, body, req.respond(r))
            }
            Err(e) => (500, 0, req.respond(text(500, &format!("{e}\n")))),
        };
    }
    let Ok(mut file) = File::open(&path) else {
        return (404, 0, req.respond(text(404, "not found\n")));
    };
    let Ok(meta) = file
        .metadata()
        .map_err(drop)
        .and_then(|m| if m.is_file() { Ok(m) } else { Err(()) })
    else {
        return (404, 0, req.respond(text(404, "not found\n")));
    };
    let len = meta.len();
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let etag = format!("\"{len:x}-{mtime:x}\"");
    if if_none_match == Some(etag.as_str()) {
        let mut r = Response::empty(StatusCode(304));
        r.add_header(header("ETag", &etag));
        common(&mut r);
        return (304, 0, req.respond(r));
    }
    let (status, start, count) = match parse_range(range, len) {
        Ok(None) => (200, 0, len),
        Ok(Some((a, b))) => (206, a, b - a + 1),
        Err(()) => {
            let mut r = text(416, "range not satisfiable\n");
            r.add_header(header("Content-Range", &format!("bytes */{len}")));
            return (416, 0, req.respond(r));
        }
    };
    if file.seek(SeekFrom::Start(start)).is_err() {
        return (500, 0, req.respond(text(500, "seek failed\n")));
    }
    // tiny_http leaves the body out for HEAD by itself. Identity encoding always: a download's
    // progress needs Content-Length, which chunked responses (its default above 32 KiB) lack.
    let mut r = Response::new(
        StatusCode(status),
        Vec::new(),
        file.take(count),
        Some(count as usize),
        None,
    )
    .with_chunked_threshold(usize::MAX);
    r.add_header(header("Content-Type", mime(&path)));
    r.add_header(header("Accept-Ranges", "bytes"));
    r.add_header(header("ETag", &etag));
    if status == 206 {
        r.add_header(header(
            "Content-Range",
            &format!("bytes {start}-{}/{len}", start + count - 1),
        ));
    }
    common(&mut r);
    let sent = if *method == Method::Head { 0 } else { count };
    (status, sent, req.respond(r))
}

/// manifest.json for a folder without one: every regular file with its size and sha256, computed
/// once and again only when a file's size or mtime changes.
fn model_manifest(site: &Site, dir: &Path) -> anyhow::Result<String> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().to_string();
        let meta = entry.metadata()?;
        if !meta.is_file() || name.starts_with('.') || name == "manifest.json" {
            continue;
        }
        let mtime = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        entries.push((name, meta.len(), mtime));
    }
    entries.sort();
    let mut cache = site
        .manifest
        .lock()
        .map_err(|_| anyhow::anyhow!("manifest cache poisoned"))?;
    if let Some((key, body)) = cache.as_ref()
        && *key == entries
    {
        return Ok(body.clone());
    }
    let mut files = Vec::new();
    for (name, size, _) in &entries {
        let path = dir.join(name);
        let mut f = File::open(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut hasher = Sha256::new();
        std::io::copy(&mut f, &mut hasher)?;
        let digest: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        files.push(serde_json::json!({"path": name, "size": size, "sha256": digest}));
    }
    let body = serde_json::json!({ "files": files }).to_string();
    *cache = Some((entries, body.clone()));
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 3))));
        assert_eq!(parse_range(Some("bytes=4-"), 10), Ok(Some((4, 9))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 9))));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), Ok(Some((5, 9))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=4-2"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=x-"), 10), Err(()));
    }

    #[test]
    fn csp_from_meta_with_extra_hosts() {
        let html = r#"<meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; connect-src 'self'">"#;
        assert_eq!(
            policy(html, &["https://cases.example".into()]),
            "default-src 'none'; connect-src 'self' https://cases.example; frame-ancestors 'none'"
        );
        assert!(policy("<html>", &[]).starts_with("default-src 'none'"));
    }
}
