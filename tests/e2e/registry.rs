//! Registries: `wharf pull`, `push`, `login`, `logout` and `run`'s pull,
//! against the real CNCF distribution registry (plain, TLS with basic auth,
//! token auth) and against a scripted hostile one (spec/registry.md).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::{json, Value};

use crate::harness::{require, Env, Run};
use crate::registry_harness::{
    base64, basic_auth, busybox_oci_image, digest_of, hex_of, noise, oci_index, registry_tools,
    short, Hostile, Registry, Reply, TinyImage, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP,
    OCI_MANIFEST,
};

const HELLO_OUT: &str = "Hello from wharf!\ngreeting: ahoy\n";
const USER: &str = "alice";
const PASS: &str = "s3cret-Pa55";
const TOKEN_USER: &str = "bob";
const TOKEN_PASS: &str = "t0ken-Pa55";

// ---------------------------------------------------------------------------
// Helpers.

/// The last stdout line, which must be a manifest digest.
#[track_caller]
fn digest_line(r: &Run) -> String {
    let last = r.stdout.lines().last().unwrap_or("").trim().to_owned();
    assert!(
        last.len() == 71
            && last.starts_with("sha256:")
            && hex_of(&last)
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "the last stdout line is not a manifest digest\nstdout: {}\nstderr: {}",
        r.stdout,
        r.stderr
    );
    last
}

/// `wharf inspect NAME`, first object.
fn inspect(env: &Env, name: &str) -> Value {
    let out = env.wharf(&["inspect", name]).ok().stdout;
    serde_json::from_str::<Value>(&out).unwrap()[0].clone()
}

/// A blob of the store, if present.
fn stored(env: &Env, digest: &str) -> Option<Vec<u8>> {
    std::fs::read(env.root.path().join("blobs/sha256").join(hex_of(digest))).ok()
}

/// The config and layer digests of a manifest.
fn blobs_of(manifest: &Value) -> Vec<String> {
    let mut out = vec![manifest["config"]["digest"].as_str().unwrap().to_owned()];
    for l in manifest["layers"].as_array().unwrap() {
        out.push(l["digest"].as_str().unwrap().to_owned());
    }
    out
}

/// The stored manifest of the image `name`.
fn stored_manifest(env: &Env, name: &str) -> Value {
    let d = inspect(env, name)["Descriptor"]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    serde_json::from_slice(&stored(env, &d).expect("manifest blob in the store")).unwrap()
}

/// The stderr lines that mention a blob (by its 12-hex short form).
fn events<'a>(stderr: &'a str, digest: &str) -> Vec<&'a str> {
    stderr
        .lines()
        .filter(|l| l.contains(short(digest)))
        .collect()
}

/// Initialises the store (any command creates the layout) and snapshots it.
fn initialised_state(env: &Env) -> Vec<(String, u64)> {
    env.wharf(&["images", "-q"]).ok();
    env.store_state()
}

/// After a failed pull: the only additions to the store are blobs that
/// verify (and wharf's private bookkeeping under `wharf/`, outside `tmp`
/// and `snapshots`), none of them `forbidden`, and no name was set.
#[track_caller]
fn only_verified_blobs_added(env: &Env, before: &[(String, u64)], forbidden: &[&str]) {
    for (path, size) in env.store_state() {
        if before.contains(&(path.clone(), size)) {
            continue;
        }
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            let data = std::fs::read(env.root.path().join(&path)).unwrap();
            assert_eq!(
                hex_of(&digest_of(&data)),
                hex,
                "an unverified blob reached the store"
            );
            assert!(
                !forbidden.iter().any(|f| hex_of(f) == hex),
                "{path} must not be stored"
            );
        } else {
            assert!(
                path.starts_with("wharf/")
                    && !path.starts_with("wharf/snapshots/")
                    && !path.starts_with("wharf/tmp/"),
                "a failed pull changed {path}"
            );
        }
    }
    assert_eq!(
        env.wharf(&["images", "-q"]).ok().stdout,
        "",
        "a failed pull set a name"
    );
}

