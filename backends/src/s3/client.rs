//! The aws-sdk-s3 client of one remote, configured explicitly from
//! [`S3Settings`]: static credentials, the given region and endpoint, our
//! HTTP client, checksums only where an operation requires them (servers
//! without the newer checksum headers work), and the SDK's standard
//! retries with few attempts. `aws-config` is not used, so nothing comes
//! from profile files or `AWS_*` variables (such as `AWS_CA_BUNDLE` or
//! credentials in the environment).

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    StalledStreamProtectionConfig,
};

use super::connector::Connector;
use super::http::GatewayHttp;
use super::{tls, S3Settings, DEFAULT_REGION, MAX_PART_SIZE, MIN_PART_SIZE};
use crate::{BackendError, ErrorKind};

/// Attempts per request (the first one included) for throttling, 5xx and
/// broken connections.
const MAX_ATTEMPTS: u32 = 3;
/// First retry delay; it doubles (with jitter) after that.
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);

/// The SDK client and the connector under it.
pub struct Built {
    /// The SDK client.
    pub client: aws_sdk_s3::Client,
    /// The connector (for the last local address).
    pub connector: Connector,
    /// The HTTP client under the SDK (its request slots).
    pub http: GatewayHttp,
}

/// Checks `settings` and builds the client.
pub fn build(settings: &S3Settings) -> Result<Built, BackendError> {
    let fail = |message: String| {
        BackendError::new(
            ErrorKind::Other,
            "configure",
            "",
            format!("remote `{}`: {message}", settings.name),
        )
    };
    let https = check_endpoint(&settings.endpoint).map_err(fail)?;
    if settings.bucket.is_empty() {
        return Err(fail("no bucket given".to_string()));
    }
    if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&settings.part_size) {
        return Err(fail(format!(
            "part_size must be between {} MiB and {} MiB",
            MIN_PART_SIZE >> 20,
            MAX_PART_SIZE >> 20
        )));
    }
    if settings.max_requests == 0 {
        return Err(fail("max_requests must be at least 1".to_string()));
    }
    let tls_config = if https {
        Some(tls::client_config(&settings.name, &settings.certificate)?)
    } else {
        None
    };
    let connector = Connector::new(
        &settings.name,
        settings.sources.clone(),
        settings.connect_timeout,
        tls_config,
    );
    let http = GatewayHttp::new(
        &settings.name,
        connector.clone(),
        settings.max_requests,
        settings.connect_timeout,
        settings.io_timeout,
    );
    let region = if settings.region.is_empty() {
        DEFAULT_REGION.to_string()
    } else {
        settings.region.clone()
    };
    let credentials = Credentials::new(
        settings.access_key_id.clone(),
        settings.secret_access_key.clone(),
        None,
        None,
        "gateway-config",
    );
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(region))
        .endpoint_url(settings.endpoint.trim_end_matches('/'))
        .force_path_style(settings.path_style)
        .credentials_provider(credentials)
        .http_client(http.clone())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF),
        )
        // The HTTP client enforces the remote's own timeouts.
        .timeout_config(TimeoutConfig::disabled())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .disable_s3_express_session_auth(true)
        .build();
    Ok(Built {
        client: aws_sdk_s3::Client::from_conf(config),
        connector,
        http,
    })
}

/// Whether `endpoint` is an `https` URL; an error unless it is an
/// `http`/`https` URL with a host.
fn check_endpoint(endpoint: &str) -> Result<bool, String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e| format!("endpoint `{endpoint}` is not a URL: {e}"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => {
            return Err(format!(
                "endpoint `{endpoint}` must start with http:// or https://"
            ))
        }
    };
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("endpoint `{endpoint}` has no host"));
    }
    Ok(https)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked() {
        assert_eq!(check_endpoint("https://s3.example.com"), Ok(true));
        assert_eq!(check_endpoint("http://127.0.0.1:9000/"), Ok(false));
        assert!(check_endpoint("s3.example.com")
            .unwrap_err()
            .contains("must start with http"));
        assert!(check_endpoint("ftp://x").is_err());
        assert!(check_endpoint("not a url").is_err());
    }

    #[tokio::test]
    async fn bad_settings_are_refused_up_front() {
        let mut s = S3Settings::new("p", "http://127.0.0.1:9", "b", "k", "s");
        s.part_size = 1024;
        let err = build(&s).err().expect("part size too small");
        assert!(err.message().contains("part_size"), "{err}");
        let s = S3Settings::new("p", "http://127.0.0.1:9", "", "k", "s");
        assert!(build(&s).is_err());
        let s = S3Settings::new("p", "localhost:9000", "b", "k", "s");
        let err = build(&s).err().expect("no scheme");
        assert!(err.message().starts_with("remote `p`: endpoint"), "{err}");
        let s = S3Settings::new("p", "http://127.0.0.1:9", "b", "k", "s");
        assert!(build(&s).is_ok());
    }
}
