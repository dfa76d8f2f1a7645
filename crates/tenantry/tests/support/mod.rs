//! What the process tests share: running the `tenantry` binary with a clean environment,
//! collecting its output line by line, waiting for a line, stopping it with SIGTERM.

#![allow(dead_code)] // each test binary uses its own part

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_tenantry");

/// Lines collected from a process's output as they arrive.
pub type Lines = Arc<Mutex<Vec<String>>>;

/// `tenantry` on `db_url` with nothing else from this environment but `PATH`.
pub fn tenantry(db_url: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TENANTRY_DATABASE_URL", db_url)
        // the data directory (archives) outside the source tree; a test may name its own
        .env(
            "TENANTRY_DATA_DIR",
            std::env::temp_dir().join(format!("tenantry-test-data-{}", std::process::id())),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

pub fn collect(reader: impl tokio::io::AsyncRead + Unpin + Send + 'static) -> Lines {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    tokio::spawn(async move {
        let mut r = BufReader::new(reader).lines();
        while let Ok(Some(line)) = r.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

/// Waits (30 s at most) until `found` returns something from the lines collected so far.
pub async fn until<T>(what: &str, lines: &Lines, found: impl Fn(&[String]) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(t) = found(&lines.lock().unwrap()) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never arrived in: {:#?}",
            lines.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The first line containing `what` (waiting for it).
pub async fn wait_for(lines: &Lines, what: &str) -> String {
    until(&format!("'{what}'"), lines, |l| {
        l.iter().find(|l| l.contains(what)).cloned()
    })
    .await
}

/// A running `tenantry serve`, with its output collected line by line.
pub struct Served {
    pub child: Child,
    pub base: String,
    pub stdout: Lines,
    pub stderr: Lines,
}

/// Starts `cmd` (a `tenantry serve` command) and waits for its listening line (failing at once,
/// with what it said, if it exits instead).
pub async fn serve_command(mut cmd: Command) -> Served {
    let mut child = cmd.spawn().expect("spawn tenantry serve");
    let stdout = collect(child.stdout.take().unwrap());
    let stderr = collect(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    let line = loop {
        let found = stderr
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("listening on http://"))
            .cloned();
        if let Some(line) = found {
            break line;
        }
        if let Ok(Some(status)) = child.try_wait() {
            // let the last lines arrive
            tokio::time::sleep(Duration::from_millis(100)).await;
            panic!(
                "tenantry serve exited ({status}) before listening: {:#?}",
                stderr.lock().unwrap()
            );
        }
        assert!(Instant::now() < deadline, "tenantry serve never listened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let base = line
        .split("listening on ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    Served {
        child,
        base,
        stdout,
        stderr,
    }
}

/// `tenantry serve` on an ephemeral port, with `env` added.
pub async fn serve(db_url: &str, env: &[(&str, &str)], args: &[&str]) -> Served {
    let mut cmd = tenantry(db_url);
    cmd.envs(env.iter().copied())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args);
    serve_command(cmd).await
}

/// SIGTERM, and the process must exit cleanly within 30 s.
pub async fn stop(mut child: Child) {
    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("tenantry stops on SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit}");
}

/// POSTs `body` as JSON with a bearer credential (and `headers`); the answer's JSON.
pub async fn post_json(
    client: &reqwest::Client,
    url: &str,
    bearer: &str,
    headers: &[(&str, String)],
    body: &serde_json::Value,
) -> serde_json::Value {
    let mut req = client.post(url).bearer_auth(bearer).json(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.unwrap();
    assert!(resp.status().is_success(), "POST {url}: {}", resp.status());
    resp.json().await.unwrap()
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
