//! Starts the real `chatsys` binary on a free port and talks HTTP to it.

#![allow(dead_code, reason = "each test binary uses a different part of this module")]

pub mod cluster;
pub mod load;
pub mod sse;

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

pub struct Server {
    child: Child,
    pub data_dir: PathBuf,
    /// Every line the server wrote to stderr so far.
    pub logs: Arc<Mutex<Vec<String>>>,
    client: Client,
}

/// HTTP to a chatsys (or to nginx in front of several).
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
}

impl std::ops::Deref for Server {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Server {
    /// Starts `chatsys serve` in embedded mode with its data in `data_dir`.
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    pub fn start_with(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::spawn("serve", data_dir, env)
    }

    /// Starts `chatsys SUBCOMMAND`; returns once it logs the address it listens on (for
    /// `worker`, its ops address: set `CHATSYS_OPS_LISTEN`).
    pub fn spawn(subcommand: &str, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Self::spawn_wrapped(&[], subcommand, data_dir, env)
    }

    /// As [`Server::spawn`], run through `wrapper` (e.g. `faketime -f -30s`), which must
    /// exec the binary (so the pid stays the server's).
    pub fn spawn_wrapped(wrapper: &[&str], subcommand: &str, data_dir: &Path, env: &[(&str, &str)]) -> Server {
        let binary = env!("CARGO_BIN_EXE_chatsys");
        let mut command = match wrapper.split_first() {
            None => Command::new(binary),
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
        };
        command
            .arg(subcommand)
            .env_clear()
            .env("CHATSYS_LISTEN", "127.0.0.1:0")
            .env("CHATSYS_DATA_DIR", data_dir)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        // a group of its own, so that dropping the server also ends what a wrapper started
        // (faketime runs the server as its child: killing faketime alone left it running)
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command.spawn().expect("chatsys starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let kept = logs.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                kept.lock().unwrap().push(line.clone());
                // `listening addr=…` in text logs, `"addr":"…"` in JSON logs
                let addr = line
                    .split("addr=")
                    .nth(1)
                    .and_then(|rest| rest.split_whitespace().next())
                    .or_else(|| line.split("\"addr\":\"").nth(1).and_then(|rest| rest.split('"').next()));
                if let Some(addr) = addr.filter(|_| line.contains("listening"))
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(addr.to_owned());
                }
                if std::env::var_os("CHATSYS_TEST_SHOW_LOGS").is_some() {
                    eprintln!("[server] {line}");
                }
            }
        });
        let addr = rx.recv_timeout(Duration::from_secs(30)).expect("chatsys logs its address");
        Server { child, data_dir: data_dir.to_owned(), logs, client: Client::new(&format!("http://{addr}")) }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill(mut self) {
        kill(self.pid(), Signal::SIGKILL).expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// SIGTERM, then the exit status.
    pub fn terminate(self) -> ExitStatus {
        kill(self.pid(), Signal::SIGTERM).expect("SIGTERM");
        self.terminate_wait()
    }

    /// Waits for the process to exit (after a signal sent by other means).
    pub fn terminate_wait(mut self) -> ExitStatus {
        self.child.wait().expect("reaped")
    }
}

impl Client {
    pub fn new(base: &str) -> Client {
        let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().expect("http client");
        Client { base: base.to_owned(), http }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn request(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method.parse().expect("method"), self.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        Reply::from(req.send().await.expect("request is answered")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.request("POST", path, Some(body)).await
    }

    /// A new application's token.
    pub async fn new_app(&self) -> String {
        let r = self.post("/applications", json!({"name": "test app"})).await;
        assert_eq!(r.status, 201, "{r:?}");
        r.json["token"].as_str().expect("token").to_owned()
    }

    /// A new chat's number.
    pub async fn new_chat(&self, token: &str) -> u64 {
        let r = self.post(&format!("/applications/{token}/chats"), json!({})).await;
        assert_eq!(r.status, 201, "{r:?}");
        r.json["number"].as_u64().expect("number")
    }

    /// Every item of a paginated list, following `Link: rel="next"`.
    pub async fn all_pages(&self, path: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut next = Some(path.to_owned());
        while let Some(path) = next.take() {
            let r = self.get(&path).await;
            assert_eq!(r.status, 200, "{r:?}");
            items.extend(r.json.as_array().expect("array").iter().cloned());
            next = r.link_next.clone();
        }
        items
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = nix::sys::signal::killpg(self.pid(), Signal::SIGKILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub json: Value,
    pub text: String,
    pub link_next: Option<String>,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub async fn from(r: reqwest::Response) -> Reply {
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let link_next = headers.get("link").and_then(|v| v.to_str().ok()).and_then(|l| {
            l.split(',')
                .find(|part| part.contains("rel=\"next\""))
                .and_then(|part| part.split('<').nth(1)?.split('>').next().map(str::to_owned))
        });
        let text = r.text().await.unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply { status, content_type, json, text, link_next, headers }
    }

    /// An RFC 9457 problem document with this status.
    pub fn is_problem(&self, status: u16) -> bool {
        self.status == status
            && self.content_type.starts_with("application/problem+json")
            && self.json["status"] == status
            && self.json["title"].is_string()
            && self.json["detail"].is_string()
    }
}
