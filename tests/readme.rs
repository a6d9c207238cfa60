//! The README and the docs are part of the product: the vendor table (docs/vendors.md) must be
//! the adapters' own, and the README's commands what CI and the sandbox test run.

#[test]
fn docs_vendor_table_matches_the_adapters() {
    let vendors = include_str!("../docs/vendors.md");
    let start =
        vendors.find("<!-- vendor-table:start -->\n").expect("start marker") + "<!-- vendor-table:start -->\n".len();
    let end = vendors.find("<!-- vendor-table:end -->").expect("end marker");
    let expected = promo_adapters::policy::markdown_table();
    assert_eq!(
        &vendors[start..end],
        expected,
        "docs/vendors.md's vendor table is stale: replace it with the output of `cargo run --example vendor_table`"
    );
}

#[test]
fn readme_test_command_is_what_ci_runs() {
    let readme = include_str!("../README.md");
    let ci = include_str!("../.ci/run");
    let command = readme
        .lines()
        .find(|l| l.ends_with("# run every test (what CI runs)"))
        .and_then(|l| l.split('#').next())
        .map(str::trim)
        .expect("the README's test command");
    assert!(
        ci.lines().any(|l| l.trim() == command),
        "CI must run the README's test command `{command}`"
    );
    assert!(command.contains("cargo test --workspace"), "{command}");
    let script = include_str!("../scripts/test-servers");
    assert!(script.contains("redis-server"));
}

#[test]
fn readme_first_command_serves_against_the_sandbox() {
    // tests/sandbox.rs runs this command's binary on the shipped config.toml and sends the
    // README's create example through it.
    let readme = include_str!("../README.md");
    let first = readme
        .lines()
        .skip_while(|l| *l != "## Two commands")
        .find(|l| l.starts_with("cargo "))
        .expect("the README's first command");
    assert!(first.starts_with("cargo run --release -- --sandbox "), "{first}");
}
