//! A TCP forwarder in front of a service that a test can cut: while cut, every connection
//! through it stays open and nothing passes (a black-holed port, as a hung network looks to
//! the process using it), for that one process only, the service itself untouched. New
//! connections are still accepted while cut, unless the proxy also refuses them (a service
//! that is down for new connections), and mending passes on what was held back (a real
//! black hole would drop it: the process's retries cover both).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

pub struct Proxy {
    /// Where clients connect instead of the service.
    pub address: SocketAddr,
    cut: watch::Sender<bool>,
    refusing: watch::Sender<bool>,
    accepting: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards a new port to `target` (`host:port`), until dropped (its connections too).
    pub async fn start(target: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port for the proxy");
        let address = listener.local_addr().unwrap();
        let (cut, watching) = watch::channel(false);
        let (refusing, refused) = watch::channel(false);
        let target = target.to_owned();
        let accepting = tokio::spawn(async move {
            // the connections end with the proxy
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                if *refused.borrow() {
                    // reset at once: the client fails now, not after its own timeout
                    let _ = client.set_zero_linger();
                    continue;
                }
                let (target, watching) = (target.clone(), watching.clone());
                connections.spawn(async move {
                    let Ok(service) = TcpStream::connect(&target).await else { return };
                    let _ = (client.set_nodelay(true), service.set_nodelay(true));
                    let (client_in, client_out) = client.into_split();
                    let (service_in, service_out) = service.into_split();
                    tokio::join!(
                        pass(client_in, service_out, watching.clone()),
                        pass(service_in, client_out, watching)
                    );
                });
            }
        });
        Proxy { address, cut, refusing, accepting }
    }

    /// From now on nothing passes, in either direction, on any connection.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }

    /// Everything held back passes, and whatever comes after; new connections are taken.
    pub fn mend(&self) {
        self.refusing.send_replace(false);
        self.cut.send_replace(false);
    }

    /// From now on new connections are reset as soon as they come (the connections open
    /// are left as they are).
    pub fn refuse_new(&self) {
        self.refusing.send_replace(true);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

/// Copies `from` to `to`, holding each chunk back while the proxy is cut.
async fn pass(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        if cut.wait_for(|cut| !cut).await.is_err() {
            return;
        }
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.wait_for(|cut| !cut).await.is_err() || to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}
