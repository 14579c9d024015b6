//! What both deploy benchmarks time: one version through a builder and an orchestrator.

use bytes::Bytes;
use lambda_build::{BuildRequest, ImageBuilder};
use lambda_core::archive::{Limits, validate_bytes};
use lambda_core::{LambdaId, LambdaName, LambdaType, Parameters};
use lambda_deploy::{DeploySpec, Orchestrator};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Packs `files`, builds them as `version` of `id` and deploys the result; the time it all took.
pub(crate) async fn ship(
    b: &dyn ImageBuilder,
    o: &dyn Orchestrator,
    id: LambdaId,
    version: u64,
    files: &[(&str, &str)],
) -> Duration {
    let t = Instant::now();
    let bytes = lambda_core::pack::pack_files(
        files
            .iter()
            .map(|(n, d)| ((*n).to_owned(), d.as_bytes().to_vec()))
            .collect(),
    );
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    let req = BuildRequest {
        lambda_id: id,
        version,
        lambda_type: LambdaType::Standalone,
        archive: validate_bytes(&bytes, &Limits::default()).unwrap(),
        archive_bytes: Bytes::from(bytes),
        parameters: Parameters::default(),
        timeout: Duration::from_secs(600),
    };
    let artifact = b.build(req, tx, CancellationToken::new()).await.unwrap();
    o.deploy(DeploySpec {
        lambda_id: id,
        lambda_name: LambdaName::parse("bench").unwrap(),
        lambda_type: LambdaType::Standalone,
        version,
        artifact,
        parameters: Parameters::default(),
        replicas: 1,
    })
    .await
    .unwrap();
    t.elapsed()
}