/// Writes a JSON file readable only by its owner.
fn write_private(path: &Path, v: &Value) {
    std::fs::write(path, v.to_string()).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Docker's `config.json` in the Env's `DOCKER_CONFIG`, `auths` for `host`.
fn docker_auths(env: &Env, host: &str, entry: Value) {
    write_private(
        &env.docker_config().join("config.json"),
        &json!({ "auths": { host: entry } }),
    );
}

/// wharf's own `auth.json` in the Env's `WHARF_CONFIG`, for `host`.
fn wharf_auths(env: &Env, host: &str, user: &str, pass: &str) {
    write_private(
        &env.wharf_config().join("auth.json"),
        &json!({ "auths": { host: { "auth": base64(format!("{user}:{pass}").as_bytes()) } } }),
    );
}

/// The `auth` saved for `host` in wharf's `auth.json`, if any.
fn saved_auth(env: &Env, host: &str) -> Option<String> {
    let text = std::fs::read_to_string(env.wharf_config().join("auth.json")).ok()?;
    let v: Value = serde_json::from_str(&text).unwrap();
    v["auths"][host]["auth"].as_str().map(str::to_owned)
}

/// Neither output stream carries the password or the encoded credentials.
#[track_caller]
fn no_secret(r: &Run, user: &str, pass: &str) {
    let encoded = base64(format!("{user}:{pass}").as_bytes());
    for s in [&r.stdout, &r.stderr] {
        assert!(
            !s.contains(pass) && !s.contains(&encoded),
            "a credential was printed: {s}"
        );
    }
}

/// `wharf login -u USER --password-stdin HOST`, the password piped in the
/// way `echo "$PASS" | wharf login ...` does.
fn login_stdin(env: &Env, host: &str, user: &str, pass: &str) -> Run {
    env.wharf_stdin(
        &["login", "-u", user, "--password-stdin", host],
        &format!("{pass}\n"),
    )
}

// ---------------------------------------------------------------------------
// Plain registry.

#[test]
fn push_pull_and_run_through_a_plain_registry() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::plain();
    let env = Env::new();
    env.build_example("hello", "hello");
    let dest = format!("{}/hello:1", reg.host());

    let push = env.wharf(&["push", "hello", &dest]).ok();
    let digest = digest_line(&push);
    assert_eq!(inspect(&env, "hello")["Descriptor"]["digest"], digest);
    let seen: Value =
        serde_json::from_slice(&reg.skopeo_inspect("hello:1", None, false).unwrap()).unwrap();
    assert_eq!(seen["Digest"], digest, "skopeo sees what wharf pushed");
    assert_eq!(seen["Os"], "wasip1");
    let manifest = stored_manifest(&env, "hello");
    let blobs = blobs_of(&manifest);
    assert_eq!(
        reg.skopeo_inspect("hello:1", None, true).unwrap(),
        stored(&env, &digest).unwrap(),
        "the registry serves the stored manifest byte for byte"
    );
    for b in &blobs {
        assert!(
            !events(&push.stderr, b).is_empty(),
            "no event for {b}: {}",
            push.stderr
        );
    }

    // Pushing again uploads nothing: every blob exists.
    let before = reg.requests().len();
    let again = env.wharf(&["push", "hello", &dest]).ok();
    assert_eq!(digest_line(&again), digest);
    for b in &blobs {
        let lines = events(&again.stderr, b);
        assert!(
            lines.iter().any(|l| l.contains("exists"))
                && !lines
                    .iter()
                    .any(|l| l.contains("pushed") || l.contains("uploaded")),
            "{b} not reported as existing: {}",
            again.stderr
        );
    }
    let uploads: Vec<_> = reg.requests()[before..]
        .iter()
        .filter(|r| {
            r.method == "POST"
                || r.method == "PATCH"
                || (r.method == "PUT" && r.uri.contains("/blobs/"))
        })
        .cloned()
        .collect();
    assert!(uploads.is_empty(), "re-push uploaded: {uploads:?}");

    // Another store pulls it and runs it.
    let other = Env::new();
    let pull = other.wharf(&["pull", &dest]).ok();
    assert_eq!(digest_line(&pull), digest);
    let seen = inspect(&other, &dest);
    assert_eq!(seen["Descriptor"]["digest"], digest);
    assert_eq!(seen["Id"], inspect(&env, "hello")["Id"]);
    assert!(seen["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| *t == dest.as_str()));
    assert_eq!(
        stored(&other, &digest).unwrap(),
        stored(&env, &digest).unwrap()
    );
    for b in &blobs {
        assert_eq!(stored(&other, b).map(|d| digest_of(&d)), Some(b.clone()));
    }
    assert_eq!(other.wharf(&["run", &dest]).ok().stdout, HELLO_OUT);

    // Pulling again downloads no blob; -q prints only the digest.
    let before = reg.requests().len();
    let quiet = other.wharf(&["pull", "-q", &dest]).ok();
    assert_eq!(quiet.stdout, format!("{digest}\n"));
    let fetched: Vec<_> = reg.requests()[before..]
        .iter()
        .filter(|r| r.method == "GET" && r.uri.contains("/blobs/"))
        .cloned()
        .collect();
    assert!(
        fetched.is_empty(),
        "present blobs were fetched: {fetched:?}"
    );
}

#[test]
fn run_pulls_a_missing_image_first() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::plain();
    let digest = reg.seed_hello("hello:1");
    let name = format!("{}/hello:1", reg.host());
    let env = Env::new();
    let r = env.wharf(&["run", &name]).ok();
    assert_eq!(r.stdout, HELLO_OUT, "stdout is the guest's alone");
    assert_eq!(inspect(&env, &name)["Descriptor"]["digest"], digest);
    // Present now: the next run does not ask the registry.
    let before = reg.requests().len();
    assert_eq!(env.wharf(&["run", &name]).ok().stdout, HELLO_OUT);
    assert_eq!(reg.requests().len(), before, "{:?}", reg.requests());
}

#[test]
fn skopeo_pushed_busybox_image_pulls_into_wharf() {
    if !registry_tools() || !require("umoci") || !require("busybox") {
        return;
    }
    let reg = Registry::plain();
    let env = Env::new();
    let layout = busybox_oci_image(&env.scratch.path().join("busybox"));
    reg.skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        "tools/busybox:1",
    );
    let raw = reg.skopeo_inspect("tools/busybox:1", None, true).unwrap();
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    let config: Value =
        serde_json::from_slice(&reg.skopeo_inspect("tools/busybox:1", None, false).unwrap())
            .unwrap();

    let name = format!("{}/tools/busybox:1", reg.host());
    let pull = env.wharf(&["pull", &name]).ok();
    assert_eq!(digest_line(&pull), digest_of(&raw));
    let seen = inspect(&env, &name);
    assert_eq!(seen["Os"], "linux");
    assert_eq!(seen["Architecture"], config["Architecture"]);
    assert_eq!(
        seen["Config"]["Entrypoint"],
        json!(["/bin/busybox"]),
        "{seen}"
    );
    assert_eq!(stored(&env, &digest_of(&raw)).unwrap(), raw);
    for layer in manifest["layers"].as_array().unwrap() {
        let d = layer["digest"].as_str().unwrap();
        let data = stored(&env, d).unwrap_or_else(|| panic!("layer {d} not stored"));
        assert_eq!(digest_of(&data), d);
        assert_eq!(data.len() as u64, layer["size"].as_u64().unwrap());
        assert!(
            events(&pull.stderr, d).iter().any(|l| l.contains("pulled")),
            "no pulled event for {d}: {}",
            pull.stderr
        );
    }
    let c = manifest["config"]["digest"].as_str().unwrap();
    assert_eq!(seen["Id"], c);
    assert_eq!(digest_of(&stored(&env, c).unwrap()), c);
}

