//! A distributed deployment on this machine's MariaDB, Redis and RabbitMQ: a database, a
//! key prefix and a queue of its own, N API servers, M workers, optionally nginx in front.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use chatsys_testkit::Service;
use chatsys_testkit::mysql::Database;

use super::Server;

pub struct Cluster {
    pub name: String,
    pub database: Database,
    dir: tempfile::TempDir,
    pub apis: Vec<Server>,
    pub workers: Vec<Server>,
    nginx: Option<Child>,
    /// Where clients go: nginx when there is one, else the first API server.
    pub base: String,
    extra_env: Vec<(String, String)>,
    redis_url: String,
    amqp_url: String,
}

impl Cluster {
    /// `None` (after one line saying what to start) when a service does not answer.
    pub async fn start(apis: usize, workers: usize, with_nginx: bool) -> Option<Cluster> {
        Self::start_with(apis, workers, with_nginx, &[]).await
    }

    pub async fn start_with(
        apis: usize,
        workers: usize,
        with_nginx: bool,
        extra_env: &[(&str, &str)],
    ) -> Option<Cluster> {
        let urls = chatsys_testkit::services(&[Service::MySql, Service::Redis, Service::RabbitMq])?;
        let name = chatsys_testkit::unique_name("chatsys_t");
        let database = Database::create_on(&urls[0], &name).await;
        let mut cluster = Cluster {
            name,
            database,
            dir: tempfile::tempdir().unwrap(),
            apis: Vec::new(),
            workers: Vec::new(),
            nginx: None,
            base: String::new(),
            extra_env: extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            redis_url: urls[1].clone(),
            amqp_url: urls[2].clone(),
        };
        for _ in 0..workers {
            cluster.add_worker();
        }
        for _ in 0..apis {
            cluster.add_api();
        }
        cluster.base = cluster.apis.first().map(|a| a.base.clone()).unwrap_or_default();
        if with_nginx {
            cluster.start_nginx();
        }
        Some(cluster)
    }

