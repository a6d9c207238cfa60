//! The command line through the real binary: `check-config` and the `--help` manual.

mod common;

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_promo-gateway");

// Names no developer machine or CI runner sets.
const LOOP_VAR: &str = "PROMO_CLI_TEST_LOOP_TOKEN";
const PARTNERO_VAR: &str = "PROMO_CLI_TEST_PARTNERO_KEY";
const LOOP_SECRET: &str = "loop-cli-secret-91ab";
const PARTNERO_SECRET: &str = "partnero-cli-secret-37cd";

fn config() -> String {
    let table = |name: &str, var: &str| {
        common::upstream(
            name,
            name,
            "http://127.0.0.1:9",
            &format!("auth = {{ scheme = \"bearer\", token_env = \"{var}\" }}"),
        )
    };
    format!("{}\n{}", table("loop", LOOP_VAR), table("partnero", PARTNERO_VAR))
}

/// Runs `promo-gateway --config <dir>/config.toml <args>` with only `env` of ours set.
fn run(config: &str, mappings: &[(&str, &str)], args: &[&str], env: &[(&str, &str)]) -> (Output, String, String) {
    let dir = tempfile::tempdir().unwrap();
    common::write_files(dir.path(), config, mappings);
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(dir.path().join("config.toml"))
        .args(args)
        .env_remove(LOOP_VAR)
        .env_remove(PARTNERO_VAR)
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // No ledger is opened: check-config can run beside a serving gateway.
    assert!(!dir.path().join("promo-gateway.db").exists());
    (out, stdout, stderr)
}

const BOTH: [(&str, &str); 2] = [(LOOP_VAR, LOOP_SECRET), (PARTNERO_VAR, PARTNERO_SECRET)];

#[test]
fn a_good_config_checks_out() {
    let (out, stdout, stderr) = run(
        &config(),
        &[("spring", common::SPRING_LOOP_PARTNERO)],
        &["check-config"],
        &BOTH,
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("upstream loop (Loop): credentials present ({LOOP_VAR})")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "upstream partnero (Partnero): credentials present ({PARTNERO_VAR})"
        )),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("  campaign spring: mapping complete").count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains("ok: no problems"), "{stdout}");
    // No account currency declared: a note, not a problem.
    assert!(
        stdout.contains("  note: no currency declared: codes with an amount (amount_off) are refused until upstreams.loop.currency names the Loop account's currency"),
        "{stdout}"
    );
    for secret in [LOOP_SECRET, PARTNERO_SECRET] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{stdout}{stderr}");
    }
}

#[test]
fn a_missing_credential_is_named_and_fails() {
    let (out, stdout, _) = run(
        &config(),
        &[("spring", common::SPRING_LOOP_PARTNERO)],
        &["check-config"],
        &[(LOOP_VAR, LOOP_SECRET)],
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "upstream partnero (Partnero): PROBLEM: credentials missing: {PARTNERO_VAR} not set"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("upstream loop (Loop): credentials present"), "{stdout}");
    assert!(stdout.contains("1 problem(s)"), "{stdout}");
}

#[test]
fn an_incomplete_mapping_is_named_and_fails() {
    // Partnero needs the coupon the code attaches to; this mapping forgets it.
    let incomplete = "[upstreams.loop]\n\n[upstreams.partnero]\ndiscount = { percent_off = 20 }\n";
    let (out, stdout, _) = run(&config(), &[("spring", incomplete)], &["check-config"], &BOTH);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("  campaign spring: PROBLEM: mapping incomplete"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(line.contains("coupon_uuid"), "{line}");
    assert!(
        stdout.contains("  campaign spring: mapping complete"),
        "loop's mapping is complete: {stdout}"
    );

    // A campaign that maps an upstream the config does not define.
    let (out, stdout, _) = run(
        &config(),
        &[("spring", "[upstreams.moltin]\npromotion_id = \"p\"\n")],
        &["check-config"],
        &BOTH,
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("campaign spring: PROBLEM: maps `moltin`, but the config has no [upstreams.moltin]"),
        "{stdout}"
    );
}

/// A Moltin `promotion_id` of `..` would send the call to `/v2/codes`: check-config fails on
/// it, naming the file and the key, instead of calling the mapping complete.
#[test]
fn a_promotion_id_that_is_a_dot_segment_fails_check_config() {
    let (out, stdout, stderr) = run(
        &config(),
        &[(
            "spring",
            "[upstreams.moltin]\npromotion_id = \"..\"\ndiscount = { percent_off = 20 }\n",
        )],
        &["check-config"],
        &BOTH,
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("mapping complete"), "{stdout}");
    assert!(
        stderr.contains("spring.toml") && stderr.contains("upstreams.moltin.promotion_id"),
        "{stderr}"
    );
}

#[test]
fn a_malformed_config_fails_naming_the_key() {
    let bad = config().replace("per_second = 1000", "per_second = 0");
    let (out, stdout, stderr) = run(&bad, &[], &["check-config"], &BOTH);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("upstreams.loop.rate_limit.per_second"), "{stderr}");
}

#[test]
fn help_reads_like_a_manual() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let main = help(&["--help"]);
    for needle in [
        "serve",
        "check-config",
        "sync",
        "mirror",
        "Examples:",
        "Environment:",
        "RUST_LOG",
        "Exit status:",
        "2  sync/mirror",
        "Authorization: Bearer <key>",
    ] {
        assert!(main.contains(needle), "`{needle}` missing from --help:\n{main}");
    }
    let check = help(&["check-config", "--help"]);
    assert!(check.contains("Exit status: 0 when no problem was found"), "{check}");
    let serve = help(&["serve", "--help"]);
    assert!(serve.contains("--listen") && serve.contains("not loopback"), "{serve}");
}
