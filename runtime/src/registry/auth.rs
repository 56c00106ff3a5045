//! Credentials and authentication challenges.
//!
//! Credentials come from wharf's own `auth.json` (written by `wharf login`)
//! and from Docker's `config.json` (`auths`, `credHelpers`, `credsStore`).
//! They are kept in [`Credentials`], whose `Debug` never shows the secret.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::Value;

use super::RegistryError;

/// A user name and a secret (password or token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name (`<token>` for an identity token).
    pub username: String,
    /// The password or token.
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The value of a basic `Authorization` header.
    pub(crate) fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// Where wharf keeps its configuration: `$WHARF_CONFIG`, else
/// `$XDG_CONFIG_HOME/wharf`, else `~/.config/wharf`.
pub fn config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("WHARF_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("wharf");
    }
    home().join(".config/wharf")
}

/// Docker's configuration directory: `$DOCKER_CONFIG`, else `~/.docker`.
pub fn docker_config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    home().join(".docker")
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root"))
}

/// The keys a registry may be filed under in an `auths` map.
fn auth_keys(registry: &str) -> Vec<String> {
    if matches!(
        registry,
        "docker.io" | "index.docker.io" | "registry-1.docker.io"
    ) {
        return vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
            "registry-1.docker.io".into(),
        ];
    }
    vec![
        registry.to_owned(),
        format!("https://{registry}"),
        format!("http://{registry}"),
        format!("https://{registry}/v1/"),
    ]
}

fn read_json(path: &Path) -> Result<Option<Value>, RegistryError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| RegistryError::Config {
                path: path.to_owned(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryError::Config {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

/// Decodes one `auths` entry.
fn from_entry(entry: &Value) -> Option<Credentials> {
    if let Some(token) = entry["identitytoken"].as_str().filter(|t| !t.is_empty()) {
        return Some(Credentials {
            username: "<token>".into(),
            password: token.into(),
        });
    }
    if let Some(auth) = entry["auth"].as_str().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(Credentials {
            username: u.into(),
            password: p.into(),
        });
    }
    match (entry["username"].as_str(), entry["password"].as_str()) {
        (Some(u), Some(p)) if !u.is_empty() => Some(Credentials {
            username: u.into(),
            password: p.into(),
        }),
        _ => None,
    }
}

fn from_auths(config: &Value, registry: &str) -> Option<Credentials> {
    let auths = config.get("auths")?;
    auth_keys(registry)
        .iter()
        .find_map(|k| auths.get(k).and_then(from_entry))
}

/// Runs `docker-credential-NAME get` for `registry`.
fn from_helper(name: &str, registry: &str) -> Result<Option<Credentials>, RegistryError> {
    let program = format!("docker-credential-{name}");
    let server = auth_keys(registry).remove(0);
    let child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            return Err(RegistryError::Credentials(format!(
                "credential helper {program}: {e}"
            )))
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| RegistryError::Credentials(format!("credential helper {program}: {e}")))?;
    if !out.status.success() {
        // Helpers exit non-zero for "credentials not found".
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        RegistryError::Credentials(format!("credential helper {program} printed no JSON"))
    })?;
    Ok(match (v["Username"].as_str(), v["Secret"].as_str()) {
        (Some(u), Some(s)) if !s.is_empty() => Some(Credentials {
            username: u.into(),
            password: s.into(),
        }),
        _ => None,
    })
}

/// Finds credentials for `registry`: wharf's `auth.json` first, then
/// Docker's `config.json` (its `credHelpers` entry, its `auths`, then its
/// `credsStore`).
pub fn lookup(
    wharf_dir: &Path,
    docker_dir: &Path,
    registry: &str,
) -> Result<Option<Credentials>, RegistryError> {
    if let Some(own) = read_json(&wharf_dir.join("auth.json"))? {
        if let Some(c) = from_auths(&own, registry) {
            return Ok(Some(c));
        }
    }
    let Some(docker) = read_json(&docker_dir.join("config.json"))? else {
        return Ok(None);
    };
    if let Some(helper) = auth_keys(registry)
        .iter()
        .find_map(|k| docker["credHelpers"][k].as_str())
    {
        return from_helper(helper, registry);
    }
    if let Some(c) = from_auths(&docker, registry) {
        return Ok(Some(c));
    }
    if let Some(store) = docker["credsStore"].as_str().filter(|s| !s.is_empty()) {
        return from_helper(store, registry);
    }
    Ok(None)
}

