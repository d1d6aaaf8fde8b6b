//! A minimal HTTP/1.1 client over one keep-alive TCP connection: requests are prepared bytes, answers are read
//! completely (status, the headers the benchmark needs, body). Much less code runs per request than in hyper or
//! reqwest, so the load generator, which shares the server's cores, costs little and the same for every figure.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No phase waits longer than this for a connection or an answer, so a hung server cannot hang the benchmark.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

const USER_AGENT: &str = "twofold-bench";

/// One answer, read completely.
pub struct Response {
    pub status: u16,
    /// The `twofold_session` value of `Set-Cookie`, if the answer sets one.
    pub session_cookie: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    /// A line for error reports: the status and the start of the body.
    pub fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        format!("{} {}", self.status, body.chars().take(200).collect::<String>())
    }
}

pub struct Connection {
    stream: TcpStream,
    host: String,
    buffer: Vec<u8>,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::time::timeout(IO_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| anyhow!("connecting to {addr} took over {IO_TIMEOUT:?}"))?
            .with_context(|| format!("connecting to {addr}"))?;
        // Requests are small and written at once; without this the kernel may hold them back (Nagle).
        stream.set_nodelay(true)?;
        Ok(Self {
            stream,
            host: addr.to_string(),
            buffer: Vec::with_capacity(4096),
        })
    }

    pub async fn get(&mut self, path: &str, session: Option<&str>) -> anyhow::Result<Response> {
        let request = format!("GET {path} HTTP/1.1\r\n{}\r\n", self.headers(session));
        self.exchange(request.as_bytes()).await
    }

    /// A POST with a JSON body, as the API expects (no `Origin`: not a browser).
    pub async fn post_json(&mut self, path: &str, session: Option<&str>, body: &str) -> anyhow::Result<Response> {
        let request = format!(
            "POST {path} HTTP/1.1\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.headers(session),
            body.len()
        );
        self.exchange(request.as_bytes()).await
    }

    fn headers(&self, session: Option<&str>) -> String {
        let cookie = session.map_or_else(String::new, |token| format!("Cookie: twofold_session={token}\r\n"));
        format!("Host: {}\r\nUser-Agent: {USER_AGENT}\r\n{cookie}", self.host)
    }

    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        tokio::time::timeout(IO_TIMEOUT, async {
            self.stream.write_all(request).await?;
            self.read_response().await
        })
        .await
        .map_err(|_| anyhow!("no answer within {IO_TIMEOUT:?}"))?
    }

    async fn read_response(&mut self) -> anyhow::Result<Response> {
        self.buffer.clear();
        let head_end = loop {
            if let Some(at) = find(&self.buffer, b"\r\n\r\n") {
                break at + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buffer[..head_end]).context("answer head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
        let mut length = 0usize;
        let mut session_cookie = None;
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse().context("bad Content-Length")?;
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                // Every answer of the server and the bare handler has a known length; anything else is a surprise.
                bail!("unexpected Transfer-Encoding: {value}");
            } else if name.eq_ignore_ascii_case("set-cookie") {
                if let Some(rest) = value.strip_prefix("twofold_session=") {
                    session_cookie = rest.split(';').next().map(str::to_owned);
                }
            }
        }
        while self.buffer.len() < head_end + length {
            self.fill().await?;
        }
        let body = self.buffer[head_end..head_end + length].to_vec();
        Ok(Response {
            status,
            session_cookie,
            body,
        })
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 4096];
        let read = self.stream.read(&mut chunk).await?;
        if read == 0 {
            bail!("the server closed the connection");
        }
        self.buffer.extend_from_slice(&chunk[..read]);
        Ok(())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
