//! What the tests need from this machine, found one way for every test:
//!
//! - The services (MariaDB/MySQL, Redis, RabbitMQ) at `CHATSYS_TEST_MYSQL_URL`,
//!   `CHATSYS_TEST_REDIS_URL`, `CHATSYS_TEST_AMQP_URL` (defaults: this machine's standard
//!   ports). A test that needs one that does not answer prints one line saying what to start
//!   and passes without running, unless `CHATSYS_TEST_REQUIRE_SERVICES=1` (CI sets it),
//!   which turns the skip into a failure: nothing is skipped silently there.
//! - Faults that stop, freeze or flush a service, or mount a file system, harm whoever else
//!   uses it: those tests run only with `CHATSYS_TEST_FAULTS=1` (CI sets it).
//!
//! Every test works in a database, key prefix and queue of its own ([`mysql`], [`redis`],
//! [`rabbitmq`]), removed afterwards.

pub mod mysql;
pub mod proxy;
pub mod rabbitmq;
pub mod redis;

use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// A service the tests can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    MySql,
    Redis,
    RabbitMq,
}

impl Service {
    fn variable(self) -> &'static str {
        match self {
            Service::MySql => "CHATSYS_TEST_MYSQL_URL",
            Service::Redis => "CHATSYS_TEST_REDIS_URL",
            Service::RabbitMq => "CHATSYS_TEST_AMQP_URL",
        }
    }

    fn default_url(self) -> &'static str {
        match self {
            Service::MySql => "mysql://root@127.0.0.1:3306/test",
            Service::Redis => "redis://127.0.0.1:6379",
            Service::RabbitMq => "amqp://guest:guest@127.0.0.1:5672/%2f",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Service::MySql => "MariaDB/MySQL",
            Service::Redis => "Redis",
            Service::RabbitMq => "RabbitMQ",
        }
    }

    /// The service's URL, from the environment or the default.
    pub fn url(self) -> String {
        std::env::var(self.variable()).unwrap_or_else(|_| self.default_url().to_owned())
    }

    /// The port a URL of this service means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Service::MySql => 3306,
            Service::Redis => 6379,
            Service::RabbitMq => 5672,
        }
    }
}

/// A URL such as `scheme://user:password@host:port/path?query` in three: what comes before
/// the host (scheme and user), the host and port as written, and what follows them.
fn around_address(url: &str) -> (&str, &str, &str) {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?']).map_or(url.len(), |i| start + i);
    let host = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
    (&url[..host], &url[host..end], &url[end..])
}

/// `host:port` of a service URL, with `default_port` where it names none.
pub fn host_port(url: &str, default_port: u16) -> String {
    let (_, host, _) = around_address(url);
    if host.contains(':') { host.to_owned() } else { format!("{host}:{default_port}") }
}

/// The URL with its host and port replaced by `address` (a proxy's in front of the service).
pub fn with_address(url: &str, address: &str) -> String {
    let (before, _, after) = around_address(url);
    format!("{before}{address}{after}")
}

fn answers(address: &str) -> bool {
    let Ok(mut addresses) = address.to_socket_addrs() else { return false };
    addresses.any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

fn required() -> bool {
    std::env::var("CHATSYS_TEST_REQUIRE_SERVICES").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The URLs of these services when they all answer; else `None`, after one line saying
/// what to start (or a panic, where services are required).
pub fn services(needed: &[Service]) -> Option<Vec<String>> {
    let mut urls = Vec::with_capacity(needed.len());
    for service in needed {
        let url = service.url();
        let address = host_port(&url, service.default_port());
        if !answers(&address) {
            let test = std::thread::current().name().unwrap_or("a test").to_owned();
            let line = format!(
                "{test}: {} does not answer at {address}; start it, or point {} at one",
                service.name(),
                service.variable()
            );
            assert!(!required(), "{line} (CHATSYS_TEST_REQUIRE_SERVICES is set: no skipping)");
            eprintln!("skipped: {line}");
            return None;
        }
        urls.push(url);
    }
    Some(urls)
}

/// The URL of one service, as [`services`] does it.
pub fn service(needed: Service) -> Option<String> {
    services(&[needed]).map(|mut urls| urls.remove(0))
}

/// Whether tests that harm shared services (stop, freeze, flush, mount) may run.
pub fn faults_allowed() -> bool {
    if std::env::var("CHATSYS_TEST_FAULTS").is_ok_and(|v| v == "1") {
        return true;
    }
    let test = std::thread::current().name().unwrap_or("a test").to_owned();
    eprintln!(
        "skipped: {test}: it stops, freezes or flushes this machine's services (or mounts a file system); \
         run it with CHATSYS_TEST_FAULTS=1 on a machine whose services are yours"
    );
    false
}

/// A short random name for a database, key prefix or queue of a test's own.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_come_from_any_url_shape() {
        assert_eq!(host_port("mysql://root@127.0.0.1:3306/test", 1), "127.0.0.1:3306");
        assert_eq!(host_port("amqp://guest:guest@rabbit/%2f", 5672), "rabbit:5672");
        assert_eq!(host_port("redis://127.0.0.1:6380", 6379), "127.0.0.1:6380");
        assert_eq!(host_port("redis://h?db=1", 6379), "h:6379");
    }

    #[test]
    fn the_address_is_replaced_in_any_url_shape() {
        let proxy = "127.0.0.1:40000";
        assert_eq!(with_address("mysql://root@127.0.0.1:3306/test", proxy), "mysql://root@127.0.0.1:40000/test");
        assert_eq!(with_address("amqp://guest:guest@rabbit/%2f", proxy), "amqp://guest:guest@127.0.0.1:40000/%2f");
        assert_eq!(with_address("redis://127.0.0.1:6379", proxy), "redis://127.0.0.1:40000");
        assert_eq!(with_address("redis://h?db=1", proxy), "redis://127.0.0.1:40000?db=1");
    }
}
