//! `make image` (e2e/image/build.sh) against the Dockerfile: the image built
//! without a container engine must say what the Dockerfile's final stage says
//! (user, entrypoint, command, exposed port, labels, the binary's path) and
//! hold what distroless would have given it (CA certificates, the nonroot
//! user). The script is run on a stand-in binary, so this needs neither the
//! static build nor a container engine; the archives `make image` left under
//! target/image are checked too when they are there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NONROOT: &str = "65532";

/// What the Dockerfile's final stage sets.
#[derive(Debug, Default, PartialEq)]
struct Stage {
    user: String,
    entrypoint: Vec<String>,
    cmd: Vec<String>,
    /// `PORT/PROTO`, as an image configuration names them.
    exposed: Vec<String>,
    labels: BTreeMap<String, String>,
    /// Destinations of COPY.
    copied: Vec<String>,
}

/// The Dockerfile's logical lines (continuations joined, comments dropped).
fn logical_lines(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && cur.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
        } else {
            cur.push_str(t);
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

/// `key="value" key2=value2 ...`, as LABEL takes them.
fn label_pairs(mut rest: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    loop {
        rest = rest.trim_start();
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().to_string();
        rest = &rest[eq + 1..];
        let value = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"').expect("closing quote in LABEL");
            rest = &quoted[end + 1..];
            quoted[..end].to_string()
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let v = rest[..end].to_string();
            rest = &rest[end..];
            v
        };
        pairs.push((key, value));
    }
    pairs
}

fn json_array(instr: &str, rest: &str) -> Vec<String> {
    serde_json::from_str(rest).unwrap_or_else(|e| {
        panic!(
            "{instr} must be in exec (JSON array) form, as the image config stores it: {rest}: {e}"
        )
    })
}

