//! The typed HTTP client of the API (feature `client`), shared by the CLI and the Python
//! bindings.

use bytes::Bytes;
use futures::stream::{BoxStream, StreamExt};
use lambda_core::api::{
    ACCOUNT_ID_HEADER, CreateResponse, Credentials, ErrorBody, ImageStatusResponse, LambdaList,
    LambdaRecord, LogsResponse, StatusResponse, UpdateResponse, VersionResponse,
};
use lambda_core::{ImageStatus, LambdaId, LambdaStatus};
use std::time::{Duration, Instant};

mod tasks;
mod tokens;
mod versions;

/// The account a client without an account id creates lambdas for (a single-user setup needs
/// no account at all).
pub const DEFAULT_ACCOUNT: &str = "00000000-0000-4000-8000-000000000000";

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server cannot be reached.
    #[error(
        "cannot reach the luna-lambda server at {url} ({detail}); is it running? Start one with `luna-lambda serve`"
    )]
    Connect {
        /// The URL tried.
        url: String,
        /// What the connection attempt said.
        detail: String,
    },
    /// The server answered with an error body.
    #[error("error {}: {}: {}", .body.error_code, .body.desc, .body.detail)]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body (with `problems` on validation failures).
        body: ErrorBody,
    },
    /// The answer could not be understood.
    #[error("unexpected answer from {url}: {detail}")]
    Protocol {
        /// The URL.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Waiting ended without the lambda running: its build or start failed, or time ran out.
    #[error("{0}")]
    NotReady(String),
    /// A client-side requirement (e.g. the account id for create).
    #[error("{0}")]
    Usage(String),
}

/// `Result` with [`ClientError`].
pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// A proxied answer: status, headers and body, whatever the status.
#[derive(Debug, Clone)]
pub struct InvokeResponse {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

/// A client of one server, optionally acting for one account.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    account: Option<uuid::Uuid>,
    token: Option<String>,
}

/// The HTTP client: rustls with the system's roots plus `extra_roots`.
fn http_client(extra_roots: Vec<reqwest::Certificate>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if !extra_roots.is_empty() {
        b = b.tls_certs_merge(extra_roots);
    }
    b.build()
        .map_err(|e| ClientError::Usage(format!("cannot make the HTTP client: {e}")))
}

