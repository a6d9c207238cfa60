//! `--sandbox` on every command, through the real binary: the shipped config and mappings with
//! every real vendor URL pointed at a loopback trap that records any call, real-looking
//! credentials in the environment, and the checks that the trap heard nothing and the real
//! ledger file was never created. Also the CLI's summary, its numbers, its refusals of flags
//! that make no sense, and the CLI examples of docs/sync-jobs.md, run as written.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_promo-gateway");

/// The credential variables the shipped config names, with values shaped like real ones.
const REAL_CREDENTIALS: [(&str, &str); 7] = [
    ("SPACEBRING_API_KEY", "sb_live_9f8e7d6c5b4a39281706"),
    ("SPACEBRING_API_SECRET", "sbsec_4b1c9e2f7a6d5038c1e2"),
    ("PARTNERO_API_KEY", "ptn_live_55c2e1a4b7d90f3e6a18"),
    ("MOLTIN_ACCESS_TOKEN", "mlt_2f6a1c9d8e7b4a30d5c6e7f8"),
    ("LIMIO_CLIENT_ID", "limio-client-7d21"),
    ("LIMIO_CLIENT_SECRET", "limio-secret-a9c3e5f70b1d"),
    ("LOOP_API_TOKEN", "loop_live_3e9a7c5b1d2f4068"),
];

/// The repository root: the shipped config.toml, mappings/ and examples/.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A copy of the shipped config and mappings in a temporary directory, every vendor URL (base
/// and token) replaced by `trap`.
fn project(trap: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut config = std::fs::read_to_string(root().join("config.toml")).unwrap();
    for real in [
        "https://api.spacebring.com",
        "https://api.partnero.com",
        "https://api.moltin.com",
        "https://your-environment.prod.limio.com",
        "https://payments.platform.loop.health",
    ] {
        assert!(config.contains(real), "the shipped config no longer names {real}");
        config = config.replace(real, trap);
    }
    let unpointed: Vec<&str> = config
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.contains("https://"))
        .collect();
    assert!(unpointed.is_empty(), "vendor URLs left unpointed: {unpointed:?}");
    std::fs::write(dir.path().join("config.toml"), config).unwrap();
    std::fs::create_dir(dir.path().join("mappings")).unwrap();
    std::fs::copy(
        root().join("mappings/example.toml"),
        dir.path().join("mappings/example.toml"),
    )
    .unwrap();
    dir
}

/// Runs the binary in `dir` with `args` and the real-looking credentials set.
fn run(dir: &Path, args: &[&str]) -> (Output, String, String) {
    run_with(dir, args, &REAL_CREDENTIALS)
}

