//! Runs every example of the README's "Try it" section, as written, against
//! a fresh node on the README's address (127.0.0.1:7070), with the freshly
//! built `strata` first on PATH. An example that fails fails this test.

mod common;

use std::path::Path;
use std::process::Command;

fn readme_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("read README.md");
    let start = readme
        .find("<!-- readme-examples:start -->")
        .expect("examples start marker");
    let end = readme
        .find("<!-- readme-examples:end -->")
        .expect("examples end marker");
    readme[start..end]
        .split("```sh\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn every_readme_example_runs_as_written() {
    let blocks = readme_blocks();
    assert!(
        blocks.len() >= 4,
        "found only {} example blocks",
        blocks.len()
    );
    let curl = Command::new("curl").arg("--version").output();
    assert!(
        curl.is_ok_and(|o| o.status.success()),
        "curl is needed (scripts/test.sh installs it)"
    );
    let kcat = Command::new("kcat").arg("-V").output();
    assert!(
        kcat.is_ok_and(|o| o.status.success()),
        "kcat is needed (scripts/test.sh installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start_on(
        "127.0.0.1:7070",
        dir.path(),
        &["--kafka-listen", "127.0.0.1:9092"],
    );
    let bin_dir = Path::new(common::BIN).parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (i, block) in blocks.iter().enumerate() {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", block])
            .env("PATH", &path)
            .env_remove("STRATA_SERVER")
            .env_remove("STRATA_TENANT")
            .output()
            .expect("run bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success(),
            "README example {i} failed:\n{block}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
        assert!(
            !stderr.contains("error:"),
            "README example {i} printed an error:\n{stderr}"
        );
    }
    // The examples did what they say.
    let (ok, stdout, _) = common::cli(&server, &["consume", "payments", "--from-beginning"], None);
    assert!(ok);
    assert_eq!(stdout, "paid 10\npaid 20\npaid 30\n");
    let (ok, stdout, _) = common::cli(&server, &["consume", "invoices", "--from-beginning"], None);
    assert!(ok);
    assert_eq!(stdout, "paid 40\npaid 50\n");
    drop(server);
}