/// Saves credentials for `registry` in wharf's `auth.json` (mode 0600).
pub fn save(wharf_dir: &Path, registry: &str, creds: &Credentials) -> Result<(), RegistryError> {
    let path = wharf_dir.join("auth.json");
    let mut v = read_json(&path)?.unwrap_or_else(|| serde_json::json!({}));
    if !v.is_object() {
        return Err(RegistryError::Config {
            path,
            reason: "not a JSON object".into(),
        });
    }
    let raw = format!("{}:{}", creds.username, creds.password);
    let mut auths: BTreeMap<String, Value> =
        serde_json::from_value(v["auths"].take()).unwrap_or_default();
    auths.insert(
        auth_keys(registry).remove(0),
        serde_json::json!({"auth": base64::engine::general_purpose::STANDARD.encode(raw)}),
    );
    v["auths"] = serde_json::to_value(auths).expect("a map serialises");
    write_private(&path, &v)
}

/// Forgets the credentials for `registry`; false when there were none.
pub fn remove(wharf_dir: &Path, registry: &str) -> Result<bool, RegistryError> {
    let path = wharf_dir.join("auth.json");
    let Some(mut v) = read_json(&path)? else {
        return Ok(false);
    };
    let mut removed = false;
    if let Some(auths) = v["auths"].as_object_mut() {
        for k in auth_keys(registry) {
            removed |= auths.remove(&k).is_some();
        }
    }
    if removed {
        write_private(&path, &v)?;
    }
    Ok(removed)
}

/// Writes `v` to `path` with mode 0600 from the start, atomically.
fn write_private(path: &Path, v: &Value) -> Result<(), RegistryError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let config_err = |e: std::io::Error| RegistryError::Config {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let dir = path.parent().expect("auth.json has a parent");
    std::fs::create_dir_all(dir).map_err(config_err)?;
    let tmp = dir.join(format!(".auth.json.{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(config_err)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(config_err)?;
    let bytes = serde_json::to_vec_pretty(v).expect("JSON serialises");
    f.write_all(&bytes).map_err(config_err)?;
    f.sync_all().map_err(config_err)?;
    std::fs::rename(&tmp, path).map_err(config_err)
}

/// A parsed `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// HTTP basic authentication.
    Basic,
    /// A token service (`realm`, optional `service` and `scope`).
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value (`Bearer realm="...",service="..."`).
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
            value = value.trim().to_owned();
        }
        params.insert(key, value);
    }
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.remove("realm")?,
            service: params.remove("service"),
            scope: params.remove("scope"),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn reads_docker_and_wharf_credentials() {
        let wharf = tempfile::tempdir().unwrap();
        let docker = tempfile::tempdir().unwrap();
        assert_eq!(lookup(wharf.path(), docker.path(), "r:1").unwrap(), None);
        std::fs::write(
            docker.path().join("config.json"),
            r#"{"auths":{"r:1":{"auth":"dTpw"},"https://index.docker.io/v1/":{"username":"a","password":"b"}}}"#,
        )
        .unwrap();
        let c = lookup(wharf.path(), docker.path(), "r:1").unwrap().unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p"));
        let hub = lookup(wharf.path(), docker.path(), "docker.io")
            .unwrap()
            .unwrap();
        assert_eq!(hub.username, "a");
        // wharf's own file wins, is private, and never shows the password.
        let mine = Credentials {
            username: "me".into(),
            password: "s3cret".into(),
        };
        save(wharf.path(), "r:1", &mine).unwrap();
        assert_eq!(
            lookup(wharf.path(), docker.path(), "r:1").unwrap(),
            Some(mine.clone())
        );
        let text = std::fs::read_to_string(wharf.path().join("auth.json")).unwrap();
        assert!(!text.contains("s3cret"));
        assert!(!format!("{mine:?}").contains("s3cret"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(wharf.path().join("auth.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(remove(wharf.path(), "r:1").unwrap());
        assert!(!remove(wharf.path(), "r:1").unwrap());
    }
}
