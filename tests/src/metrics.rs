//! Reading a worker's Prometheus endpoint: where it is, one scrape, one series.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::WarrenProcess;

/// How long one scrape may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// The address a worker said it serves metrics on (its `serving metrics at /metrics`
/// line).
///
/// # Panics
/// When the worker has not said it.
pub fn metrics_address(worker: &WarrenProcess) -> String {
    let line = worker
        .lines_with(&["serving metrics at /metrics"])
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("the worker did not say where its metrics are"));
    line.split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_owned()
}

/// `GET path` from `address` (HTTP/1.1, answered then closed): the status line and the
/// body.
///
/// # Panics
/// When nothing answers at `address`, or not in HTTP, within ten seconds.
pub async fn http_get(address: &str, path: &str) -> (String, String) {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .unwrap_or_else(|error| panic!("cannot connect to {address}: {error}"));
        let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|error| panic!("cannot send to {address}: {error}"));
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .await
            .unwrap_or_else(|error| panic!("cannot read from {address}: {error}"));
        response
    };
    let response = tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| panic!("{address} did not answer GET {path} in time"));
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not HTTP: {response:?}"));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

/// The value of the series `series` (name and labels exactly as rendered) in a
/// Prometheus text exposition.
pub fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}