#[test]
fn push_to_a_second_repository_mounts_blobs() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::plain();
    let env = Env::new();
    env.build_example("hello", "hello");
    let first = format!("{}/team-a/hello:1", reg.host());
    let second = format!("{}/team-b/hello:1", reg.host());
    let digest = digest_line(&env.wharf(&["push", "hello", &first]).ok());
    let blobs = blobs_of(&stored_manifest(&env, "hello"));

    let before = reg.requests().len();
    let push = env.wharf(&["push", "hello", &second]).ok();
    assert_eq!(digest_line(&push), digest);
    for b in &blobs {
        assert!(
            events(&push.stderr, b)
                .iter()
                .any(|l| l.contains("mounted") && l.contains("team-a/hello")),
            "{b} not mounted from team-a/hello: {}",
            push.stderr
        );
    }
    let reqs = reg.requests()[before..].to_vec();
    let posts: Vec<_> = reqs.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), blobs.len(), "{reqs:?}");
    for p in posts {
        assert!(
            p.uri.starts_with("/v2/team-b/hello/blobs/uploads/?")
                && p.uri.contains("mount=sha256")
                && p.uri.contains("from=team-a")
                && p.status == 201,
            "{p:?}"
        );
    }
    assert!(
        !reqs
            .iter()
            .any(|r| r.method == "PATCH" || (r.method == "PUT" && r.uri.contains("/blobs/"))),
        "a blob was uploaded: {reqs:?}"
    );
    assert_eq!(reg.digest("team-b/hello:1"), digest);
}

#[test]
fn registry_errors_name_registry_repository_and_status() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::plain();
    reg.seed_hello("hello:1");
    let env = Env::new();
    let before = initialised_state(&env);
    let r = env
        .wharf(&["pull", &format!("{}/hello:nope", reg.host())])
        .fails(125, "404");
    for needle in [reg.host().as_str(), "hello", "MANIFEST_UNKNOWN"] {
        assert!(r.stderr.contains(needle), "{needle:?}: {}", r.stderr);
    }
    assert_eq!(env.store_state(), before);
    env.wharf(&["push", "nosuch", &format!("{}/nosuch:1", reg.host())])
        .fails(125, "no such image");
}

// ---------------------------------------------------------------------------
// TLS and basic auth.

#[test]
fn tls_basic_pull_without_credentials_suggests_login() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::tls_basic(USER, PASS);
    reg.seed_hello("hello:1");
    let env = Env::new();
    let before = initialised_state(&env);
    let r = env
        .wharf(&["pull", &format!("{}/hello:1", reg.host())])
        .fails(125, "401");
    assert!(
        r.stderr.contains(&format!("wharf login {}", reg.host())),
        "{}",
        r.stderr
    );
    assert_eq!(env.store_state(), before);
}

#[test]
fn login_checks_saves_privately_and_logout_forgets() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::tls_basic(USER, PASS);
    reg.seed_hello("hello:1");
    let host = reg.host();
    let env = Env::new();
    let auth_json = env.wharf_config().join("auth.json");

    // A wrong password is refused and nothing is saved.
    let r = login_stdin(&env, &host, USER, "wrong-Pa55").fails(125, "401");
    assert!(r.stderr.contains(&host), "{}", r.stderr);
    no_secret(&r, USER, "wrong-Pa55");
    assert_eq!(saved_auth(&env, &host), None);

    let r = login_stdin(&env, &host, USER, PASS).ok();
    no_secret(&r, USER, PASS);
    let mode = std::fs::metadata(&auth_json).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "auth.json mode {mode:o}");
    let text = std::fs::read_to_string(&auth_json).unwrap();
    assert!(!text.contains(PASS), "plain password saved: {text}");
    let good = base64(format!("{USER}:{PASS}").as_bytes());
    assert_eq!(saved_auth(&env, &host), Some(good.clone()));

    // A later wrong login keeps what was saved.
    login_stdin(&env, &host, USER, "wrong-again").fails(125, "401");
    assert_eq!(saved_auth(&env, &host), Some(good));

    // The saved credentials push; another store logs in with -p and pulls.
    env.build_example("hello", "hello");
    let dest = format!("{host}/hello:2");
    let push = env.wharf(&["push", "hello", &dest]).ok();
    no_secret(&push, USER, PASS);
    let digest = digest_line(&push);
    assert_eq!(reg.digest("hello:2"), digest);
    let other = Env::new();
    other.wharf(&["login", "-u", USER, "-p", PASS, &host]).ok();
    assert_eq!(digest_line(&other.wharf(&["pull", &dest]).ok()), digest);
    assert_eq!(other.wharf(&["run", &dest]).ok().stdout, HELLO_OUT);

    // Logout forgets them: the registry refuses again.
    env.wharf(&["logout", &host]).ok();
    assert_eq!(saved_auth(&env, &host), None);
    let r = env
        .wharf(&["pull", &format!("{host}/hello:1")])
        .fails(125, "401");
    no_secret(&r, USER, PASS);
}

