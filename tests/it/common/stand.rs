//! A stand-in SMS gateway: a small axum server on a random loopback port, started inside a test, that records every
//! request it gets and answers from a script (a status, or a delay before 200). The `http` and `twilio` gateways
//! can both point at it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::Router;
use serde_json::Value;
use tokio::sync::oneshot;

/// One request as the stand-in received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("JSON body in {self:?}"))
    }

    pub fn form(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    pub fn form_field(&self, name: &str) -> Option<String> {
        self.form().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    /// The text of the message: `message` of the JSON body (http gateway) or the `Body` form field (Twilio).
    pub fn message(&self) -> String {
        if self
            .header("content-type")
            .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"))
        {
            self.form_field("Body").expect("Body form field")
        } else {
            self.json()["message"].as_str().expect("message field").to_owned()
        }
    }

    /// The 6-digit code in the message.
    pub fn code(&self) -> String {
        six_digits_in(&self.message()).unwrap_or_else(|| panic!("no 6-digit code in {self:?}"))
    }
}

/// The first run of exactly 6 consecutive ASCII digits in `text`.
pub fn six_digits_in(text: &str) -> Option<String> {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 6)
        .map(str::to_owned)
}

/// What the stand-in does with the next request.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Answer with this status at once.
    Status(u16),
    /// Wait, then answer 200.
    Delay(Duration),
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Behaviour>>,
}

pub struct Stand {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let request = Received {
        method: method.to_string(),
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    shared.received.lock().unwrap().push(request);
    let next = shared.script.lock().unwrap().pop_front();
    match next {
        Some(Behaviour::Status(code)) => StatusCode::from_u16(code).expect("status code"),
        Some(Behaviour::Delay(pause)) => {
            tokio::time::sleep(pause).await;
            StatusCode::OK
        }
        None => StatusCode::OK,
    }
}

impl Stand {
    /// Starts the stand-in on the test's runtime.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("stand-in port");
        let addr = listener.local_addr().expect("stand-in address");
        let router = Router::new().fallback(answer).with_state(shared.clone());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .expect("stand-in server");
        });
        Self {
            base: format!("http://{addr}"),
            shared,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// The URL for the `http` gateway.
    pub fn webhook_url(&self) -> String {
        format!("{}/sms", self.base)
    }

    /// Queues behaviours for the next requests; once they are used up, the stand-in answers 200.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.shared.script.lock().unwrap().extend(behaviours);
    }

    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.shared.received.lock().unwrap().len()
    }

    pub fn last(&self) -> Received {
        self.received()
            .last()
            .cloned()
            .expect("the stand-in received a request")
    }

    /// The code in the last message received; `phone` checks where it went (the `http` gateway's `to`).
    pub fn last_code_to(&self, phone: &str) -> String {
        let last = self.last();
        assert_eq!(last.json()["to"], phone, "{last:?}");
        last.code()
    }

    /// The code in the last message received.
    pub fn last_code(&self) -> String {
        self.last().code()
    }

    /// Stops listening and closes its connections: from now on, connecting to its port is refused.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("stand-in stopped");
        }
    }
}
