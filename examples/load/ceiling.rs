//! The ceiling: the fastest any relay can acknowledge durably on this machine. A plain
//! HTTP/1.1 responder (hyper, as the relay) hands each body to one writer thread, which
//! appends everything waiting to a file, calls `fdatasync` once for the batch, and only then
//! lets the batch's answers (204) go. No signature check, no parsing, no index: what is left
//! is HTTP, the hand-off and the sync, the parts no relay that acknowledges only what is on
//! disk can skip. It cannot tell a forged delivery, so the load sends it none.

use std::io::Write;
use std::sync::mpsc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

type Job = (Bytes, oneshot::Sender<()>);

/// Run the ceiling as its own process (`load --ceiling`), on a multi-threaded runtime as
/// `vslack serve` is, so the two are measured alike (CPU and disk per event from `/proc`).
/// Prints `listening on URL` on stderr, as the relay does, and serves until killed.
pub fn serve() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ceiling.log");
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::spawn(move || writer(&path, rx));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        eprintln!("listening on http://{}/", listener.local_addr().unwrap());
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let tx = tx.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let tx = tx.clone();
                    async move {
                        let body = req.into_body().collect().await?.to_bytes();
                        let (done, synced) = oneshot::channel();
                        let _ = tx.send((body, done));
                        let _ = synced.await;
                        let mut r = Response::new(Empty::<Bytes>::new());
                        *r.status_mut() = hyper::StatusCode::NO_CONTENT;
                        Ok::<_, hyper::Error>(r)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

/// Group commit: take what waits, append it, one `fdatasync`, then answer all of it.
fn writer(path: &std::path::Path, rx: mpsc::Receiver<Job>) {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut answers = Vec::new();
    while let Ok(first) = rx.recv() {
        let mut take = |(body, done): Job| {
            buf.extend_from_slice(&body);
            buf.push(b'\n');
            answers.push(done);
        };
        take(first);
        while let Ok(more) = rx.try_recv() {
            take(more);
        }
        file.write_all(&buf).unwrap();
        file.sync_data().unwrap();
        buf.clear();
        for done in answers.drain(..) {
            let _ = done.send(());
        }
    }
}