#[test]
fn docker_config_credentials_are_used() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::tls_basic(USER, PASS);
    let digest = reg.seed_hello("hello:1");
    let host = reg.host();
    let name = format!("{host}/hello:1");
    for entry in [
        json!({ "auth": base64(format!("{USER}:{PASS}").as_bytes()) }),
        json!({ "username": USER, "password": PASS }),
    ] {
        let env = Env::new();
        docker_auths(&env, &host, entry.clone());
        let r = env.wharf(&["pull", &name]).ok();
        assert_eq!(digest_line(&r), digest, "{entry}");
        no_secret(&r, USER, PASS);
    }
}

#[test]
fn docker_credential_helper_is_asked() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::tls_basic(USER, PASS);
    let digest = reg.seed_hello("hello:1");
    let host = reg.host();
    let env = Env::new();
    let bin = env.scratch.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let asked = env.scratch.path().join("asked");
    let helper = bin.join("docker-credential-wharftest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread -r server\nprintf '%s\\n' \"$server\" >> {}\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASS}\"}}' \"$server\"\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    write_private(
        &env.docker_config().join("config.json"),
        &json!({ "credHelpers": { host.as_str(): "wharftest" } }),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = env.cmd(&["pull", &format!("{host}/hello:1")]);
    cmd.env("PATH", path);
    let r = Run::from(cmd.output().unwrap()).ok();
    assert_eq!(digest_line(&r), digest);
    no_secret(&r, USER, PASS);
    let asked = std::fs::read_to_string(&asked).unwrap();
    assert!(
        asked.lines().all(|l| l == host),
        "helper asked for {asked:?}"
    );
}

#[test]
fn non_loopback_registry_needs_a_trusted_certificate() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::tls_basic(USER, PASS);
    let Some(ext) = reg.external_host() else {
        eprintln!("skipping: this machine has no non-loopback IPv4 address");
        return;
    };
    let digest = reg.seed_hello("hello:1");
    let name = format!("{ext}/hello:1");
    let creds = json!({ "auth": base64(format!("{USER}:{PASS}").as_bytes()) });

    // Not loopback, CA unknown: refused on the certificate, nothing stored.
    let env = Env::new();
    docker_auths(&env, &ext, creds.clone());
    let before = initialised_state(&env);
    let r = env.wharf(&["pull", &name]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.to_lowercase().contains("certificate"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("wharf:")).count(),
        1
    );
    assert_eq!(env.store_state(), before);

    // --tls-verify=false allows it.
    let r = env.wharf(&["pull", "--tls-verify=false", &name]).ok();
    assert_eq!(digest_line(&r), digest);

    // So does the CA in registries.json, and `insecure` there.
    for entry in [
        json!({ "ca": reg.ca_pem_path() }),
        json!({ "insecure": true }),
    ] {
        let env = Env::new();
        docker_auths(&env, &ext, creds.clone());
        std::fs::write(
            env.wharf_config().join("registries.json"),
            json!({ "registries": { ext.as_str(): entry } }).to_string(),
        )
        .unwrap();
        let r = env.wharf(&["pull", &name]).ok();
        assert_eq!(digest_line(&r), digest, "{entry}");
    }
}

// ---------------------------------------------------------------------------
// Token auth.

#[test]
fn token_auth_login_push_mount_and_pull() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::token(TOKEN_USER, TOKEN_PASS);
    let tokens = reg.token_server();
    let host = reg.host();
    let env = Env::new();
    env.build_example("hello", "hello");

    login_stdin(&env, &host, TOKEN_USER, TOKEN_PASS).ok();
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.authorization && r.status == 200),
        "login did not get a token with the credentials: {:?}",
        tokens.requests()
    );

    let n = tokens.requests().len();
    let push = env
        .wharf(&["push", "hello", &format!("{host}/team/hello:1")])
        .ok();
    no_secret(&push, TOKEN_USER, TOKEN_PASS);
    let digest = digest_line(&push);
    let asked = tokens.requests()[n..].to_vec();
    assert!(
        asked
            .iter()
            .any(|r| r.authorization && r.asks("team/hello", &["pull", "push"])),
        "no push scope asked: {asked:?}"
    );
    assert_eq!(reg.digest("team/hello:1"), digest);

    // A push to another repository mounts, with pull on the source.
    let n = tokens.requests().len();
    let push = env
        .wharf(&["push", "hello", &format!("{host}/team/copy:1")])
        .ok();
    assert!(push.stderr.contains("mounted"), "{}", push.stderr);
    let asked = tokens.requests()[n..].to_vec();
    assert!(
        asked.iter().any(|r| r.authorization
            && r.asks("team/copy", &["pull", "push"])
            && r.asks("team/hello", &["pull"])),
        "mount source scope not asked: {asked:?}"
    );
    assert_eq!(reg.digest("team/copy:1"), digest);

    // Another store logs in and pulls with one token for the whole pull.
    let other = Env::new();
    login_stdin(&other, &host, TOKEN_USER, TOKEN_PASS).ok();
    let n = tokens.requests().len();
    let name = format!("{host}/team/hello:1");
    assert_eq!(digest_line(&other.wharf(&["pull", &name]).ok()), digest);
    let asked = tokens.requests()[n..].to_vec();
    let pulls: Vec<_> = asked
        .iter()
        .filter(|r| !r.actions("team/hello").is_empty())
        .collect();
    assert_eq!(pulls.len(), 1, "the token is cached per scope: {asked:?}");
    assert!(pulls[0].authorization);
    assert_eq!(pulls[0].actions("team/hello"), ["pull"], "{asked:?}");
    assert_eq!(other.wharf(&["run", &name]).ok().stdout, HELLO_OUT);
}

