//! One HTTP client for both harnesses: the in-process [`super::TestApp`] (injected clock) and a real `twofold serve`
//! process's [`super::instances::Api`] (wall clock). A test's requests read the same whichever server it drives.

use reqwest::header::COOKIE;
use reqwest::{Method, RequestBuilder};
use serde_json::{json, Value};

use super::{read, Resp};

pub trait Client {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    fn base(&self) -> &str;
    fn http(&self) -> &reqwest::Client;
    /// Seconds on the server's clock: what its TOTP codes are computed against.
    fn now(&self) -> i64;

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }

    /// A request to `path`, carrying `cookie` as the session cookie when given.
    fn request(&self, method: Method, path: &str, cookie: Option<&str>) -> RequestBuilder {
        let request = self.http().request(method, self.url(path));
        match cookie {
            Some(value) => request.header(COOKIE, format!("twofold_session={value}")),
            None => request,
        }
    }

    /// Sends any request and reads the whole answer.
    async fn send(&self, request: RequestBuilder) -> Resp {
        read(request)
            .await
            .unwrap_or_else(|error| panic!("request to {} failed: {error}", self.base()))
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> Resp {
        self.send(self.request(Method::GET, path, cookie)).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, body: Value) -> Resp {
        self.send(self.request(Method::POST, path, cookie).json(&body)).await
    }

    /// A POST with no body at all (logout, setup, recovery codes).
    async fn post_empty(&self, path: &str, cookie: Option<&str>) -> Resp {
        self.send(self.request(Method::POST, path, cookie)).await
    }

    async fn delete(&self, path: &str, cookie: Option<&str>, body: Value) -> Resp {
        self.send(self.request(Method::DELETE, path, cookie).json(&body)).await
    }

    async fn login(&self, username: &str, password: &str) -> Resp {
        let body = json!({ "username": username, "password": password });
        self.post("/auth/login", None, body).await
    }

    async fn verify(&self, cookie: &str, method: &str, code: &str) -> Resp {
        let body = json!({ "method": method, "code": code });
        self.post("/auth/verify-2fa", Some(cookie), body).await
    }

    /// The TOTP code for `secret` on the server's clock, `offset` steps away.
    fn code(&self, secret: &[u8], offset: i64) -> String {
        let at = self.now() + offset * 30;
        twofold::otp::totp(secret, at as u64, 30, 6, twofold::otp::Algorithm::Sha1)
    }

    /// A well-formed TOTP code that `secret`'s authenticator does not show now nor one step either way.
    fn wrong_code(&self, secret: &[u8]) -> String {
        let window: Vec<String> = (-1..=1).map(|offset| self.code(secret, offset)).collect();
        (0..10)
            .map(|digit| digit.to_string().repeat(6))
            .find(|candidate| !window.contains(candidate))
            .expect("some repeated-digit code is not valid now")
    }
}

/// The recovery codes of an answer that returns a set (`{"recovery_codes": [...]}`).
pub fn recovery_codes(resp: &Resp) -> Vec<String> {
    resp.body["recovery_codes"]
        .as_array()
        .unwrap_or_else(|| panic!("recovery_codes array in {resp:?}"))
        .iter()
        .map(|code| code.as_str().expect("code is a string").to_owned())
        .collect()
}
