//! The HTTP side of the distribution protocol: choosing HTTPS or HTTP,
//! following redirects without leaking credentials, and the basic and
//! bearer-token authentication flows.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::header::{HeaderValue, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde::Deserialize;

use super::auth::{self, Challenge, Credentials};
use super::RegistryError;

/// Largest token-service response read.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;
/// Largest error body read for its message.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Redirects followed per request.
const MAX_REDIRECTS: usize = 10;
/// Token lifetime when the token service does not say.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// Longest a token is cached, whatever the service says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How to reach registries: TLS checks and where configuration lives.
#[derive(Debug, Clone)]
pub struct Transport {
    /// Verify TLS certificates and refuse plain HTTP (except for loopback
    /// registries and those marked `insecure` in `registries.json`).
    pub tls_verify: bool,
    /// wharf's configuration directory (`auth.json`, `registries.json`).
    pub config_dir: PathBuf,
    /// Docker's configuration directory (`config.json`).
    pub docker_config_dir: PathBuf,
    /// Credentials to use instead of those saved for the registry (the
    /// daemon's `X-Registry-Auth`).
    pub credentials: Option<auth::Credentials>,
}

impl Default for Transport {
    fn default() -> Transport {
        Transport {
            tls_verify: true,
            config_dir: auth::config_dir(),
            docker_config_dir: auth::docker_config_dir(),
            credentials: None,
        }
    }
}

/// One registry's entry in `registries.json`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Allow plain HTTP and unverified TLS.
    #[serde(default)]
    pub insecure: bool,
    /// A PEM bundle of extra CA certificates for this registry.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

/// Reads the entry for `registry` from `DIR/registries.json`.
pub fn registry_config(dir: &Path, registry: &str) -> Result<RegistryConfig, RegistryError> {
    #[derive(Deserialize)]
    struct File {
        #[serde(default)]
        registries: HashMap<String, RegistryConfig>,
    }
    let path = dir.join("registries.json");
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Default::default()),
        Err(e) => {
            return Err(RegistryError::Config {
                path,
                reason: e.to_string(),
            })
        }
    };
    let mut file: File = serde_json::from_slice(&bytes).map_err(|e| RegistryError::Config {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    Ok(file.registries.remove(registry).unwrap_or_default())
}

/// True for `localhost`, `127.0.0.0/8` and `::1` (with or without a port).
pub fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => registry.rsplit_once(':').map_or(registry, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The host wharf connects to for a registry name.
fn endpoint_host(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io",
        r => r,
    }
}

/// The error text of a reqwest failure with all its causes.
pub(crate) fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = s.source();
    }
    out
}

#[derive(Default)]
struct AuthState {
    challenge: Option<Challenge>,
    /// Bearer tokens by scope list, with their expiry.
    tokens: HashMap<String, (String, Instant)>,
}

/// A connection to one registry.
pub(crate) struct Client {
    registry: String,
    endpoint: Url,
    http: reqwest::Client,
    creds: Option<Credentials>,
    state: tokio::sync::Mutex<AuthState>,
    /// Set when a token service was asked without our credentials.
    withheld: std::sync::atomic::AtomicBool,
}

