//! `wharf build`: Dockerfile semantics, cache, reproducibility, bad input.

use crate::harness::{examples, probe_wasm, Env};

#[test]
fn hello_builds_and_runs_end_to_end() {
    let env = Env::new();
    env.build_example("hello", "hello");
    let r = env.wharf(&["run", "hello", "a", "b"]).ok();
    assert_eq!(r.stdout, "Hello from wharf!\nargs: a b\ngreeting: ahoy\n");
    let v: serde_json::Value =
        serde_json::from_str(&env.wharf(&["inspect", "hello"]).ok().stdout).unwrap();
    assert_eq!(v[0]["Os"], "wasip1");
    assert_eq!(v[0]["Architecture"], "wasm");
    assert_eq!(v[0]["Config"]["Entrypoint"][0], "/hello.wasm");
    assert_eq!(
        v[0]["Config"]["Labels"]["org.opencontainers.image.description"],
        "wharf hello example"
    );
}

#[test]
fn component_images_are_wasip2() {
    let env = Env::new();
    env.build_example("hello-p2", "hello-p2");
    let r = env.wharf(&["run", "hello-p2", "x"]).ok();
    assert_eq!(r.stdout, "Hello from a wharf component!\nargs: x\n");
    let v: serde_json::Value =
        serde_json::from_str(&env.wharf(&["inspect", "hello-p2"]).ok().stdout).unwrap();
    assert_eq!(v[0]["Os"], "wasip2");
}

#[test]
fn rebuild_is_cached_and_digests_are_reproducible() {
    let a = Env::new();
    let b = Env::new();
    let ctx = examples().join("hello");
    let first = a
        .wharf(&["build", "-t", "hello", ctx.to_str().unwrap()])
        .ok();
    assert!(!first.stderr.contains("CACHED"));
    let again = a
        .wharf(&["build", "-t", "hello", ctx.to_str().unwrap()])
        .ok();
    assert_eq!(
        again.stderr.matches("CACHED").count(),
        4,
        "{}",
        again.stderr
    );
    assert_eq!(first.stdout, again.stdout);
    let other = b
        .wharf(&["build", "--no-cache", "-t", "hello", ctx.to_str().unwrap()])
        .ok();
    assert!(!other.stderr.contains("CACHED"));
    assert_eq!(first.stdout, other.stdout, "same context, same image id");
    let digest = |e: &Env| {
        let v: serde_json::Value =
            serde_json::from_str(&e.wharf(&["inspect", "hello"]).ok().stdout).unwrap();
        v[0]["Descriptor"]["digest"].as_str().unwrap().to_owned()
    };
    assert_eq!(digest(&a), digest(&b));
}

#[test]
fn build_args_are_part_of_the_cache_key() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", b"FROM scratch\nARG V=one\nLABEL v=$V\n")],
    );
    let label = |v: &str| {
        env.wharf(&[
            "build",
            "--build-arg",
            &format!("V={v}"),
            "-t",
            "lbl",
            ctx.to_str().unwrap(),
        ])
        .ok();
        let out: serde_json::Value =
            serde_json::from_str(&env.wharf(&["inspect", "lbl"]).ok().stdout).unwrap();
        out[0]["Config"]["Labels"]["v"].as_str().unwrap().to_owned()
    };
    assert_eq!(label("one"), "one");
    assert_eq!(label("two"), "two");
}

#[test]
fn wasm_run_steps_change_the_filesystem() {
    let env = Env::new();
    env.build_example("build-step", "build-step");
    let probe = std::fs::read(probe_wasm()).unwrap();
    let ctx = env.context(
        "ctx",
        &[
            ("probe.wasm", &probe),
            (
                "Dockerfile",
                b"FROM build-step\nCOPY probe.wasm /probe.wasm\nENTRYPOINT [\"/probe.wasm\"]\n",
            ),
        ],
    );
    env.wharf(&["build", "-t", "check", ctx.to_str().unwrap()])
        .ok();
    assert_eq!(
        env.wharf(&["run", "check", "cat", "/generated.txt"])
            .ok()
            .stdout,
        "made at build time\n"
    );
    assert_eq!(
        env.wharf(&["run", "check", "cat", "/second.txt"])
            .ok()
            .stdout,
        "shell-form-too\n"
    );
    assert_eq!(
        env.wharf(&["run", "check", "exists", "/tmp-remove-me"])
            .ok()
            .stdout,
        "no\n"
    );
}

