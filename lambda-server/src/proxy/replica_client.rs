//! The HTTP client the task runner calls replicas with ([`ReplicaCalls`]): keep-alive
//! connections, no Nagle delay, a 5 s connect limit.

use crate::service::tasks::ReplicaCalls;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::time::Duration;

type HttpClient = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// [`ReplicaCalls`] over hyper's pooled client.
#[derive(Debug, Clone)]
pub struct ReplicaClient {
    http: HttpClient,
}

impl ReplicaClient {
    /// A client with its own connection pool.
    pub fn new() -> std::sync::Arc<Self> {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build(connector);
        std::sync::Arc::new(Self { http })
    }
}

#[async_trait::async_trait]
impl ReplicaCalls for ReplicaClient {
    async fn post_json(&self, url: &str, body: Bytes) -> Result<(u16, Bytes), String> {
        let req = hyper::Request::post(url)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let resp = self.http.request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, bytes))
    }
}
