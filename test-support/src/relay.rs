//! A TCP relay between a client and a server, for network faults that do not
//! close anything: [`TcpRelay`] listens on a free port of 127.0.0.1 and
//! forwards every connection it accepts to a port of 127.0.0.1, both ways,
//! until told to freeze one. A frozen connection stays open at both ends but
//! no byte crosses it any more, in either direction: a blackholed socket, as
//! a peer sees it.
//!
//! Plain threads and blocking sockets, so that it works whatever runtime (or
//! none) the test uses.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One accepted connection: the two sockets, and whether it is frozen.
struct Relayed {
    frozen: Arc<AtomicBool>,
    sockets: [TcpStream; 2],
}

/// A relay from a free port to `127.0.0.1:{target}`; see the module docs.
pub struct TcpRelay {
    port: u16,
    stop: Arc<AtomicBool>,
    relayed: Arc<Mutex<Vec<Relayed>>>,
}

impl TcpRelay {
    /// Starts relaying connections to `127.0.0.1:{target}`.
    pub fn to(target: u16) -> TcpRelay {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind a relay port");
        let port = listener.local_addr().expect("relay address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let relayed: Arc<Mutex<Vec<Relayed>>> = Arc::default();
        let (accepting, list) = (stop.clone(), relayed.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if accepting.load(SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                let frozen = Arc::new(AtomicBool::new(false));
                let pumps = [(&client, &server), (&server, &client)]
                    .map(|(from, to)| Some((from.try_clone().ok()?, to.try_clone().ok()?)));
                // Listed before a byte crosses it.
                list.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Relayed {
                        frozen: frozen.clone(),
                        sockets: [client, server],
                    });
                for (from, to) in pumps.into_iter().flatten() {
                    let frozen = frozen.clone();
                    std::thread::spawn(move || pump(from, to, &frozen));
                }
            }
        });
        TcpRelay {
            port,
            stop,
            relayed,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:{port}`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// How many connections it accepted so far.
    pub fn connections(&self) -> usize {
        self.lock().len()
    }

    /// Stops the `index`th connection it accepted (from 0) from forwarding
    /// anything, both ways, without closing it. Panics if there is none.
    pub fn freeze(&self, index: usize) {
        let list = self.lock();
        let relayed = list
            .get(index)
            .unwrap_or_else(|| panic!("the relay accepted {} connections", list.len()));
        relayed.frozen.store(true, SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Relayed>> {
        self.relayed.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wakes the accepting thread, which then sees `stop`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        for relayed in self.lock().iter() {
            relayed.frozen.store(false, SeqCst);
            for socket in &relayed.sockets {
                let _ = socket.shutdown(Shutdown::Both);
            }
        }
    }
}

/// Copies `from` to `to` until either closes; while `frozen`, reads nothing
/// (what the peer sends waits in the kernel's buffers, as on a dead link).
fn pump(mut from: TcpStream, mut to: TcpStream, frozen: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if frozen.load(SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                // Frozen while this read waited: these bytes never arrive.
                if frozen.load(SeqCst) {
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