impl Client {
    /// Connects to `registry`: decides between HTTPS and HTTP by the rules in
    /// spec/registry.md and reads the credentials wharf has for it.
    pub(crate) async fn connect(
        registry: &str,
        transport: &Transport,
        creds: Option<Credentials>,
    ) -> Result<Client, RegistryError> {
        let cfg = registry_config(&transport.config_dir, registry)?;
        let insecure = is_loopback(registry) || !transport.tls_verify || cfg.insecure;
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(300))
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")));
        if insecure {
            builder = builder.danger_accept_invalid_certs(true);
        }
        if let Some(ca) = &cfg.ca {
            let pem = std::fs::read(ca).map_err(|e| RegistryError::Config {
                path: ca.clone(),
                reason: e.to_string(),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Config {
                    path: ca.clone(),
                    reason: describe(&e),
                })?;
            for c in certs {
                builder = builder.add_root_certificate(c);
            }
        }
        let http = builder.build().map_err(|e| RegistryError::Connect {
            registry: registry.to_owned(),
            reason: describe(&e),
        })?;
        let host = endpoint_host(registry);
        let https: Url =
            format!("https://{host}/")
                .parse()
                .map_err(|_| RegistryError::Connect {
                    registry: registry.to_owned(),
                    reason: "not a valid host name".into(),
                })?;
        let mut client = Client {
            registry: registry.to_owned(),
            endpoint: https.clone(),
            http,
            creds,
            state: Default::default(),
            withheld: Default::default(),
        };
        let ping = |base: &Url| {
            let url = base.join("v2/").expect("a valid path");
            client.http.get(url).send()
        };
        let first = ping(&https).await;
        let response = match first {
            Ok(r) => r,
            Err(e) if insecure && (e.is_connect() || e.is_request()) => {
                let http_url: Url = format!("http://{host}/").parse().expect("valid above");
                match ping(&http_url).await {
                    Ok(r) => {
                        client.endpoint = http_url;
                        r
                    }
                    Err(e2) => {
                        return Err(RegistryError::Connect {
                            registry: registry.to_owned(),
                            reason: format!("HTTPS: {}; HTTP: {}", describe(&e), describe(&e2)),
                        })
                    }
                }
            }
            Err(e) => {
                let mut reason = describe(&e);
                if reason.contains("certificate") || reason.contains("Certificate") {
                    reason.push_str(
                        " (add the registry's CA to registries.json, or use --tls-verify=false)",
                    );
                }
                return Err(RegistryError::Connect {
                    registry: registry.to_owned(),
                    reason,
                });
            }
        };
        if response.status() == StatusCode::UNAUTHORIZED {
            client.state.get_mut().challenge = challenge_of(&response);
        }
        Ok(client)
    }

    /// The registry name as the user gave it.
    pub(crate) fn registry(&self) -> &str {
        &self.registry
    }

    /// True when a token service was asked anonymously because it was not
    /// trusted with the credentials.
    pub(crate) fn withheld_credentials(&self) -> bool {
        self.withheld.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// True when the client has credentials.
    pub(crate) fn has_credentials(&self) -> bool {
        self.creds.is_some()
    }

    /// Sends a request to `path` (relative to the endpoint, or an absolute
    /// URL such as an upload location), authenticating for `scopes`
    /// (`repository:NAME:ACTIONS`). `build` adds headers and a body; it is
    /// called again for a retry after an authentication challenge.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        scopes: &[String],
        build: &(dyn Fn(RequestBuilder) -> RequestBuilder + Send + Sync),
    ) -> Result<Response, RegistryError> {
        let url = self
            .endpoint
            .join(path)
            .map_err(|e| self.protocol(format!("bad URL {path:?}: {e}")))?;
        let mut retried = false;
        loop {
            let header = self.auth_header(scopes).await?;
            let resp = self
                .follow(method.clone(), url.clone(), header.as_ref(), build)
                .await?;
            if resp.status() != StatusCode::UNAUTHORIZED || retried {
                return Ok(resp);
            }
            let Some(challenge) = challenge_of(&resp) else {
                return Ok(resp);
            };
            let mut state = self.state.lock().await;
            // A token that was just refused is dropped. A basic challenge
            // that already refused our credentials, or that we have no
            // credentials for, will not change its mind: no retry.
            state.tokens.remove(&scopes.join(" "));
            if matches!(challenge, Challenge::Basic)
                && (header.is_some() || !self.has_credentials())
            {
                return Ok(resp);
            }
            state.challenge = Some(challenge);
            retried = true;
        }
    }

