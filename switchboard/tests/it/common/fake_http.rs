//! Stand-in HTTP servers that the hub calls out to (a proxy namespace's
//! backend, an identity provider): on `127.0.0.1:0`, plain or over TLS,
//! each request's body read whole and answered by the test's function.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

/// What a stand-in answers.
pub type Response = http::Response<Full<Bytes>>;

/// A response with `status` and `body`.
pub fn respond(status: u16, body: impl Into<Bytes>) -> Response {
    let mut response = http::Response::new(Full::new(body.into()));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
    response
}

/// Serves HTTP/1.1 on `127.0.0.1:0` (over TLS with `tls`: a client that
/// refuses the certificate never reaches `answer`) until the test's
/// runtime ends; returns the address.
pub async fn serve<F, Fut>(tls: Option<TlsAcceptor>, answer: F) -> SocketAddr
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (tls, answer) = (tls.clone(), answer.clone());
            tokio::spawn(async move {
                match tls {
                    None => connection(stream, answer).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            connection(stream, answer).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Serves one connection's requests.
async fn connection<S, F, Fut>(stream: S, answer: Arc<F>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(http::request::Parts, Bytes) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    let service = hyper::service::service_fn(move |request: http::Request<Incoming>| {
        let answer = answer.clone();
        async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(answer(parts, body).await)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}
