//! The HTTP side: hyper's HTTP/1 server on the agent's runtime. One page,
//! `/metrics`; everything else is 404.

use std::{convert::Infallible, sync::Arc, time::Duration};

use super::{Format, Scraper};
use crate::net::admission::Admission;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{
    body::Incoming,
    header::{ACCEPT, ALLOW, CONTENT_TYPE},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response, StatusCode,
};
use hyper_util::rt::{TokioIo, TokioTimer};

pub const PATH: &str = "/metrics";
/// Scrapers are few; a new connection beyond this closes the oldest, so
/// slow or idle clients (slowloris) can neither lock out the next scrape
/// nor make the agent hold many sockets.
pub const MAX_CONNECTIONS: usize = 8;
/// A scraper sends its request at once; also closes keep-alive
/// connections idle this long (Prometheus scrapes every 15 s or more and
/// reconnects cheaply).
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn serve(listener: tokio::net::TcpListener, scraper: Arc<Scraper>) {
    let admission = Admission::new("metrics", MAX_CONNECTIONS);
    loop {
        let (stream, ticket) = admission
            .next(|| async { listener.accept().await.map(|(s, _)| s) })
            .await;
        let scraper = scraper.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let scraper = scraper.clone();
                async move { Ok::<_, Infallible>(respond(&scraper, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            match ticket.serve(conn).await {
                Some(Err(e)) => tracing::debug!("metrics connection: {e}"),
                Some(Ok(())) => {}
                None => tracing::debug!("metrics connection closed to make room for a newer one"),
            }
        });
    }
}

async fn respond(scraper: &Scraper, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != PATH {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: the metrics are at /metrics\n",
        );
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
        r.headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let format = Format::negotiate(req.headers().get(ACCEPT).and_then(|v| v.to_str().ok()));
    let page = scraper.page(format).await;
    let mut r = Response::new(Full::new(Bytes::from(page)));
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(format.content_type()),
    );
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