fn run_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (Output, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args).stdin(Stdio::null());
    for (var, _) in REAL_CREDENTIALS {
        cmd.env_remove(var);
    }
    cmd.env_remove("RUST_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// What a real vendor would have heard: nothing, if the sandbox held.
async fn assert_unheard(trap: &wiremock::MockServer, after: &str) {
    let heard = trap.received_requests().await.unwrap();
    assert!(
        heard.is_empty(),
        "{after}: {} request(s) left for a real vendor's URL, the first {} {}",
        heard.len(),
        heard[0].method,
        heard[0].url
    );
}

fn write_codes(dir: &Path, name: &str, rows: &[&str]) -> String {
    let mut text = String::from("code,percent_off\n");
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(dir.join(name), text).unwrap();
    name.to_owned()
}

#[tokio::test]
async fn sandboxed_sync_mirror_and_check_config_call_no_real_vendor_and_write_no_real_ledger() {
    let trap = wiremock::MockServer::start().await;
    let dir = project(&trap.uri());
    let ledger = dir.path().join("promo-gateway.db");
    let codes = write_codes(dir.path(), "codes.csv", &["SAFE-1,20", "SAFE-2,20", "SAFE-3,20"]);

    let (out, stdout, stderr) = run(dir.path(), &["--sandbox", "sync", &codes, "--campaign", "example"]);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("sync job 1 done: 3 codes, campaign example\n"),
        "{stdout}"
    );
    for target in ["limio-v2", "limio-v3", "loop", "moltin", "partnero", "spacebring"] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().collect::<Vec<_>>() == [target, "3"]),
            "{target} created all three at the simulated vendor:\n{stdout}"
        );
    }
    assert!(
        stderr.contains("sandbox: simulated vendors on http://127.0.0.1:"),
        "{stderr}"
    );
    assert_unheard(&trap, "sync --sandbox").await;
    assert!(!ledger.exists(), "sync --sandbox created the real ledger");

    // The flag after the subcommand means the same.
    let (out, stdout, stderr) = run(
        dir.path(),
        &["mirror", "--sandbox", "--campaign", "example", "--to", "loop"],
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(
        stdout,
        "nothing to mirror: the ledger holds no code of campaign example that is missing from loop\n"
    );
    assert_unheard(&trap, "mirror --sandbox").await;
    assert!(!ledger.exists(), "mirror --sandbox created the real ledger");

    // No credential at all: the sandbox needs none, and names none of the real variables.
    let (out, stdout, stderr) = run_with(dir.path(), &["--sandbox", "check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("ok: no problems"), "{stdout}");
    assert_eq!(
        stdout
            .matches("  sandbox: calls go to the simulated vendor at http://127.0.0.1:8081/")
            .count(),
        6,
        "{stdout}"
    );
    for (var, _) in REAL_CREDENTIALS {
        assert!(!stdout.contains(var), "check-config --sandbox names {var}:\n{stdout}");
    }
    assert_unheard(&trap, "check-config --sandbox").await;
    assert!(!ledger.exists());

    // The control: the same sync without the flag does reach the trap, so the checks above
    // could fail.
    let (_, stdout, stderr) = run(
        dir.path(),
        &["sync", &codes, "--campaign", "example", "--targets", "loop"],
    );
    assert!(!trap.received_requests().await.unwrap().is_empty(), "{stdout}{stderr}");
    assert!(ledger.exists(), "a real run keeps the configured ledger");
}

#[test]
fn flags_a_command_cannot_honour_are_refused_not_ignored() {
    let dir = project("http://127.0.0.1:9");
    let cases: [(&[&str], &str); 5] = [
        (
            &["sandbox", "--sandbox"],
            "sandbox: --sandbox and --sandbox-listen make no sense here",
        ),
        (
            &["sandbox", "--sandbox-listen", "127.0.0.1:0"],
            "sandbox: --sandbox and --sandbox-listen make no sense here",
        ),
        (
            &["--config", "config.toml", "sandbox"],
            "sandbox: --config makes no sense here",
        ),
        (
            &[
                "--listen",
                "127.0.0.1:0",
                "mirror",
                "--campaign",
                "example",
                "--to",
                "loop",
            ],
            "--listen is where `serve` listens",
        ),
        (
            &["--sandbox-listen", "127.0.0.1:0", "check-config"],
            "--sandbox-listen moves the simulated vendors of --sandbox; give --sandbox too",
        ),
    ];
    for (args, message) in cases {
        let (out, stdout, stderr) = run(dir.path(), args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} did something: {stdout}");
    }
    assert!(!dir.path().join("promo-gateway.db").exists());
}

#[tokio::test]
async fn the_summary_groups_what_failed_and_says_how_to_see_it() {
    let trap = wiremock::MockServer::start().await;
    let dir = project(&trap.uri());
    // 10% where the campaign's parents grant 20%: refused, unsent, on the four such vendors.
    let codes = write_codes(dir.path(), "codes.csv", &["TEN-1,10", "TEN-2,10", "TEN-3,10"]);
    let (out, stdout, stderr) = run(dir.path(), &["--sandbox", "sync", &codes, "--campaign", "example"]);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("\ninvalid: 12 deliveries\n"), "{stdout}");
    assert!(
        stdout.contains(
            "  3 × contradicts_mapping: discount: the request asks for 10% off but the campaign's Moltin parent grants 20% off\n      TEN-1 on moltin, TEN-2 on moltin, TEN-3 on moltin\n"
        ),
        "{stdout}"
    );
    // The sandbox's ledger is gone at exit: no API to point at.
    assert!(!stdout.contains("GET /v1/"), "{stdout}");
    assert_unheard(&trap, "sync --sandbox").await;

    // On the configured ledger with no credentials: nothing is sent, and the summary names the
    // filter that lists them once the ledger is served.
    let codes = write_codes(dir.path(), "twenty.csv", &["OK-1,20", "OK-2,20"]);
    let (out, stdout, stderr) = run_with(
        dir.path(),
        &["sync", &codes, "--campaign", "example", "--targets", "loop,partnero"],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.contains("\nunconfigured: 4 deliveries\n"), "{stdout}");
    assert!(
        stdout.contains("  2 × missing_credentials: ") && stdout.contains("      OK-1 on loop, OK-2 on loop\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  list them all: GET /v1/sync-jobs/1/results?status=unconfigured (promo-gateway serve, on this config's ledger)\n"),
        "{stdout}"
    );
    // Only failed, throttled and cancelled deliveries are retried.
    assert!(!stdout.contains("/retry"), "{stdout}");
    assert_unheard(&trap, "sync without credentials").await;
}

#[tokio::test]
async fn counts_read_with_thousands_separators() {
    let trap = wiremock::MockServer::start().await;
    let dir = project(&trap.uri());
    let rows: Vec<String> = (0..1_200).map(|i| format!("BULK-{i:05},20")).collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let codes = write_codes(dir.path(), "bulk.csv", &rows);
    let (out, stdout, stderr) = run(
        dir.path(),
        &[
            "--sandbox",
            "sync",
            &codes,
            "--campaign",
            "example",
            "--targets",
            "moltin",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.starts_with("sync job 1 done: 1,200 codes, campaign example\n"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["moltin", "1,200"]),
        "{stdout}"
    );
    assert_unheard(&trap, "sync --sandbox").await;
}

/// docs/sync-jobs.md's `console` block under "Sync jobs from the command line", command by
/// command: each `$ promo-gateway ...` line is run in the repository (every one of them with
/// --sandbox, so nothing is written there and no vendor is called), and its standard output must
/// be the lines the page shows under it.
#[test]
fn the_docs_cli_examples_print_what_the_docs_show() {
    let page = std::fs::read_to_string(root().join("docs/sync-jobs.md")).unwrap();
    let section = page
        .split("\n## Sync jobs from the command line\n")
        .nth(1)
        .expect("docs/sync-jobs.md has the section \"Sync jobs from the command line\"");
    let block = section
        .split("<!-- cli-example: run by tests/cli_sandbox.rs -->\n```console\n")
        .nth(1)
        .and_then(|rest| rest.split("\n```").next())
        .expect("docs/sync-jobs.md has the CLI example block under that section");
    let mut examples: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        match line.strip_prefix("$ ") {
            Some(command) => examples.push((command.to_owned(), String::new())),
            None => {
                let (_, shown) = examples.last_mut().expect("the block starts with a command");
                shown.push_str(line);
                shown.push('\n');
            }
        }
    }
    assert!(examples.len() >= 2, "{block}");
    let ledger_before = root().join("promo-gateway.db").exists();
    for (command, shown) in examples {
        let args: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(args[0], "promo-gateway", "{command}");
        assert!(
            args.contains(&"--sandbox"),
            "a docs example runs in the sandbox: {command}"
        );
        let (_, stdout, stderr) = run_with(&root(), &args[1..], &[]);
        assert_eq!(stdout, shown, "`{command}` printed (stderr: {stderr})");
    }
    assert_eq!(root().join("promo-gateway.db").exists(), ledger_before);
}
