//! AWS SDK configuration shared by every binary: the SDK's usual credential chain and region,
//! an optional endpoint override (moto, LocalStack), and an HTTPS client on rustls with the
//! `ring` provider, so the process carries one crypto provider (the one Pingora uses).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};

/// Where and how to reach AWS. Both fields fall back to the SDK's environment and profile
/// lookup (`AWS_REGION`, `AWS_ENDPOINT_URL`, `~/.aws/config`).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// Endpoint override for emulators, e.g. `http://127.0.0.1:5000`.
    pub endpoint: Option<String>,
}

pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http);
    if let Some(r) = &settings.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(e) = &settings.endpoint {
        loader = loader.endpoint_url(e);
    }
    loader.load().await
}
