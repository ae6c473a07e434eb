//! `Upgrade` handshakes (WebSocket) to an upstream: one fresh HTTP/1.1 connection per
//! handshake, through the same resolution, pins, network guard and trust as every request,
//! with the request's headers as the plugin left them plus `Connection: upgrade` and the
//! agent's `Upgrade`. A `101` hands back the upgraded connection; any other answer is an
//! ordinary response. A WebSocket `101` counts only with the `Sec-WebSocket-Accept` that
//! answers the handshake's key (RFC 6455 §4.1): anything else is an upstream that did not
//! really switch, and bytes relayed after it could be smuggled requests (RFC 9931).

use http::header::{self, HeaderValue};
use http::{Request, Response, Uri};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;

use super::{Upstream, UpstreamError, tls_reason};
use crate::request::{RequestHead, Scheme};

/// What an upgrade handshake came to.
#[derive(Debug)]
pub enum Upgrading {
    /// `101 Switching Protocols`: the upstream's answer and the connection, now raw.
    Switched {
        response: Response<()>,
        upstream: Upgraded,
    },
    /// Any other answer, to pass on as it is.
    Answered(Response<Incoming>),
}

impl Upstream {
    /// Send the handshake `head` (no body) asking for `protocol`.
    pub async fn upgrade(
        &self,
        head: RequestHead,
        protocol: HeaderValue,
    ) -> Result<Upgrading, UpstreamError> {
        let host = head.host.clone();
        let protocol_error = |reason: String| UpstreamError::Protocol {
            host: host.clone(),
            reason,
        };
        let tcp = self.connect_tcp(&head.host, head.port).await?;
        let _ = tcp.set_nodelay(true);
        let handshake = async {
            match head.scheme {
                Scheme::Http => hyper::client::conn::http1::handshake::<_, Empty<bytes::Bytes>>(
                    TokioIo::new(tcp),
                )
                .await
                .map(|(sender, connection)| {
                    tokio::spawn(connection.with_upgrades());
                    sender
                }),
                Scheme::Https => {
                    let name =
                        ServerName::try_from(head.host.clone()).map_err(|_| UpstreamError::Tls {
                            host: host.clone(),
                            reason: "the host is not a valid TLS server name".to_owned(),
                        });
                    let name = match name {
                        Ok(name) => name,
                        Err(error) => return Ok(Err(error)),
                    };
                    let tls = match tokio_rustls::TlsConnector::from(self.tls_http1.clone())
                        .connect(name, tcp)
                        .await
                    {
                        Ok(tls) => tls,
                        Err(error) => {
                            let reason = error
                                .get_ref()
                                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                                .map(tls_reason)
                                .unwrap_or_else(|| error.to_string());
                            return Ok(Err(UpstreamError::Tls {
                                host: host.clone(),
                                reason,
                            }));
                        }
                    };
                    hyper::client::conn::http1::handshake(TokioIo::new(tls))
                        .await
                        .map(|(sender, connection)| {
                            tokio::spawn(connection.with_upgrades());
                            sender
                        })
                }
            }
            .map(Ok)
        };
        let mut sender = match handshake.await {
            Ok(Ok(sender)) => sender,
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(protocol_error(error.to_string())),
        };
        let websocket_key = head.headers.get("sec-websocket-key").cloned();
        let uri: Uri = head
            .path_and_query()
            .parse()
            .map_err(|_| protocol_error("the request target is not a valid URI".to_owned()))?;
        let mut request = Request::new(Empty::new());
        *request.method_mut() = head.method.clone();
        *request.uri_mut() = uri;
        let mut headers = head.headers.clone();
        super::clean_request_headers(&mut headers);
        headers.insert(
            header::HOST,
            HeaderValue::from_str(&head.authority())
                .map_err(|_| protocol_error("the host cannot be a header".to_owned()))?,
        );
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
        *request.headers_mut() = headers;
        let response =
            tokio::time::timeout(self.response_header_timeout, sender.send_request(request))
                .await
                .map_err(|_| UpstreamError::Timeout {
                    host: host.clone(),
                    phase: "response headers",
                })?
                .map_err(|error| protocol_error(error.to_string()))?;
        if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            return Ok(Upgrading::Answered(response));
        }
        if let Some(key) = websocket_key {
            let accepted = response
                .headers()
                .get("sec-websocket-accept")
                .is_some_and(|accept| {
                    accept.as_bytes() == websocket_accept(key.as_bytes()).as_bytes()
                });
            if !accepted {
                return Err(protocol_error(
                    "the upstream answered 101 without the Sec-WebSocket-Accept of the handshake"
                        .to_owned(),
                ));
            }
        }
        let (parts, body) = response.into_parts();
        let mut upgradable = Response::from_parts(parts.clone(), body);
        let upstream = hyper::upgrade::on(&mut upgradable)
            .await
            .map_err(|error| protocol_error(format!("the upgrade failed: {error}")))?;
        Ok(Upgrading::Switched {
            response: Response::from_parts(parts, ()),
            upstream,
        })
    }
}

/// The `Sec-WebSocket-Accept` that answers a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
fn websocket_accept(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::Digest as _;
    let mut hasher = sha1::Sha1::new();
    hasher.update(key);
    hasher.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_value_is_the_one_in_rfc_6455() {
        assert_eq!(
            websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
