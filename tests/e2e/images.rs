//! Image commands: images, tag, rmi, inspect, save, load, and the store's
//! integrity and interoperability.

use std::io::Write;

use crate::harness::{require, Env};

#[test]
fn tag_list_inspect_and_remove() {
    let env = Env::new();
    env.build_example("hello", "hello");
    env.wharf(&["tag", "hello", "localhost:5000/team/hello:v1"])
        .ok();
    let list = env.wharf(&["images", "--format", "json"]).ok().stdout;
    let rows: Vec<serde_json::Value> = list
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .any(|r| r["Repository"] == "localhost:5000/team/hello" && r["Tag"] == "v1"));
    assert_eq!(rows[0]["ID"], rows[1]["ID"]);
    assert_eq!(
        rows[0]["Labels"]["org.opencontainers.image.description"],
        "wharf hello example"
    );
    // Docker's filters: a reference pattern (`*` does not cross `/`), a
    // label, dangling; an unknown key is an error.
    let names = |filters: &[&str]| {
        let mut args = vec!["images", "--format", "json"];
        for f in filters {
            args.extend(["--filter", f]);
        }
        env.wharf(&args)
            .ok()
            .stdout
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                format!(
                    "{}:{}",
                    v["Repository"].as_str().unwrap(),
                    v["Tag"].as_str().unwrap()
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&["reference=hello"]), ["hello:latest"]);
    assert_eq!(
        names(&["reference=*/*/*:v*"]),
        ["localhost:5000/team/hello:v1"]
    );
    assert!(names(&["reference=*:v1"]).is_empty());
    assert_eq!(
        names(&["label=org.opencontainers.image.description"]).len(),
        2
    );
    assert!(names(&["label=org.opencontainers.image.description=other"]).is_empty());
    assert!(names(&["dangling=true"]).is_empty());
    env.wharf(&["images", "-f", "size=1"])
        .fails(125, "invalid filter \"size\"");
    // Several names: one array, as docker inspect; a missing one is
    // reported and fails the command after the others are printed.
    let both: serde_json::Value = serde_json::from_str(
        &env.wharf(&["inspect", "hello", "localhost:5000/team/hello:v1"])
            .ok()
            .stdout,
    )
    .unwrap();
    assert_eq!(both.as_array().unwrap().len(), 2);
    let partial = env
        .wharf(&["inspect", "hello", "missing"])
        .fails(125, "no such image: missing");
    let found: serde_json::Value = serde_json::from_str(&partial.stdout).unwrap();
    assert_eq!(found[0]["RepoTags"][0], "hello:latest");
    let id = rows[0]["ID"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")[..12]
        .to_owned();
    // An id with two names needs --force.
    env.wharf(&["rmi", &id]).fails(125, "ambiguous");
    env.wharf(&["run", "hello"]).ok();
    env.wharf(&["rmi", "hello"]).ok();
    assert_eq!(
        env.wharf(&["run", "localhost:5000/team/hello:v1"])
            .ok()
            .stdout,
        "Hello from wharf!\ngreeting: ahoy\n"
    );
    env.wharf(&["rmi", "localhost:5000/team/hello:v1"]).ok();
    assert_eq!(env.wharf(&["images", "-q"]).ok().stdout, "");
    // The last name gone, blobs and derived data go too.
    let leftovers = env
        .store_state()
        .into_iter()
        .filter(|(p, _)| {
            p.starts_with("blobs/")
                || p.starts_with("wharf/snapshots")
                || p.starts_with("wharf/modules")
        })
        .count();
    assert_eq!(leftovers, 0);
    env.wharf(&["inspect", "hello"]).fails(125, "no such image");
}

/// `skopeo inspect TARGET`, which must succeed.
fn skopeo_inspect(target: &str) -> std::process::Output {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", target])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn save_and_load_round_trip_through_skopeo() {
    let env = Env::new();
    env.build_example("hello", "hello");
    let archive = env.path("hello.tar");
    env.wharf(&["save", "-o", &archive, "hello"]).ok();
    if require("skopeo") {
        let out = skopeo_inspect(&format!("oci-archive:{archive}"));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["Os"], "wasip1");
        assert_eq!(v["Architecture"], "wasm");
        // skopeo reads the store itself as an OCI layout.
        let layout = format!(
            "oci:{}:docker.io/library/hello:latest",
            env.root.path().display()
        );
        skopeo_inspect(&layout);
    }
    let other = Env::new();
    let r = other.wharf(&["load", "-i", &archive]).ok();
    assert!(r.stdout.contains("hello:latest"), "{}", r.stdout);
    assert_eq!(
        other.wharf(&["run", "hello"]).ok().stdout,
        "Hello from wharf!\ngreeting: ahoy\n"
    );
}