#[test]
fn multi_stage_args_env_and_dockerignore() {
    let env = Env::new();
    let probe = std::fs::read(probe_wasm()).unwrap();
    let dockerfile = br#"# syntax=docker/dockerfile:1
ARG BASE=scratch
FROM ${BASE} AS files
ARG WHO=nobody
ENV GREETING="hello ${WHO}" \
    EMPTY=${UNSET:-fallback}
COPY *.txt /texts/
COPY dir/ /copied/

FROM scratch
COPY --from=files /texts/a.txt /a.txt
COPY --from=files /copied /copied
COPY --chmod=600 probe.wasm /bin/probe.wasm
ENV WHO=${WHO:-unset}
WORKDIR /bin
ENTRYPOINT ["/bin/probe.wasm"]
CMD ["env"]
"#;
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", dockerfile),
            ("a.txt", b"A\n"),
            ("b.txt", b"B\n"),
            ("secret.txt", b"S\n"),
            ("dir/keep", b"K\n"),
            ("dir/drop.log", b"D\n"),
            ("probe.wasm", &probe),
            (".dockerignore", b"secret.txt\n**/*.log\n"),
        ],
    );
    env.wharf(&[
        "build",
        "--build-arg",
        "WHO=wharf",
        "-t",
        "multi",
        ctx.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        env.wharf(&["run", "multi", "cat", "/a.txt"]).ok().stdout,
        "A\n"
    );
    assert_eq!(
        env.wharf(&["run", "multi", "ls", "/copied"]).ok().stdout,
        "keep\n"
    );
    // The final stage does not inherit the first stage's ENV or ARG.
    let out = env.wharf(&["run", "multi"]).ok().stdout;
    assert!(out.contains("WHO=unset"), "{out}");
    assert!(!out.contains("GREETING"), "{out}");
    let v: serde_json::Value =
        serde_json::from_str(&env.wharf(&["inspect", "multi"]).ok().stdout).unwrap();
    assert_eq!(v[0]["Config"]["WorkingDir"], "/bin");
    assert_eq!(v[0]["Config"]["Cmd"][0], "env");
    // Stage 1 content, inspected through a build that uses it as the final stage.
    let df2 = String::from_utf8_lossy(dockerfile).replace(
        "FROM scratch\nCOPY --from",
        "FROM files AS last\nCOPY --from",
    );
    std::fs::write(ctx.join("Dockerfile"), df2).unwrap();
    env.wharf(&[
        "build",
        "--build-arg",
        "WHO=wharf",
        "-t",
        "stage1",
        ctx.to_str().unwrap(),
    ])
    .ok();
    let envs = env
        .wharf(&["run", "--entrypoint", "/bin/probe.wasm", "stage1", "env"])
        .ok()
        .stdout;
    assert!(envs.contains("GREETING=hello wharf\n"), "{envs}");
    assert!(envs.contains("EMPTY=fallback\n"), "{envs}");
    let texts = env
        .wharf(&[
            "run",
            "--entrypoint",
            "/bin/probe.wasm",
            "stage1",
            "ls",
            "/texts",
        ])
        .ok()
        .stdout;
    assert_eq!(texts, "a.txt\nb.txt\n", "secret.txt is ignored");
}

#[test]
fn target_builds_the_named_stage_and_skips_later_ones() {
    let env = Env::new();
    let probe = std::fs::read(probe_wasm()).unwrap();
    // The last stage would fail (its COPY source is missing): with
    // --target it never runs.
    let dockerfile = b"FROM scratch AS Base
COPY probe.wasm /bin/probe.wasm
ENTRYPOINT [\"/bin/probe.wasm\"]

FROM base AS test
COPY test.txt /test.txt

FROM scratch
COPY missing.txt /missing.txt
";
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", dockerfile),
            ("probe.wasm", &probe),
            ("test.txt", b"T\n"),
        ],
    );
    let ctx = ctx.to_str().unwrap();
    env.wharf(&["build", "-t", "all", ctx])
        .fails(125, "missing.txt");
    // Stage names are case-insensitive, as Docker's.
    let run = env
        .wharf(&["build", "--target", "TEST", "-t", "t", ctx])
        .ok();
    assert!(run.stderr.contains("[5/5] COPY test.txt"), "{}", run.stderr);
    assert!(!run.stderr.contains("missing"), "{}", run.stderr);
    assert_eq!(
        env.wharf(&["run", "t", "cat", "/test.txt"]).ok().stdout,
        "T\n"
    );
    env.wharf(&["build", "--target", "base", "-t", "b", ctx])
        .ok();
    assert_eq!(
        env.wharf(&["run", "b", "exists", "/test.txt"]).ok().stdout,
        "no\n"
    );
    let before = env.store_state();
    env.wharf(&["build", "--target", "nope", "-t", "n", ctx])
        .fails(125, "target stage \"nope\" could not be found");
    assert_eq!(env.store_state(), before, "a failed build changes nothing");
}