#[test]
fn token_auth_anonymous_pulls_only_public_repositories() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::token(TOKEN_USER, TOKEN_PASS);
    let tokens = reg.token_server();
    let host = reg.host();
    reg.seed_hello("team/hello:1");
    let digest = reg.seed_hello("public/hello:1");
    let env = Env::new();
    let before = initialised_state(&env);

    let n = tokens.requests().len();
    let r = env
        .wharf(&["pull", &format!("{host}/team/hello:1")])
        .fails(125, "401");
    assert!(
        r.stderr.contains(&format!("wharf login {host}")),
        "{}",
        r.stderr
    );
    assert_eq!(env.store_state(), before);
    let asked = tokens.requests()[n..].to_vec();
    assert!(
        asked.iter().all(|r| !r.authorization)
            && asked.iter().any(|r| r.actions("team/hello") == ["pull"]),
        "{asked:?}"
    );

    let name = format!("{host}/public/hello:1");
    assert_eq!(digest_line(&env.wharf(&["pull", &name]).ok()), digest);
    assert_eq!(env.wharf(&["run", &name]).ok().stdout, HELLO_OUT);
}

#[test]
fn token_realm_over_http_gets_no_credentials_from_an_https_registry() {
    if !registry_tools() {
        return;
    }
    // The registry answers HTTPS; its realm is plain HTTP.
    let reg = Registry::token_tls(TOKEN_USER, TOKEN_PASS);
    let tokens = reg.token_server();
    let host = reg.host();
    reg.seed_hello("team/hello:1");
    let digest = reg.seed_hello("public/hello:1");
    let env = Env::new();
    wharf_auths(&env, &host, TOKEN_USER, TOKEN_PASS);
    let before = initialised_state(&env);

    let n = tokens.requests().len();
    let r = env
        .wharf(&["pull", &format!("{host}/team/hello:1")])
        .fails(125, "401");
    no_secret(&r, TOKEN_USER, TOKEN_PASS);
    assert!(r.stderr.to_lowercase().contains("warn"), "{}", r.stderr);
    assert_eq!(env.store_state(), before);
    let asked = tokens.requests()[n..].to_vec();
    assert!(
        !asked.is_empty() && asked.iter().all(|r| !r.authorization),
        "credentials went to an HTTP realm: {asked:?}"
    );

    // Asked anonymously, the realm still grants what anonymous may have.
    let name = format!("{host}/public/hello:1");
    assert_eq!(digest_line(&env.wharf(&["pull", &name]).ok()), digest);
}

// ---------------------------------------------------------------------------
// Hostile registries.

#[test]
fn hostile_token_realm_on_another_host_gets_no_credentials() {
    let h = Hostile::start();
    let realm = Hostile::start();
    let img = TinyImage::new(b"realm");
    h.serve_image("app", "1", &img);
    // The registry is 127.0.0.1, the realm `localhost`: another host.
    h.require_bearer(
        "anonymous-token",
        &format!("http://localhost:{}/token", realm.port()),
        "hostile",
    );
    realm.route(
        "GET",
        "/token",
        Reply::new(200).json(&json!({ "token": "anonymous-token", "expires_in": 300 })),
    );
    let env = Env::new();
    wharf_auths(&env, &h.host(), USER, PASS);
    let r = env.wharf(&["pull", &format!("{}/app:1", h.host())]).ok();
    no_secret(&r, USER, PASS);
    assert_eq!(digest_line(&r), img.manifest_digest);
    assert!(r.stderr.to_lowercase().contains("warn"), "{}", r.stderr);

    let asked = realm.requests();
    assert!(!asked.is_empty(), "the realm was not asked");
    for q in &asked {
        assert_eq!(q.header("authorization"), None, "{q:?}");
        assert!(
            q.query_values("scope")
                .iter()
                .any(|s| s == "repository:app:pull"),
            "{q:?}"
        );
        assert_eq!(q.query_values("service"), ["hostile"], "{q:?}");
    }
    assert!(h
        .requests()
        .iter()
        .filter_map(|q| q.header("authorization"))
        .all(|a| a == "Bearer anonymous-token"));
}

