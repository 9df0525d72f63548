//! A TCP relay between Tessera and its database, so a test can cut the store off and bring it back
//! (fault injection for threats D7) without stopping the shared PostgreSQL server.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct Relay {
    pub addr: SocketAddr,
    target: SocketAddr,
    task: Option<JoinHandle<()>>,
}

impl Relay {
    /// Relays a new port to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let mut relay = Relay { addr, target, task: None };
        relay.task = Some(tokio::spawn(accept_loop(listener, target)));
        relay
    }

    /// Drops every relayed connection and refuses new ones.
    pub fn cut(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }

    /// Accepts connections again on the same port.
    pub async fn restore(&mut self) {
        self.cut();
        let listener = TcpListener::bind(self.addr).await.expect("rebind relay");
        self.task = Some(tokio::spawn(accept_loop(listener, self.target)));
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr) {
    // Connections live in this task's JoinSet, so aborting the task drops them all.
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        conns.spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