#[test]
fn corrupt_blobs_are_detected_and_change_nothing() {
    let env = Env::new();
    env.build_example("hello", "hello");
    // Flip a byte in every layer-sized blob (the manifest/config are JSON).
    for e in std::fs::read_dir(env.root.path().join("blobs/sha256"))
        .unwrap()
        .flatten()
    {
        let bytes = std::fs::read(e.path()).unwrap();
        if bytes.first() != Some(&b'{') {
            let mut b = bytes.clone();
            let n = b.len() / 2;
            b[n] ^= 0xff;
            std::fs::write(e.path(), b).unwrap();
        }
    }
    let before = env.store_state();
    env.wharf(&["run", "hello"]).fails(125, "corrupt");
    assert_eq!(
        env.store_state(),
        before,
        "no snapshot or cache left behind"
    );
}

/// A docker-save style archive whose layer tries to climb out.
fn hostile_archive(path: &str, entry: &str, link: Option<&str>) {
    let mut layer = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    match link {
        Some(t) => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.as_gnu_mut().unwrap().linkname[..t.len()].copy_from_slice(t.as_bytes());
            h.as_gnu_mut().unwrap().name[..entry.len()].copy_from_slice(entry.as_bytes());
            h.set_cksum();
            layer.append(&h, &b""[..]).unwrap();
            let mut f = tar::Header::new_gnu();
            f.set_size(5);
            f.set_mode(0o644);
            let name = format!("{entry}/pwned");
            f.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
            f.set_cksum();
            layer.append(&f, &b"pwned"[..]).unwrap();
        }
        None => {
            h.set_size(5);
            h.as_gnu_mut().unwrap().name[..entry.len()].copy_from_slice(entry.as_bytes());
            h.set_cksum();
            layer.append(&h, &b"pwned"[..]).unwrap();
        }
    }
    let layer = layer.into_inner().unwrap();
    let diff = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&layer))
    );
    let config = serde_json::json!({
        "architecture": "wasm", "os": "wasip1",
        "config": { "Entrypoint": ["/x.wasm"] },
        "rootfs": { "type": "layers", "diff_ids": [diff] },
    })
    .to_string();
    let manifest = serde_json::json!([{ "Config": "config.json", "RepoTags": ["evil:latest"], "Layers": ["layer/layer.tar"] }]).to_string();
    let mut ar = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in [
        ("manifest.json", manifest.as_bytes()),
        ("config.json", config.as_bytes()),
        ("layer/layer.tar", &layer[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        ar.append_data(&mut h, name, data).unwrap();
    }
    ar.into_inner().unwrap().flush().unwrap();
}

#[test]
fn hostile_layers_are_rejected_without_touching_the_host() {
    let env = Env::new();
    let target = env.path("victim");
    std::fs::create_dir_all(&target).unwrap();
    let cases = [
        ("../../../../../../../../../tmp/wharf-pwned", None),
        ("link", Some(target.as_str())),
        ("up", Some("../../../../../../../../..")),
    ];
    for (i, (entry, link)) in cases.iter().enumerate() {
        let archive = env.path(&format!("evil{i}.tar"));
        hostile_archive(&archive, entry, *link);
        env.wharf(&["load", "-i", &archive]).ok();
        let before = env.store_state();
        let r = env.wharf(&["run", "evil"]);
        assert_eq!(r.code, 125, "{entry}: {}", r.stderr);
        assert!(
            r.stderr.contains("rejected") || r.stderr.contains("outside"),
            "{entry}: {}",
            r.stderr
        );
        assert_eq!(env.store_state(), before, "{entry}: store changed");
        assert!(!std::path::Path::new(&format!("{target}/pwned")).exists());
        assert!(!std::path::Path::new("/tmp/wharf-pwned").exists());
        assert!(!std::path::Path::new("/pwned").exists());
    }
}
