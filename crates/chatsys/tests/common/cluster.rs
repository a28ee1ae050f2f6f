//! A distributed deployment on this machine's MariaDB, Redis and RabbitMQ: a database, a
//! key prefix and a queue of its own, N API servers, M workers, optionally nginx in front.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::Server;

pub fn mysql_server_url() -> String {
    std::env::var("CHATSYS_TEST_MYSQL_URL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

pub fn redis_url() -> String {
    std::env::var("CHATSYS_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

pub fn amqp_url() -> String {
    std::env::var("CHATSYS_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

pub struct Cluster {
    pub name: String,
    pub database_url: String,
    dir: tempfile::TempDir,
    pub apis: Vec<Server>,
    pub workers: Vec<Server>,
    nginx: Option<Child>,
    /// Where clients go: nginx when there is one, else the first API server.
    pub base: String,
    extra_env: Vec<(String, String)>,
}

impl Cluster {
    pub fn start(apis: usize, workers: usize, with_nginx: bool) -> Cluster {
        Self::start_with(apis, workers, with_nginx, &[])
    }

    pub fn start_with(apis: usize, workers: usize, with_nginx: bool, extra_env: &[(&str, &str)]) -> Cluster {
        let name = format!("chatsys_t{:012x}", rand_u64() & 0xffff_ffff_ffff);
        let base = mysql_server_url();
        let server = &base[..base.rfind('/').expect("a database in the URL")];
        let status = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e", &format!("CREATE DATABASE {name} CHARACTER SET utf8mb4")])
            .status()
            .expect("the mariadb client runs");
        assert!(status.success(), "cannot create the test database");
        let mut cluster = Cluster {
            database_url: format!("{server}/{name}"),
            name,
            dir: tempfile::tempdir().unwrap(),
            apis: Vec::new(),
            workers: Vec::new(),
            nginx: None,
            base: String::new(),
            extra_env: extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
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
        cluster
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("CHATSYS_DATABASE_URL".to_owned(), self.database_url.clone()),
            ("CHATSYS_REDIS_URL".to_owned(), redis_url()),
            ("CHATSYS_AMQP_URL".to_owned(), amqp_url()),
            ("CHATSYS_AMQP_QUEUE".to_owned(), format!("{}.commands", self.name)),
            ("CHATSYS_REDIS_PREFIX".to_owned(), self.name.clone()),
            ("CHATSYS_REDIS_RECOVERY_SETTLE".to_owned(), "1s".to_owned()),
            ("CHATSYS_DATABASE_POOL".to_owned(), "8".to_owned()),
            ("CHATSYS_RECONCILE_INTERVAL".to_owned(), "1h".to_owned()),
        ];
        env.extend(self.extra_env.iter().cloned());
        env
    }

    fn spawn(&self, subcommand: &str) -> Server {
        let env = self.env();
        let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("CHATSYS_OPS_LISTEN", "127.0.0.1:0"));
        Server::spawn(subcommand, &self.dir.path().join(subcommand), &env)
    }

    pub fn add_api(&mut self) {
        let api = self.spawn("serve");
        self.apis.push(api);
    }

    pub fn add_worker(&mut self) {
        let worker = self.spawn("worker");
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

    /// Waits until the workers have written everything the queue holds.
    pub async fn drained(&self) {
        let queue = format!("{}.commands", self.name);
        for _ in 0..600 {
            let out = Command::new("rabbitmqctl").args(["-q", "list_queues", "name", "messages"]).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let pending = text.lines().find(|l| l.split_whitespace().next() == Some(queue.as_str()));
            if pending.and_then(|l| l.split_whitespace().nth(1)) == Some("0") {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("the queue did not drain");
    }

    /// Commands in the dead-letter queue.
    pub fn dead_lettered(&self) -> u64 {
        let dead = format!("{}.commands.dead", self.name);
        let out = Command::new("rabbitmqctl").args(["-q", "list_queues", "name", "messages"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(dead.as_str()))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    }

    /// Runs SQL against the cluster's database and returns the rows, tab-separated.
    pub fn sql(&self, statement: &str) -> Vec<Vec<String>> {
        let out = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-N", "-B", &self.name, "-e", statement])
            .output()
            .expect("the mariadb client runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(|l| l.split('\t').map(str::to_owned).collect()).collect()
    }
}

fn which_nginx() -> &'static str {
    if std::path::Path::new("/usr/sbin/nginx").exists() { "/usr/sbin/nginx" } else { "nginx" }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos());
    h.finish()
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
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-u", "root", "-e", &format!("DROP DATABASE IF EXISTS {}", self.name)])
            .status();
        for queue in [format!("{}.commands", self.name), format!("{}.commands.dead", self.name)] {
            let _ = Command::new("rabbitmqctl").args(["-q", "delete_queue", &queue]).output();
        }
        let _ = Command::new("sh")
            .arg("-c")
            .arg(format!("redis-cli --scan --pattern '{}:*' | xargs -r redis-cli del >/dev/null", self.name))
            .status();
    }
}