#[test]
fn artifact_format_runs() {
    let env = Env::new();
    let ctx = examples().join("hello");
    env.wharf(&[
        "build",
        "--format",
        "artifact",
        "-t",
        "art",
        ctx.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(
        env.wharf(&["run", "art"]).ok().stdout,
        "Hello from wharf!\n"
    );
    assert_eq!(
        env.wharf(&["run", "art", "x", "y"]).ok().stdout,
        "Hello from wharf!\nargs: x y\n"
    );
    let v: serde_json::Value =
        serde_json::from_str(&env.wharf(&["inspect", "art"]).ok().stdout).unwrap();
    assert_eq!(v[0]["WasmModule"]["MediaType"], "application/wasm");
}

#[test]
fn malformed_dockerfile_names_file_line_and_text() {
    let env = Env::new();
    env.build_example("hello", "hello");
    let before = env.store_state();
    let ctx = env.context(
        "bad",
        &[
            (
                "Dockerfile",
                b"FROM scratch\n# comment\nCOPY a \\\n  /b\nFROBNICATE now\n",
            ),
            ("a", b"x"),
        ],
    );
    let r = env
        .wharf(&["build", "-t", "bad", ctx.to_str().unwrap()])
        .fails(125, "Dockerfile:5");
    assert!(r.stderr.contains("FROBNICATE now"), "{}", r.stderr);
    assert!(
        r.stderr.to_lowercase().contains("unknown instruction"),
        "{}",
        r.stderr
    );
    assert_eq!(env.store_state(), before, "store unchanged");
}

#[test]
fn copy_outside_the_context_is_refused() {
    let env = Env::new();
    let outside = env.context("outside", &[("secret", b"top secret")]);
    let ctx = env.context(
        "ctx",
        &[("Dockerfile", b"FROM scratch\nCOPY ../outside/secret /s\n")],
    );
    env.wharf(&["images"]).ok();
    let before = env.store_state();
    env.wharf(&["build", "-t", "x", ctx.to_str().unwrap()])
        .fails(125, "outside the build context");
    // A symlink pointing out of the context is refused too.
    std::os::unix::fs::symlink(outside.join("secret"), ctx.join("link")).unwrap();
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY link /s\n").unwrap();
    env.wharf(&["build", "-t", "x", ctx.to_str().unwrap()])
        .fails(125, "link");
    assert_eq!(env.store_state(), before);
}

#[test]
fn unsupported_build_features_fail_clearly() {
    let env = Env::new();
    let ctx = env.context(
        "ctx",
        &[(
            "Dockerfile",
            b"FROM scratch\nADD https://example.com/x /x\n",
        )],
    );
    env.wharf(&["build", "-t", "x", ctx.to_str().unwrap()])
        .fails(125, "not supported offline");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM --platform=linux/amd64 scratch\nRUN echo hi\n",
    )
    .unwrap();
    // A Linux RUN without a shell in the image (RUN runs as root only).
    if rustix::process::geteuid().is_root() {
        env.wharf(&["build", "-t", "x", ctx.to_str().unwrap()])
            .fails(125, "exec: \"/bin/sh\": executable file not found");
    }
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nRUN echo hi\n").unwrap();
    env.wharf(&["build", "-t", "x", ctx.to_str().unwrap()])
        .fails(125, ".wasm program");
    std::fs::write(ctx.join("Dockerfile"), "FROM nosuchimage\n").unwrap();
    env.wharf(&["build", "-t", "x", ctx.to_str().unwrap()])
        .fails(125, "no such image");
    std::fs::write(ctx.join("Dockerfile"), "FROM scratch\nCOPY missing /m\n").unwrap();
    env.wharf(&["build", "-t", "x", ctx.to_str().unwrap()])
        .fails(125, "not found in the build context");
}

#[test]
fn add_unpacks_local_tar_archives() {
    let env = Env::new();
    let mut tarball = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_cksum();
    tarball
        .append_data(&mut h, "inner/file.txt", &b"in\n"[..])
        .unwrap();
    let tarball = tarball.into_inner().unwrap();
    let probe = std::fs::read(probe_wasm()).unwrap();
    let ctx = env.context(
        "ctx",
        &[
            ("files.tar", &tarball),
            ("probe.wasm", &probe),
            ("Dockerfile", b"FROM scratch\nADD files.tar /unpacked/\nCOPY probe.wasm /probe.wasm\nENTRYPOINT [\"/probe.wasm\"]\n"),
        ],
    );
    env.wharf(&["build", "-t", "add", ctx.to_str().unwrap()])
        .ok();
    assert_eq!(
        env.wharf(&["run", "add", "cat", "/unpacked/inner/file.txt"])
            .ok()
            .stdout,
        "in\n"
    );
}

#[test]
fn concurrent_builds_share_one_root() {
    let env = Env::new();
    let ctx = examples().join("hello");
    let kids: Vec<_> = (0..3)
        .map(|i| {
            env.cmd(&["build", "-t", &format!("hello:{i}"), ctx.to_str().unwrap()])
                .output()
                .unwrap()
        })
        .collect();
    let _ = kids;
    let mut procs: Vec<_> = (0..4)
        .map(|i| {
            env.cmd(&[
                "build",
                "--no-cache",
                "-t",
                &format!("par:{i}"),
                ctx.to_str().unwrap(),
            ])
            .spawn()
            .unwrap()
        })
        .collect();
    for p in &mut procs {
        assert!(p.wait().unwrap().success());
    }
    let list = env.wharf(&["images", "--format", "json"]).ok().stdout;
    assert_eq!(list.lines().count(), 7, "{list}");
    for i in 0..4 {
        env.wharf(&["run", &format!("par:{i}")]).ok();
    }
}

#[test]
fn docker_semantics_of_copy_workdir_volume_and_entrypoint() {
    let env = Env::new();
    let probe = std::fs::read(probe_wasm()).unwrap();
    let dockerfile = br#"FROM scratch
COPY probe.wasm /probe.wasm
COPY a.txt /dir/
# /dir exists: the file goes into it, trailing slash or not.
COPY b.txt /dir
WORKDIR /work/deep
VOLUME ["/with space", "/plain"]
CMD ["pwd"]
# A CMD set earlier in this stage survives ENTRYPOINT.
ENTRYPOINT ["/probe.wasm"]
"#;
    let ctx = env.context(
        "ctx",
        &[
            ("Dockerfile", dockerfile),
            ("a.txt", b"A\n"),
            ("b.txt", b"B\n"),
            ("probe.wasm", &probe),
        ],
    );
    env.wharf(&["build", "-t", "sem", ctx.to_str().unwrap()])
        .ok();
    assert_eq!(
        env.wharf(&["run", "sem", "ls", "/dir"]).ok().stdout,
        "a.txt\nb.txt\n"
    );
    assert_eq!(
        env.wharf(&["run", "sem", "ls", "/work"]).ok().stdout,
        "deep\n",
        "WORKDIR creates its directory"
    );
    let v: serde_json::Value =
        serde_json::from_str(&env.wharf(&["inspect", "sem"]).ok().stdout).unwrap();
    assert_eq!(v[0]["Config"]["Cmd"], serde_json::json!(["pwd"]));
    let vols = v[0]["Config"]["Volumes"].as_object().unwrap();
    assert!(vols.contains_key("/with space"), "{vols:?}");
    assert!(vols.contains_key("/plain"), "{vols:?}");

    // A CMD inherited from the base image is dropped by a new ENTRYPOINT.
    let child = env.context(
        "child",
        &[(
            "Dockerfile",
            b"FROM sem\nENTRYPOINT [\"/probe.wasm\", \"args\"]\n" as &[u8],
        )],
    );
    env.wharf(&["build", "-t", "child", child.to_str().unwrap()])
        .ok();
    let v: serde_json::Value =
        serde_json::from_str(&env.wharf(&["inspect", "child"]).ok().stdout).unwrap();
    assert!(v[0]["Config"]["Cmd"].is_null(), "{}", v[0]["Config"]);
}
