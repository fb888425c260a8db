//! `activity-relay probe URL`: a health probe for container engines whose image has no
//! curl or wget (the runtime image has neither). Plain HTTP only: it probes the relay's own
//! admin listener (`/healthz`, `/readyz`) from inside the container.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// The URL to GET, e.g. http://127.0.0.1:9090/readyz (plain http only).
    pub url: String,
    /// Give up after this long.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0:?} is not a plain http://host:port/path URL")]
    BadUrl(String),
    #[error("{url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: no answer within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("{url}: unreadable answer")]
    BadResponse { url: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
}

/// Splits `http://host:port/path` into (`host:port`, `/path`).
fn split(url: &str) -> Result<(&str, &str), ProbeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ProbeError::BadUrl(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(ProbeError::BadUrl(url.to_string()));
    }
    Ok((authority, path))
}

/// GETs the URL; Ok(status) for a 2xx answer.
pub async fn probe(args: &ProbeArgs) -> Result<u16, ProbeError> {
    let (authority, path) = split(&args.url)?;
    let url = args.url.clone();
    let io = |source| ProbeError::Io {
        url: url.clone(),
        source,
    };
    let request = async {
        let mut stream = TcpStream::connect(authority).await.map_err(io)?;
        let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(req.as_bytes()).await.map_err(io)?;
        let mut head = Vec::with_capacity(256);
        let mut buf = [0u8; 256];
        // The status line is all that matters.
        while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
            let n = stream.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<Vec<u8>, ProbeError>(head)
    };
    let head = tokio::time::timeout(args.timeout, request)
        .await
        .map_err(|_| ProbeError::Timeout {
            url: args.url.clone(),
            timeout: args.timeout,
        })??;
    let status = std::str::from_utf8(&head)
        .ok()
        .and_then(|s| s.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::BadResponse {
            url: args.url.clone(),
        })?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status {
            url: args.url.clone(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve_once(answer: &'static str) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            if let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer.as_bytes()).await;
            }
        });
        format!("http://{addr}/readyz")
    }

    fn args(url: String) -> ProbeArgs {
        ProbeArgs {
            url,
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn ok_on_2xx_error_otherwise() {
        let url = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
        assert_eq!(probe(&args(url)).await.unwrap(), 200);
        let url = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n").await;
        assert!(matches!(
            probe(&args(url)).await,
            Err(ProbeError::Status { status: 503, .. })
        ));
        let url = serve_once("garbage").await;
        assert!(matches!(
            probe(&args(url)).await,
            Err(ProbeError::BadResponse { .. })
        ));
    }

    #[tokio::test]
    async fn refused_and_bad_urls_are_errors() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let r = probe(&args(format!("http://127.0.0.1:{port}/healthz"))).await;
        assert!(matches!(r, Err(ProbeError::Io { .. })), "{r:?}");
        for bad in ["https://x:1/", "ftp://x", "http:///p", "http://nohostport/"] {
            assert!(matches!(
                probe(&args(bad.to_string())).await,
                Err(ProbeError::BadUrl(_))
            ));
        }
    }
}