#[test]
fn hostile_pinned_digest_mismatch_is_refused() {
    let h = Hostile::start();
    let img = TinyImage::new(b"real");
    let wanted = TinyImage::new(b"wanted");
    h.serve_image("app", "1", &img);
    // Asked for `wanted` by digest, the registry answers with `img`'s
    // manifest and claims it is `wanted`.
    h.route(
        "GET",
        &format!("/v2/app/manifests/{}", wanted.manifest_digest),
        Reply::new(200)
            .header("Content-Type", OCI_MANIFEST)
            .header("Docker-Content-Digest", &wanted.manifest_digest)
            .body(img.manifest.clone()),
    );
    let env = Env::new();
    let before = initialised_state(&env);
    let r = env
        .wharf(&[
            "pull",
            &format!("{}/app@{}", h.host(), wanted.manifest_digest),
        ])
        .fails(125, "digest");
    assert!(
        r.stderr.contains(short(&wanted.manifest_digest)),
        "{}",
        r.stderr
    );
    assert_eq!(env.store_state(), before);
    assert!(
        !h.requests().iter().any(|r| r.path().contains("/blobs/")),
        "blobs fetched for an unverified manifest"
    );
}

#[test]
fn hostile_docker_content_digest_mismatch_is_refused() {
    let h = Hostile::start();
    let img = TinyImage::new(b"real");
    h.serve_image("app", "1", &img);
    h.route(
        "GET",
        "/v2/app/manifests/1",
        Reply::new(200)
            .header("Content-Type", OCI_MANIFEST)
            .header("Docker-Content-Digest", &digest_of(b"something else"))
            .body(img.manifest.clone()),
    );
    let env = Env::new();
    let before = initialised_state(&env);
    env.wharf(&["pull", &format!("{}/app:1", h.host())])
        .fails(125, "digest");
    assert_eq!(env.store_state(), before);
}

#[test]
fn hostile_oversized_manifest_is_refused() {
    let h = Hostile::start();
    let img = TinyImage::new(b"x");
    let mut m: Value = serde_json::from_slice(&img.manifest).unwrap();
    m["annotations"] = json!({ "pad": "x".repeat(5 << 20) });
    let big = m.to_string().into_bytes();
    h.manifest("app", "big", OCI_MANIFEST, &big);
    h.route(
        "GET",
        "/v2/app/manifests/unsized",
        Reply::new(200)
            .header("Content-Type", OCI_MANIFEST)
            .body(big)
            .without_length(),
    );
    h.blob("app", &img.config_digest, &img.config);
    h.blob("app", &img.layer_digest, &img.layer);
    let env = Env::new();
    let before = initialised_state(&env);
    for tag in ["big", "unsized"] {
        let r = env.wharf(&["pull", &format!("{}/app:{tag}", h.host())]);
        assert_eq!(r.code, 125, "{tag}: {}", r.stderr);
        assert!(
            r.stderr.contains("4 MiB") || r.stderr.contains("too large"),
            "{tag}: {}",
            r.stderr
        );
        assert_eq!(env.store_state(), before, "{tag}");
    }
    assert!(!h.requests().iter().any(|r| r.path().contains("/blobs/")));
}