fn final_stage(dockerfile: &str) -> Stage {
    let lines = logical_lines(dockerfile);
    let from = lines
        .iter()
        .rposition(|l| l.to_ascii_uppercase().starts_with("FROM "))
        .expect("a FROM line");
    let mut stage = Stage::default();
    for line in &lines[from + 1..] {
        let (instr, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match instr.to_ascii_uppercase().as_str() {
            "USER" => stage.user = rest.to_string(),
            "ENTRYPOINT" => stage.entrypoint = json_array("ENTRYPOINT", rest),
            "CMD" => stage.cmd = json_array("CMD", rest),
            "EXPOSE" => stage.exposed.extend(rest.split_whitespace().map(|p| {
                if p.contains('/') {
                    p.to_string()
                } else {
                    format!("{p}/tcp")
                }
            })),
            "LABEL" => stage.labels.extend(label_pairs(rest)),
            "COPY" => stage
                .copied
                .extend(rest.split_whitespace().last().map(String::from)),
            other => panic!(
                "tests/image.rs does not know what {other} in the Dockerfile's final stage means for the image: teach it and e2e/image/build.sh"
            ),
        }
    }
    stage
}

#[test]
fn the_dockerfile_parser_reads_what_it_should() {
    let stage = final_stage(
        "FROM a AS b\nRUN x\nFROM scratch\nLABEL a=\"x y\" \\\n  b=c\n# note\nCOPY --from=b /o /bin/p\nUSER 1:1\nEXPOSE 80 53/udp\nENTRYPOINT [\"/bin/p\"]\nCMD [\"run\", \"-v\"]\n",
    );
    assert_eq!(stage.user, "1:1");
    assert_eq!(stage.entrypoint, ["/bin/p"]);
    assert_eq!(stage.cmd, ["run", "-v"]);
    assert_eq!(stage.exposed, ["80/tcp", "53/udp"]);
    assert_eq!(stage.copied, ["/bin/p"]);
    assert_eq!(
        stage.labels,
        BTreeMap::from([("a".into(), "x y".into()), ("b".into(), "c".into())])
    );
}

/// One image of an OCI layout archive, read back.
struct Image {
    ref_name: String,
    config: Value,
    /// Path in the layer -> (mode and type as `ls -l` shows it, uid/gid).
    entries: BTreeMap<String, (String, String)>,
    /// The unpacked layer.
    rootfs: PathBuf,
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(layout: &Path, digest: &Value) -> PathBuf {
    let d = digest.as_str().expect("digest is a string");
    let hex = d.strip_prefix("sha256:").expect("sha256 digest");
    layout.join("blobs/sha256").join(hex)
}

/// Unpacks `archive` into `dir` and reads its single image (or, for an
/// index archive, the image for `arch`).
fn open_archive(archive: &Path, dir: &Path, arch: &str) -> Image {
    let layout = dir.join("layout");
    std::fs::create_dir_all(&layout).expect("mkdir");
    run(Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-xf")
        .arg(archive));
    assert_eq!(
        read_json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0",
        "an OCI image layout"
    );
    let index = read_json(&layout.join("index.json"));
    let top = &index["manifests"][0];
    let ref_name = top["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut manifest_desc = top.clone();
    if top["mediaType"] == "application/vnd.oci.image.index.v1+json" {
        let inner = read_json(&blob(&layout, &top["digest"]));
        manifest_desc = inner["manifests"]
            .as_array()
            .expect("manifests")
            .iter()
            .find(|m| m["platform"]["architecture"] == arch)
            .unwrap_or_else(|| panic!("no {arch} image in {}", archive.display()))
            .clone();
    }
    assert_eq!(
        manifest_desc["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let manifest = read_json(&blob(&layout, &manifest_desc["digest"]));
    let config = read_json(&blob(&layout, &manifest["config"]["digest"]));
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer = blob(&layout, &layers[0]["digest"]);
    let listing = run(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-tvzf")
        .arg(&layer));
    let entries = listing
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let path = f.last()?.trim_end_matches('/').to_string();
            Some((path, (f.first()?.to_string(), f.get(1)?.to_string())))
        })
        .collect();
    let rootfs = dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("mkdir");
    run(Command::new("tar")
        .arg("-C")
        .arg(&rootfs)
        .arg("--no-same-owner")
        .arg("-xzf")
        .arg(&layer));
    Image {
        ref_name,
        config,
        entries,
        rootfs,
    }
}

fn dockerfile_stage() -> Stage {
    let text = std::fs::read_to_string(Path::new(ROOT).join("Dockerfile")).expect("Dockerfile");
    final_stage(&text)
}

/// The checks every image of ours must pass, whatever binary it holds.
fn check_image(image: &Image, arch: &str) {
    let stage = dockerfile_stage();
    let c = &image.config["config"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(c["User"], stage.user.as_str(), "USER");
    assert_eq!(strings(&c["Entrypoint"]), stage.entrypoint, "ENTRYPOINT");
    assert_eq!(strings(&c["Cmd"]), stage.cmd, "CMD");
    let ports: Vec<String> = c["ExposedPorts"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let mut want_ports = stage.exposed.clone();
    want_ports.sort();
    assert_eq!(ports, want_ports, "EXPOSE");
    let labels: BTreeMap<String, String> = c["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(labels, stage.labels, "LABEL");
    assert_eq!(image.config["os"], "linux");
    assert_eq!(image.config["architecture"], arch);

    // The binary where the Dockerfile copies it and the entrypoint runs it.
    let bin = stage.entrypoint.first().expect("an entrypoint");
    assert_eq!(
        stage.copied,
        std::slice::from_ref(bin),
        "COPY puts the entrypoint"
    );
    let (mode, owner) = &image.entries[bin.trim_start_matches('/')];
    assert_eq!((mode.as_str(), owner.as_str()), ("-rwxr-xr-x", "0/0"));
    // What distroless static:nonroot gives the binary.
    let uid = stage.user.split(':').next().unwrap_or_default();
    assert_eq!(uid, NONROOT);
    let passwd = std::fs::read_to_string(image.rootfs.join("etc/passwd")).expect("etc/passwd");
    assert!(
        passwd
            .lines()
            .any(|l| l.starts_with(&format!("nonroot:x:{NONROOT}:{NONROOT}:"))),
        "{passwd}"
    );
    let group = std::fs::read_to_string(image.rootfs.join("etc/group")).expect("etc/group");
    assert!(
        group.lines().any(|l| l == format!("nonroot:x:{NONROOT}:")),
        "{group}"
    );
    let certs = std::fs::read_to_string(image.rootfs.join("etc/ssl/certs/ca-certificates.crt"))
        .expect("CA bundle");
    assert!(
        certs.matches("BEGIN CERTIFICATE").count() > 100,
        "Debian's CA bundle"
    );
    let home = &image.entries["home/nonroot"];
    assert_eq!(
        (home.0.as_str(), home.1.as_str()),
        ("drwx------", "65532/65532")
    );
    assert_eq!(image.entries["tmp"].0, "drwxrwxrwt");

    // Named as the chart installs it by default.
    let chart = std::fs::read_to_string(Path::new(ROOT).join("charts/prefix-operator/Chart.yaml"))
        .expect("Chart.yaml");
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("appVersion");
    let values =
        std::fs::read_to_string(Path::new(ROOT).join("charts/prefix-operator/values.yaml"))
            .expect("values.yaml");
    let repository = values
        .lines()
        .find_map(|l| l.trim().strip_prefix("repository:"))
        .map(|v| v.trim().to_string())
        .expect("image.repository");
    assert_eq!(image.ref_name, format!("{repository}:{app_version}"));
}

fn build(bins: &[(&str, &Path)], out: &Path) -> Vec<PathBuf> {
    let mut cmd = Command::new("bash");
    cmd.arg(Path::new(ROOT).join("e2e/image/build.sh"));
    for (arch, bin) in bins {
        cmd.arg("--bin").arg(format!("{arch}={}", bin.display()));
    }
    cmd.arg("--out").arg(out);
    run(&mut cmd).lines().map(PathBuf::from).collect()
}

#[test]
fn the_image_says_what_the_dockerfile_says() {
    let dir = tempfile::tempdir().expect("tmp");
    let standin = dir.path().join("stand-in");
    std::fs::write(&standin, "#!/bin/sh\necho stand-in\n").expect("write");
    let out = dir.path().join("out");
    let archives = build(&[("amd64", &standin), ("arm64", &standin)], &out);
    let version = env!("CARGO_PKG_VERSION");
    let name = |suffix: &str| out.join(format!("prefix-operator-{version}{suffix}.oci.tar"));
    assert_eq!(
        archives,
        [name("-amd64"), name("-arm64"), name("")],
        "one archive per architecture and the multi-arch one"
    );
    for (archive, arch, sub) in [
        (name("-amd64"), "amd64", "a"),
        (name("-arm64"), "arm64", "b"),
        (name(""), "arm64", "c"),
        (name(""), "amd64", "d"),
    ] {
        let image = open_archive(&archive, &dir.path().join(sub), arch);
        check_image(&image, arch);
        assert_eq!(
            std::fs::read(image.rootfs.join("prefix-operator")).expect("binary"),
            std::fs::read(&standin).expect("stand-in"),
            "the binary given"
        );
    }
    // The same inputs give the same bytes (the archive can be compared
    // across builds and machines).
    let again = build(&[("amd64", &standin)], &dir.path().join("again"));
    assert_eq!(
        std::fs::read(&again[0]).expect("archive"),
        std::fs::read(name("-amd64")).expect("archive"),
        "reproducible"
    );
}

/// What `make image` built, if it has run on this checkout.
#[test]
fn the_archives_make_image_left_are_complete() {
    let version = env!("CARGO_PKG_VERSION");
    let dir = tempfile::tempdir().expect("tmp");
    for arch in ["amd64", "arm64"] {
        let archive = Path::new(ROOT).join(format!(
            "target/image/prefix-operator-{version}-{arch}.oci.tar"
        ));
        if !archive.exists() {
            eprintln!("{} not built (make image): not checked", archive.display());
            continue;
        }
        eprintln!("checking {} (stale? run make image)", archive.display());
        let image = open_archive(&archive, &dir.path().join(arch), arch);
        check_image(&image, arch);
        let bin = std::fs::read(image.rootfs.join("prefix-operator")).expect("binary");
        // A static ELF for the image's architecture (e_machine 62 x86-64, 183 AArch64).
        assert_eq!(bin.get(..4), Some(&b"\x7fELF"[..]), "an ELF binary");
        let machine = bin.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let want = if arch == "amd64" { 62 } else { 183 };
        assert_eq!(machine, Some(want), "built for {arch}");
    }
}
