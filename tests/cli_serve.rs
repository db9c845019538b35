//! `qoqmed serve` over real sockets: the CSP header taken from the page's meta tag, MIME types,
//! range requests (the app resumes downloads with them), the model folder at /model/ with a
//! computed manifest, and no way out of the two folders.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use sha2::{Digest, Sha256};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

struct Server {
    child: Child,
    port: u16,
    dist: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dist);
    }
}

const CSP: &str = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'";

fn start(extra: &[&str]) -> Server {
    let dist = std::env::temp_dir().join(format!("qoqmed-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(dist.join("pkg")).unwrap();
    std::fs::write(
        dist.join("index.html"),
        format!(
            "<!doctype html><meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><p>hi</p>"
        ),
    )
    .unwrap();
    std::fs::write(dist.join("pkg/x.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let model = root().join("tests/fixtures/models/tiny-small-vocab");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qoqmed"))
        .args(["serve", "--port", "0", "--dist"])
        .arg(&dist)
        .arg("--model")
        .arg(&model)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start qoqmed serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    Server { child, port, dist }
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)]) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

#[test]
fn serves_the_app_with_its_csp_and_the_model_with_ranges() {
    let server = start(&["--allow-host", "https://models.example.org"]);
    let p = server.port;

    let index = request(p, "GET", "/", &[]);
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        index.header("Content-Security-Policy"),
        Some(
            "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self' \
             https://models.example.org; frame-ancestors 'none'"
        )
    );
    assert_eq!(index.header("X-Content-Type-Options"), Some("nosniff"));
    let wasm = request(p, "GET", "/pkg/x.wasm", &[]);
    assert_eq!(wasm.header("Content-Type"), Some("application/wasm"));
    assert!(wasm.header("Content-Security-Policy").is_some());

    let file =
        std::fs::read(root().join("tests/fixtures/models/tiny-small-vocab/model.safetensors"))
            .unwrap();
    let whole = request(p, "GET", "/model/model.safetensors", &[]);
    assert_eq!(whole.status, 200);
    assert_eq!(whole.body, file);
    assert_eq!(whole.header("Accept-Ranges"), Some("bytes"));
    assert_eq!(
        whole.header("Content-Length"),
        Some(file.len().to_string().as_str())
    );

    let part = request(
        p,
        "GET",
        "/model/model.safetensors",
        &[("Range", "bytes=100-")],
    );
    assert_eq!(part.status, 206);
    assert_eq!(part.body, file[100..]);
    assert_eq!(
        part.header("Content-Range"),
        Some(format!("bytes 100-{}/{}", file.len() - 1, file.len()).as_str())
    );
    let head8 = request(
        p,
        "GET",
        "/model/model.safetensors",
        &[("Range", "bytes=0-7")],
    );
    assert_eq!(head8.body, file[..8]);
    let past = format!("bytes={}-", file.len());
    let bad = request(p, "GET", "/model/model.safetensors", &[("Range", &past)]);
    assert_eq!(bad.status, 416);
    assert_eq!(
        bad.header("Content-Range"),
        Some(format!("bytes */{}", file.len()).as_str())
    );

    let head = request(p, "HEAD", "/model/config.json", &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("Content-Type"), Some("application/json"));

    // A plain HF folder has no manifest: one is computed with every file's size and sha256.
    let manifest: serde_json::Value =
        serde_json::from_slice(&request(p, "GET", "/model/manifest.json", &[]).body).unwrap();
    let entry = manifest["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "model.safetensors")
        .unwrap();
    assert_eq!(entry["size"], file.len());
    let digest: String = Sha256::digest(&file)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(entry["sha256"], digest.as_str());

    for path in [
        "/../Cargo.toml",
        "/model/../config.json",
        "/model/%2e%2e/README.md",
        "/.git/config",
        "/nope.html",
        "/model/",
    ] {
        assert_eq!(request(p, "GET", path, &[]).status, 404, "{path}");
    }
    assert_eq!(request(p, "POST", "/", &[]).status, 405);
}

#[test]
fn refuses_a_model_folder_without_config() {
    let out = Command::new(env!("CARGO_BIN_EXE_qoqmed"))
        .args(["serve", "--port", "0", "--model"])
        .arg(root().join("docs"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.json"), "{err}");
}