#[test]
fn hostile_oversized_config_is_refused() {
    let h = Hostile::start();
    let img = TinyImage::new(b"x");
    let config = {
        let mut c: Value = serde_json::from_slice(&img.config).unwrap();
        c["config"]["Labels"] = json!({ "pad": "x".repeat(21 << 20) });
        c.to_string().into_bytes()
    };
    let mut m: Value = serde_json::from_slice(&img.manifest).unwrap();
    m["config"] =
        json!({ "mediaType": OCI_CONFIG, "digest": digest_of(&config), "size": config.len() });
    let manifest = m.to_string().into_bytes();
    h.manifest("app", "1", OCI_MANIFEST, &manifest);
    h.blob("app", &digest_of(&config), &config);
    h.blob("app", &img.layer_digest, &img.layer);
    let env = Env::new();
    let before = initialised_state(&env);
    let r = env.wharf(&["pull", &format!("{}/app:1", h.host())]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert!(
        r.stderr.contains("20 MiB") || r.stderr.contains("too large"),
        "{}",
        r.stderr
    );
    only_verified_blobs_added(&env, &before, &[&digest_of(&config), &digest_of(&manifest)]);
}

#[test]
fn hostile_corrupt_layer_is_refused_then_retry_succeeds() {
    let h = Hostile::start();
    let img = TinyImage::new(&noise(64 << 10, 1));
    h.serve_image("app", "1", &img);
    let mut bad = img.layer.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0xff;
    h.blob("app", &img.layer_digest, &bad);
    let env = Env::new();
    let before = initialised_state(&env);
    let name = format!("{}/app:1", h.host());
    let r = env
        .wharf(&["pull", &name])
        .fails(125, short(&img.layer_digest));
    assert!(r.stderr.contains("digest"), "{}", r.stderr);
    only_verified_blobs_added(&env, &before, &[&img.layer_digest, &img.manifest_digest]);

    h.blob("app", &img.layer_digest, &img.layer);
    let r = env.wharf(&["pull", &name]).ok();
    assert_eq!(digest_line(&r), img.manifest_digest);
    assert_eq!(stored(&env, &img.layer_digest).unwrap(), img.layer);
    assert_eq!(stored(&env, &img.manifest_digest).unwrap(), img.manifest);
}

#[test]
fn hostile_truncated_layer_is_refused_then_retry_succeeds() {
    let h = Hostile::start();
    let img = TinyImage::new(&noise(300 << 10, 2));
    h.serve_image("app", "1", &img);
    h.route(
        "GET",
        &format!("/v2/app/blobs/{}", img.layer_digest),
        Reply::new(200)
            .header("Content-Type", "application/octet-stream")
            .body(img.layer.clone())
            .truncate_after(img.layer.len() / 3),
    );
    let env = Env::new();
    let before = initialised_state(&env);
    let name = format!("{}/app:1", h.host());
    let r = env.wharf(&["pull", &name]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    assert_eq!(
        r.stderr.lines().filter(|l| l.starts_with("wharf:")).count(),
        1
    );
    only_verified_blobs_added(&env, &before, &[&img.layer_digest, &img.manifest_digest]);

    h.blob("app", &img.layer_digest, &img.layer);
    let r = env.wharf(&["pull", &name]).ok();
    assert_eq!(digest_line(&r), img.manifest_digest);
    assert_eq!(stored(&env, &img.layer_digest).unwrap(), img.layer);
}

#[test]
fn hostile_redirected_blob_download_drops_credentials() {
    let h = Hostile::start();
    let storage = Hostile::start();
    let img = TinyImage::new(&noise(32 << 10, 3));
    h.serve_image("app", "1", &img);
    h.require_basic(USER, PASS);
    let location = format!("{}/storage/{}", storage.url(), img.layer_digest);
    h.route(
        "GET",
        &format!("/v2/app/blobs/{}", img.layer_digest),
        Reply::redirect(307, &location),
    );
    storage.route(
        "GET",
        &format!("/storage/{}", img.layer_digest),
        Reply::new(200)
            .header("Content-Type", "application/octet-stream")
            .body(img.layer.clone()),
    );
    let env = Env::new();
    wharf_auths(&env, &h.host(), USER, PASS);
    let r = env.wharf(&["pull", &format!("{}/app:1", h.host())]).ok();
    no_secret(&r, USER, PASS);
    assert_eq!(digest_line(&r), img.manifest_digest);
    assert_eq!(stored(&env, &img.layer_digest).unwrap(), img.layer);

    let creds = basic_auth(USER, PASS);
    let asked = h.requests();
    assert!(
        asked.iter().any(|r| r.path().ends_with(&img.layer_digest)
            && r.header("authorization") == Some(creds.as_str())),
        "the registry itself got the credentials: {asked:?}"
    );
    let fetched = storage.requests();
    assert!(!fetched.is_empty(), "the redirect was not followed");
    for r in &fetched {
        assert_eq!(r.header("authorization"), None, "{r:?}");
        assert!(
            !r.headers.iter().any(|(_, v)| v.contains(&creds[6..])),
            "credentials leaked to storage: {r:?}"
        );
    }
}

#[test]
fn hostile_redirect_loop_stops() {
    let h = Hostile::start();
    let img = TinyImage::new(b"loop");
    h.serve_image("app", "1", &img);
    let path = format!("/v2/app/blobs/{}", img.layer_digest);
    h.route(
        "GET",
        &path,
        Reply::redirect(302, &format!("{}{path}", h.url())),
    );
    let env = Env::new();
    let before = initialised_state(&env);
    let r = env.wharf(&["pull", &format!("{}/app:1", h.host())]);
    assert_eq!(r.code, 125, "{}", r.stderr);
    let hops = h
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path() == path)
        .count();
    assert!((2..=11).contains(&hops), "{hops} requests for one blob");
    only_verified_blobs_added(&env, &before, &[&img.layer_digest, &img.manifest_digest]);
}

#[test]
fn hostile_unknown_layer_media_type_is_refused() {
    let h = Hostile::start();
    let img = TinyImage::with_layer_media_type(b"x", "application/vnd.example.mystery.v1");
    h.serve_image("app", "1", &img);
    let env = Env::new();
    let before = initialised_state(&env);
    env.wharf(&["pull", &format!("{}/app:1", h.host())])
        .fails(125, "media type");
    assert_eq!(env.store_state(), before);
    assert!(
        !h.requests().iter().any(|r| r.path().contains("/blobs/")),
        "blobs fetched for an unusable manifest"
    );
}

#[test]
fn hostile_index_without_the_platform_lists_its_platforms() {
    let h = Hostile::start();
    let (arm, ppc) = (
        TinyImage::for_platform(b"arm", "linux", "arm64"),
        TinyImage::for_platform(b"ppc", "linux", "ppc64le"),
    );
    h.serve_image("app", "arm", &arm);
    h.serve_image("app", "ppc", &ppc);
    let index = oci_index(&[(&arm, "linux", "arm64"), (&ppc, "linux", "ppc64le")]);
    h.manifest("app", "1", OCI_INDEX, &index);
    let env = Env::new();
    let before = initialised_state(&env);
    let name = format!("{}/app:1", h.host());
    for args in [
        vec!["pull", name.as_str()],
        vec!["pull", "--platform", "linux/s390x", name.as_str()],
    ] {
        let r = env.wharf(&args).fails(125, "linux/arm64");
        assert!(r.stderr.contains("linux/ppc64le"), "{}", r.stderr);
        assert_eq!(env.store_state(), before);
    }
}

#[test]
fn hostile_index_resolves_to_the_wasm_entry_or_the_asked_platform() {
    let h = Hostile::start();
    let (arm, wasm) = (
        TinyImage::for_platform(b"arm", "linux", "arm64"),
        TinyImage::new(b"wasm"),
    );
    h.serve_image("app", "arm", &arm);
    h.serve_image("app", "wasm", &wasm);
    let index = oci_index(&[(&arm, "linux", "arm64"), (&wasm, "wasip1", "wasm")]);
    h.manifest("app", "1", OCI_INDEX, &index);
    let name = format!("{}/app:1", h.host());

    let env = Env::new();
    let r = env.wharf(&["pull", &name]).ok();
    let last = digest_line(&r);
    assert!(
        last == digest_of(&index) || last == wasm.manifest_digest,
        "{last}"
    );
    assert_eq!(stored(&env, &wasm.layer_digest).unwrap(), wasm.layer);
    assert_eq!(stored(&env, &arm.manifest_digest), None);
    assert_eq!(inspect(&env, &name)["Os"], "wasip1");
    assert!(
        !h.requests()
            .iter()
            .any(|r| r.path().ends_with(&arm.manifest_digest)
                || r.path().ends_with(&arm.layer_digest))
    );

    let env = Env::new();
    env.wharf(&["pull", "--platform", "linux/arm64", &name])
        .ok();
    assert_eq!(stored(&env, &arm.layer_digest).unwrap(), arm.layer);
    assert_eq!(stored(&env, &wasm.layer_digest), None);
    assert_eq!(inspect(&env, &name)["Architecture"], "arm64");
}

#[test]
fn hostile_ambiguous_index_is_refused() {
    let h = Hostile::start();
    let img = TinyImage::new(b"x");
    h.serve_image("app", "child", &img);
    let mut v: Value = serde_json::from_slice(&oci_index(&[(&img, "wasip1", "wasm")])).unwrap();
    v["layers"] = json!([{ "mediaType": OCI_LAYER_GZIP, "digest": img.layer_digest, "size": img.layer.len() }]);
    h.manifest("app", "1", OCI_INDEX, v.to_string().as_bytes());
    let env = Env::new();
    let before = initialised_state(&env);
    env.wharf(&["pull", &format!("{}/app:1", h.host())])
        .fails(125, "ambiguous");
    assert_eq!(env.store_state(), before);
}

#[test]
fn large_blobs_go_up_in_chunks_and_come_back_intact() {
    if !registry_tools() {
        return;
    }
    let reg = Registry::plain();
    let env = Env::new();
    // A layer just over the 64 MiB chunk size: PATCH, PATCH, PUT.
    let big = noise((64 << 20) + (1 << 20), 7);
    let ctx = env.context(
        "big",
        &[
            (
                "Dockerfile",
                b"FROM scratch\nCOPY big.bin /big.bin\n" as &[u8],
            ),
            ("big.bin", &big),
        ],
    );
    env.wharf(&["build", "-q", "-t", "big", ctx.to_str().unwrap()])
        .ok();
    let dest = format!("{}/big:1", reg.host());
    let push = env.wharf(&["push", "big", &dest]).ok();
    let digest = digest_line(&push);
    let patches = reg
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && (200..300).contains(&r.status))
        .count();
    assert!(patches >= 1, "no chunked upload: {:?}", reg.requests());
    let seen: Value =
        serde_json::from_slice(&reg.skopeo_inspect("big:1", None, false).unwrap()).unwrap();
    assert_eq!(seen["Digest"], digest);
    let other = Env::new();
    other.wharf(&["pull", &dest]).ok();
    let layer = &blobs_of(&stored_manifest(&other, &dest))[1];
    assert_eq!(
        stored(&other, layer).unwrap(),
        stored(&env, layer).unwrap(),
        "the layer came back byte for byte"
    );
}