impl Client {
    /// A client of `base` (e.g. `http://127.0.0.1:5210`).
    pub fn new(base: &str, account: Option<uuid::Uuid>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Usage(format!(
                "server URL {base:?} must start with http:// or https://"
            )));
        }
        let http = http_client(Vec::new())?;
        Ok(Self {
            http,
            base,
            account,
            token: None,
        })
    }

    /// The same client sending `Authorization: Bearer <token>` (a server with `[auth] mode =
    /// "token"`); the account then comes from the token unless one is given.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.trim().is_empty());
        self
    }

    /// Trusts the CA certificate(s) of the PEM file `path` (one or more blocks) for an
    /// `https://` server, besides the system's roots.
    pub fn with_ca_file(mut self, path: &std::path::Path) -> Result<Self> {
        let bad =
            |what: String| ClientError::Usage(format!("the CA file {}: {what}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(format!("cannot be read ({e})")))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| bad(format!("is not PEM certificates ({e})")))?;
        if certs.is_empty() {
            return Err(bad("holds no PEM certificate".into()));
        }
        self.http = http_client(certs)?;
        Ok(self)
    }

    /// The server URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn req(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut r = self.http.request(method, self.url(path));
        if let Some(a) = self.account {
            r = r.header(ACCOUNT_ID_HEADER, a.to_string());
        }
        if let Some(t) = &self.token {
            r = r.bearer_auth(t.trim());
        }
        r
    }

    /// A create-like request: with no account and no token, for [`DEFAULT_ACCOUNT`] (a token
    /// says its own account).
    fn for_creating(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        if self.account.is_none() && self.token.is_none() {
            rb.header(ACCOUNT_ID_HEADER, DEFAULT_ACCOUNT)
        } else {
            rb
        }
    }

    /// A request that got no answer, with every cause (e.g. the TLS verifier's).
    fn connect_error(&self, e: reqwest::Error) -> ClientError {
        let e = e.without_url();
        let mut detail = e.to_string();
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            let text = c.to_string();
            if !detail.contains(&text) {
                detail = format!("{detail}: {text}");
            }
            cause = c.source();
        }
        ClientError::Connect {
            url: self.base.clone(),
            detail,
        }
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = rb.send().await.map_err(|e| self.connect_error(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let url = resp.url().to_string();
        let bytes = resp.bytes().await.unwrap_or_default();
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(ClientError::Api { status, body }),
            Err(_) => Err(ClientError::Protocol {
                url,
                detail: format!("HTTP {status}: {}", String::from_utf8_lossy(&bytes)),
            }),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T> {
        let resp = self.send(rb).await?;
        let url = resp.url().to_string();
        let bytes = resp.bytes().await.map_err(|e| ClientError::Protocol {
            url: url.clone(),
            detail: e.to_string(),
        })?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol {
            url,
            detail: format!("{e}: {}", String::from_utf8_lossy(&bytes)),
        })
    }

    /// `GET /version`
    pub async fn version(&self) -> Result<VersionResponse> {
        self.json(self.req(reqwest::Method::GET, "/version")).await
    }

    fn form(
        archive: Option<Vec<u8>>,
        credentials: Option<&Credentials>,
        parameters: Option<&serde_json::Value>,
    ) -> reqwest::multipart::Form {
        let mut form = reqwest::multipart::Form::new();
        if let Some(a) = archive {
            let part = reqwest::multipart::Part::bytes(a)
                .file_name("lambda.zip")
                .mime_str("application/zip")
                .unwrap_or_else(|_| reqwest::multipart::Part::bytes(Vec::new()));
            form = form.part("archive", part);
        }
        if let Some(c) = credentials {
            form = form.text("credentials", serde_json::to_string(c).unwrap_or_default());
        }
        if let Some(p) = parameters {
            form = form.text("parameters", p.to_string());
        }
        form
    }

    /// `POST /1/lambdas`. The server needs an account id to create; a client without one
    /// creates for [`DEFAULT_ACCOUNT`] (its reads stay unscoped).
    pub async fn create(
        &self,
        archive: Vec<u8>,
        credentials: &Credentials,
        parameters: Option<&serde_json::Value>,
    ) -> Result<CreateResponse> {
        let form = Self::form(Some(archive), Some(credentials), parameters);
        let rb = self
            .req(reqwest::Method::POST, "/1/lambdas")
            .multipart(form);
        self.json(self.for_creating(rb)).await
    }

    /// `PUT /1/lambdas/{id}`: a new version from a new archive and/or parameters.
    pub async fn update(
        &self,
        id: &LambdaId,
        archive: Option<Vec<u8>>,
        parameters: Option<&serde_json::Value>,
    ) -> Result<UpdateResponse> {
        let form = Self::form(archive, None, parameters);
        self.json(
            self.req(reqwest::Method::PUT, &format!("/1/lambdas/{id}"))
                .multipart(form),
        )
        .await
    }

    /// `GET /1/lambdas/{id}`
    pub async fn get(&self, id: &LambdaId) -> Result<LambdaRecord> {
        self.json(self.req(reqwest::Method::GET, &format!("/1/lambdas/{id}")))
            .await
    }

    /// `GET /1/lambdas`
    pub async fn list(
        &self,
        page: u64,
        page_size: u64,
        lambda_name: Option<&str>,
    ) -> Result<LambdaList> {
        let mut q = vec![
            ("page", page.to_string()),
            ("page_size", page_size.to_string()),
        ];
        if let Some(n) = lambda_name {
            q.push(("lambda_name", n.to_owned()));
        }
        self.json(self.req(reqwest::Method::GET, "/1/lambdas").query(&q))
            .await
    }

    /// `GET /1/lambdas/{id}/status`
    pub async fn status(&self, id: &LambdaId) -> Result<StatusResponse> {
        self.json(self.req(reqwest::Method::GET, &format!("/1/lambdas/{id}/status")))
            .await
    }

    /// `GET /1/lambdas/{id}/image/status`
    pub async fn image_status(&self, id: &LambdaId) -> Result<ImageStatusResponse> {
        self.json(self.req(
            reqwest::Method::GET,
            &format!("/1/lambdas/{id}/image/status"),
        ))
        .await
    }

    /// `GET /1/lambdas/{id}/image/logs`
    pub async fn image_logs(&self, id: &LambdaId) -> Result<String> {
        let r = self
            .send(self.req(reqwest::Method::GET, &format!("/1/lambdas/{id}/image/logs")))
            .await?;
        Ok(r.text().await.unwrap_or_default())
    }

    /// `GET /1/lambdas/{id}/image/logs?follow=1`: chunks as the build produces them.
    pub async fn follow_image_logs(
        &self,
        id: &LambdaId,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let r = self
            .send(
                self.req(reqwest::Method::GET, &format!("/1/lambdas/{id}/image/logs"))
                    .query(&[("follow", "1")]),
            )
            .await?;
        let url = self.base.clone();
        Ok(r.bytes_stream()
            .map(move |c| {
                c.map_err(|e| ClientError::Protocol {
                    url: url.clone(),
                    detail: e.to_string(),
                })
            })
            .boxed())
    }

    /// `GET /1/lambdas/{id}/logs`
    pub async fn logs(&self, id: &LambdaId, tail: Option<usize>) -> Result<LogsResponse> {
        let mut rb = self.req(reqwest::Method::GET, &format!("/1/lambdas/{id}/logs"));
        if let Some(t) = tail {
            rb = rb.query(&[("tail", t.to_string())]);
        }
        self.json(rb).await
    }

    /// `GET /1/lambdas/{id}/docs`: HTML, or YAML when `yaml`.
    pub async fn docs(&self, id: &LambdaId, yaml: bool) -> Result<Bytes> {
        let accept = if yaml {
            "application/x-yaml"
        } else {
            "text/html"
        };
        let r = self
            .send(
                self.req(reqwest::Method::GET, &format!("/1/lambdas/{id}/docs"))
                    .header("accept", accept),
            )
            .await?;
        Ok(r.bytes().await.unwrap_or_default())
    }

    /// `PUT /1/lambdas/{id}/config`
    pub async fn set_config(
        &self,
        id: &LambdaId,
        user_config: &serde_json::Value,
    ) -> Result<UpdateResponse> {
        self.json(
            self.req(reqwest::Method::PUT, &format!("/1/lambdas/{id}/config"))
                .header("content-type", "application/json")
                .body(user_config.to_string()),
        )
        .await
    }

    /// `PATCH /1/lambdas/{id}`
    pub async fn switch(&self, id: &LambdaId, alive: bool) -> Result<LambdaRecord> {
        self.json(
            self.req(reqwest::Method::PATCH, &format!("/1/lambdas/{id}"))
                .json(&serde_json::json!({ "alive": alive })),
        )
        .await
    }

    /// `DELETE /1/lambdas/{id}`
    pub async fn delete(&self, id: &LambdaId) -> Result<()> {
        self.send(self.req(reqwest::Method::DELETE, &format!("/1/lambdas/{id}")))
            .await?;
        Ok(())
    }

    /// A request through the proxy; any status is returned, not turned into an error.
    pub async fn invoke(
        &self,
        id: &LambdaId,
        method: &str,
        path: &str,
        headers: &[(String, String)],
        body: Option<Vec<u8>>,
    ) -> Result<InvokeResponse> {
        let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| ClientError::Usage(format!("{method:?} is not an HTTP method")))?;
        let mut rb = self.req(
            method,
            &format!("/1/lambdas/{id}/proxy/{}", path.trim_start_matches('/')),
        );
        for (k, v) in headers {
            rb = rb.header(k, v);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let resp = rb.send().await.map_err(|e| self.connect_error(e))?;
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp.bytes().await.unwrap_or_default();
        Ok(InvokeResponse {
            status,
            headers,
            body,
        })
    }

    /// Polls until the lambda runs. `on_change` sees every new (image status, status) pair.
    /// Fails with [`ClientError::NotReady`] (with the reason) when the build fails, the lambda
    /// terminates, or `timeout` passes.
    pub async fn wait_until_running(
        &self,
        id: &LambdaId,
        version: Option<u64>,
        timeout: Duration,
        mut on_change: impl FnMut(&LambdaRecord),
    ) -> Result<LambdaRecord> {
        let end = Instant::now() + timeout;
        let mut last: Option<(ImageStatus, LambdaStatus, Option<String>)> = None;
        loop {
            let rec = self.get(id).await?;
            let key = (rec.image_status, rec.status, rec.reason.clone());
            if last.as_ref() != Some(&key) {
                on_change(&rec);
                last = Some(key);
            }
            let current = version.is_none_or(|v| rec.lambda_version == v);
            if current && rec.image_status == ImageStatus::Error {
                return Err(ClientError::NotReady(format!(
                    "the build failed: {}",
                    rec.reason.unwrap_or_else(|| "see the build log".into())
                )));
            }
            if current && rec.status == LambdaStatus::Terminated {
                return Err(ClientError::NotReady(format!(
                    "the lambda did not start: {}",
                    rec.reason.unwrap_or_else(|| "see its logs".into())
                )));
            }
            if current
                && rec.image_status == ImageStatus::Completed
                && rec.status == LambdaStatus::Running
                && rec.running_version == Some(rec.lambda_version)
                && rec.reason.as_deref().is_none_or(|r| {
                    !r.contains(&format!("version {} did not start", rec.lambda_version))
                })
            {
                return Ok(rec);
            }
            if let Some(r) = &rec.reason
                && current
                && r.contains(&format!("version {} did not start", rec.lambda_version))
            {
                return Err(ClientError::NotReady(r.clone()));
            }
            if Instant::now() >= end {
                return Err(ClientError::NotReady(format!(
                    "lambda {id} is not running after {timeout:?} (image {}, status {})",
                    rec.image_status, rec.status
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
