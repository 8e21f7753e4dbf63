//! The HTTP-01 responder (`--acme-challenge http-01`): plain HTTP on `--acme-http-listen`
//! (port 80) answering only `GET /.well-known/acme-challenge/<token>` with the key
//! authorisation rustls-acme holds; everything else gets 404. Bounded like the main listener:
//! a header timeout, a cap on connections, no bodies read.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use rustls_acme::ResolvesServerCertAcme;
use tokio::net::TcpListener;

const MAX_CONNECTIONS: usize = 64;
const PREFIX: &str = "/.well-known/acme-challenge/";

pub async fn serve(listener: TcpListener, resolver: Arc<ResolvesServerCertAcme>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .max_buf_size(8 * 1024)
        .keep_alive(false);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Over the cap: dropped (the ACME server retries).
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let (resolver, builder) = (resolver.clone(), builder.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let answer = req
                    .uri()
                    .path()
                    .strip_prefix(PREFIX)
                    .filter(|_| req.method() == hyper::Method::GET)
                    .and_then(|token| resolver.get_http_01_key_auth(token));
                let resp = match answer {
                    Some(key_auth) => {
                        tracing::info!("answering an ACME HTTP-01 validation");
                        Response::new(Full::new(Bytes::from(key_auth)))
                    }
                    None => {
                        let mut r = Response::new(Full::new(Bytes::from_static(b"not found")));
                        *r.status_mut() = StatusCode::NOT_FOUND;
                        r
                    }
                };
                async move { Ok::<_, std::convert::Infallible>(resp) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(15), conn).await;
            drop(slot);
        });
    }
}
