//! A fault-injecting TCP relay for the fault scenarios, Toxiproxy's `slicer` toxic: it sits
//! between the proxy and an upstream (the test pins the upstream's name to the relay's port)
//! and passes the bytes on both ways in segments of a fixed size, each written on its own with
//! Nagle's algorithm off, so each is a TCP segment of its own. The bytes are not touched:
//! TLS runs through the relay end to end. A half-close is passed on (a FIN one way shuts
//! that way down and leaves the other open), as a TCP relay must.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub struct SlicingRelay {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl SlicingRelay {
    /// Relay 127.0.0.1:`port` to 127.0.0.1:`target` in `segment`-byte writes.
    pub fn start(target: u16, segment: usize) -> SlicingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopping) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            for incoming in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = incoming else { continue };
                counter.fetch_add(1, Ordering::Relaxed);
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                for stream in [&client, &server] {
                    stream.set_nodelay(true).unwrap();
                }
                let (client_in, server_out) = (client.try_clone().unwrap(), server.try_clone());
                std::thread::spawn(move || pump(client_in, server_out.unwrap(), segment));
                std::thread::spawn(move || pump(server, client, segment));
            }
        });
        SlicingRelay {
            port,
            accepted,
            stop,
        }
    }

    /// Connections the relay has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for SlicingRelay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accepting thread so that it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Copy `from` to `to` in `segment`-byte writes until `from` ends, then pass the end on.
fn pump(mut from: TcpStream, mut to: TcpStream, segment: usize) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buffer) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(read) => {
                for piece in buffer[..read].chunks(segment) {
                    if to.write_all(piece).is_err() {
                        let _ = from.shutdown(Shutdown::Both);
                        return;
                    }
                }
            }
            Err(_) => {
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
    }
}
