//! `GET /metrics` from a worker: a small HTTP/1.1 client on a tokio `TcpStream`, enough
//! for warren's own endpoint (`warren_runtime::metrics`), which answers one request
//! with a `Content-Length` and closes the connection.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The largest response read; a worker's exposition is a few tens of KiB.
const MAX_RESPONSE_BYTES: u64 = 8 * 1024 * 1024;

/// Why a target's metrics could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum ScrapeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(String),
    #[error("not an HTTP response")]
    NotHttp,
    #[error("answered {0:?}")]
    Status(String),
    #[error("a response larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("the response was cut short")]
    CutShort,
    #[error("a chunked response (warren's endpoint sends a length)")]
    Chunked,
}

/// The body of `GET /metrics` from `address` (`host:port`), all of it within `timeout`.
pub(super) async fn get_metrics(address: &str, timeout: Duration) -> Result<String, ScrapeError> {
    tokio::time::timeout(timeout, exchange(address))
        .await
        .map_err(|_elapsed| ScrapeError::Timeout(timeout))?
}

async fn exchange(address: &str) -> Result<String, ScrapeError> {
    let io = |error: std::io::Error| ScrapeError::Io(error.to_string());
    let mut stream = TcpStream::connect(address).await.map_err(io)?;
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nAccept: text/plain\r\n\
         User-Agent: warren-top\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    let mut response = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE_BYTES + 1)
        .read_to_end(&mut response)
        .await
        .map_err(io)?;
    if response.len() as u64 > MAX_RESPONSE_BYTES {
        return Err(ScrapeError::TooLarge);
    }
    body_of(&response)
}

/// The body of a whole HTTP/1.x response, if its status is 200.
pub(super) fn body_of(response: &[u8]) -> Result<String, ScrapeError> {
    let head_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or(ScrapeError::NotHttp)?;
    let head = std::str::from_utf8(&response[..head_end]).map_err(|_| ScrapeError::NotHttp)?;
    let body = &response[head_end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 || code.parse::<u16>().is_err() {
        return Err(ScrapeError::NotHttp);
    }
    if code != "200" {
        let shown: String = status_line.chars().take(80).collect();
        return Err(ScrapeError::Status(shown));
    }
    let mut length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ScrapeError::NotHttp);
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().map_err(|_| ScrapeError::NotHttp)?);
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            && !value.eq_ignore_ascii_case("identity")
        {
            return Err(ScrapeError::Chunked);
        }
    }
    let body = match length {
        Some(length) => body.get(..length).ok_or(ScrapeError::CutShort)?,
        None => body,
    };
    Ok(String::from_utf8_lossy(body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn a_response_gives_its_body() {
        let response =
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\na 1\nxx";
        assert_eq!(body_of(response), Ok("a 1\nx".to_owned()));
        let without_length = b"HTTP/1.0 200 OK\r\n\r\nb 2\n";
        assert_eq!(body_of(without_length), Ok("b 2\n".to_owned()));
    }

    #[test]
    fn what_is_not_a_good_response_is_an_error() {
        for (response, expected) in [
            (&b""[..], ScrapeError::NotHttp),
            (b"SSH-2.0-OpenSSH\r\n", ScrapeError::NotHttp),
            (
                b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
                ScrapeError::NotHttp,
            ),
            (b"HTTP/1.1 2000 OK\r\n\r\n", ScrapeError::NotHttp),
            (b"HTTP/2 200\r\n\r\n", ScrapeError::NotHttp),
            (b"\xff\xfe\r\n\r\n", ScrapeError::NotHttp),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
                ScrapeError::NotHttp,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                ScrapeError::CutShort,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
                ScrapeError::Chunked,
            ),
            (
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                ScrapeError::Status("HTTP/1.1 404 Not Found".to_owned()),
            ),
        ] {
            assert_eq!(
                body_of(response),
                Err(expected),
                "{}",
                String::from_utf8_lossy(response)
            );
        }
    }

    #[tokio::test]
    async fn reads_from_a_server_that_answers_and_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address").to_string();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("a scrape");
            let mut head = vec![0_u8; 1024];
            let read = stream.read(&mut head).await.expect("a request");
            let request = String::from_utf8_lossy(&head[..read]).into_owned();
            stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\nm 1\n",
                )
                .await
                .expect("an answer");
            request
        });
        let body = get_metrics(&address, Duration::from_secs(5)).await;
        assert_eq!(body, Ok("m 1\n".to_owned()));
        let request = server.await.expect("the server");
        assert!(
            request.starts_with("GET /metrics HTTP/1.1\r\n"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn a_silent_or_absent_server_is_an_error_in_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a port");
        let address = listener.local_addr().expect("an address").to_string();
        // Accepted by the kernel's backlog, never answered.
        let silent = get_metrics(&address, Duration::from_millis(200)).await;
        assert_eq!(
            silent,
            Err(ScrapeError::Timeout(Duration::from_millis(200)))
        );
        drop(listener);
        let absent = get_metrics(&address, Duration::from_secs(5)).await;
        assert!(matches!(absent, Err(ScrapeError::Io(_))), "{absent:?}");
    }
}
