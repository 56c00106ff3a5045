//! Capability sandboxing seen from inside a guest: read-only mappings,
//! escapes, the image filesystem and the hidden entrypoint module.

use crate::harness::Env;

fn setup() -> (Env, String, String) {
    let env = Env::new();
    env.probe();
    let ro = env.path("ro");
    let rw = env.path("rw");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::create_dir_all(&rw).unwrap();
    std::fs::write(format!("{ro}/file"), "original").unwrap();
    (env, ro, rw)
}

#[test]
fn read_only_mappings_refuse_every_write() {
    let (env, ro, rw) = setup();
    let vro = format!("{ro}:/ro:ro");
    let vrw = format!("{rw}:/rw");
    let run = |args: &[&str]| {
        let mut a = vec!["run", "-v", &vro, "-v", &vrw, "probe"];
        a.extend_from_slice(args);
        env.wharf(&a)
    };
    assert_eq!(run(&["cat", "/ro/file"]).ok().stdout, "original");
    for op in [
        vec!["write", "/ro/file", "x"],
        vec!["write", "/ro/new", "x"],
        vec!["append", "/ro/file", "x"],
        vec!["truncate", "/ro/file"],
        vec!["rm", "/ro/file"],
        vec!["mkdir", "/ro/d"],
        vec!["rename", "/ro/file", "/rw/stolen"],
        vec!["symlink", "file", "/ro/link"],
    ] {
        let r = run(&op);
        assert_ne!(r.code, 0, "{op:?} succeeded: {}", r.stdout);
    }
    assert_eq!(
        std::fs::read_to_string(format!("{ro}/file")).unwrap(),
        "original"
    );
    assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 1);
    assert!(!std::path::Path::new(&format!("{rw}/stolen")).exists());
    // A hard link from the read-only mapping into the writable one would let
    // the guest write the read-only file through the link.
    let r = run(&["hardlink", "/ro/file", "/rw/link"]);
    assert_ne!(r.code, 0, "hardlink across mappings succeeded");
    // The writable mapping works and the host sees the result.
    run(&["write", "/rw/out", "from guest"]).ok();
    assert_eq!(
        std::fs::read_to_string(format!("{rw}/out")).unwrap(),
        "from guest"
    );
}

#[test]
fn nothing_outside_the_mappings_is_reachable() {
    let (env, _ro, rw) = setup();
    let secret = env.path("secret");
    std::fs::write(&secret, "host secret").unwrap();
    std::os::unix::fs::symlink(&secret, format!("{rw}/abs-link")).unwrap();
    std::os::unix::fs::symlink("../secret", format!("{rw}/rel-link")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", format!("{rw}/dangling")).unwrap();
    let vrw = format!("{rw}:/rw");
    for path in [
        "/rw/../secret",
        "/rw/abs-link",
        "/rw/rel-link",
        "/rw/dangling/x",
        "/etc/passwd",
        "/rw/abs-link/",
        "../../../../etc/passwd",
    ] {
        let r = env.wharf(&["run", "-v", &vrw, "probe", "cat", path]);
        assert_ne!(r.code, 0, "{path} was readable: {}", r.stdout);
        assert!(
            !r.stdout.contains("host secret") && !r.stdout.contains("root:"),
            "{path}: {}",
            r.stdout
        );
    }
    let r = env.wharf(&[
        "run",
        "-v",
        &vrw,
        "probe",
        "symlink",
        "/etc/passwd",
        "/rw/planted",
    ]);
    if r.code == 0 {
        // Planting an absolute link is harmless only if it cannot be followed.
        assert_ne!(
            env.wharf(&["run", "-v", &vrw, "probe", "cat", "/rw/planted"])
                .code,
            0
        );
    }
    let r = env.wharf(&["run", "-v", &vrw, "probe", "write", "/rw/../escaped", "x"]);
    assert_ne!(r.code, 0);
    assert!(!env.scratch.path().join("escaped").exists());
}

#[test]
fn image_filesystem_is_read_only_and_hides_the_module() {
    let env = Env::new();
    env.probe();
    assert_eq!(
        env.wharf(&["run", "probe", "cat", "/data/hello.txt"])
            .ok()
            .stdout,
        "image data\n"
    );
    assert_ne!(
        env.wharf(&["run", "probe", "write", "/data/hello.txt", "x"])
            .code,
        0
    );
    assert_ne!(env.wharf(&["run", "probe", "write", "/new", "x"]).code, 0);
    assert_eq!(
        env.wharf(&["run", "probe", "exists", "/probe.wasm"])
            .ok()
            .stdout,
        "no\n"
    );
    assert_eq!(
        env.wharf(&["run", "probe", "ls", "/"]).ok().stdout,
        "data\n"
    );
    // And the next run sees the pristine image.
    assert_eq!(
        env.wharf(&["run", "probe", "cat", "/data/hello.txt"])
            .ok()
            .stdout,
        "image data\n"
    );
}

#[test]
fn bad_mappings_fail_before_start() {
    let env = Env::new();
    env.probe();
    let missing = env.path("missing");
    env.wharf(&["run", "-v", &format!("{missing}:/m"), "probe", "ls", "/m"])
        .fails(125, &missing);
    let file = env.path("plain-file");
    std::fs::write(&file, "x").unwrap();
    env.wharf(&["run", "-v", &format!("{file}:/m"), "probe", "ls", "/m"])
        .fails(125, "not a directory");
    env.wharf(&["run", "-v", "relative-guest", "probe"])
        .fails(125, "HOST:GUEST");
}