    /// The URL of `service` (its `CHATSYS_*_URL`) with its host and port replaced by those of
    /// a [`chatsys_testkit::proxy::Proxy`] started in front of it.
    pub async fn proxied(&self, variable: &str) -> (chatsys_testkit::proxy::Proxy, String) {
        let env = self.env();
        let url = &env.iter().find(|(k, _)| k == variable).expect("a URL the cluster sets").1;
        let service = match variable {
            "CHATSYS_DATABASE_URL" => Service::MySql,
            "CHATSYS_REDIS_URL" => Service::Redis,
            _ => Service::RabbitMq,
        };
        let proxy =
            chatsys_testkit::proxy::Proxy::start(&chatsys_testkit::host_port(url, service.default_port())).await;
        let through = chatsys_testkit::with_address(url, &proxy.address.to_string());
        (proxy, through)
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CHATSYS_DATABASE_URL".to_owned(), self.database.url.clone()),
            ("CHATSYS_REDIS_URL".to_owned(), self.redis_url.clone()),
            ("CHATSYS_AMQP_URL".to_owned(), self.amqp_url.clone()),
            ("CHATSYS_AMQP_QUEUE".to_owned(), format!("{}.commands", self.name)),
            ("CHATSYS_REDIS_PREFIX".to_owned(), self.name.clone()),
            ("CHATSYS_REDIS_RECOVERY_SETTLE".to_owned(), "1s".to_owned()),
            ("CHATSYS_DATABASE_POOL".to_owned(), "8".to_owned()),
            ("CHATSYS_RECONCILE_INTERVAL".to_owned(), "1h".to_owned()),
        ];
        env.extend(self.extra_env.iter().cloned());
        env
    }

    fn spawn(&self, wrapper: &[&str], subcommand: &str, overrides: &[(&str, &str)]) -> Server {
        let env = self.env();
        let mut env: Vec<(&str, &str)> = env
            .iter()
            .filter(|(k, _)| !overrides.iter().any(|(o, _)| o == k))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(overrides);
        env.push(("CHATSYS_OPS_LISTEN", "127.0.0.1:0"));
        env.push(("FAKETIME_DONT_FAKE_MONOTONIC", "1"));
        Server::spawn_wrapped(wrapper, subcommand, &self.dir.path().join(subcommand), &env)
    }

    pub fn add_api(&mut self) {
        self.add_api_wrapped(&[]);
    }

    /// An API server run through `wrapper` (e.g. `faketime -f -30s`: a clock 30 s behind).
    pub fn add_api_wrapped(&mut self, wrapper: &[&str]) {
        let api = self.spawn(wrapper, "serve", &[]);
        self.apis.push(api);
    }

    /// An API server whose environment differs from the cluster's in `overrides` (e.g. its
    /// broker reached through a [`chatsys_testkit::proxy::Proxy`]).
    pub fn add_api_with(&mut self, overrides: &[(&str, &str)]) {
        let api = self.spawn(&[], "serve", overrides);
        self.apis.push(api);
    }

    pub fn add_worker(&mut self) {
        self.add_worker_with(&[]);
    }

    /// A worker whose environment differs from the cluster's in `overrides` (e.g. its
    /// database reached through a [`chatsys_testkit::proxy::Proxy`]).
    pub fn add_worker_with(&mut self, overrides: &[(&str, &str)]) {
        let worker = self.spawn(&[], "worker", overrides);
        self.workers.push(worker);
    }

    fn start_nginx(&mut self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let dir: PathBuf = self.dir.path().join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        let upstreams: String =
            self.apis.iter().map(|a| format!("    server {};\n", a.base.trim_start_matches("http://"))).collect();
        let d = dir.display();
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 2048; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
               upstream api {{\n{upstreams}    keepalive 64;\n  }}\n\
               server {{\n    listen 127.0.0.1:{port};\n    client_max_body_size 1m;\n    client_body_buffer_size 1m;\n\
                 location / {{\n      proxy_pass http://api;\n      proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n      proxy_set_header Host $host;\n    }}\n  }}\n}}\n"
        );
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let child = Command::new(which_nginx())
            .args(["-p", &dir.display().to_string(), "-c", &dir.join("nginx.conf").display().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx (Debian's nginx-light) starts");
        self.nginx = Some(child);
        self.base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("nginx did not start listening");
    }

    /// Waits until no command is waiting in the queue (a worker may still hold some: checks
    /// that follow wait for what they expect, with a bound).
    pub async fn drained(&self) {
        let queue = format!("{}.commands", self.name);
        for _ in 0..600 {
            if chatsys_testkit::rabbitmq::messages_in(&queue).await == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the queue did not drain");
    }

    /// Commands in the dead-letter queue.
    pub async fn dead_lettered(&self) -> u64 {
        u64::from(chatsys_testkit::rabbitmq::messages_in(&format!("{}.commands.dead", self.name)).await)
    }

    /// Runs `statement` until it returns `expected` (a worker may still hold deliveries
    /// the broker no longer counts as waiting), for up to 30 s; returns the last rows.
    pub async fn sql_eventually(&self, statement: &str, expected: &[&str]) -> Vec<String> {
        let mut rows = Vec::new();
        for _ in 0..300 {
            rows = self.sql(statement).await;
            if rows.first().is_some_and(|row| row == expected) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        rows.into_iter().next().unwrap_or_default()
    }

    /// Runs SQL against the cluster's database and returns the rows, as text.
    pub async fn sql(&self, statement: &str) -> Vec<Vec<String>> {
        self.database.sql(statement).await
    }
}

fn which_nginx() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut nginx) = self.nginx.take() {
            // TERM: the master stops its workers (a KILL would orphan them)
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(nginx.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = nginx.wait();
        }
        self.apis.clear();
        self.workers.clear();
        // the database goes with `self.database`; the queues and keys here
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                chatsys_testkit::rabbitmq::delete(&format!("{name}.commands")).await;
                chatsys_testkit::redis::delete_prefix(&name).await;
            });
        })
        .join();
    }
}
