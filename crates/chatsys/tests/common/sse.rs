//! A Server-Sent Events client for the tests: reads `id`, `event` and `data` fields off a
//! streaming response, and counts comment lines (heartbeats).

use std::time::Duration;

use futures::StreamExt as _;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: Option<u64>,
    pub event: String,
    pub data: serde_json::Value,
}

pub struct Sse {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    stream: Option<futures::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>>,
    buffer: String,
    pub comments: usize,
    /// The problem document when the answer was not a stream.
    pub problem: serde_json::Value,
}

impl Sse {
    /// Opens `url`, resuming after `last` (as a reconnecting browser does) when given.
    pub async fn open(http: &reqwest::Client, url: &str, last: Option<u64>) -> Sse {
        let mut request = http.get(url).header("accept", "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if status != 200 {
            let problem = response.json().await.unwrap_or(serde_json::Value::Null);
            return Sse { status, headers, stream: None, buffer: String::new(), comments: 0, problem };
        }
        Sse {
            status,
            headers,
            stream: Some(response.bytes_stream().boxed()),
            buffer: String::new(),
            comments: 0,
            problem: serde_json::Value::Null,
        }
    }

    /// The next event within `wait`; `None` when the stream ended or nothing came in time.
    pub async fn next(&mut self, wait: Duration) -> Option<Event> {
        tokio::time::timeout(wait, self.next_event()).await.ok().flatten()
    }

    /// Whether the stream has ended (within `wait`), reading past whatever events remain.
    pub async fn ended(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.next_event()).await {
                Ok(None) => return true,
                Ok(Some(_)) => {}
                Err(_) => return false,
            }
        }
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, String::from("message"), String::new());
                let mut fields = 0;
                for line in block.lines().filter(|l| !l.is_empty()) {
                    if line.starts_with(':') {
                        self.comments += 1;
                        continue;
                    }
                    let (name, value) = line.split_once(':').map_or((line, ""), |(n, v)| (n, v.trim_start()));
                    fields += 1;
                    match name {
                        "id" => id = value.parse().ok(),
                        "event" => event = value.to_owned(),
                        "data" => data.push_str(value),
                        _ => {}
                    }
                }
                if fields == 0 {
                    continue;
                }
                let data = serde_json::from_str(&data).unwrap_or(serde_json::Value::String(data));
                return Some(Event { id, event, data });
            }
            let chunk = self.stream.as_mut()?.next().await?.ok()?;
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}