    /// Follows redirects for GET and HEAD, sending `auth` only to the
    /// registry's own origin.
    async fn follow(
        &self,
        method: Method,
        mut url: Url,
        auth: Option<&HeaderValue>,
        build: &(dyn Fn(RequestBuilder) -> RequestBuilder + Send + Sync),
    ) -> Result<Response, RegistryError> {
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self.http.request(method.clone(), url.clone());
            if let Some(a) = auth {
                if same_origin(&url, &self.endpoint) {
                    req = req.header(AUTHORIZATION, a.clone());
                }
            }
            let resp = build(req)
                .send()
                .await
                .map_err(|e| self.transfer_error(&e))?;
            let redirect = matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308);
            if !(redirect && (method == Method::GET || method == Method::HEAD)) {
                return Ok(resp);
            }
            let Some(loc) = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok()) else {
                return Ok(resp);
            };
            url = url
                .join(loc)
                .map_err(|e| self.protocol(format!("bad redirect {loc:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(self.protocol(format!("redirect to unsupported URL {url}")));
            }
        }
        Err(self.protocol(format!("more than {MAX_REDIRECTS} redirects")))
    }

    /// A plain GET with no credentials at all (foreign layer URLs).
    pub(crate) async fn get_anonymous(&self, url: &str) -> Result<Response, RegistryError> {
        let url: Url = url
            .parse()
            .map_err(|e| self.protocol(format!("bad URL {url:?}: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.protocol(format!("unsupported URL {url}")));
        }
        self.follow(Method::GET, url, None, &|r| r).await
    }

    /// A protocol error for this registry.
    fn protocol(&self, reason: String) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.clone(),
            reason,
        }
    }

    pub(crate) fn transfer_error(&self, e: &reqwest::Error) -> RegistryError {
        // URLs can carry secrets (presigned storage links, upload state):
        // errors show them without their query.
        let mut reason = describe(e);
        if let Some(url) = e.url() {
            let mut safe = url.clone();
            safe.set_query(None);
            reason = reason.replace(url.as_str(), safe.as_str());
        }
        RegistryError::Connect {
            registry: self.registry.clone(),
            reason,
        }
    }

    /// The `Authorization` value for `scopes` under the known challenge.
    async fn auth_header(&self, scopes: &[String]) -> Result<Option<HeaderValue>, RegistryError> {
        let mut state = self.state.lock().await;
        let value = match state.challenge.clone() {
            None => return Ok(None),
            Some(Challenge::Basic) => match &self.creds {
                Some(c) => c.basic_header(),
                None => return Ok(None),
            },
            Some(Challenge::Bearer { realm, service, .. }) => {
                let key = scopes.join(" ");
                match state.tokens.get(&key) {
                    Some((t, until)) if *until > Instant::now() => format!("Bearer {t}"),
                    _ => {
                        let (token, life) =
                            self.fetch_token(&realm, service.as_deref(), scopes).await?;
                        // Renew a little early so a token does not lapse mid-request.
                        let until = Instant::now() + life.saturating_sub(Duration::from_secs(5));
                        state.tokens.insert(key, (token.clone(), until));
                        format!("Bearer {token}")
                    }
                }
            }
        };
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            RegistryError::Credentials(
                "credentials contain characters a header cannot carry".into(),
            )
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    /// Asks the token service at `realm` for a token covering `scopes`.
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
    ) -> Result<(String, Duration), RegistryError> {
        let mut url: Url = realm
            .parse()
            .map_err(|e| self.protocol(format!("token realm {realm:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(self.protocol(format!("token realm {realm:?} is not an http(s) URL")));
        }
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in scopes {
                q.append_pair("scope", s);
            }
        }
        // Credentials go to the realm only on the registry's own host (or
        // Docker Hub's known token service), and never over plain HTTP to
        // a realm of an HTTPS registry.
        let trusted_realm = url.host_str() == self.endpoint.host_str()
            || (self.registry == "docker.io" && url.host_str() == Some("auth.docker.io"));
        let downgrade = url.scheme() == "http" && self.endpoint.scheme() == "https";
        let mut req = self.http.get(url.clone());
        if self.creds.is_some() && (!trusted_realm || downgrade) {
            self.withheld
                .store(true, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                "not sending credentials for {} to the token service at {}",
                self.registry,
                url.host_str().unwrap_or("?")
            );
        }
        if let Some(c) = self.creds.as_ref().filter(|_| trusted_realm && !downgrade) {
            let mut v = HeaderValue::from_str(&c.basic_header()).map_err(|_| {
                RegistryError::Credentials(
                    "credentials contain characters a header cannot carry".into(),
                )
            })?;
            v.set_sensitive(true);
            req = req.header(AUTHORIZATION, v);
        }
        let resp = req.send().await.map_err(|e| self.transfer_error(&e))?;
        if !resp.status().is_success() {
            return Err(self
                .status_error(resp, "authenticate with", &scopes.join(" "))
                .await);
        }
        let body = self
            .read_capped(resp, MAX_TOKEN_RESPONSE, "token response")
            .await?;
        #[derive(Deserialize)]
        struct TokenResponse {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let t: TokenResponse = serde_json::from_slice(&body).map_err(|e| {
            self.protocol(format!("token service answered with malformed JSON: {e}"))
        })?;
        let token = t
            .token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.protocol("token service answered without a token".to_owned()))?;
        // The lifetime is the service's word, capped: an absurd value must
        // not overflow the expiry instant.
        let life = t
            .expires_in
            .map(|s| Duration::from_secs(s.min(MAX_TOKEN_LIFETIME.as_secs())))
            .unwrap_or(DEFAULT_TOKEN_LIFETIME);
        Ok((token, life))
    }

    /// Reads a whole body, failing once it passes `limit` bytes.
    pub(crate) async fn read_capped(
        &self,
        resp: Response,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>, RegistryError> {
        let too_large = || RegistryError::TooLarge {
            what: what.to_owned(),
            limit,
        };
        if resp.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transfer_error(&e))?;
            if out.len() as u64 + chunk.len() as u64 > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }

    /// Turns an unsuccessful response into an error that names the
    /// registry, what was asked, the status and the registry's own message.
    pub(crate) async fn status_error(&self, resp: Response, op: &str, what: &str) -> RegistryError {
        let status = resp.status();
        let body = self
            .read_capped(resp, MAX_ERROR_BODY, "error body")
            .await
            .unwrap_or_default();
        let mut detail = String::new();
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
            if let Some(errors) = v["errors"].as_array() {
                let parts: Vec<String> = errors
                    .iter()
                    .map(|e| {
                        let code = e["code"].as_str().unwrap_or("");
                        let msg = e["message"].as_str().unwrap_or("");
                        match (code.is_empty(), msg.is_empty()) {
                            (false, false) => format!("{code}: {msg}"),
                            (false, true) => code.to_owned(),
                            _ => msg.to_owned(),
                        }
                    })
                    .filter(|s| !s.is_empty())
                    .collect();
                detail = parts.join("; ");
            } else if let Some(d) = v["details"].as_str().or(v["error"].as_str()) {
                detail = d.to_owned();
            }
        }
        let hint = match status {
            StatusCode::UNAUTHORIZED if self.has_credentials() => {
                format!(
                    " (the saved credentials were refused: run `wharf login {}`)",
                    self.registry
                )
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                format!(" (run `wharf login {}`)", self.registry)
            }
            _ => String::new(),
        };
        RegistryError::Status {
            op: op.to_owned(),
            target: format!("{}/{}", self.registry, what.trim_start_matches('/')),
            status: status.to_string(),
            detail: detail.replace('\n', " "),
            hint,
        }
    }
}

fn challenge_of(resp: &Response) -> Option<Challenge> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(auth::parse_challenge)
        // Prefer a token service when a registry offers both.
        .max_by_key(|c| matches!(c, Challenge::Bearer { .. }))
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries() {
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("127.1.2.3"));
        assert!(is_loopback("[::1]:5000"));
        assert!(!is_loopback("registry.example:5000"));
        assert!(!is_loopback("10.0.0.1:5000"));
    }

    #[test]
    fn origins() {
        let a: Url = "https://r.example/v2/x".parse().unwrap();
        assert!(same_origin(&a, &"https://r.example:443/".parse().unwrap()));
        assert!(!same_origin(&a, &"https://r.example:444/".parse().unwrap()));
        assert!(!same_origin(&a, &"http://r.example/".parse().unwrap()));
        assert!(!same_origin(&a, &"https://s3.example/".parse().unwrap()));
    }
}