#[test]
fn hostile_foreign_layer_urls_get_no_credentials() {
    let h = Hostile::start();
    let cdn = Hostile::start();
    let img = TinyImage::with_layer_media_type(
        &noise(16 << 10, 11),
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    );
    // The manifest points the foreign layer at the CDN; the registry
    // itself does not have it.
    let mut manifest: Value = serde_json::from_slice(&img.manifest).unwrap();
    let url = format!("{}/layers/{}", cdn.url(), img.layer_digest);
    manifest["layers"][0]["urls"] = json!([url]);
    let bytes = serde_json::to_vec(&manifest).unwrap();
    h.manifest("app", "1", OCI_MANIFEST, &bytes);
    h.blob("app", &img.config_digest, &img.config);
    h.require_basic(USER, PASS);
    cdn.route(
        "GET",
        &format!("/layers/{}", img.layer_digest),
        Reply::new(200).body(img.layer.clone()),
    );
    let env = Env::new();
    wharf_auths(&env, &h.host(), USER, PASS);
    let r = env.wharf(&["pull", &format!("{}/app:1", h.host())]).ok();
    no_secret(&r, USER, PASS);
    assert_eq!(digest_line(&r), digest_of(&bytes));
    assert_eq!(stored(&env, &img.layer_digest).unwrap(), img.layer);
    let fetched = cdn.requests();
    assert!(!fetched.is_empty(), "the foreign URL was not used");
    for req in &fetched {
        assert_eq!(req.header("authorization"), None, "{req:?}");
    }
}
